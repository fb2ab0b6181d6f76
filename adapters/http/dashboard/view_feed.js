// The live lists (trades and alerts, newest first, bounded) and the health panel from GET /health.

import { byId, el, prependBounded, setText, shortToken, timeText } from "./dom.js";
import { money, price } from "./money.js";
import { ALERTS_KEPT, TRADES_KEPT } from "./store.js";

// Component statuses /health counts as unhealthy (routes_health.py _UNHEALTHY).
const UNHEALTHY = new Set(["down", "degraded", "error", "unavailable", "stale"]);

// Trade lines shown before their token's symbol was known: relabelled once it is.
const unresolved = new WeakMap(); // li -> trade

function tradeAmount(state, trade) {
  const token = state.tokens.get(trade.token) || {};
  const name = shortToken(trade.token, token.symbol);
  const text =
    token.decimals === undefined || token.decimals === null
      ? `${trade.amount} atomic units of ${name}`
      : money(trade.amount, token.decimals, name);
  return { text, resolved: Boolean(token.symbol) };
}

export function addTrade(state, trade) {
  const agent = state.agents.get(trade.agent_id);
  const { text: amount, resolved } = tradeAmount(state, trade);
  const quote = agent ? money(trade.quote_amount, agent.quote_decimals, agent.quote) : `${trade.quote_amount} atomic`;
  const item = el(
    "li",
    { dataset: { side: trade.side, agent: trade.agent_id, position: trade.position_id } },
    el("span", { class: "time" }, timeText(Date.parse(trade.ts))),
    " ",
    el("span", { class: `side ${trade.side}` }, trade.side.toUpperCase()),
    " ",
    el("span", { class: "amount" }, amount),
    " for ",
    el("span", { class: "quote" }, quote),
    " @ ",
    el("span", { class: "price", title: String(trade.price_usd) }, `$${price(trade.price_usd)}`),
    " ",
    el("span", { class: "reason muted" }, trade.reason),
    " ",
    el("span", { class: "muted" }, agent ? agent.name : trade.agent_id),
  );
  if (!resolved) {
    item.dataset.unresolved = "";
    unresolved.set(item, trade);
  }
  prependBounded(byId("trades"), item, TRADES_KEPT);
}

/** Relabel the trade lines whose token was unknown when they arrived (symbol, decimals). */
export function resolveTrades(state) {
  for (const item of byId("trades").querySelectorAll("li[data-unresolved]")) {
    const trade = unresolved.get(item);
    if (!trade) continue;
    const { text, resolved } = tradeAmount(state, trade);
    setText(item.querySelector(".amount"), text);
    if (resolved) {
      delete item.dataset.unresolved;
      unresolved.delete(item);
    }
  }
}

export function addAlert(alert) {
  const item = el(
    "li",
    { dataset: { code: alert.code } },
    el("span", { class: "time" }, timeText(alert.ts)),
    " ",
    el("span", { class: "code" }, alert.code),
    " ",
    el("span", {}, alert.message || ""),
  );
  prependBounded(byId("alerts"), item, ALERTS_KEPT);
}

function statusEntry(name, status, extra) {
  const bad = UNHEALTHY.has(status);
  return [
    el("dt", {}, name),
    el("dd", { class: bad ? "bad" : "", dataset: { status } }, status, extra ? el("span", { class: "muted" }, ` ${extra}`) : null),
  ];
}

function describe(component) {
  if (!component || typeof component !== "object") return ["unknown", ""];
  const parts = [];
  if (component.reason) parts.push(component.reason);
  if (typeof component.last_tick_age_ms === "number") parts.push(`last tick ${component.last_tick_age_ms} ms ago`);
  if (component.banned_until) parts.push(`banned until ${component.banned_until}`);
  if (component.spilled > 0) parts.push(`${component.spilled} events spilled to the local file`);
  return [String(component.status || "unknown"), parts.join("; ")];
}

export function renderHealth(state) {
  const badge = byId("health-status");
  const list = byId("health");
  if (state.healthError) {
    badge.dataset.status = "down";
    setText(badge, "unreachable");
    list.replaceChildren(el("dt", {}, "error"), el("dd", { class: "bad" }, state.healthError));
    return;
  }
  const h = state.health;
  if (!h) return;
  badge.dataset.status = h.status;
  setText(badge, h.status);
  const c = h.components || {};
  const lag = h.write_behind_lag || {};
  const rows = [
    ...statusEntry("buys", h.halted ? "halted" : "running"),
    ...statusEntry("redis", ...describe(c.redis)),
    ...statusEntry("postgres", ...describe(c.postgres)),
    el("dt", {}, "write-behind lag"),
    el("dd", { class: lag.entries > 0 ? "warn" : "" }, `${lag.entries ?? "?"} entries, ${lag.seconds ?? "?"} s`),
  ];
  for (const [name, feed] of Object.entries(c.feeds || {})) rows.push(...statusEntry(`feed ${name}`, ...describe(feed)));
  for (const [name, venue] of Object.entries(c.venues || {})) rows.push(...statusEntry(`venue ${name}`, ...describe(venue)));
  if (c.prices) {
    const stale = (c.prices.stale_tokens || []).map((t) => shortToken(t)).join(", ");
    rows.push(...statusEntry("held prices", c.prices.status, stale ? `stale: ${stale}` : `${c.prices.held_tokens ?? 0} held token(s)`));
  }
  rows.push(el("dt", {}, "version"), el("dd", {}, `${h.version}, up ${Math.round(h.uptime_s)} s`));
  list.replaceChildren(...rows);
}
