// em-core.mjs: the maths of one EM step for a 2-D Gaussian mixture, as pure functions: full,
// tied, diag and spherical covariances (gmmlib's covariance_type). The collapse rule is
// collapse-rule.mjs's, the loop and its stopping rule em-run.mjs's, ln p, BIC and AIC against K
// criteria.mjs's.
//
// A second implementation of gmmlib.em (e_step, m_step, log_likelihood), of the estimator's
// stopping rule and of the collapse rule (gmmlib.diagnostics), for the in-browser explorer. No
// DOM code: it runs under Node too, where tests/test_explorer_parity.py holds it to gmmlib on
// shared fixtures. The maths only: how the explorer writes numbers is format.mjs's, what it
// says (collapse explanations included) words.mjs's.
//
// It holds no constant of those rules: tol, max_iter, reg_covar, collapse_tol and the N_k guard
// (gmmlib.em.NK_EPS) come from gmmlib, through data.json's "gmmlib" block in the browser and the
// fixture's fields under Node (both written by scripts/make_explorer_fixtures.py), and so does
// the data's subspace for the collapse rule (gmmlib.diagnostics.data_subspace).
//
// Layout (flat typed arrays, point-major / component-major, so the hot loops stay in cache):
//   data.x          Float64Array(2N)   x_i = (x[2i], x[2i+1])
//   params.weights  Float64Array(K)    pi_k
//   params.means    Float64Array(2K)   mu_k = (means[2k], means[2k+1])
//   params.covs     Float64Array(3K)   Sigma_k = [[covs[3k], covs[3k+1]], [covs[3k+1], covs[3k+2]]]
//                                      for every covariance type, as gmmlib.em.full_covariances
//                                      expands it: "tied" repeats one matrix K times, "diag" has
//                                      covs[3k+1] = 0, "spherical" also covs[3k] = covs[3k+2].
//   resp            Float64Array(NK)   gamma_ik = resp[i*K + k]
// Same maths and the same order of operations as gmmlib where it matters: densities from the
// Cholesky factor of each covariance (never an inverse), points shifted by the data mean, and
// responsibilities from log-sum-exp.

const LOG_2PI = Math.log(2 * Math.PI);

/** opts[name], which must be a finite number >= 0: gmmlib's value, never a default of ours. */
export function given(opts, name, where) {
  const v = opts[name];
  if (typeof v !== "number" || !(v >= 0) || !Number.isFinite(v)) {
    throw new TypeError(
      `${where} needs ${name}, a number >= 0 (gmmlib's: data.json's "gmmlib" block or the ` +
        `fixture's field), got ${v}`,
    );
  }
  return v;
}

/** gmmlib.em.COVARIANCE_TYPES: what the M-step may fit. */
export const COVARIANCE_TYPES = Object.freeze(["full", "tied", "diag", "spherical"]);

export function checkCovarianceType(covarianceType, where) {
  if (!COVARIANCE_TYPES.includes(covarianceType)) {
    throw new TypeError(
      `${where}: covarianceType must be one of ${COVARIANCE_TYPES.join(", ")}, got ${covarianceType}`,
    );
  }
  return covarianceType;
}

/**
 * K full 2x2 covariances (Float64Array(3K)) in `covarianceType`'s form, as
 * gmmlib.em.from_full_covariances then full_covariances: "tied" is sum_k pi_k Sigma_k in every
 * slot, "diag" keeps each diagonal, "spherical" its mean on both diagonal entries.
 */
export function asCovarianceType(covs, k, weights, covarianceType) {
  checkCovarianceType(covarianceType, "asCovarianceType");
  const out = Float64Array.from(covs);
  if (covarianceType === "full") return out;
  if (covarianceType === "tied") {
    const t = [0, 0, 0];
    for (let j = 0; j < k; j++) for (let e = 0; e < 3; e++) t[e] += weights[j] * covs[3 * j + e];
    for (let j = 0; j < k; j++) out.set(t, 3 * j);
    return out;
  }
  for (let j = 0; j < k; j++) {
    out[3 * j + 1] = 0;
    if (covarianceType === "spherical") {
      const s = (covs[3 * j] + covs[3 * j + 2]) / 2;
      out[3 * j] = s;
      out[3 * j + 2] = s;
    }
  }
  return out;
}

