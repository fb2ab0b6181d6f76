// The WebSocket stream `/v1/ws`: first-message auth, subscribe, snapshot, then messages with a
// per-connection `seq`. A gap in seq means messages were lost, so the state is re-read from a
// fresh snapshot (subscribing again answers with one). A dropped connection is retried with
// capped exponential backoff and jitter, and subscribed again on reconnect.

const CHANNELS = ["agents", "positions", "trades", "alerts", "prices"];
const BACKOFF_START_MS = 500;
const BACKOFF_CAP_MS = 15_000;
// The daemon sends a heartbeat every 15 s ([ws] heartbeat_s); silence well past that means a
// dead peer the OS has not noticed yet (a suspended laptop, a cut cable).
const SILENCE_MS = 40_000;
const AUTH_FAILURES = new Set(["unauthorized", "forbidden", "key_revoked"]);

export class Stream {
  /**
   * handlers: onSnapshot(data), onMessage(msg), onState(state, info),
   * onAuthFailed(code, message). States: connecting, live, reconnecting, stopped.
   */
  constructor(key, handlers) {
    this.key = key;
    this.h = handlers;
    this.ws = null;
    this.attempt = 0;
    this.retryTimer = null;
    this.watchdog = null;
    this.lastSeq = null;
    this.stopped = false;
    this.authFailed = false;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.watchdog);
    if (this.ws) this.ws.close(1000, "log out");
    this.ws = null;
    this.h.onState("stopped", {});
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/v1/ws`);
    this.ws = ws;
    this.lastSeq = null;
    this.h.onState("connecting", { attempt: this.attempt });
    ws.onopen = () => {
      ws.send(JSON.stringify({ op: "auth", key: this.key }));
      this.subscribe();
      this.armWatchdog();
    };
    ws.onmessage = (event) => this.receive(ws, event.data);
    ws.onclose = (event) => this.closed(ws, event);
  }

  subscribe() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ op: "subscribe", channels: CHANNELS }));
    }
  }

  armWatchdog() {
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => this.ws && this.ws.close(4000, "silent"), SILENCE_MS);
  }

  receive(ws, raw) {
    if (ws !== this.ws) return;
    this.armWatchdog();
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch {
      return;
    }
    const gap = this.lastSeq !== null && msg.seq !== this.lastSeq + 1;
    this.lastSeq = msg.seq;
    const data = msg.data || {};
    if (msg.type === "error" && AUTH_FAILURES.has(data.code)) {
      this.authFailed = true;
      this.h.onAuthFailed(data.code, data.message || "");
      return;
    }
    if (msg.type === "error" && data.code === "rate_limited") {
      // a resubscribe refused by the per-connection subscribe budget: ask again when allowed
      const wait = (data.details && data.details.retry_after_ms) || 1000;
      setTimeout(() => ws === this.ws && this.subscribe(), wait);
    }
    if (msg.type === "alert" && data.code === "key_revoked") {
      this.authFailed = true;
      this.h.onAuthFailed(data.code, data.message || "the API key was revoked");
      return;
    }
    if (msg.type === "snapshot") {
      this.attempt = 0;
      this.h.onSnapshot(data);
      this.h.onState("live", {});
      return;
    }
    if (gap) {
      // Lost messages cannot be replayed: the next snapshot replaces what we hold.
      this.h.onState("resyncing", {});
      this.subscribe();
    }
    this.h.onMessage(msg);
  }

  closed(ws, event) {
    if (ws !== this.ws) return;
    clearTimeout(this.watchdog);
    this.ws = null;
    if (this.stopped || this.authFailed) return;
    const delay = Math.min(BACKOFF_CAP_MS, BACKOFF_START_MS * 2 ** this.attempt);
    const wait = Math.round(delay * (0.5 + Math.random() / 2)); // jitter: not every tab at once
    this.attempt += 1;
    this.h.onState("reconnecting", { attempt: this.attempt, waitMs: wait, code: event.code });
    this.retryTimer = setTimeout(() => {
      if (!this.stopped) this.connect();
    }, wait);
  }
}
