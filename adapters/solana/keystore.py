"""Wallet keystore: Solana keypairs encrypted at rest with a passphrase.

Each wallet is one JSON file `<data_dir>/wallets/<id>.json` holding the public key and the
64-byte secret sealed with AES-256-GCM under a scrypt-derived key (the public key is the
associated data, so a blob cannot be swapped between wallets). Unlocked keypairs live only in
this process's memory; nothing here returns or logs a secret."""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import time
from base64 import b64decode, b64encode
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from msgspec import Struct
from solders.keypair import Keypair
from tradingd.engine.errors import Conflict, NotFound, TradingdError, ValidationError

log = logging.getLogger("tradingd.wallets")
SCRYPT_N = 2**15  # ~50 ms on this class of machine: slows guessing, not unlocking
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class WrongPassphrase(TradingdError):
    code = "wrong_passphrase"
    status = 403


class WalletDamaged(TradingdError):
    """The wallet file is not what the keystore wrote (truncated, edited, or another wallet's
    ciphertext): nothing in it is trusted."""

    code = "wallet_file_damaged"
    status = 409


class WalletInfo(Struct, frozen=True, kw_only=True):
    id: str
    name: str
    public_key: str
    created_at: int  # epoch ms
    unlocked: bool = False


def _kdf(passphrase: str, salt: bytes, n: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=8, p=1).derive(passphrase.encode())


def _check_passphrase(passphrase: str) -> None:
    if len(passphrase) < 8:
        raise ValidationError("passphrase must be at least 8 characters", "$.passphrase")


def parse_secret(secret: str) -> Keypair:
    """A 64-byte secret as base58 (Phantom/solana-keygen export) or a JSON byte array."""
    try:
        text = secret.strip()
        if text.startswith("["):
            raw = bytes(json.loads(text))
            return Keypair.from_bytes(raw)
        return Keypair.from_base58_string(text)
    except (ValueError, TypeError):
        raise ValidationError(
            "secret must be a 64-byte keypair, base58 or a JSON byte array", "$.secret"
        ) from None


def _well_formed(doc: object) -> bool:
    if not isinstance(doc, dict):
        return False
    kdf, cipher = doc.get("kdf"), doc.get("cipher")
    return (
        all(isinstance(doc.get(k), str) for k in ("id", "name", "public_key", "ciphertext"))
        and isinstance(doc.get("created_at"), int)
        and isinstance(kdf, dict)
        and isinstance(kdf.get("salt"), str)
        and isinstance(kdf.get("n"), int)
        and 2**10 <= kdf["n"] <= 2**20  # an edited cost must neither weaken nor hang an unlock
        and isinstance(cipher, dict)
        and isinstance(cipher.get("nonce"), str)
    )