/** A covariance that is not positive definite: its Cholesky factor does not exist. */
export class SingularCovarianceError extends Error {
  constructor(component) {
    super(`the covariance of component ${component} is not positive definite (Cholesky failed)`);
    this.name = "SingularCovarianceError";
    this.component = component;
  }
}

/**
 * Wrap N points (an array of [x, y] pairs or a flat array of 2N numbers) with the summaries EM
 * needs once: the data mean (centre), the biased data covariance and s2 = trace / 2. `subspace`
 * is gmmlib's data subspace for the collapse rule (diagnostics.data_subspace, exported with the
 * data): null when the points vary in both directions, else the unit vectors they vary along.
 */
export function makeData(points, { subspace = null } = {}) {
  const flat = Array.isArray(points) && Array.isArray(points[0]) ? points.flat() : points;
  const x = Float64Array.from(flat);
  const n = x.length / 2;
  if (!Number.isInteger(n) || n < 1) throw new Error("need at least one 2-D point");
  let cx = 0;
  let cy = 0;
  for (let i = 0; i < n; i++) {
    cx += x[2 * i];
    cy += x[2 * i + 1];
  }
  cx /= n;
  cy /= n;
  let sxx = 0;
  let sxy = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = x[2 * i] - cx;
    const dy = x[2 * i + 1] - cy;
    sxx += dx * dx;
    sxy += dx * dy;
    syy += dy * dy;
  }
  const cov = [sxx / n, sxy / n, syy / n];
  return { x, n, centre: [cx, cy], cov, s2: (cov[0] + cov[2]) / 2, subspace };
}

/** Parameters as fresh typed arrays (weights K, means 2K, covs 3K). */
export function makeParams(weights, means, covs) {
  return {
    k: weights.length,
    weights: Float64Array.from(weights),
    means: Float64Array.from(means.flat ? means.flat(2) : means),
    covs: Float64Array.from(covs),
  };
}

/** Deep copy of a parameter set. */
export function copyParams(p) {
  return { k: p.k, weights: p.weights.slice(), means: p.means.slice(), covs: p.covs.slice() };
}

/**
 * gmmlib.init.init_from_means: equal weights, the given means, every covariance = the data
 * covariance (1/N), in `covarianceType`'s form (asCovarianceType: gmmlib's
 * from_full_covariances). `means` is a flat array of 2K numbers or K pairs.
 */
export function initFromMeans(data, means, covarianceType = "full") {
  const m = Float64Array.from(Array.isArray(means) && Array.isArray(means[0]) ? means.flat() : means);
  const k = m.length / 2;
  const weights = new Float64Array(k).fill(1 / k);
  const covs = new Float64Array(3 * k);
  for (let j = 0; j < k; j++) covs.set(data.cov, 3 * j);
  return { k, weights, means: m, covs: asCovarianceType(covs, k, weights, covarianceType) };
}

/** Means = the data points with the given indices (how a seed picks a start: see data.json). */
export function initFromIndices(data, indices, covarianceType = "full") {
  const means = new Float64Array(2 * indices.length);
  indices.forEach((idx, j) => {
    means[2 * j] = data.x[2 * idx];
    means[2 * j + 1] = data.x[2 * idx + 1];
  });
  return initFromMeans(data, means, covarianceType);
}

/**
 * Upper-triangular factors P_k with Sigma_k^{-1} = P_k P_k^T (P = L^{-T}, Sigma = L L^T), in a
 * Float64Array(4K): [p00, p01, p11, ln det P_k] per component. Throws SingularCovarianceError
 * naming the first component whose covariance is not positive definite, as LAPACK's potrf does.
 */
export function precisionCholesky(covs, k, out = new Float64Array(4 * k)) {
  for (let j = 0; j < k; j++) {
    const a = covs[3 * j];
    const b = covs[3 * j + 1];
    const d = covs[3 * j + 2];
    if (!(a > 0)) throw new SingularCovarianceError(j);
    const l00 = Math.sqrt(a);
    const l10 = b / l00;
    const piv = d - l10 * l10;
    if (!(piv > 0)) throw new SingularCovarianceError(j);
    const l11 = Math.sqrt(piv);
    // L^{-1} = [[1/l00, 0], [-l10/(l00 l11), 1/l11]]; P = (L^{-1})^T.
    const i00 = 1 / l00;
    const i11 = 1 / l11;
    out[4 * j] = i00;
    out[4 * j + 1] = -(l10 * i00) / l11;
    out[4 * j + 2] = i11;
    out[4 * j + 3] = Math.log(i00) + Math.log(i11);
  }
  return out;
}

