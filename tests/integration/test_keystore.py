"""Keystore: encrypted at rest, unlock with the right passphrase only, secrets never on disk in clear."""

from __future__ import annotations

import json
import stat

import pytest
from solders.keypair import Keypair
from tradingd.adapters.solana.keystore import Keystore, WrongPassphrase
from tradingd.engine.errors import Conflict, ValidationError

PASS = "correct horse battery"


def test_created_wallet_is_encrypted_at_rest(tmp_path):
    ks = Keystore(tmp_path)
    info = ks.create("main", PASS, "main")
    path = tmp_path / "wallets" / "main.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert info.public_key in path.read_text()
    ks.unlock("main", PASS)
    secret = bytes(ks.signer("main"))
    raw = path.read_bytes()
    assert secret not in raw and str(ks.signer("main")).encode() not in raw
    assert json.loads(raw)["cipher"]["name"] == "aes-256-gcm"


def test_unlock_needs_the_right_passphrase_and_lock_forgets(tmp_path):
    ks = Keystore(tmp_path)
    ks.create("main", PASS, "w1")
    with pytest.raises(WrongPassphrase):
        ks.unlock("w1", "wrong passphrase")
    with pytest.raises(Conflict):
        ks.signer("w1")
    assert ks.unlock("w1", PASS).unlocked
    assert not ks.lock("w1").unlocked
    with pytest.raises(Conflict):
        ks.signer("w1")


def test_import_round_trips_the_keypair_from_base58_and_json(tmp_path):
    kp = Keypair()
    ks = Keystore(tmp_path)
    a = ks.import_secret("b58", PASS, str(kp), "a")
    assert a.public_key == str(kp.pubkey())
    ks.unlock("a", PASS)
    assert ks.signer("a").pubkey() == kp.pubkey()
    with pytest.raises(Conflict):
        ks.import_secret("again", PASS, json.dumps(list(bytes(kp))), "b")


@pytest.mark.parametrize("secret", ["", "not base58 !!", "[1, 2, 3]", "[999]"])
def test_bad_secrets_are_validation_errors(tmp_path, secret):
    with pytest.raises(ValidationError):
        Keystore(tmp_path).import_secret("x", PASS, secret)


def test_short_passphrase_and_bad_ids_are_rejected(tmp_path):
    ks = Keystore(tmp_path)
    with pytest.raises(ValidationError):
        ks.create("x", "short")
    with pytest.raises(ValidationError):
        ks.create("x", PASS, "../escape")


def test_a_new_keystore_sees_wallets_created_earlier(tmp_path):
    Keystore(tmp_path).create("main", PASS, "w")
    ks = Keystore(tmp_path)
    assert [w.id for w in ks.list()] == ["w"]
    assert not ks.get("w").unlocked
