// What the page knows, built only from the stream's snapshot and messages and the periodic
// REST reads. Every list is bounded, so a page left open for days stays small.

import { atomic, sum } from "./money.js";

export const TRADES_KEPT = 50;
export const ALERTS_KEPT = 50;
const PRICE_POINTS_KEPT = 3600; // one a second: the last hour per token
const EQUITY_POINTS_KEPT = 2880; // one every 5 s: the last four hours per agent

export function emptyState() {
  return {
    agents: new Map(), // id -> agent (REST shape)
    balances: new Map(), // agent id -> Map(asset -> balance)
    positions: new Map(), // id -> open or closing position
    prices: new Map(), // token -> {price, ts (ms)}
    history: new Map(), // token -> [{time (s), value}] for the price chart
    tokens: new Map(), // token -> {decimals, symbol} learnt from positions and /v1/tokens
    perf: new Map(), // agent id -> GET /v1/agents/{id}/performance
    equityNow: new Map(), // agent id -> BigInt: the last consistent equity read
    equity: new Map(), // agent id -> [{time (s), value}]
    halted: null, // from the snapshot, alerts and /health
    health: null, // GET /health
    healthError: null,
    selected: null, // the position whose token the price chart shows
  };
}

function learnToken(state, token, decimals, symbol) {
  const known = state.tokens.get(token) || {};
  state.tokens.set(token, {
    decimals: decimals ?? known.decimals,
    symbol: symbol || known.symbol || null,
  });
}

function recordPrice(state, token, priceUsd, tsMs) {
  state.prices.set(token, { price: priceUsd, ts: tsMs });
  let points = state.history.get(token);
  if (!points) state.history.set(token, (points = []));
  const time = Math.floor(tsMs / 1000); // the chart's time axis is whole seconds
  const last = points[points.length - 1];
  if (last && last.time === time) last.value = priceUsd;
  else if (!last || time > last.time) points.push({ time, value: priceUsd });
  if (points.length > PRICE_POINTS_KEPT) points.splice(0, points.length - PRICE_POINTS_KEPT);
}

function setBalance(state, agentId, balance) {
  let byAsset = state.balances.get(agentId);
  if (!byAsset) state.balances.set(agentId, (byAsset = new Map()));
  byAsset.set(balance.asset, balance);
}

function setPosition(state, p) {
  learnToken(state, p.token, p.decimals, p.symbol);
  if (p.status === "closed") {
    state.positions.delete(p.id);
    if (state.selected === p.id) state.selected = null;
  } else {
    state.positions.set(p.id, p);
  }
}

/** A snapshot replaces what the stream feeds (agents, balances, positions, prices, halt). */
export function applySnapshot(state, data) {
  state.agents = new Map((data.agents || []).map((a) => [a.id, a]));
  state.balances = new Map();
  for (const b of data.balances || []) setBalance(state, b.agent_id, b);
  state.positions = new Map();
  for (const p of data.positions || []) setPosition(state, p);
  for (const t of data.prices || []) recordPrice(state, t.token, t.price_usd, Date.parse(t.ts));
  if (state.selected && !state.positions.has(state.selected)) state.selected = null;
  for (const id of state.perf.keys()) if (!state.agents.has(id)) state.perf.delete(id);
  for (const id of state.equityNow.keys()) if (!state.agents.has(id)) state.equityNow.delete(id);
  state.halted = Boolean(data.halted);
}

/** One stream message; returns what it adds to the live lists ({trade} or {alert}). */
export function applyMessage(state, msg) {
  const data = msg.data || {};
  switch (msg.type) {
    case "prices":
      for (const t of data.ticks || []) recordPrice(state, t.token, t.price_usd, Date.parse(t.ts));
      return {};
    case "position":
      setPosition(state, data);
      return {};
    case "trade":
      return { trade: data };
    case "agent":
      if (data.event === "deleted") state.agents.delete(data.agent_id);
      else if (data.agent) state.agents.set(data.agent_id, data.agent);
      if (data.balance) setBalance(state, data.agent_id, data.balance);
      return {};
    case "alert":
      if (data.code === "halt_changed" && data.details) state.halted = Boolean(data.details.buys);
      return { alert: { ...data, ts: msg.ts } };
    default:
      return {}; // heartbeat, pong, and types a newer daemon may add
  }
}

/**
 * Peak and stop move with every new high, but the stream sends a position only when a fill or an
 * exit changes it: the periodic REST read of the open positions refreshes them. Only positions
 * the stream still holds in the same fill state (amount and cost) are touched, and peak and stop
 * only move up, as in the engine, so a read older than a stream message cannot undo it.
 */
export function refreshLevels(state, items) {
  const up = (held, fresh) =>
    typeof fresh === "number" && (typeof held !== "number" || fresh > held) ? fresh : held;
  for (const fresh of items) {
    const held = state.positions.get(fresh.id);
    if (!held || held.amount !== fresh.amount || held.cost !== fresh.cost) continue;
    state.positions.set(fresh.id, {
      ...held,
      peak_price_usd: up(held.peak_price_usd, fresh.peak_price_usd),
      stop_price_usd: up(held.stop_price_usd, fresh.stop_price_usd),
      next_take_profit_usd: fresh.next_take_profit_usd,
    });
  }
}

/** The agent's balance in its quote asset, or null before one is known. */
export function quoteBalance(state, agent) {
  const byAsset = state.balances.get(agent.id);
  if (!byAsset) return null;
  return byAsset.get(agent.quote) || [...byAsset.values()].find((b) => b.decimals === agent.quote_decimals) || null;
}

export function openPositions(state, agentId) {
  return [...state.positions.values()].filter((p) => p.agent_id === agentId);
}

/**
 * Equity in quote atomic units, exactly, from one consistent set of REST reads: the quote
 * balance (its reserved part included) plus the open positions at the last price, which is their
 * cost plus the unrealized PnL the daemon computed. Null without a quote balance.
 */
export function equityOf(agent, balances, openPositionsRead, perf) {
  const balance =
    balances.find((b) => b.asset === agent.quote) ||
    balances.find((b) => b.decimals === agent.quote_decimals);
  if (!balance) return null;
  const costs = openPositionsRead.map((p) => p.cost);
  return sum([atomic(balance.total), sum(costs), atomic(perf.unrealized_pnl)]);
}

export function recordEquity(state, agentId, value, nowMs) {
  let points = state.equity.get(agentId);
  if (!points) state.equity.set(agentId, (points = []));
  const time = Math.floor(nowMs / 1000);
  const last = points[points.length - 1];
  if (last && last.time >= time) return;
  points.push({ time, value });
  if (points.length > EQUITY_POINTS_KEPT) points.splice(0, points.length - EQUITY_POINTS_KEPT);
}
