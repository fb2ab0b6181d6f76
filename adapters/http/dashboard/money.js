// Money as the API gives it: atomic amounts are decimal strings of integers with the asset's
// decimals beside them. They are converted with BigInt, exactly: a float would round amounts
// above 2^53 and could print 0.30000000000000004 SOL. Prices are JSON numbers, shown as given.

const ATOMIC = /^-?\d+$/;

/** BigInt of an atomic string; throws on anything else (never guesses). */
export function atomic(value) {
  const text = String(value);
  if (!ATOMIC.test(text)) throw new Error(`not an atomic amount: ${text.slice(0, 40)}`);
  return BigInt(text);
}

/** Exact decimal text of `amount` atomic units at `decimals`: "98.679010795". */
export function decimalText(amount, decimals) {
  const value = typeof amount === "bigint" ? amount : atomic(amount);
  const places = Math.max(0, Math.trunc(Number(decimals) || 0));
  const negative = value < 0n;
  const abs = negative ? -value : value;
  const base = 10n ** BigInt(places);
  const whole = (abs / base).toString();
  let fraction = places ? (abs % base).toString().padStart(places, "0") : "";
  fraction = fraction.replace(/0+$/, "");
  return (negative ? "-" : "") + whole + (fraction ? "." + fraction : "");
}

/** Thousands grouped for reading ("1,234.5"); the digits stay exactly those of decimalText. */
function grouped(text) {
  const [whole, fraction] = text.split(".");
  const sign = whole.startsWith("-") ? "-" : "";
  const digits = sign ? whole.slice(1) : whole;
  const out = digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return sign + out + (fraction !== undefined ? "." + fraction : "");
}

/** "98.679010795 SOL"; "—" when the amount is missing. `signed` adds "+" to gains. */
export function money(amount, decimals, asset, { signed = false } = {}) {
  if (amount === null || amount === undefined) return "—";
  let text;
  try {
    text = grouped(decimalText(amount, decimals));
  } catch {
    return "?";
  }
  if (signed && !text.startsWith("-") && /[1-9]/.test(text)) text = "+" + text;
  return asset ? `${text} ${asset}` : text;
}

/** Sum of atomic amounts, exactly. */
export function sum(values) {
  let total = 0n;
  for (const v of values) total += typeof v === "bigint" ? v : atomic(v);
  return total;
}

/** A chart's y value: the exact decimal text parsed once, for drawing only (charts plot
 * floats); every number shown as text comes from decimalText. */
export function chartValue(amount, decimals) {
  return Number(decimalText(amount, decimals));
}

/** A USD price as given, shortened for a table cell; the full value goes in a tooltip. */
export function price(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value !== "number" || !Number.isFinite(value)) return "?";
  return Number(value.toPrecision(6)).toString();
}
