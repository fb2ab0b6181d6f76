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


def _edit(tmp_path, wallet_id, change):
    path = tmp_path / "wallets" / f"{wallet_id}.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def _flip_first_byte(b64: str) -> str:
    import base64

    raw = bytearray(base64.b64decode(b64))
    raw[0] ^= 1
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize("field", ["ciphertext", "nonce", "salt"])
def test_a_tampered_wallet_file_never_unlocks(tmp_path, field):
    ks = Keystore(tmp_path)
    ks.create("main", PASS, "w1")

    def tamper(doc):
        where = {"ciphertext": doc, "nonce": doc["cipher"], "salt": doc["kdf"]}[field]
        where[field] = _flip_first_byte(where[field])

    _edit(tmp_path, "w1", tamper)
    with pytest.raises(WrongPassphrase):
        ks.unlock("w1", PASS)
    assert ks.unlocked_keypair("w1") is None


def test_another_wallets_ciphertext_under_this_public_key_is_refused(tmp_path):
    ks = Keystore(tmp_path)
    ks.create("a", PASS, "a")
    ks.create("b", PASS, "b")
    other = json.loads((tmp_path / "wallets" / "b.json").read_text())
    _edit(tmp_path, "a", lambda doc: doc.update(kdf=other["kdf"], cipher=other["cipher"],
                                                ciphertext=other["ciphertext"]))  # fmt: skip
    with pytest.raises(WrongPassphrase):  # the public key is the associated data
        ks.unlock("a", PASS)


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_text("{not json"),
        lambda p: p.write_text(json.dumps({"id": "w1"})),
        lambda p: p.write_bytes(b"\xff\xfe"),
    ],
)
def test_a_damaged_wallet_file_is_a_clear_error_and_leaves_the_others_listed(tmp_path, damage):
    from tradingd.adapters.solana.keystore import WalletDamaged

    ks = Keystore(tmp_path)
    ks.create("main", PASS, "w1")
    ks.create("other", PASS, "w2")
    damage(tmp_path / "wallets" / "w1.json")
    with pytest.raises(WalletDamaged):
        ks.unlock("w1", PASS)
    assert [w.id for w in ks.list()] == ["w2"]


def test_an_edited_scrypt_cost_is_refused_before_any_work(tmp_path):
    from tradingd.adapters.solana.keystore import WalletDamaged

    ks = Keystore(tmp_path)
    ks.create("main", PASS, "w1")
    _edit(tmp_path, "w1", lambda doc: doc["kdf"].update(n=2**30))
    with pytest.raises(WalletDamaged):
        ks.unlock("w1", PASS)
