// REST calls of the public API with the key in the Authorization header (never in a URL), and
// the API's one error shape turned into an ApiError the views can explain.

export class ApiError extends Error {
  constructor(status, code, message, details = {}) {
    super(message);
    this.status = status; // 0: the daemon did not answer
    this.code = code;
    this.details = details;
  }

  /** What a person should read: the status's meaning, then the daemon's own message. */
  explain() {
    if (this.status === 0) return `The daemon did not answer (${this.message}).`;
    if (this.status === 401) return `The daemon does not know this API key (401 ${this.code}).`;
    if (this.status === 403) {
      const scope = this.details && this.details.scope;
      return scope
        ? `This key lacks the "${scope}" scope (403).`
        : `This key may not do that (403): ${this.message}.`;
    }
    return `${this.status} ${this.code}: ${this.message}`;
  }
}

const TIMEOUT_MS = 10_000;

/** A caller bound to `getKey()`: `call("GET", "/v1/agents")` resolves to the decoded body. */
export function makeApi(getKey) {
  return async function call(method, path, body) {
    const headers = { Authorization: `Bearer ${getKey()}` };
    const init = { method, headers, cache: "no-store", signal: AbortSignal.timeout(TIMEOUT_MS) };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      throw new ApiError(0, "unreachable", err && err.name === "TimeoutError" ? "timed out" : "network error");
    }
    const text = await response.text();
    let doc = null;
    try {
      doc = text ? JSON.parse(text) : null;
    } catch {
      doc = null;
    }
    if (!response.ok) {
      const error = (doc && doc.error) || {};
      throw new ApiError(
        response.status,
        error.code || "error",
        error.message || response.statusText || "request failed",
        error.details || {},
      );
    }
    return doc;
  };
}

/** An id or instrument as one path segment (`binance:BTC/USDT` -> `binance%3ABTC%2FUSDT`). */
export const seg = (value) => encodeURIComponent(value);
