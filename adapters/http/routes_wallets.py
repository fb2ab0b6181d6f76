"""Wallet routes (`/v1/wallets`): create or import a keypair sealed with a passphrase, list
public keys, unlock into memory, lock. Secrets are never returned or logged; the key derivation
(scrypt) runs off the event loop."""

from __future__ import annotations

import asyncio
import logging

import msgspec
from aiohttp import web
from tradingd.adapters.http.codec import API_KEY, daemon_of, json_response, paginate, read_body
from tradingd.adapters.http.openapi import PAGED, Route
from tradingd.adapters.http.schemas import UnlockIn, WalletIn, WalletOut, WalletPage
from tradingd.adapters.solana.keystore import WalletInfo
from tradingd.adapters.timestamps import iso_ms

log = logging.getLogger("tradingd.http")
_wallet_in = msgspec.json.Decoder(WalletIn)
_unlock_in = msgspec.json.Decoder(UnlockIn)


def wallet_out(w: WalletInfo) -> WalletOut:
    return WalletOut(
        id=w.id,
        name=w.name,
        public_key=w.public_key,
        created_at=iso_ms(w.created_at),
        unlocked=w.unlocked,
    )


async def post_wallet(request: web.Request) -> web.Response:
    body = await read_body(request, _wallet_in)
    wallets = daemon_of(request).wallets
    if body.secret is None:
        info = await asyncio.to_thread(wallets.create, body.name, body.passphrase, body.id)
    else:
        info = await asyncio.to_thread(
            wallets.import_secret, body.name, body.passphrase, body.secret, body.id
        )
    log.info(
        "wallet added",
        extra={
            "wallet_id": info.id,
            "public_key": info.public_key,
            "imported": body.secret is not None,
            "key_id": request[API_KEY].id,
        },
    )
    return json_response(wallet_out(info), 201)


async def list_wallets(request: web.Request) -> web.Response:
    wallets = await asyncio.to_thread(daemon_of(request).wallets.list)
    page, cursor = paginate(request, wallets, lambda w: (w.created_at, w.id))
    return json_response(WalletPage(items=[wallet_out(w) for w in page], next_cursor=cursor))


async def unlock_wallet(request: web.Request) -> web.Response:
    body = await read_body(request, _unlock_in)
    wallet_id = request.match_info["wallet_id"]
    daemon = daemon_of(request)
    info = await asyncio.to_thread(daemon.wallets.unlock, wallet_id, body.passphrase)
    daemon.live.wallet_changed(wallet_id, True)
    log.info("wallet unlocked", extra={"wallet_id": wallet_id, "key_id": request[API_KEY].id})
    return json_response(wallet_out(info))


async def lock_wallet(request: web.Request) -> web.Response:
    wallet_id = request.match_info["wallet_id"]
    daemon = daemon_of(request)
    info = await asyncio.to_thread(daemon.wallets.lock, wallet_id)
    daemon.live.wallet_changed(wallet_id, False)
    log.info("wallet locked", extra={"wallet_id": wallet_id, "key_id": request[API_KEY].id})
    return json_response(wallet_out(info))


ROUTES = [
    Route(
        "POST",
        "/v1/wallets",
        post_wallet,
        "Create a wallet, or import one with `secret`",
        "admin",
        "admin",
        {201: WalletOut},
        body=WalletIn,
        errors=(409,),
    ),
    Route(
        "GET",
        "/v1/wallets",
        list_wallets,
        "List wallets (public keys only)",
        "admin",
        "admin",
        {200: WalletPage},
        query=PAGED,
    ),
    Route(
        "POST",
        "/v1/wallets/{wallet_id}/unlock",
        unlock_wallet,
        "Unlock a wallet into memory",
        "admin",
        "admin",
        {200: WalletOut},
        body=UnlockIn,
        errors=(403,),
    ),
    Route(
        "POST",
        "/v1/wallets/{wallet_id}/lock",
        lock_wallet,
        "Forget an unlocked wallet's key",
        "admin",
        "admin",
        {200: WalletOut},
    ),
]
