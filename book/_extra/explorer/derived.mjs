// derived.mjs: what the session derives from the maths for showing it (no DOM): the points'
// soft colours, ln p(X) that reads +Infinity for a singular covariance, seeded starts for data
// without exported ones, the data subspace of hand-drawn data, and how finely to round.

import { SingularCovarianceError, eigenvalues2, logLikelihood } from "./em-core.mjs";

/** gmmlib.diagnostics.data_subspace in 2-D: null, or the unit vectors the data vary along. */
export function dataSubspace(data, collapseTol) {
  const threshold = collapseTol * data.s2;
  const [a, b, d] = data.cov;
  const [l1, l2] = eigenvalues2(a, b, d);
  if (l1 > threshold) return null;
  if (!(l2 > threshold)) return [];
  const v = Math.abs(b) > 0 ? [b, l2 - a] : a >= d ? [1, 0] : [0, 1];
  const len = Math.hypot(v[0], v[1]);
  return [[v[0] / len, v[1] / len]];
}

/** Decimals that place a point to 1/2000 of the view's width (well under a screen pixel). */
export function decimalsFor([x0, x1]) {
  return Math.max(0, Math.min(12, Math.ceil(-Math.log10((x1 - x0) / 2000))));
}

/** ln p(X | params), or +Infinity when a covariance has no Cholesky factor (a collapse). */
export function safeLogLikelihood(data, params) {
  try {
    return logLikelihood(data, params);
  } catch (err) {
    if (err instanceof SingularCovarianceError) return Infinity;
    throw err;
  }
}

/** A point's colour: the responsibility-weighted blend of the component colours (0xRRGGBB). */
export function softColours(resp, n, k, rgb) {
  const pr = new Float64Array(k);
  const pg = new Float64Array(k);
  const pb = new Float64Array(k);
  for (let j = 0; j < k; j++) [pr[j], pg[j], pb[j]] = rgb[j % rgb.length];
  const out = new Int32Array(n);
  for (let i = 0, row = 0; i < n; i++, row += k) {
    let r = 0;
    let g = 0;
    let b = 0;
    for (let j = 0; j < k; j++) {
      const w = resp[row + j];
      r += w * pr[j];
      g += w * pg[j];
      b += w * pb[j];
    }
    out[i] = (Math.round(r) << 16) | (Math.round(g) << 8) | Math.round(b);
  }
  return out;
}

/** Distinct indices from a small seeded generator (for data without exported starts). */
export function seededIndices(n, k, seed) {
  let state = (seed * 2654435761 + 1) >>> 0;
  const rand = () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
  const picked = new Set();
  while (picked.size < Math.min(k, n)) picked.add(Math.floor(rand() * n));
  return [...picked];
}
