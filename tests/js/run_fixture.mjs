// Run the explorer's EM core (book/_extra/explorer/em-core.mjs) on a parity fixture and print
// every step as JSON on stdout. Used by tests/test_explorer_parity.py:
//   node tests/js/run_fixture.mjs tests/fixtures/explorer/<case>.json
import { readFileSync } from "node:fs";
import { initFromIndices, makeData, makeParams } from "../../book/_extra/explorer/em-core.mjs";
import { EMRun } from "../../book/_extra/explorer/em-run.mjs";
import { describeCollapse } from "../../book/_extra/explorer/words.mjs";

const fixture = JSON.parse(readFileSync(process.argv[2], "utf8"));
const data = makeData(fixture.X, { subspace: fixture.subspace });
// The fixture's start (gmmlib.datasets.collapse_init), and the explorer's own start from the
// same seed's indices: both must be gmmlib's.
// covariances_init is in gmmlib's shape for the covariance type; em-core holds K full 2x2s.
const covarianceType = fixture.covariance_type ?? "full";
const k = fixture.weights_init.length;
const asFull = {
  full: (c) => c.flatMap((m) => [m[0][0], m[0][1], m[1][1]]),
  tied: (m) => Array.from({ length: k }, () => [m[0][0], m[0][1], m[1][1]]).flat(),
  diag: (c) => c.flatMap((v) => [v[0], 0, v[1]]),
  spherical: (c) => c.flatMap((v) => [v, 0, v]),
}[covarianceType];
const start = makeParams(fixture.weights_init, fixture.means_init.flat(), asFull(fixture.covariances_init));
const own = initFromIndices(data, fixture.start_indices, covarianceType);
const run = new EMRun(data, start, {
  regCovar: fixture.reg_covar,
  tol: fixture.tol,
  maxIter: fixture.max_iter,
  collapseTol: fixture.collapse_tol,
  nkEps: fixture.nk_eps,
  onCollapse: fixture.on_collapse === "continue" ? "continue" : "stop",
  covarianceType,
});
const steps = [];
for (let s = run.step(); s !== null; s = run.step()) {
  const { k, weights, means, covs } = s.params;
  const covariances = [];
  for (let j = 0; j < k; j++) {
    covariances.push([[covs[3 * j], covs[3 * j + 1]], [covs[3 * j + 1], covs[3 * j + 2]]]);
  }
  steps.push({
    kind: s.kind,
    iteration: s.iteration,
    weights: Array.from(weights),
    means: Array.from({ length: k }, (_, j) => [means[2 * j], means[2 * j + 1]]),
    covariances,
    resp: Array.from({ length: data.n }, (_, i) => Array.from(s.resp.subarray(i * k, (i + 1) * k))),
    nk: Array.from(s.nk),
    min_eigenvalues: Array.from(s.minEigenvalues),
    log_likelihood: s.logLikelihood,
    collapse: s.collapse && {
      component: s.collapse.component,
      iteration: s.collapse.iteration,
      n_points: s.collapse.nPoints,
      nk: s.collapse.nk,
      min_eigenvalue: s.collapse.minEigenvalue,
      threshold: s.collapse.threshold,
      message: describeCollapse(s.collapse), // the explorer's words for it (words.mjs)
    },
  });
}
const explorerStart = {
  weights: Array.from(own.weights),
  means: Array.from({ length: own.k }, (_, j) => [own.means[2 * j], own.means[2 * j + 1]]),
  covariances: Array.from({ length: own.k }, (_, j) => [
    [own.covs[3 * j], own.covs[3 * j + 1]],
    [own.covs[3 * j + 1], own.covs[3 * j + 2]],
  ]),
};
process.stdout.write(JSON.stringify({
  steps,
  explorer_start: explorerStart,
  stop: run.stopReason,
  converged: run.converged,
  iteration: run.iteration,
}));
