"""API keys: hashed at rest in a 0600 file, shared with the `tradingd keys` CLI, never logged."""

from __future__ import annotations

import logging
import stat

import pytest
from http_harness import ADMIN, serve
from tradingd.adapters.app.cli import main
from tradingd.adapters.http.auth import KeyStore, keys_path
from tradingd.engine.errors import NotFound


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_key_file_holds_only_hashes_and_is_private(tmp_path):
    store = KeyStore(keys_path(tmp_path))
    key, raw = store.create("feeder", frozenset({"feed"}))
    path = keys_path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert raw not in path.read_text() and key.hash in path.read_text()
    assert raw.startswith("tdk_") and len(raw) > 40


def test_authenticate_accepts_live_keys_only(tmp_path):
    store = KeyStore(keys_path(tmp_path))
    key, raw = store.create("reader", frozenset({"read"}))
    assert store.authenticate(raw) == key
    assert store.authenticate(raw + "x") is None
    store.revoke(key.id)
    assert store.authenticate(raw) is None


def test_bootstrap_key_is_admin_and_not_listed(tmp_path):
    store = KeyStore(keys_path(tmp_path), bootstrap_key="from-env")
    key = store.authenticate("from-env")
    assert key is not None and key.allows("admin") and key.allows("signals")
    assert store.list() == []


def test_a_running_store_sees_keys_another_process_writes(tmp_path):
    clock = FakeMonotonic()
    daemon_view = KeyStore(keys_path(tmp_path), monotonic=clock)
    key, raw = KeyStore(keys_path(tmp_path)).create("cli", frozenset({"read"}))
    clock.now += 2.0
    assert daemon_view.authenticate(raw) == key
    KeyStore(keys_path(tmp_path)).revoke(key.id)
    clock.now += 2.0
    assert daemon_view.authenticate(raw) is None


def test_keys_cli_creates_lists_and_revokes(tmp_path, capsys):
    assert (
        main(
            [
                "keys",
                "create",
                "--name",
                "ops",
                "--scopes",
                "read,trade",
                "--data-dir",
                str(tmp_path),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    raw = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("key: "))
    key_id = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("id: "))
    assert KeyStore(keys_path(tmp_path)).authenticate(raw) is not None
    assert main(["keys", "list", "--data-dir", str(tmp_path)]) == 0
    listed = capsys.readouterr().out
    assert key_id in listed and "read,trade" in listed and raw not in listed
    assert main(["keys", "revoke", key_id, "--data-dir", str(tmp_path)]) == 0
    assert main(["keys", "revoke", key_id, "--data-dir", str(tmp_path)]) == 1
    assert (
        main(["keys", "create", "--name", "x", "--scopes", "root", "--data-dir", str(tmp_path)])
        == 2
    )


async def test_no_key_reaches_a_log_record(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    async with serve(tmp_path) as api:
        created = await api.ok("POST", "/v1/keys", {"name": "k", "scopes": ["admin"]})
        await api.ok("POST", "/v1/halt", {"buys": True}, key=created["key"])
        await api.call("GET", "/v1/agents", key="tdk_wrong_key_value")
        await api.ok("DELETE", f"/v1/keys/{created['id']}")
    for record in caplog.records:
        text = repr(vars(record)) + record.getMessage()
        for secret in (created["key"], ADMIN, "tdk_wrong_key_value"):
            assert secret not in text


def test_revoking_by_a_raw_key_never_echoes_it(tmp_path):
    """A tester's finding: DELETE /v1/keys/<the key itself> put the secret in the 404."""
    store = KeyStore(keys_path(tmp_path))
    _key, raw = store.create("reader", frozenset({"read"}))
    with pytest.raises(NotFound) as caught:
        store.revoke(raw)
    assert raw not in caught.value.message and raw not in str(caught.value.details)
    assert store.authenticate(raw) is not None  # and nothing changed
