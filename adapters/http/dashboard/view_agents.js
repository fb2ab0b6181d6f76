// The agents table (status, quote balance, equity, PnL, open positions, pause/resume) and the
// halt control. Controls are shown to every key: the daemon decides, and a 403 is explained
// next to the control instead of being guessed at from the key.

import { byId, el, setText, syncRows } from "./dom.js";
import { money } from "./money.js";
import { openPositions, quoteBalance } from "./store.js";

const signOf = (atomicText) => {
  const v = BigInt(atomicText);
  return v > 0n ? "1" : v < 0n ? "-1" : "0";
};

function buildRow(agent, onToggle) {
  const button = el("button", { type: "button", class: "pause-toggle" }, "Pause");
  button.addEventListener("click", () => onToggle(button.closest("tr").dataset.key, button.dataset.action));
  const name = el("span", { class: "name" });
  const id = el("span", { class: "muted id" });
  return el(
    "tr",
    {},
    el("td", { class: "agent" }, name, " ", id),
    el("td", { class: "status" }),
    el("td", { class: "num balance" }),
    el("td", { class: "num equity" }),
    el("td", { class: "num realized" }),
    el("td", { class: "num unrealized" }),
    el("td", { class: "num open" }),
    el("td", { class: "actions" }, button),
  );
}

function updateRow(row, agent, state) {
  const q = (cls) => row.querySelector(cls);
  setText(q(".name"), agent.name, agent.name); // a long name is cut with "…": the tooltip has it
  setText(q(".id"), agent.id, agent.id);
  const status = q(".status");
  setText(status, agent.status);
  status.dataset.status = agent.status;
  row.dataset.status = agent.status;
  const balance = quoteBalance(state, agent);
  const d = agent.quote_decimals;
  setText(q(".balance"), balance ? money(balance.total, d, agent.quote) : "—");
  const eq = state.equityNow.get(agent.id);
  setText(q(".equity"), eq === undefined ? "—" : money(eq, d, agent.quote));
  const perf = state.perf.get(agent.id);
  setText(q(".realized"), perf ? money(perf.realized_pnl, d, agent.quote, { signed: true }) : "—");
  setText(q(".unrealized"), perf ? money(perf.unrealized_pnl, d, agent.quote, { signed: true }) : "—");
  for (const [cls, key] of [[".realized", "realized_pnl"], [".unrealized", "unrealized_pnl"]]) {
    q(cls).dataset.sign = perf ? signOf(perf[key]) : "0";
  }
  setText(q(".open"), openPositions(state, agent.id).length);
  const button = q(".pause-toggle");
  const action = agent.status === "paused" ? "resume" : "pause";
  button.dataset.action = action;
  setText(button, action === "pause" ? "Pause" : "Resume");
}

export function renderAgents(state, onToggle) {
  const agents = [...state.agents.values()].sort((a, b) => (a.created_at < b.created_at ? -1 : 1));
  syncRows(
    byId("agents").tBodies[0],
    agents,
    (a) => a.id,
    (a) => buildRow(a, onToggle),
    (row, a) => updateRow(row, a, state),
  );
  byId("agents-empty").hidden = agents.length > 0;
}

export function renderHalt(state) {
  const badge = byId("halt-state");
  const button = byId("halt-toggle");
  const known = state.halted !== null;
  badge.hidden = !known;
  button.hidden = !known;
  if (!known) return;
  badge.dataset.halted = String(state.halted);
  setText(badge, state.halted ? "BUYS HALTED" : "buys running");
  button.dataset.action = state.halted ? "resume" : "halt";
  setText(button, state.halted ? "Resume buys" : "Halt buys");
}
