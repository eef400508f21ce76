// session.mjs: the explorer's state, with no DOM (node tests drive it: tests/js/session_*.mjs).
//
// A Session holds the data (a data set of data.json, possibly edited by hand, or points drawn on
// an empty plane), K, the seed, reg_covar, the covariance type and the start; the EM run and its
// history (the steps taken, the one shown) are RunHistory's (history.mjs). `query()` and
// `Session.fromQuery` write and read the whole state as an address (url.mjs).
//
// The run comes from a driver (history.mjs): em-core's EMRun by default; a front end may pass its
// own, e.g. one whose steps are the student's Python functions.

import { COVARIANCE_TYPES, initFromIndices, initFromMeans, makeData } from "./em-core.mjs";
import { dataSubspace, decimalsFor, seededIndices } from "./derived.mjs";
import { hexToRgb } from "./format.mjs";
import { RunHistory, emCoreDriver, then } from "./history.mjs";
import { OWN, decodeState, encodeState } from "./url.mjs";

export { emCoreDriver };

/** The view of points drawn by hand, in data units (they start on an empty plane). */
export const OWN_BOX = [-5, 5, -4, 4];

export class Session extends RunHistory {
  /**
   * `catalogue` is data.json (palette, gmmlib's rule constants, data sets); options: driver,
   * covTypes (the covariance types on offer, default em-core's COVARIANCE_TYPES), state
   * (url.mjs's decoded state).
   */
  constructor(catalogue, { driver = null, covTypes = COVARIANCE_TYPES, state = null } = {}) {
    super();
    this.catalogue = catalogue;
    this.kMax = catalogue.k_max;
    this.nSeeds = catalogue.n_seeds;
    // gmmlib's rule constants (tol, max_iter, reg_covar, collapse_tol, nk_eps) from data.json.
    this.rules = catalogue.gmmlib;
    this.palette = catalogue.palette.map(({ name, hex }) => [name, hex]);
    this.rgb = this.palette.map(([, hex]) => hexToRgb(hex));
    this.neutral = catalogue.neutral; // gmmlib.plotting.NEUTRAL: points before any E-step
    this.driver = driver ?? emCoreDriver;
    this.covTypes = covTypes;
    this.notice = null;
    // Resolves once the state is reached (at once for em-core; later for an async driver).
    this.ready = Promise.resolve(this.load(state ?? decodeState("", catalogue, covTypes).state));
  }

  /** A session in the state an address asks for; `problems` lists what it could not use. */
  static fromQuery(catalogue, query, options = {}) {
    const { state, problems } = decodeState(query, catalogue, options.covTypes ?? COVARIANCE_TYPES);
    const session = new Session(catalogue, { ...options, state });
    session.problems = problems;
    return session;
  }

  // ---------------------------------------------------------------------------------- state

  /** Put the session in a decoded state (url.mjs): data, settings, start, then `step` steps. */
  load(s) {
    this.datasetName = s.dataset;
    this.dataset = this.catalogue.datasets[s.dataset] ?? null;
    this.k = s.k;
    this.seed = s.seed;
    this.regOn = s.reg > 0;
    this.regValue = s.reg > 0 ? s.reg : this.rules.reg_covar;
    this.covType = s.cov ?? "full";
    this.setPoints(s.drop, s.add);
    this.startMeans = s.means;
    this.restart();
    const target = Math.max(s.steps ?? 0, s.step ?? 0);
    // Step as the reader did; with go, "Continue anyway" where a collapse stopped EM.
    const advance = () => then(this.forward(target - (this.history.length - 1)), () => {
      if (!s.go || this.run?.stopReason !== "collapse") return this.scrub(s.step ?? 0);
      this.continueAfterCollapse();
      return advance();
    });
    return advance();
  }

  /**
   * The data: the data set's points less those `dropped` (indices into it, as the address has
   * them), then the points `added` by hand, in that order (so an address rebuilds the same array).
   */
  setPoints(dropped = [], added = []) {
    const ds = this.dataset;
    this.dropped = [...new Set(dropped)].sort((a, b) => a - b);
    this.added = added.map(([x, y]) => [x, y]);
    const gone = new Set(this.dropped);
    const kept = ds ? ds.X.filter((_, i) => !gone.has(i)) : [];
    this.nKept = kept.length;
    this.points = [...kept.map(([x, y]) => [x, y]), ...this.added];
    this.edited = Boolean(ds) && (this.dropped.length > 0 || this.added.length > 0);
    this.data = this.points.length
      ? makeData(this.points, { subspace: ds && !this.edited ? ds.subspace ?? null : null })
      : null;
    if (this.data && (this.edited || !ds)) {
      this.data.subspace = dataSubspace(this.data, this.rules.collapse_tol);
    }
    this.decimals = decimalsFor(this.viewBox());
  }

  /** The part of the plane to show: the data set's extent, or OWN_BOX (it never follows edits). */
  viewBox() {
    if (!this.dataset) return OWN_BOX;
    let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
    for (const [x, y] of this.dataset.X) {
      x0 = Math.min(x0, x);
      x1 = Math.max(x1, x);
      y0 = Math.min(y0, y);
      y1 = Math.max(y1, y);
    }
    const pad = 0.12 * Math.max(x1 - x0, y1 - y0, 1e-9);
    return [x0 - pad, x1 + pad, y0 - pad, y1 + pad];
  }

