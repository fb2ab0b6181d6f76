"""Wallet routes: create/import/list/unlock/lock, secrets never returned or logged."""

from __future__ import annotations

import logging

from http_harness import serve
from solders.keypair import Keypair

PASS = "correct horse battery"


async def test_wallet_lifecycle_over_http(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    imported = Keypair()
    async with serve(tmp_path) as api:
        created = await api.ok(
            "POST", "/v1/wallets", {"name": "main", "passphrase": PASS, "id": "main"}
        )
        assert created["unlocked"] is False and created["id"] == "main"
        status, doc = await api.call(
            "POST", "/v1/wallets", {"name": "imp", "passphrase": PASS, "secret": str(imported)}
        )
        assert status == 201 and doc["public_key"] == str(imported.pubkey())
        listed = await api.ok("GET", "/v1/wallets")
        assert sorted(w["public_key"] for w in listed["items"]) == sorted(
            [created["public_key"], doc["public_key"]]
        )
        status, err = await api.call(
            "POST", "/v1/wallets/main/unlock", {"passphrase": "wrong passphrase"}
        )
        assert status == 403 and err["error"]["code"] == "wrong_passphrase"
        assert (await api.ok("POST", "/v1/wallets/main/unlock", {"passphrase": PASS}))[
            "unlocked"
        ] is True
        assert (await api.ok("POST", "/v1/wallets/main/lock"))["unlocked"] is False
        status, err = await api.call("POST", "/v1/wallets/nope/unlock", {"passphrase": PASS})
        assert status == 404
        status, err = await api.call(
            "POST", "/v1/wallets", {"name": "imp2", "passphrase": PASS, "secret": str(imported)}
        )
        assert status == 409
    text = "".join(repr(vars(r)) + r.getMessage() for r in caplog.records)
    assert str(imported) not in text and PASS not in text


async def test_wallet_bad_input_changes_nothing(tmp_path):
    async with serve(tmp_path) as api:
        for body in (
            {"name": "x", "passphrase": "short"},
            {"name": "x", "passphrase": PASS, "secret": "not a key"},
            {"name": "x", "passphrase": PASS, "id": "../../etc"},
            {"name": "x", "passphrase": PASS, "extra": 1},
        ):
            status, err = await api.call("POST", "/v1/wallets", body)
            assert status == 422, (body, status, err)
            assert "error" in err
        assert (await api.ok("GET", "/v1/wallets"))["items"] == []
        status, _ = await api.call(
            "POST", "/v1/wallets", {"name": "x", "passphrase": PASS}, key=None
        )
        assert status == 401
