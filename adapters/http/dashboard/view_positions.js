// Open positions with their exit levels, and the price chart of the selected one's token.

import { byId, el, setText, shortToken, syncRows } from "./dom.js";
import { money, price } from "./money.js";

function buildRow(onSelect) {
  const row = el(
    "tr",
    { class: "clickable", tabindex: "0" },
    ...["token", "agent", "status", "num amount", "num entry", "num last", "num peak", "num stop", "num tp"].map((cls) =>
      el("td", { class: cls }),
    ),
  );
  const select = () => onSelect(row.dataset.key);
  row.addEventListener("click", select);
  row.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") select();
  });
  return row;
}

function priceCell(node, value) {
  setText(node, price(value), value === null || value === undefined ? "" : String(value));
}

function updateRow(row, p, state) {
  const q = (cls) => row.querySelector(cls);
  const token = state.tokens.get(p.token) || {};
  const symbol = p.symbol || token.symbol;
  setText(q(".token"), shortToken(p.token, symbol), p.token);
  const agent = state.agents.get(p.agent_id);
  setText(q(".agent"), agent ? agent.name : p.agent_id, p.agent_id);
  setText(q(".status"), p.status);
  setText(q(".amount"), money(p.amount, p.decimals, shortToken(p.token, symbol)));
  priceCell(q(".entry"), p.entry_price_usd);
  const last = state.prices.get(p.token);
  priceCell(q(".last"), last ? last.price : null);
  priceCell(q(".peak"), p.peak_price_usd);
  priceCell(q(".stop"), p.stop_price_usd);
  priceCell(q(".tp"), p.next_take_profit_usd);
  row.classList.toggle("selected", state.selected === p.id);
}

export function renderPositions(state, chart, onSelect) {
  const positions = [...state.positions.values()].sort((a, b) =>
    (a.opened_at || "") < (b.opened_at || "") ? -1 : 1,
  );
  if (!state.selected && positions.length) state.selected = positions[0].id;
  syncRows(
    byId("positions").tBodies[0],
    positions,
    (p) => p.id,
    () => buildRow(onSelect),
    (row, p) => updateRow(row, p, state),
  );
  byId("positions-empty").hidden = positions.length > 0;
  const selected = state.selected ? state.positions.get(state.selected) : null;
  if (!selected) {
    setText(byId("chart-title"), "(select an open position)");
    if (chart.token !== null) chart.clear();
    return;
  }
  const token = state.tokens.get(selected.token) || {};
  setText(byId("chart-title"), `${shortToken(selected.token, selected.symbol || token.symbol)} (USD)`, selected.token);
  chart.show(selected.token, state.history.get(selected.token) || [], selected);
}
