// DOM building from text only (no HTML parsing): every string from the API becomes a text node, so a token
// symbol or an alert message can never inject markup or script.

/** `el("td", {class: "num", title: "..."}, "text", childNode)` */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(node.dataset, value);
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const byId = (id) => document.getElementById(id);

/** Set a node's text only when it changed (keeps selections and avoids layout work). */
export function setText(node, text, title) {
  const value = String(text);
  if (node.textContent !== value) node.textContent = value;
  if (title !== undefined && node.title !== String(title)) node.title = String(title);
}

/**
 * Keep `tbody`'s rows in step with `items`, keyed by `key(item)`: rows are built once by
 * `build(item)` and refreshed in place by `update(row, item)`, so a button a user is about to
 * click is not replaced under the pointer four times a second.
 */
export function syncRows(tbody, items, key, build, update) {
  const existing = new Map();
  for (const row of tbody.children) existing.set(row.dataset.key, row);
  let previous = null;
  for (const item of items) {
    const id = key(item);
    let row = existing.get(id);
    if (row) existing.delete(id);
    else {
      row = build(item);
      row.dataset.key = id;
    }
    update(row, item);
    const wanted = previous ? previous.nextSibling : tbody.firstChild;
    if (wanted !== row) tbody.insertBefore(row, wanted);
    previous = row;
  }
  for (const row of existing.values()) row.remove();
}

/** Prepend `node` to a list and keep at most `limit` entries (newest first). */
export function prependBounded(list, node, limit) {
  list.prepend(node);
  while (list.children.length > limit) list.lastElementChild.remove();
}

/** A mint shortened for a cell ("HBuY…DD2V"); exchange markets are short already. */
export function shortToken(token, symbol) {
  if (symbol) return symbol;
  if (token.includes(":") || token.length <= 12) return token;
  return `${token.slice(0, 4)}…${token.slice(-4)}`;
}

export function timeText(ms) {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString().slice(11, 19) + "Z";
}
