"""`/v1/agents`: create, read, rename, delete, configure, pause and resume agents. Every change
is one engine transition through `runtime.apply`."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web
from tradingd.adapters.http.codec import (
    daemon_of,
    json_response,
    key_cursor,
    page_limit,
    paginate,
    query_bool,
    read_body,
)
from tradingd.adapters.http.openapi import PAGED, QueryParam, Route
from tradingd.adapters.http.schemas import AgentIn, AgentOut, AgentPage, AgentPatch
from tradingd.adapters.http.shapes import agent_out
from tradingd.adapters.solana.keystore import WalletDamaged
from tradingd.adapters.timestamps import ms_of_iso
from tradingd.adapters.venues import PAPER, check_agent_venue
from tradingd.engine.config import AgentConfig, validate_config
from tradingd.engine.errors import NotFound, ValidationError
from tradingd.engine.model import Agent

if TYPE_CHECKING:
    from tradingd.adapters.app.daemon import Daemon

log = logging.getLogger("tradingd.http")
_agent_in = msgspec.json.Decoder(AgentIn)
_agent_patch = msgspec.json.Decoder(AgentPatch)
_config_in = msgspec.json.Decoder(AgentConfig)
APPLY_TO_OPEN = QueryParam(
    "apply_to_open",
    {"type": "boolean", "default": False},
    "also give open positions the new exit config",
)


def _creation(agent: Agent) -> tuple[int, str]:
    return agent.created_at, agent.id


def _shown_creation(agent: dict[str, Any]) -> tuple[int, str]:
    """`_creation` of an agent as the API shows it (`created_at` ISO-8601 with milliseconds)."""
    return ms_of_iso(agent["created_at"]), agent["id"]


def merge_agent_pages(
    request: web.Request, own: dict[str, Any], others: list[dict[str, Any]]
) -> dict[str, Any]:
    """Agent shards: every shard's page of its agents after the same cursor, as one page in
    creation order; its cursor resumes after the last agent shown, on every shard."""
    pages = (own, *others)
    agents = sorted((a for p in pages for a in p["items"]), key=_shown_creation)
    limit = page_limit(request)
    more = len(agents) > limit or any(p["next_cursor"] for p in pages)
    page = agents[:limit]
    cursor = key_cursor(_shown_creation(page[-1])) if page and more else None
    return {"items": page, "next_cursor": cursor}


def checked_config(cfg: AgentConfig, prefix: str) -> AgentConfig:
    """The cross-field rules of engine/config.py, with paths relative to the request body."""
    try:
        return validate_config(cfg)
    except ValidationError as exc:
        raise ValidationError(exc.message, exc.path.replace("$", prefix, 1)) from None


async def _check_wallet(daemon: Daemon, wallet_id: str) -> None:
    """A live agent's wallet must be in the keystore (created or imported first). Raises
    ValidationError at `$.wallet_id`."""
    try:
        await asyncio.to_thread(daemon.wallets.get, wallet_id)
    except (NotFound, ValidationError, WalletDamaged) as exc:
        raise ValidationError(
            f"wallet {wallet_id[:64]!r} is not in the keystore ({exc.message}); create or import "
            "it first (tradingd wallet create or import, POST /v1/wallets)",
            "$.wallet_id",
        ) from None


async def create_agent(request: web.Request) -> web.Response:
    daemon = daemon_of(request)
    body = await read_body(request, _agent_in)
    config = checked_config(body.config, "$.config")
    check_agent_venue(body.venue, body.wallet_id, daemon.runtime.venues, quote=body.quote)
    if body.wallet_id is not None and body.venue != PAPER:
        await _check_wallet(daemon, body.wallet_id)
    agent = daemon.runtime.apply(
        daemon.engine.create_agent,
        body.name,
        body.venue,
        config,
        body.quote,
        body.wallet_id,
        _new_id(daemon),
        body.quote_decimals,
    )
    log.info("agent created", extra={"agent_id": agent.id, "venue": agent.venue})
    return json_response(agent_out(agent), 201)


def _new_id(daemon: Daemon) -> str | None:
    """Agent shards: an id this shard owns (adapters/cluster/shards.py); else the engine's."""
    if daemon.shards <= 1:
        return None
    from tradingd.adapters.cluster.shards import draw_agent_id

    return draw_agent_id(daemon.shard, daemon.shards)


