// inspect.mjs: what tests and the benchmark read from and do to a mounted explorer: its state
// as plain data (window.emExplorer.state()), and loading any points as a data set.

import { el } from "./dom.mjs";
import { describeCollapse } from "./words.mjs";

/** Load any 2-D points as a data set (the benchmark): starts given as { K: [[indices]] }. */
export function loadDataset(ex, name, points, { title = name, k = 3, seed = 0, starts } = {}) {
  ex.session.catalogue.datasets[name] = { title, X: points, k, seed, starts, subspace: null };
  if (![...ex.controls.dataset.options].some((o) => o.value === name)) {
    ex.controls.dataset.append(el("option", { value: name, text: title }));
  }
  Object.assign(ex.session, { k, seed });
  ex.session.selectDataset(name);
  ex.layout();
}

export function explorerState(ex) {
  const s = ex.session;
  const e = s.entry;
  const p = e.params;
  const k = p ? p.k : 0;
  const c = s.run?.collapse;
  return {
    dataset: s.datasetName, n: s.points.length, k: s.k, seed: s.seed, regCovar: s.regCovar,
    covType: s.covType, iteration: e.iteration, nextKind: e.nextKind, stopReason: e.stopReason,
    running: ex.running, position: s.position, steps: s.history.length - 1,
    weights: p ? Array.from(p.weights) : [],
    means: Array.from({ length: k }, (_, j) => [p.means[2 * j], p.means[2 * j + 1]]),
    covariances: Array.from({ length: k }, (_, j) => Array.from(p.covs.subarray(3 * j, 3 * j + 3))),
    dataCovariance: s.data ? s.data.cov.slice() : null,
    threshold: s.run?.threshold, tol: s.run?.tol, maxIter: s.run?.maxIter,
    logLikelihood: e.trace.slice(),
    // The first 50 points' colours as [r, g, b].
    colours: e.colours
      ? Array.from(e.colours.slice(0, 50), (v) => [v >> 16, (v >> 8) & 255, v & 255]) : null,
    collapsedNow: e.collapsedNow.map((r) => ({
      component: r.component, iteration: r.iteration, empty: r.empty, nPoints: r.nPoints,
    })),
    collapse: c ? { component: c.component, iteration: c.iteration, nPoints: c.nPoints,
      points: c.points, point: c.point, message: describeCollapse(c) } : null,
    query: s.query(),
    problems: s.problems ?? [],
  };
}
