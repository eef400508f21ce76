// history.mjs: an EM run and its history (no DOM). Every E- and M-step taken is kept as an
// entry (parameters, the points' soft colours, the log-likelihood trace so far, the components
// collapsed or empty then, what comes next); `position` is the entry shown. Going forward past
// the newest entry asks the run for its next step; going back only moves the position.
//
// The run comes from a driver, { createRun(data, start, opts) }, whose run has EMRun's interface
// (em-core.mjs): step(), nextKind, iteration, params, stopReason, collapse, threshold, tol,
// onCollapse. A run's step() may return a Promise: then the moving methods return one too.
// Session (session.mjs) extends this with the data, the settings and the address.

import { collapseReport, collapsedComponents } from "./collapse-rule.mjs";
import { EMRun } from "./em-run.mjs";
import { safeLogLikelihood, softColours } from "./derived.mjs";
import { describeCollapse } from "./words.mjs";

/** em-core's EM, the default driver. */
export const emCoreDriver = { createRun: (data, start, opts) => new EMRun(data, start, opts) };

export const then = (value, f) => (value && typeof value.then === "function" ? value.then(f) : f(value));

export class RunHistory {
  /**
   * Start a run from `start` (parameters; null when EM cannot run on the data). Needs on `this`:
   * driver, data, k, rgb, covType, runOptions().
   */
  begin(start) {
    this.collapseSince = new Map();
    this.continued = false;
    this.pending = null; // a step of the old run still on its way is dropped when it arrives
    this.start = start;
    this.position = 0;
    if (start === null) {
      this.run = null;
      this.history = [{ kind: null, iteration: 0, params: null, colours: null, trace: [],
        nextKind: null, stopReason: null, collapsedNow: [] }];
      return;
    }
    this.run = this.driver.createRun(this.data, start, this.runOptions());
    // ln p(X | theta_0) is computed when first shown, or taken from the first E-step (the same
    // sum, in the same order): a drag restarts and takes that step at once.
    const data = this.data;
    this.history = [{
      kind: null, iteration: 0, params: start, colours: null, nextKind: "E", stopReason: null,
      collapsedNow: [], first: null,
      get trace() {
        this.first ??= [safeLogLikelihood(data, start)];
        return this.first;
      },
    }];
  }

  get entry() {
    return this.history[this.position];
  }

  get latest() {
    return this.position === this.history.length - 1;
  }

  /** True once a step was taken (a restart would throw work away, so it is announced). */
  hasProgress() {
    return this.history.length > 1;
  }

  /** The next step: replayed from the history, or asked of the run at the newest entry. */
  stepForward() {
    if (this.position < this.history.length - 1) {
      this.position += 1;
      return this.entry;
    }
    if (!this.run || this.run.nextKind === null) return null;
    if (this.pending) return this.pending; // an asynchronous step is on its way: that one
    const run = this.run;
    const taken = run.step();
    const apply = (step) => {
      if (run !== this.run) return null; // a restart came first: this step is of an old run
      if (step) this.record(step);
      else this.recordStop();
      return this.entry;
    };
    if (!(taken && typeof taken.then === "function")) return apply(taken);
    this.pending = taken.then(apply, (err) => {
      if (run === this.run) this.notice = `The step failed: ${err?.message ?? err}`;
      return null;
    }).finally(() => {
      if (this.pending === pending) this.pending = null;
    });
    const pending = this.pending;
    return pending;
  }

  /** Take `n` steps forward (fewer if EM stops). */
  forward(n) {
    if (n <= 0) return this.entry;
    return then(this.stepForward(), (e) => (e === null ? this.entry : this.forward(n - 1)));
  }

  /** Step forward until EM stops (the history's end). */
  toEnd() {
    return this.forward(Infinity);
  }

  /** The step of kind "E" or "M", if it is the next one; else null. */
  doStep(kind) {
    if (this.entry.nextKind !== kind) return null;
    this.notice = null;
    return this.stepForward();
  }

  /** Show history entry `position` (clamped to the steps taken). */
  scrub(position) {
    this.position = Math.max(0, Math.min(this.history.length - 1, Math.round(position)));
    return this.entry;
  }

  /** After a collapse stopped EM: go on from the collapsed parameters. */
  continueAfterCollapse() {
    if (!this.run || this.run.stopReason !== "collapse" || !this.latest) return;
    this.run.onCollapse = "continue";
    this.run.nextKind = "E";
    this.run.stopReason = null;
    this.continued = true;
    Object.assign(this.entry, { nextKind: "E", stopReason: null });
  }

  record(step) {
    const prev = this.entry;
    if (prev.kind === null && step.kind === "E") prev.first ??= [step.logLikelihood];
    const trace = prev.trace.slice();
    const e = {
      kind: step.kind, iteration: this.run.iteration, params: step.params,
      colours: prev.colours, trace, nextKind: this.run.nextKind, stopReason: this.run.stopReason,
      collapsedNow: prev.collapsedNow,
    };
    if (step.kind === "E") {
      e.colours = softColours(step.resp, this.data.n, this.k, this.rgb);
      trace[step.iteration - 1] = step.logLikelihood;
    } else {
      trace[step.iteration] = safeLogLikelihood(this.data, step.params);
      e.collapsedNow = this.collapsedAfter(step);
    }
    this.history.push(e);
    this.position = this.history.length - 1;
  }

  /** The run stopped without a step (a singular covariance at the E-step): an entry says so. */
  recordStop() {
    this.history.push({
      ...this.entry, kind: "E", failed: true, nextKind: null, stopReason: this.run.stopReason,
    });
    this.position = this.history.length - 1;
  }

  /** After an M-step: reports of the components collapsed (or empty) now, by em-core's rule. */
  collapsedAfter(step) {
    const { components, lam } = collapsedComponents(
      step.params, this.run.regCovar ?? this.regCovar, this.run.threshold, this.data.subspace,
    );
    for (const j of [...this.collapseSince.keys()]) {
      if (!components.includes(j)) this.collapseSince.delete(j);
    }
    // "tied": one shared covariance, reported once (as component 0, gmmlib's way).
    const which = this.covType === "tied" ? components.slice(0, 1) : components;
    return which.map((j) => {
      if (!this.collapseSince.has(j)) this.collapseSince.set(j, step.iteration);
      const r = collapseReport(this.data, step.params, step.resp, j, this.collapseSince.get(j), lam,
        this.regCovar, this.run.threshold, this.covType);
      r.message = describeCollapse(r);
      return r;
    });
  }
}