async def list_agents(request: web.Request) -> web.Response:
    agents = sorted(daemon_of(request).engine.agents.values(), key=_creation)
    page, cursor = paginate(request, agents, _creation)
    return json_response(AgentPage(items=[agent_out(a) for a in page], next_cursor=cursor))


async def get_agent(request: web.Request) -> web.Response:
    return json_response(agent_out(daemon_of(request).engine.agent(request.match_info["agent_id"])))


async def patch_agent(request: web.Request) -> web.Response:
    daemon = daemon_of(request)
    agent_id = request.match_info["agent_id"]
    daemon.engine.agent(agent_id)  # 404 before reading the body
    body = await read_body(request, _agent_patch)
    agent = daemon.runtime.apply(daemon.engine.rename_agent, agent_id, body.name)
    return json_response(agent_out(agent))


async def delete_agent(request: web.Request) -> web.Response:
    daemon = daemon_of(request)
    agent_id = request.match_info["agent_id"]
    daemon.runtime.apply(daemon.engine.delete_agent, agent_id)
    log.info("agent deleted", extra={"agent_id": agent_id})
    return web.Response(status=204)


async def get_config(request: web.Request) -> web.Response:
    return json_response(daemon_of(request).engine.agent(request.match_info["agent_id"]).config)


async def put_config(request: web.Request) -> web.Response:
    daemon = daemon_of(request)
    agent_id = request.match_info["agent_id"]
    daemon.engine.agent(agent_id)
    apply_to_open = query_bool(request, "apply_to_open")
    config = checked_config(await read_body(request, _config_in), "$")
    agent = daemon.runtime.apply(daemon.engine.update_config, agent_id, config, apply_to_open)
    log.info("agent config updated", extra={"agent_id": agent_id, "apply_to_open": apply_to_open})
    return json_response(agent.config)


async def pause_agent(request: web.Request) -> web.Response:
    daemon = daemon_of(request)
    agent_id = request.match_info["agent_id"]
    agent = daemon.runtime.apply(daemon.engine.set_agent_status, agent_id, "paused")
    return json_response(agent_out(agent))


async def resume_agent(request: web.Request) -> web.Response:
    daemon = daemon_of(request)
    agent_id = request.match_info["agent_id"]
    agent = daemon.runtime.apply(daemon.engine.set_agent_status, agent_id, "active")
    return json_response(agent_out(agent))


_AGENT = "/v1/agents/{agent_id}"
ROUTES = [
    Route(
        "POST",
        "/v1/agents",
        create_agent,
        "Create an agent",
        "agents",
        "admin",
        {201: AgentOut},
        body=AgentIn,
        intake=True,
    ),
    Route(
        "GET",
        "/v1/agents",
        list_agents,
        "List agents",
        "agents",
        "read",
        {200: AgentPage},
        query=PAGED,
        cluster_wide=True,
        merge_shards=merge_agent_pages,
        description="With agent shards, every shard's agents, merged in creation order (503 "
        "`shards_incomplete` when a shard does not answer).",
    ),
    Route("GET", _AGENT, get_agent, "An agent", "agents", "read", {200: AgentOut}),
    Route(
        "PATCH",
        _AGENT,
        patch_agent,
        "Rename an agent",
        "agents",
        "admin",
        {200: AgentOut},
        body=AgentPatch,
        intake=True,
    ),
    Route(
        "DELETE",
        _AGENT,
        delete_agent,
        "Delete an agent without open positions",
        "agents",
        "admin",
        {204: None},
        errors=(409,),
        intake=True,
    ),
    Route(
        "GET",
        _AGENT + "/config",
        get_config,
        "An agent's config",
        "agents",
        "read",
        {200: AgentConfig},
    ),
    Route(
        "PUT",
        _AGENT + "/config",
        put_config,
        "Replace an agent's config",
        "agents",
        "admin",
        {200: AgentConfig},
        body=AgentConfig,
        query=(APPLY_TO_OPEN,),
        intake=True,
    ),
    Route(
        "POST",
        _AGENT + "/pause",
        pause_agent,
        "Pause: no new positions, exits still run",
        "agents",
        "trade",
        {200: AgentOut},
        intake=True,
    ),
    Route(
        "POST",
        _AGENT + "/resume",
        resume_agent,
        "Resume an agent",
        "agents",
        "trade",
        {200: AgentOut},
        intake=True,
    ),
]
