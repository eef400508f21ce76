// criteria.mjs: ln p(X), BIC and AIC against K for the current data, as gmmlib's
// GaussianMixture.bic and .aic count them (tests/test_explorer_criteria.py holds them equal).

import { checkCovarianceType } from "./em-core.mjs";
import { EMRun } from "./em-run.mjs";

/**
 * Free parameters of a K-component mixture in D dimensions (gmmlib's
 * GaussianMixture._n_parameters): K - 1 weights, K D mean entries and the covariances: "full"
 * K D (D + 1) / 2, "tied" D (D + 1) / 2, "diag" K D, "spherical" K.
 */
export function nParameters(k, covarianceType = "full", d = 2) {
  checkCovarianceType(covarianceType, "nParameters");
  const cov = { full: (k * d * (d + 1)) / 2, tied: (d * (d + 1)) / 2, diag: k * d, spherical: k };
  return cov[covarianceType] + k * d + k - 1;
}

/**
 * ln p(X), BIC = -2 ln p(X) + p ln N and AIC = -2 ln p(X) + 2 p (lower is better) for N points
 * and p = nParameters(k, covarianceType): gmmlib's GaussianMixture.bic and .aic.
 */
export function informationCriteria(logLikelihood, n, k, covarianceType = "full") {
  const p = nParameters(k, covarianceType);
  return {
    k,
    logLikelihood,
    nParameters: p,
    bic: -2 * logLikelihood + p * Math.log(n),
    aic: -2 * logLikelihood + 2 * p,
  };
}

/**
 * ln p(X), BIC and AIC against K for the current data: for every k in `ks`, EM from
 * `startFor(k)` (parameters, e.g. initFromIndices for a seed's start) run to its stop with `opts`
 * (EMRun's), and the criteria of the parameters fitting returns: those the last E-step measured,
 * as gmmlib's fit stores them (after a collapse: the parameters before the collapsed M-step).
 * Returns one row per k: informationCriteria's fields plus stop ("converged" | "max_iter" |
 * "collapse" | "singular"), iterations and collapsed (a boolean).
 */
export function criteriaAgainstK(data, ks, startFor, opts) {
  return ks.map((k) => {
    const run = new EMRun(data, startFor(k), opts);
    let ll = NaN;
    for (let s = run.step(); s !== null; s = run.step()) if (s.kind === "E") ll = s.logLikelihood;
    return {
      ...informationCriteria(ll, data.n, k, run.covarianceType),
      stop: run.stopReason,
      iterations: run.iteration,
      collapsed: run.collapse !== null,
    };
  });
}
