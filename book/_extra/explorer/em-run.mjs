// em-run.mjs: EM one step at a time from stated initial parameters, with gmmlib's stopping rule
// (GaussianMixture.steps: tol on the mean log-likelihood per point, max_iter) and collapse rule
// (collapse-rule.mjs). The steps' maths is em-core.mjs's; every rule constant comes from
// gmmlib (data.json's "gmmlib" block, or a fixture's fields). Held to gmmlib's iteration, stop
// reason and final ln p(X) by tests/test_explorer_parity.py.

import {
  SingularCovarianceError,
  checkCovarianceType,
  copyParams,
  eStep,
  given,
  mStep,
  softCounts,
} from "./em-core.mjs";
import {
  collapseReport,
  collapseThreshold,
  collapsedComponents,
  minEigenvalues,
} from "./collapse-rule.mjs";

function choleskyOk(params) {
  const { k, weights, means, covs } = params;
  if (!weights.every(Number.isFinite) || !means.every(Number.isFinite)) return false;
  for (let j = 0; j < k; j++) {
    const a = covs[3 * j];
    if (!(a > 0)) return false;
    const l10 = covs[3 * j + 1] / Math.sqrt(a);
    if (!(covs[3 * j + 2] - l10 * l10 > 0)) return false;
  }
  return true;
}

/**
 * EM one step at a time from stated initial parameters, the same loop as gmmlib's
 * GaussianMixture.steps(). Round t = E-step on theta_{t-1} (responsibilities and
 * ln p(X | theta_{t-1})), then M-step -> theta_t and the collapse rule. When the mean
 * log-likelihood per point has changed by less than `tol` since the previous E-step, or after
 * `maxIter` rounds, the round's M-step still runs (scikit-learn's rule) and a last E-step
 * measures the theta_t returned. A collapse stops EM after the M-step that produced it (with
 * onCollapse = "continue" it goes on while every Cholesky factorisation succeeds).
 *
 * opts: { regCovar, tol, maxIter, collapseTol, nkEps } are required, gmmlib's values (data.json's
 * "gmmlib" block, or a fixture's fields); onCollapse is "stop" (default) or "continue";
 * covarianceType one of COVARIANCE_TYPES ("full" by default).
 * The two steps' maths are the methods computeE(params) -> { resp, logLikelihood } and
 * computeM(resp) -> params: a subclass may take them from elsewhere (the notebook widget takes
 * them from the student's Python functions) and keeps this loop's stopping and collapse rules.
 * `step()` performs the next step and returns it: { kind, iteration, params, resp, nk,
 * minEigenvalues, logLikelihood (E only), collapse (M only: report or null) }.
 */
export class EMRun {
  constructor(data, start, opts = {}) {
    this.data = data;
    this.params = copyParams(start);
    this.k = this.params.k;
    // gmmlib's rule constants (data.json's "gmmlib" block, or a fixture): none defaults here.
    this.regCovar = given(opts, "regCovar", "EMRun");
    this.tol = given(opts, "tol", "EMRun");
    this.maxIter = given(opts, "maxIter", "EMRun");
    this.nkEps = given(opts, "nkEps", "EMRun");
    this.onCollapse = opts.onCollapse ?? "stop";
    this.covarianceType = checkCovarianceType(opts.covarianceType ?? "full", "EMRun");
    this.threshold = collapseThreshold(data, opts.collapseTol);
    this.resp = null; // responsibilities of the last E-step
    this.iteration = 0; // t of the current theta_t
    this.nextKind = "E";
    this.previous = null; // ln p(X | theta_{t-1}) at the last E-step, for convergence
    this.finalReason = null; // set when the convergence test passes: the next E-step is the last
    this.collapse = null; // first collapse report
    this.converged = false;
    this.stopReason = null; // "converged" | "max_iter" | "collapse" | "singular"
    this._buf = new Float64Array(data.n * this.k);
  }

  get done() {
    return this.nextKind === null;
  }

  /** Do the next step (E or M); returns the step, or null when EM has stopped. */
  step() {
    if (this.nextKind === "E") return this._eStep();
    if (this.nextKind === "M") return this._mStep();
    return null;
  }

  /** E-step maths on `params`: { resp (into this run's buffer), logLikelihood }. */
  computeE(params) {
    return eStep(this.data, params, this._buf);
  }

  /** M-step maths from `resp`: the new parameters. */
  computeM(resp) {
    return mStep(this.data, resp, this.k, this.regCovar, this.nkEps, this.covarianceType).params;
  }

  _stop(reason) {
    this.nextKind = null;
    this.stopReason = reason;
  }

  _eStep() {
    const t = this.iteration + 1;
    let resp;
    let ll;
    try {
      ({ resp, logLikelihood: ll } = this.computeE(this.params));
    } catch (err) {
      if (!(err instanceof SingularCovarianceError)) throw err;
      this._stop("singular");
      return null;
    }
    this.resp = resp;
    const step = {
      kind: "E",
      iteration: t,
      params: this.params,
      resp,
      nk: softCounts(resp, this.data.n, this.k),
      minEigenvalues: minEigenvalues(this.params.covs, this.k),
      logLikelihood: ll,
      collapse: null,
    };
    if (this.finalReason !== null || t > this.maxIter) {
      const reason = this.finalReason ?? "max_iter";
      this.converged = reason === "converged";
      this._stop(reason);
    } else {
      if (this.previous !== null && Math.abs(ll - this.previous) / this.data.n < this.tol) {
        this.finalReason = "converged";
      }
      this.previous = ll;
      this.nextKind = "M";
    }
    return step;
  }

  _mStep() {
    const t = this.iteration + 1;
    const resp = this.resp;
    const params = this.computeM(resp);
    const { subspace } = this.data;
    const { components, lam } = collapsedComponents(params, this.regCovar, this.threshold, subspace);
    const ok = choleskyOk(params);
    let report = null;
    if (components.length && this.collapse === null) {
      report = collapseReport(
        this.data, params, resp, components[0], t, lam, this.regCovar, this.threshold,
        this.covarianceType,
      );
      this.collapse = report;
    }
    this.params = params;
    this.iteration = t;
    this._buf = new Float64Array(this.data.n * this.k); // the step keeps `resp`
    const step = {
      kind: "M",
      iteration: t,
      params,
      resp,
      nk: softCounts(resp, this.data.n, this.k),
      minEigenvalues: subspace === null ? lam : minEigenvalues(params.covs, this.k),
      logLikelihood: null,
      collapse: report,
    };
    if (components.length && (this.onCollapse !== "continue" || !ok)) this._stop("collapse");
    else if (!ok) this._stop("singular");
    else this.nextKind = "E";
    return step;
  }
}

/** All steps of an EMRun, as a generator (what the parity test runs under Node). */
export function* steps(data, start, opts = {}) {
  const run = new EMRun(data, start, opts);
  for (let s = run.step(); s !== null; s = run.step()) yield s;
}
