"""Which wallets' keypairs are unlocked, for the venues that sign: a keypair is handed out only
while its wallet is unlocked, and an exit can wait for the unlock. The keystore holds the keys;
this only tells the venues (and wakes the waiting exits) when that changes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from solders.keypair import Keypair


class WalletGate:
    """`keypair(id)` reads the keystore's unlocked key (None while locked); `changed(id)` is
    called by whoever locks or unlocks a wallet, and wakes `wait_unlocked` callers."""

    def __init__(
        self,
        unlocked_keypair: Callable[[str], Keypair | None],
        public_key: Callable[[str], str],
    ) -> None:
        self._keypair = unlocked_keypair
        self._read_public_key = public_key
        self._public_keys: dict[str, str] = {}
        self._waiters: dict[str, asyncio.Event] = {}

    def public_key(self, wallet_id: str) -> str:
        """The wallet's base58 public key, locked or not; read once, then remembered (a swap
        recorded before a restart can be resolved even if the file goes away later). Raises
        NotFound for a wallet never seen."""
        key = self._public_keys.get(wallet_id)
        if key is None:
            key = self._public_keys[wallet_id] = self._read_public_key(wallet_id)
        return key

    def keypair(self, wallet_id: str) -> Keypair | None:
        """The unlocked keypair of the wallet, or None while it is locked."""
        return self._keypair(wallet_id)

    def changed(self, wallet_id: str) -> None:
        """The wallet was locked or unlocked: wake whoever waits for it."""
        event = self._waiters.pop(wallet_id, None)
        if event is not None:
            event.set()

    async def wait_unlocked(self, wallet_id: str) -> Keypair:
        """The keypair, once the wallet is unlocked (waits as long as it takes; cancellable)."""
        while True:
            keypair = self._keypair(wallet_id)
            if keypair is not None:
                return keypair
            event = self._waiters.setdefault(wallet_id, asyncio.Event())
            await event.wait()