/**
 * ln(pi_k) + ln N(x_i | mu_k, Sigma_k) for every point and component, into `out` (NK, point
 * major). Throws SingularCovarianceError if a covariance has no Cholesky factor.
 */
export function logJoint(data, params, out = new Float64Array(data.n * params.k)) {
  const { x, n, centre } = data;
  const { k, weights, means, covs } = params;
  const prec = precisionCholesky(covs, k);
  const cx = centre[0];
  const cy = centre[1];
  // Per component: P entries, the shifted mean projected (mu - centre) P, and the constant.
  const c = new Float64Array(6 * k);
  for (let j = 0; j < k; j++) {
    const p00 = prec[4 * j];
    const p01 = prec[4 * j + 1];
    const p11 = prec[4 * j + 2];
    const mx = means[2 * j] - cx;
    const my = means[2 * j + 1] - cy;
    c[6 * j] = p00;
    c[6 * j + 1] = p01;
    c[6 * j + 2] = p11;
    c[6 * j + 3] = mx * p00;
    c[6 * j + 4] = mx * p01 + my * p11;
    c[6 * j + 5] = -LOG_2PI + prec[4 * j + 3] + Math.log(weights[j]);
  }
  for (let i = 0; i < n; i++) {
    const px = x[2 * i] - cx;
    const py = x[2 * i + 1] - cy;
    const row = i * k;
    for (let j = 0; j < k; j++) {
      const o = 6 * j;
      const y0 = px * c[o] - c[o + 3];
      const y1 = px * c[o + 1] + py * c[o + 2] - c[o + 4];
      out[row + j] = -0.5 * (y0 * y0 + y1 * y1) + c[o + 5];
    }
  }
  return out;
}

/**
 * Turn a log-joint array (NK) into responsibilities in place, by log-sum-exp per point.
 * Returns the total log-likelihood sum_i ln p(x_i).
 */
function normaliseInPlace(a, n, k) {
  let total = 0;
  for (let i = 0; i < n; i++) {
    const row = i * k;
    let m = -Infinity;
    for (let j = 0; j < k; j++) if (a[row + j] > m) m = a[row + j];
    const shift = Number.isFinite(m) ? m : 0;
    let s = 0;
    for (let j = 0; j < k; j++) s += Math.exp(a[row + j] - shift);
    const lse = Math.log(s) + shift;
    total += lse;
    for (let j = 0; j < k; j++) a[row + j] = Math.exp(a[row + j] - lse);
  }
  return total;
}

/**
 * E-step: responsibilities gamma_ik = pi_k N(x_i|k) / sum_j pi_j N(x_i|j) (gmmlib.em.e_step).
 * Returns { resp, logLikelihood } where logLikelihood = ln p(X | params), the total.
 */
export function eStep(data, params, resp = new Float64Array(data.n * params.k)) {
  logJoint(data, params, resp);
  const logLikelihood = normaliseInPlace(resp, data.n, params.k);
  return { resp, logLikelihood };
}

/** Total log-likelihood ln p(X) = sum_i ln sum_k pi_k N(x_i | mu_k, Sigma_k) (gmmlib's). */
export function logLikelihood(data, params, scratch = new Float64Array(data.n * params.k)) {
  const a = logJoint(data, params, scratch);
  const { n } = data;
  const { k } = params;
  let total = 0;
  for (let i = 0; i < n; i++) {
    const row = i * k;
    let m = -Infinity;
    for (let j = 0; j < k; j++) if (a[row + j] > m) m = a[row + j];
    const shift = Number.isFinite(m) ? m : 0;
    let s = 0;
    for (let j = 0; j < k; j++) s += Math.exp(a[row + j] - shift);
    total += Math.log(s) + shift;
  }
  return total;
}