class Keystore:
    def __init__(self, data_dir: str | Path) -> None:
        self.dir = Path(data_dir) / "wallets"
        self._unlocked: dict[str, Keypair] = {}

    def _path(self, wallet_id: str) -> Path:
        if not _ID.match(wallet_id):
            raise ValidationError("wallet id must be 1-64 of [A-Za-z0-9_-]", "$.id")
        return self.dir / f"{wallet_id}.json"

    def _read(self, wallet_id: str) -> dict[str, object]:
        path = self._path(wallet_id)
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise NotFound(f"unknown wallet {wallet_id!r}", {"wallet_id": wallet_id}) from None
        except (ValueError, UnicodeDecodeError):
            raise WalletDamaged(
                f"wallet file {wallet_id!r} is not JSON", {"wallet_id": wallet_id}
            ) from None
        if not _well_formed(doc):
            raise WalletDamaged(
                f"wallet file {wallet_id!r} lacks fields the keystore writes",
                {"wallet_id": wallet_id},
            )
        return doc  # type: ignore[no-any-return]

    def _info(self, doc: dict[str, object]) -> WalletInfo:
        wid = str(doc["id"])
        return WalletInfo(
            id=wid,
            name=str(doc["name"]),
            public_key=str(doc["public_key"]),
            created_at=int(doc["created_at"]),
            unlocked=wid in self._unlocked,
        )  # type: ignore[call-overload]

    def create(self, name: str, passphrase: str, wallet_id: str | None = None) -> WalletInfo:
        return self._store(name, passphrase, Keypair(), wallet_id)

    def import_secret(
        self, name: str, passphrase: str, secret: str, wallet_id: str | None = None
    ) -> WalletInfo:
        return self._store(name, passphrase, parse_secret(secret), wallet_id)

    def _store(
        self, name: str, passphrase: str, keypair: Keypair, wallet_id: str | None
    ) -> WalletInfo:
        _check_passphrase(passphrase)
        wallet_id = wallet_id or f"wal_{secrets.token_hex(6)}"
        path = self._path(wallet_id)
        public_key = str(keypair.pubkey())
        if any(w.public_key == public_key for w in self.list()):
            raise Conflict("this keypair is already in the keystore", {"public_key": public_key})
        salt, nonce = os.urandom(16), os.urandom(12)
        sealed = AESGCM(_kdf(passphrase, salt, SCRYPT_N)).encrypt(
            nonce, bytes(keypair), public_key.encode()
        )
        doc = {
            "id": wallet_id,
            "name": name,
            "public_key": public_key,
            "created_at": time.time_ns() // 1_000_000,
            "kdf": {
                "name": "scrypt",
                "n": SCRYPT_N,
                "r": 8,
                "p": 1,
                "salt": b64encode(salt).decode(),
            },
            "cipher": {"name": "aes-256-gcm", "nonce": b64encode(nonce).decode()},
            "ciphertext": b64encode(sealed).decode(),
        }
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.exists():
            raise Conflict(f"wallet {wallet_id!r} exists", {"wallet_id": wallet_id})
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return self._info(doc)

    def list(self) -> list[WalletInfo]:
        """Every readable wallet; a damaged file is logged and left out (never a secret)."""
        if not self.dir.exists():
            return []
        out = []
        for path in sorted(self.dir.glob("*.json")):
            try:
                out.append(self._info(self._read(path.stem)))
            except (WalletDamaged, ValidationError) as exc:
                log.warning("wallet file skipped", extra={"file": path.name, "reason": exc.message})
        return out

    def get(self, wallet_id: str) -> WalletInfo:
        return self._info(self._read(wallet_id))

    def unlock(self, wallet_id: str, passphrase: str) -> WalletInfo:
        doc = self._read(wallet_id)
        kdf, cipher = doc["kdf"], doc["cipher"]
        assert isinstance(kdf, dict) and isinstance(cipher, dict)
        try:
            key = _kdf(passphrase, b64decode(kdf["salt"]), int(kdf["n"]))
            raw = AESGCM(key).decrypt(
                b64decode(cipher["nonce"]),
                b64decode(str(doc["ciphertext"])),
                str(doc["public_key"]).encode(),
            )
        except InvalidTag:
            # AES-GCM cannot tell a wrong passphrase from an edited ciphertext, nonce, salt or
            # public key (the associated data): either way nothing is unlocked.
            raise WrongPassphrase(
                "wrong passphrase, or the wallet file was altered", {"wallet_id": wallet_id}
            ) from None
        except ValueError:  # bad base64, a nonce of the wrong length
            raise WalletDamaged(
                f"wallet file {wallet_id!r} is not readable", {"wallet_id": wallet_id}
            ) from None
        keypair = Keypair.from_bytes(raw)
        if str(keypair.pubkey()) != doc["public_key"]:
            raise WalletDamaged(
                f"wallet file {wallet_id!r} holds another key", {"wallet_id": wallet_id}
            )
        self._unlocked[wallet_id] = keypair
        return self._info(doc)

    def lock(self, wallet_id: str) -> WalletInfo:
        doc = self._read(wallet_id)
        self._unlocked.pop(wallet_id, None)
        return self._info(doc)

    def unlocked_keypair(self, wallet_id: str) -> Keypair | None:
        """The keypair while the wallet is unlocked in this process, else None (no disk read)."""
        return self._unlocked.get(wallet_id)

    def public_key(self, wallet_id: str) -> str:
        """The wallet's public key (base58), locked or not. Raises NotFound."""
        return str(self._read(wallet_id)["public_key"])

    def signer(self, wallet_id: str) -> Keypair:
        """The unlocked keypair, for the venue adapters that sign transactions."""
        keypair = self._unlocked.get(wallet_id)
        if keypair is None:
            raise Conflict(f"wallet {wallet_id!r} is locked", {"wallet_id": wallet_id})
        return keypair
