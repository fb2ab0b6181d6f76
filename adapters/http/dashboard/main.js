// The dashboard's entry point: the key form, the stream, the periodic REST reads (health,
// performance, balances -> equity) and the actions (pause/resume, halt). Every action is an
// existing API route; the key lives in this tab's sessionStorage and in memory only.

import { ApiError, makeApi, seg } from "./api.js";
import { EquityChart, PriceChart } from "./charts.js";
import { byId, setText } from "./dom.js";
import { chartValue } from "./money.js";
import {
  applyMessage,
  applySnapshot,
  emptyState,
  equityOf,
  recordEquity,
  refreshLevels,
} from "./store.js";
import { Stream } from "./stream.js";
import { renderAgents, renderHalt } from "./view_agents.js";
import { addAlert, addTrade, renderHealth, resolveTrades } from "./view_feed.js";
import { renderPositions } from "./view_positions.js";

const KEY_ITEM = "tradingd.apiKey";
const POLL_MS = 5_000;
const POLLED_AGENTS = 50; // per round: a daemon with thousands of agents is not read in full

let key = null;
let state = emptyState();
let stream = null;
let pollTimer = null;
let polling = false;
let renderQueued = false;
const api = makeApi(() => key);
let priceChart = null;
let equityChart = null;

// -- rendering: at most once per animation frame, whatever the message rate ------------------

function render() {
  renderQueued = false;
  if (!key) return;
  renderAgents(state, toggleAgent);
  renderHalt(state);
  renderPositions(state, priceChart, selectPosition);
  renderHealth(state);
  let points = 0;
  for (const agent of state.agents.values()) {
    const series = state.equity.get(agent.id) || [];
    equityChart.update(agent.id, agent.name, series);
    points = Math.max(points, series.length);
  }
  equityChart.retain(new Set(state.agents.keys()));
  const chartEl = byId("equity-chart"); // for a reader (or a test) to wait on
  chartEl.dataset.points = String(points);
  chartEl.dataset.titles = JSON.stringify(equityChart.titles());
  resolveTrades(state);
}

function schedule() {
  if (!renderQueued) {
    renderQueued = true;
    requestAnimationFrame(render);
  }
}

function selectPosition(id) {
  state.selected = id;
  schedule();
}

// -- connection state -------------------------------------------------------------------------

function showConnection(name, info) {
  const badge = byId("conn");
  badge.dataset.state = name;
  const text = {
    connecting: "connecting…",
    live: "live",
    resyncing: "resyncing (missed messages)…",
    stopped: "not connected",
    reconnecting: `disconnected — reconnecting in ${Math.ceil((info.waitMs || 0) / 1000)} s (attempt ${info.attempt})`,
  }[name];
  setText(badge, text || name);
}

function notice(text, isError = false) {
  const node = byId("action-msg");
  node.hidden = !text;
  node.classList.toggle("error", isError);
  setText(node, text || "");
}

// -- periodic reads -----------------------------------------------------------------------------

async function pollHealth() {
  try {
    state.health = await api("GET", "/health");
    state.healthError = null;
    if (state.health) state.halted = Boolean(state.health.halted);
  } catch (err) {
    state.healthError = err instanceof ApiError ? err.explain() : String(err);
  }
}

const openFingerprint = (page) =>
  page.next_cursor === null ? page.items.map((p) => `${p.id}:${p.status}:${p.cost}`).join() : null;

/**
 * The agent's PnL, balances, its positions' peak and stop, and equity. Equity needs the balance and the open positions as of
 * the same moment: the positions are read before and after the balance and PnL, and a fill in
 * between (which moves both) makes the round skip its equity point rather than draw a jump.
 */
async function pollAgent(agent) {
  const base = `/v1/agents/${seg(agent.id)}`;
  const open = `${base}/positions?status=open&limit=1000`;
  const before = await api("GET", open);
  const [perf, balances] = await Promise.all([
    api("GET", `${base}/performance`),
    api("GET", `${base}/balances`),
  ]);
  const after = await api("GET", open);
  state.perf.set(agent.id, perf);
  state.balances.set(agent.id, new Map(balances.map((b) => [b.asset, b])));
  refreshLevels(state, after.items);
  const fingerprint = openFingerprint(before);
  if (fingerprint === null || fingerprint !== openFingerprint(after)) return;
  const value = equityOf(agent, balances, after.items, perf);
  if (value === null) return;
  state.equityNow.set(agent.id, value);
  recordEquity(state, agent.id, chartValue(value, agent.quote_decimals), Date.now());
}

/** One round of reads now (a round already running is not doubled), then every POLL_MS. */
async function poll() {
  clearTimeout(pollTimer);
  pollTimer = null;
  if (polling || !key) return;
  polling = true;
  try {
    const agents = [...state.agents.values()].slice(0, POLLED_AGENTS);
    // A failed agent read (deleted meanwhile, daemon restarting) waits for the next round.
    await Promise.allSettled([pollHealth(), ...agents.map(pollAgent)]);
  } finally {
    polling = false;
  }
  schedule();
  if (key && !pollTimer) pollTimer = setTimeout(poll, POLL_MS);
}