/**
 * M-step (gmmlib.em.m_step): N_k = sum_i gamma_ik (+ nkEps, gmmlib.em.NK_EPS, so an empty
 * component gives finite numbers), pi_k = N_k / N, mu_k = sum_i gamma_ik x_i / N_k, and with
 * S_k = sum_i gamma_ik (x_i - mu_k)(x_i - mu_k)^T the covariances of `covarianceType`: "full"
 * Sigma_k = S_k / N_k; "tied" one Sigma = sum_k S_k / N for all; "diag" the diagonal of
 * S_k / N_k; "spherical" the mean of that diagonal (regCovar added first). regCovar is added to
 * every variance. Returns { params, nk }.
 */
export function mStep(data, resp, k, regCovar, nkEps, covarianceType = "full") {
  given({ regCovar, nkEps }, "regCovar", "mStep");
  given({ regCovar, nkEps }, "nkEps", "mStep");
  checkCovarianceType(covarianceType, "mStep");
  const { x, n } = data;
  const nk = new Float64Array(k);
  const sx = new Float64Array(2 * k);
  for (let i = 0; i < n; i++) {
    const xi = x[2 * i];
    const yi = x[2 * i + 1];
    const row = i * k;
    for (let j = 0; j < k; j++) {
      const r = resp[row + j];
      nk[j] += r;
      sx[2 * j] += r * xi;
      sx[2 * j + 1] += r * yi;
    }
  }
  const weights = new Float64Array(k);
  const means = new Float64Array(2 * k);
  for (let j = 0; j < k; j++) {
    nk[j] += nkEps;
    weights[j] = nk[j] / n;
    means[2 * j] = sx[2 * j] / nk[j];
    means[2 * j + 1] = sx[2 * j + 1] / nk[j];
  }
  const s = new Float64Array(3 * k);
  for (let i = 0; i < n; i++) {
    const xi = x[2 * i];
    const yi = x[2 * i + 1];
    const row = i * k;
    for (let j = 0; j < k; j++) {
      const r = resp[row + j];
      const dx = xi - means[2 * j];
      const dy = yi - means[2 * j + 1];
      const rdx = r * dx;
      s[3 * j] += rdx * dx;
      s[3 * j + 1] += rdx * dy;
      s[3 * j + 2] += r * dy * dy;
    }
  }
  const covs = new Float64Array(3 * k);
  if (covarianceType === "tied") {
    const t = [0, 0, 0];
    for (let j = 0; j < k; j++) for (let e = 0; e < 3; e++) t[e] += s[3 * j + e];
    const tied = [t[0] / n + regCovar, t[1] / n, t[2] / n + regCovar];
    for (let j = 0; j < k; j++) covs.set(tied, 3 * j);
    return { params: { k, weights, means, covs }, nk };
  }
  for (let j = 0; j < k; j++) {
    covs[3 * j] = s[3 * j] / nk[j] + regCovar;
    covs[3 * j + 1] = covarianceType === "full" ? s[3 * j + 1] / nk[j] : 0;
    covs[3 * j + 2] = s[3 * j + 2] / nk[j] + regCovar;
    if (covarianceType === "spherical") {
      const v = (covs[3 * j] + covs[3 * j + 2]) / 2;
      covs[3 * j] = v;
      covs[3 * j + 2] = v;
    }
  }
  return { params: { k, weights, means, covs }, nk };
}

/** Soft counts N_k = sum_i gamma_ik (without NK_EPS). */
export function softCounts(resp, n, k) {
  const nk = new Float64Array(k);
  for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) nk[j] += resp[i * k + j];
  return nk;
}

/** Both eigenvalues of the symmetric 2x2 [[a, b], [b, d]], smallest first. */
export function eigenvalues2(a, b, d) {
  const m = (a + d) / 2;
  const r = Math.hypot((a - d) / 2, b);
  return [m - r, m + r];
}

/**
 * Points of the ellipse {x : (x - mu)^T Sigma^{-1} (x - mu) = r^2} for a 2x2 covariance:
 * centre + r * (sqrt(l1) cos t e1 + sqrt(l2) sin t e2). Returns { rx, ry, angle } (radians).
 */
export function ellipseAxes(a, b, d, r = 1) {
  const [l1, l2] = eigenvalues2(a, b, d);
  // Eigenvector of the largest eigenvalue l2.
  const angle = Math.abs(b) > 0 ? Math.atan2(l2 - a, b) : a >= d ? 0 : Math.PI / 2;
  return { rx: r * Math.sqrt(Math.max(l2, 0)), ry: r * Math.sqrt(Math.max(l1, 0)), angle };
}
