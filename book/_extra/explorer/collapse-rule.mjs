// collapse-rule.mjs: gmmlib's collapse rule (gmmlib.diagnostics) and its report, for the
// explorer: the smallest eigenvalue of each covariance within the data's subspace, the
// threshold collapse_tol * s2 (collapse_tol is gmmlib's, never a default of ours), the components
// that collapsed after an M-step and the report on one of them. Maths only: its words are
// words.mjs's. Held to gmmlib by tests/test_explorer_parity.py.

import { eigenvalues2, given } from "./em-core.mjs";

/**
 * Smallest eigenvalue of each covariance (gmmlib.diagnostics.min_eigenvalues): Float64Array(K).
 * As in gmmlib, a non-finite covariance anywhere makes every one NaN. With `subspace` (unit
 * vectors q_1..q_r, see makeData), the smallest eigenvalue of Q^T Sigma_k Q: each covariance
 * measured only in the directions the data vary in (+Infinity when r = 0).
 */
export function minEigenvalues(covs, k, subspace = null) {
  const out = new Float64Array(k);
  if (!covs.every(Number.isFinite)) return out.fill(NaN);
  for (let j = 0; j < k; j++) {
    const [a, b, d] = [covs[3 * j], covs[3 * j + 1], covs[3 * j + 2]];
    const quad = (u, v) => u[0] * (a * v[0] + b * v[1]) + u[1] * (b * v[0] + d * v[1]);
    if (subspace === null) out[j] = eigenvalues2(a, b, d)[0];
    else if (subspace.length === 0) out[j] = Infinity;
    else if (subspace.length === 1) out[j] = quad(subspace[0], subspace[0]);
    else {
      const [q, r] = subspace;
      out[j] = eigenvalues2(quad(q, q), quad(q, r), quad(r, r))[0];
    }
  }
  return out;
}

/**
 * collapse_tol * s2, s2 = trace(cov(X, bias=True)) / D (gmmlib.diagnostics.collapse_threshold);
 * collapseTol is gmmlib's (data.json or the fixture).
 */
export function collapseThreshold(data, collapseTol) {
  return given({ collapseTol }, "collapseTol", "collapseThreshold") * data.s2;
}

/**
 * The collapse rule (gmmlib.diagnostics.collapsed_components), applied after an M-step:
 * component k has collapsed when lambda_min(Sigma_k) - regCovar <= threshold, lambda_min taken
 * within the data's subspace (gmmlib's, see makeData). NaN (a non-finite covariance) counts as
 * collapsed. Returns { components: collapsed indices (ascending), lam: the rule's lambda_min }.
 */
export function collapsedComponents(params, regCovar, threshold, subspace = null) {
  const { k, covs } = params;
  const lam = minEigenvalues(covs, k, subspace);
  const components = [];
  for (let j = 0; j < k; j++) if (!(lam[j] - regCovar > threshold)) components.push(j);
  return { components, lam };
}

/**
 * A component whose soft count N_k is below this holds less than half a point's worth of
 * responsibility: it is *empty* (no point is mostly its own), which is a different failure from a
 * collapse onto one or a few points, and the explorer says so in its own words.
 */
export const EMPTY_NK = 0.5;

/**
 * A collapse report with gmmlib's CollapseReport fields (component, iteration, nk, nPoints,
 * minEigenvalue, threshold, regCovar, nComponents), plus the points the component holds
 * (responsibility > 0.5), the one it holds most (`point`) and whether it is empty (N_k <
 * EMPTY_NK); its words are words.mjs's (explainCollapse, describeCollapse). With covarianceType
 * "tied" the one shared covariance is what collapsed: gmmlib reports it as component 0 holding
 * all N points.
 */
export function collapseReport(
  data, params, resp, component, iteration, lam, regCovar, threshold, covarianceType = "full",
) {
  const { n } = data;
  const { k } = params;
  const points = [];
  let point = -1;
  let bestR = -Infinity;
  let nk = 0;
  for (let i = 0; i < n; i++) {
    const r = resp[i * k + component];
    nk += r;
    if (r > 0.5) points.push(i);
    if (r > bestR) {
      bestR = r;
      point = i;
    }
  }
  const tied = covarianceType === "tied";
  const report = {
    component: tied ? 0 : component,
    iteration,
    nk: tied ? n : nk,
    nPoints: tied ? n : points.length,
    points: tied ? Array.from({ length: n }, (_, i) => i) : points,
    point,
    empty: !tied && nk < EMPTY_NK,
    minEigenvalue: lam[tied ? 0 : component],
    threshold,
    regCovar,
    nComponents: k,
  };
  return report;
}