// -- token details (decimals and symbol for trades of tokens no position told us about) ------

// While a token's symbol is unknown it is asked for again, at most every ASK_AGAIN_MS (a later
// signal may name it); trade lines shown before are relabelled on render (resolveTrades).
const ASK_AGAIN_MS = 10_000;
const asked = new Map(); // token -> when last asked
async function learnToken(token) {
  const known = state.tokens.get(token);
  if (known && known.symbol) return;
  const last = asked.get(token);
  if (last !== undefined && Date.now() - last < ASK_AGAIN_MS) return;
  if (last === undefined && asked.size >= 1000) return;
  asked.set(token, Date.now());
  try {
    const info = await api("GET", `/v1/tokens/${seg(token)}`);
    const now = state.tokens.get(token) || {};
    state.tokens.set(token, { decimals: info.decimals, symbol: info.symbol || now.symbol || null });
  } catch {
    // unknown to the daemon: the trade stays shown in atomic units
  }
}

// -- actions ------------------------------------------------------------------------------------

async function act(label, method, path, body) {
  try {
    const result = await api(method, path, body);
    notice(`${label}: done.`);
    return result;
  } catch (err) {
    notice(`${label} refused. ${err instanceof ApiError ? err.explain() : String(err)}`, true);
    return null;
  }
}

async function toggleAgent(agentId, action) {
  const agent = await act(`${action === "pause" ? "Pause" : "Resume"} ${agentId}`, "POST", `/v1/agents/${seg(agentId)}/${action}`);
  if (agent) {
    state.agents.set(agent.id, agent);
    schedule();
  }
}

async function toggleHalt() {
  const halting = byId("halt-toggle").dataset.action === "halt";
  const result = halting
    ? await act("Halt buys", "POST", "/v1/halt", { buys: true, flatten: false })
    : await act("Resume buys", "DELETE", "/v1/halt");
  if (result) {
    state.halted = result.halted;
    schedule();
  }
}

// -- session ------------------------------------------------------------------------------------

function showApp(on) {
  byId("login-view").hidden = on;
  byId("app").hidden = !on;
  byId("logout").hidden = !on;
  if (!on) {
    byId("halt-state").hidden = true;
    byId("halt-toggle").hidden = true;
  }
}

function loginError(text) {
  const node = byId("login-error");
  node.hidden = !text;
  setText(node, text || "");
}

function start(validKey) {
  key = validKey;
  sessionStorage.setItem(KEY_ITEM, validKey);
  showApp(true);
  if (!priceChart) {
    priceChart = new PriceChart(byId("price-chart"));
    equityChart = new EquityChart(byId("equity-chart"));
  }
  stream = new Stream(validKey, {
    onSnapshot(data) {
      applySnapshot(state, data);
      poll(); // the agents may be new: read their PnL and balances now, not in 5 s
      schedule();
    },
    onMessage(msg) {
      const added = applyMessage(state, msg);
      if (added.trade) {
        learnToken(added.trade.token).then(() => addTrade(state, added.trade));
      }
      if (added.alert) addAlert(added.alert);
      schedule();
    },
    onState: showConnection,
    onAuthFailed(code, message) {
      logout(`The daemon refused the key on the stream (${code}): ${message}`);
    },
  });
  stream.start();
  poll();
}

function logout(reason) {
  sessionStorage.removeItem(KEY_ITEM);
  key = null;
  if (stream) stream.stop();
  stream = null;
  clearTimeout(pollTimer);
  pollTimer = null;
  state = emptyState();
  // The next key may be another daemon's view: charts start empty again.
  if (priceChart) priceChart.chart.remove();
  if (equityChart) equityChart.chart.remove();
  priceChart = equityChart = null;
  byId("trades").replaceChildren();
  byId("alerts").replaceChildren();
  notice("");
  showApp(false);
  showConnection("stopped", {});
  loginError(reason || "");
}

async function tryKey(candidate) {
  loginError("");
  const probe = makeApi(() => candidate);
  try {
    await probe("GET", "/v1/agents?limit=1"); // the read scope, which the stream needs too
  } catch (err) {
    loginError(err instanceof ApiError ? err.explain() : String(err));
    return;
  }
  byId("api-key").value = "";
  start(candidate);
}

byId("login").addEventListener("submit", (event) => {
  event.preventDefault();
  const candidate = byId("api-key").value.trim();
  if (candidate) tryKey(candidate);
});
byId("logout").addEventListener("click", () => logout(""));
byId("halt-toggle").addEventListener("click", toggleHalt);

const saved = sessionStorage.getItem(KEY_ITEM);
if (saved) start(saved); // a reload in the same tab; a wrong saved key is refused by the stream
