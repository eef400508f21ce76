// format.mjs: how the explorer writes numbers (one format everywhere) and the values along its
// axes. No DOM, no maths of EM: moved here from em-core.mjs, which holds the maths only.

/**
 * Tick values for an axis over [lo, hi] (lo < hi; else none) and their labels, by one rule:
 * about `count` round values (1, 2 or 5 times a power of ten apart, at least two), every label
 * with the same number of decimals, the step's own (step 0.5: "-1.0", "-0.5", "0.0"; step 20:
 * "-40"). Returns { step, values, labels }.
 */
export function axisTicks(lo, hi, count) {
  const empty = { step: NaN, values: [], labels: [] };
  if (!(hi > lo) || !Number.isFinite(lo) || !Number.isFinite(hi)) return empty;
  for (let c = Math.max(1, count); c <= 64; c *= 2) {
    const raw = (hi - lo) / c;
    const p = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw * (1 - 1e-12));
    const values = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * step; v += step) {
      values.push(Math.abs(v) < 1e-9 * step ? 0 : Number(v.toPrecision(12)));
    }
    if (values.length >= 2) {
      const decimals = Math.min(20, Math.max(0, -Math.floor(Math.log10(step) + 1e-9)));
      const labels = values.map((v) => v.toFixed(decimals).replace(/^-(0\.?0*)$/, "$1"));
      return { step, values, labels };
    }
  }
  return empty;
}

/**
 * The one number format of the explorer: `sig` significant digits, trailing zeros dropped,
 * exponent form ("1e-6", "3.9e-49") below 1e-3 and from 1e6 up, "+∞" for +Infinity.
 */
export function formatNumber(x, sig = 3) {
  if (x === Infinity) return "+∞";
  if (x === -Infinity) return "−∞";
  if (Number.isNaN(x)) return "undefined";
  if (x === 0) return "0";
  const trim = (t) => (t.includes(".") ? t.replace(/0+$/, "").replace(/\.$/, "") : t);
  const a = Math.abs(x);
  if (a < 1e-3 || a >= 1e6) {
    const [mantissa, exponent] = x.toExponential(sig - 1).split("e");
    return `${trim(mantissa)}e${Number(exponent)}`;
  }
  return trim(x.toFixed(Math.max(0, sig - 1 - Math.floor(Math.log10(a)))));
}

/** "component 2", "components 2 and 5", "components 2, 5 and 7" (from reports or numbers). */
export function componentList(items) {
  const ids = items.map((r) => String(typeof r === "number" ? r : r.component));
  if (ids.length === 1) return `component ${ids[0]}`;
  return `components ${ids.slice(0, -1).join(", ")} and ${ids[ids.length - 1]}`;
}

/** "#RRGGBB" -> [r, g, b] (0..255). */
export function hexToRgb(hex) {
  return [1, 3, 5].map((i) => Number.parseInt(hex.slice(i, i + 2), 16));
}