  get title() {
    if (!this.dataset) return "Your own data";
    return this.edited ? `${this.dataset.title}, edited` : this.dataset.title;
  }

  get regCovar() {
    return this.regOn ? this.regValue : 0;
  }

  /** K can be fitted only to more than K points. */
  get fittable() {
    return this.data !== null && this.data.n > this.k;
  }

  /** The history entry shown. */
  hasProgress() {
    return this.history.length > 1;
  }

  // ------------------------------------------------------------------------------ restarts

  /** The start: the URL's or a drag's means, else the seed's data points (collapse_init's). */
  startParams() {
    if (this.startMeans) return initFromMeans(this.data, this.startMeans.flat(), this.covType);
    return this.seedStart(this.k);
  }

  /** The seed's start for any K (the criteria panel fits every K from it). */
  seedStart(k) {
    const starts = !this.edited && this.dataset?.starts?.[String(k)];
    const indices = starts ? starts[this.seed % starts.length] : seededIndices(this.data.n, k, this.seed);
    return initFromIndices(this.data, indices, this.covType);
  }

  /** EMRun's options for the current settings (gmmlib's rule constants, data.json's). */
  runOptions() {
    const { tol, max_iter: maxIter, collapse_tol: collapseTol, nk_eps: nkEps } = this.rules;
    return { regCovar: this.regCovar, tol, maxIter, collapseTol, nkEps, covarianceType: this.covType };
  }

  /** Restart EM (iteration 0, next step E) from startParams(), or stop when it cannot run. */
  restart() {
    this.begin(this.fittable ? this.startParams() : null);
  }

  /** Restart from the seed's start (Reset, a new K or seed). */
  restartFromSeed() {
    this.startMeans = null;
    this.restart();
  }

  /** Switch data set (keeping K and seed: every data set offers the same). */
  selectDataset(name) {
    this.datasetName = name;
    this.dataset = this.catalogue.datasets[name] ?? null;
    this.setPoints();
    this.restartFromSeed();
  }

  /** Start over on an empty plane: the reader draws the data (a click adds a point). */
  drawOwn() {
    this.datasetName = OWN;
    this.dataset = null;
    this.setPoints();
    this.restartFromSeed();
  }

  /** Means dragged to (x, y) for component j: restart from the new means, then one E-step. */
  moveMean(j, x, y) {
    const means = this.entry.params.means;
    const pairs = Array.from({ length: this.k }, (_, i) => [means[2 * i], means[2 * i + 1]]);
    pairs[j] = [this.round(x), this.round(y)];
    this.startMeans = pairs;
    this.restart();
    return this.forward(1);
  }

  /** A coordinate rounded to the decimals the view needs (so the address stays short). */
  round(v) {
    return Number(v.toFixed(this.decimals));
  }

  // ------------------------------------------------------------------------- data by hand

  /** The index of the point nearest (x, y) within `radius` (data units), or -1. */
  nearestPoint(x, y, radius) {
    let best = -1;
    let bestD = radius * radius;
    this.points.forEach(([px, py], i) => {
      const d = (px - x) ** 2 + (py - y) ** 2;
      if (d <= bestD) {
        bestD = d;
        best = i;
      }
    });
    return best;
  }

  /** Change the data by `edit()`; the fit follows: from the same start means, to the end. */
  editPoints(edit) {
    const keepMeans = this.startMeans ?? (this.start && this.k === this.start.k
      ? Array.from({ length: this.k }, (_, j) => [this.start.means[2 * j], this.start.means[2 * j + 1]])
      : null);
    const dropped = this.dropped.slice();
    const added = this.added.map((p) => p.slice());
    edit(dropped, added);
    this.setPoints(dropped, added);
    this.startMeans = keepMeans;
    this.restart();
    return this.toEnd();
  }

  addPoint(x, y) {
    return this.editPoints((dropped, added) => added.push([this.round(x), this.round(y)]));
  }

  /** Remove point i (of `points`). */
  removePoint(i) {
    return this.editPoints((dropped, added) => this.forget(i, dropped, added));
  }

  /** Move point i to (x, y): it becomes the last point (an added one); see setPoints. */
  movePoint(i, x, y) {
    return this.editPoints((dropped, added) => {
      this.forget(i, dropped, added);
      added.push([this.round(x), this.round(y)]);
    });
  }

  /** Take point i out of (dropped, added): drop a data set's point, or forget an added one. */
  forget(i, dropped, added) {
    if (i >= this.nKept) {
      added.splice(i - this.nKept, 1);
      return;
    }
    // The i-th kept point's index in the data set: skip the dropped ones before it.
    let index = i;
    for (const d of this.dropped) if (d <= index) index += 1;
    dropped.push(index);
  }

  // ------------------------------------------------------------------------------- address

  /** The state as url.mjs's fields. */
  snapshot() {
    return {
      dataset: this.datasetName, k: this.k, seed: this.seed, reg: this.regCovar, cov: this.covType,
      means: this.startMeans, drop: this.dropped, add: this.added,
      step: this.position, steps: this.history.length - 1, go: this.continued,
    };
  }

  /** The query string that reproduces what is shown. */
  query() {
    return encodeState(this.snapshot());
  }
}
