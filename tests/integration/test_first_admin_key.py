"""KeyStore.create_first_admin: only a store without keys gets an admin key and its file."""

from __future__ import annotations

import stat
from pathlib import Path

from tradingd.adapters.http.auth import KeyStore, admin_key_path, keys_path


def test_a_store_without_keys_gets_an_admin_key_whose_file_is_private(tmp_path: Path) -> None:
    store = KeyStore(keys_path(tmp_path))
    created = store.create_first_admin(admin_key_path(tmp_path))
    assert created is not None and created.scopes == frozenset({"admin"})
    raw = admin_key_path(tmp_path).read_text().strip()
    assert stat.S_IMODE(admin_key_path(tmp_path).stat().st_mode) == 0o600
    assert store.authenticate(raw) == created
    assert raw not in keys_path(tmp_path).read_text()


def test_a_store_with_keys_gets_no_admin_key_file(tmp_path: Path) -> None:
    KeyStore(keys_path(tmp_path)).create("provider", frozenset({"signals"}))
    store = KeyStore(keys_path(tmp_path))
    assert store.create_first_admin(admin_key_path(tmp_path)) is None
    assert not admin_key_path(tmp_path).exists()
    assert len(store.list()) == 1


def test_a_second_start_reuses_the_first_key(tmp_path: Path) -> None:
    KeyStore(keys_path(tmp_path)).create_first_admin(admin_key_path(tmp_path))
    first = admin_key_path(tmp_path).read_text()
    assert KeyStore(keys_path(tmp_path)).create_first_admin(admin_key_path(tmp_path)) is None
    assert admin_key_path(tmp_path).read_text() == first
