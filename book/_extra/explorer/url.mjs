// url.mjs: the explorer's state as a query string and back (no DOM), so a copied address
// reproduces what the reader saw and the book's deep links (explorer.html?...) open a state.
//
// The format (every parameter optional; the first four are the book's deep links since v1):
//   dataset  tilted | faithful | collapse (data.json's names) | own (points drawn by hand)
//   k        number of components, 1..k_max
//   seed     which of the seeded starts (gmmlib.datasets.collapse_init's), 0..n_seeds-1
//   reg      reg_covar when switched on (absent or 0: off)
//   cov      covariance type (absent: full)
//   means    the start's means, "x,y;x,y;..." (absent: the seed's start)
//   drop     the data set's points removed by hand, by index: "3,17" (absent: none)
//   add      points added by hand, "x,y;x,y;..." (all of them for own; a moved point is dropped
//            and added)
//   step     how many E- and M-steps of the run are shown (absent: 0, the start)
//   steps    how many were taken, when the reader went back (absent: step)
//   go       1 when "Continue anyway" let EM go on past a collapse
// Numbers are written with String(), which parses back to the same double: the explorer rounds
// dragged means and hand-placed points to a few decimals first, so the addresses stay short.

/** Names of the parameters the explorer reads, in the order it writes them. */
export const PARAMS = ["dataset", "k", "seed", "reg", "cov", "means", "drop", "add", "step", "steps", "go"];

/** The data set name of points drawn by hand. */
export const OWN = "own";

/** [[x, y], ...] -> "x,y;x,y". */
export function encodePairs(pairs) {
  const text = (v) => (Object.is(v, -0) ? "-0" : String(v)); // String(-0) is "0"
  return pairs.map(([x, y]) => `${text(x)},${text(y)}`).join(";");
}

/** "x,y;x,y" -> [[x, y], ...], or null when any number is missing or not finite. */
export function decodePairs(text) {
  if (text === null || text === undefined) return null;
  if (text === "") return [];
  const pairs = text.split(";").map((pair) => pair.split(",").map(Number));
  const ok = pairs.every((p) => p.length === 2 && p.every(Number.isFinite));
  return ok ? pairs : null;
}

/**
 * The query string of a state { dataset, k, seed, reg, cov, means, drop, add, step, steps, go } (means
 * and add as [[x, y], ...], means null for the seed's start; drop as indices).
 */
export function encodeState(s) {
  const q = [["dataset", s.dataset], ["k", s.k], ["seed", s.seed]];
  if (s.reg > 0) q.push(["reg", s.reg]);
  if (s.cov && s.cov !== "full") q.push(["cov", s.cov]);
  if (s.means) q.push(["means", encodePairs(s.means)]);
  if (s.drop?.length) q.push(["drop", s.drop.join(",")]);
  if (s.add?.length) q.push(["add", encodePairs(s.add)]);
  if (s.step > 0) q.push(["step", s.step]);
  if (s.steps > s.step) q.push(["steps", s.steps]);
  if (s.go) q.push(["go", 1]);
  // "," and ";" may stand in a query as they are (RFC 3986 sub-delimiters): keep them readable.
  const value = (v) => encodeURIComponent(String(v)).replace(/%2C/g, ",").replace(/%3B/g, ";");
  return q.map(([name, v]) => `${name}=${value(v)}`).join("&");
}

function intIn(text, lo, hi) {
  if (text === null || !/^\s*-?\d+\s*$/.test(text)) return null;
  const v = Number.parseInt(text, 10);
  return v >= lo && v <= hi ? v : null;
}

/**
 * A query (string or URLSearchParams) -> { state, problems }: `state` has every field, each the
 * asked value when valid, else the data set's default; `problems` names each parameter that was
 * given but could not be used (the explorer shows them, and the page tests read them).
 * `catalogue` is data.json; `covTypes` the covariance types on offer.
 */
export function decodeState(query, catalogue, covTypes = ["full"]) {
  const q = typeof query === "string" ? new URLSearchParams(query) : query ?? new URLSearchParams();
  const problems = [];
  const bad = (name, why) => problems.push(`${name}=${q.get(name)}: ${why}`);
  const names = Object.keys(catalogue.datasets);
  let dataset = q.get("dataset") ?? names[0];
  let add = decodePairs(q.get("add"));
  if (q.has("add") && add === null) bad("add", "not a list of x,y pairs");
  add ??= [];
  if (dataset !== OWN && !catalogue.datasets[dataset]) {
    bad("dataset", `not one of ${[...names, OWN].join(", ")}`);
    dataset = names[0];
  }
  const ds = catalogue.datasets[dataset] ?? { k: 3, seed: 0, X: [] };
  let drop = q.has("drop") ? q.get("drop").split(",").map(Number) : [];
  if (!drop.every((i) => Number.isInteger(i) && i >= 0 && i < ds.X.length)) {
    bad("drop", `not indices of the data set's ${ds.X.length} points`);
    drop = [];
  }
  let k = intIn(q.get("k"), 1, catalogue.k_max);
  if (q.has("k") && k === null) bad("k", `not a whole number from 1 to ${catalogue.k_max}`);
  k ??= ds.k;
  let seed = intIn(q.get("seed"), 0, catalogue.n_seeds - 1);
  if (q.has("seed") && seed === null) bad("seed", `not from 0 to ${catalogue.n_seeds - 1}`);
  seed ??= ds.seed;
  let reg = q.has("reg") ? Number(q.get("reg")) : 0;
  if (!(Number.isFinite(reg) && reg >= 0)) {
    bad("reg", "not a number >= 0");
    reg = 0;
  }
  let cov = q.get("cov") ?? "full";
  if (!covTypes.includes(cov)) {
    bad("cov", `not one of ${covTypes.join(", ")}`);
    cov = "full";
  }
  let means = decodePairs(q.get("means"));
  if (q.has("means") && (means === null || means.length !== k)) {
    bad("means", `not ${k} x,y pairs (one per component)`);
    means = null;
  }
  let step = intIn(q.get("step"), 0, 1e6);
  if (q.has("step") && step === null) bad("step", "not a whole number >= 0");
  step ??= 0;
  let steps = intIn(q.get("steps"), 0, 1e6);
  if (q.has("steps") && steps === null) bad("steps", "not a whole number >= 0");
  steps = Math.max(steps ?? 0, step);
  const go = q.get("go") === "1";
  for (const name of q.keys()) if (!PARAMS.includes(name)) problems.push(`${name}: not read`);
  return { state: { dataset, k, seed, reg, cov, means, drop, add, step, steps, go }, problems };
}
