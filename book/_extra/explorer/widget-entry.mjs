// widget-entry.mjs: the explorer as an anywidget front end (gmmlib.explore), its EM steps
// computed in Python by the student's functions.
//
// anywidget calls render({ model, el }). The model holds `catalogue` (data.json's format, built
// by gmmlib.explore.catalogue for the student's X) and `driver_names`. Each E- or M-step is a
// request to Python, a custom message {type: "step", id, kind, ...}; Python answers
// {type: "step", id, kind, ok, ...} with the responsibilities and gmmlib's ln p(X), or the new
// parameters, or an error in words (gmmlib/explore.py, StepDriver). The answer then goes through
// em-core's EMRun loop (DrivenRun below), so the stopping and collapse rules are the book's.
//
// Built into gmmlib/_explorer/explorer.bundle.mjs by scripts/bundle_explorer.py (anywidget loads
// one ES module from a blob: relative imports do not resolve there).
import { mountCriteriaPanel } from "./criteria-panel.mjs";
import { EMRun, initFromIndices } from "./em-core.mjs";
import { Explorer } from "./explorer.mjs";

/** An EMRun whose step maths come from Python: supply() the answer, then step() as usual. */
export class DrivenRun extends EMRun {
  supply(answer) {
    this.answer = answer;
  }

  computeE() {
    const { resp, logLikelihood } = this.take("E");
    return { resp: Float64Array.from(resp), logLikelihood: logLikelihood ?? NaN };
  }

  computeM() {
    const { weights, means, covs } = this.take("M");
    return {
      k: this.k,
      weights: Float64Array.from(weights),
      means: Float64Array.from(means),
      covs: Float64Array.from(covs),
    };
  }

  take(kind) {
    const answer = this.answer;
    this.answer = null;
    if (!answer || answer.kind !== kind) throw new Error(`no ${kind}-step answer to use`);
    return kind === "E" ? { resp: answer.resp, logLikelihood: answer.log_likelihood } : answer;
  }
}

/** Custom messages to Python, one pending promise per request id. */
function makeChannel(model) {
  const pending = new Map();
  let next = 0;
  const onMessage = (msg) => {
    if (!msg || msg.type !== "step" || !pending.has(msg.id)) return;
    pending.get(msg.id)(msg);
    pending.delete(msg.id);
  };
  model.on("msg:custom", onMessage);
  return {
    request(content) {
      const id = ++next;
      return new Promise((resolve) => {
        pending.set(id, resolve);
        model.send({ type: "step", id, ...content });
      });
    },
    close() {
      model.off("msg:custom", onMessage);
      pending.clear();
    },
  };
}

function widgetExplorerClass(channel, names) {
  return class WidgetExplorer extends Explorer {
    build() {
      super.build();
      // The student's m_step has no reg_covar: the switch would change only the collapse rule.
      this.controls.reg.parentElement.style.display = "none"; // (its CSS display beats [hidden])
      this.driverError = document.createElement("div");
      this.driverError.className = "gx-alert gx-driver-error";
      this.driverError.setAttribute("role", "alert");
      this.driverError.hidden = true;
      this.status.after(this.driverError);
      this.busy = false;
      this.hint.textContent =
        `Steps are computed by ${names.e ?? "an e_step"} and ${names.m ?? "an m_step"} in ` +
        "Python. " + this.hint.textContent;
    }

    /** The seed (or K) changed: the criteria panel recomputes for the new start. */
    restartFromSeed() {
      super.restartFromSeed();
      this.updateCriteria?.();
    }

    restart(start, { draw = true } = {}) {
      super.restart(start, { draw: false });
      const { tol, max_iter: maxIter, collapse_tol: collapseTol, nk_eps: nkEps } = this.rules;
      this.run = new DrivenRun(this.data, start, {
        regCovar: this.regCovar, tol, maxIter, collapseTol, nkEps,
      });
      this.generation = (this.generation ?? 0) + 1; // answers to an older run are dropped
      this.showError(null);
      if (draw) this.render();
    }

    showError(message) {
      this.driverError.hidden = message === null;
      this.driverError.textContent = message ?? "";
      this.root.dataset.driverError = message ?? "";
    }

    /** Ask Python for the step, then take it through EMRun; resolves to the step or null. */
    async stepFromPython(kind) {
      const run = this.run;
      if (this.busy) {
        this.queued = kind; // asked again while Python works (a drag): done when it answers
        return null;
      }
      if (run.nextKind !== kind) return null;
      const generation = this.generation;
      const p = run.params;
      const content = kind === "E"
        ? { kind, weights: Array.from(p.weights), means: Array.from(p.means), covs: Array.from(p.covs) }
        : { kind, k: run.k, resp: Array.from(run.resp) };
      this.busy = true;
      this.root.dataset.busy = "true";
      this.renderControls();
      let answer;
      try {
        answer = await channel.request(content);
      } finally {
        this.busy = false;
        this.root.dataset.busy = "false";
      }
      if (generation !== this.generation) {
        // A restart (drag, K, seed) came while Python worked: do what it asked for now.
        const queued = this.queued;
        this.queued = null;
        if (queued) return this.stepFromPython(queued);
        this.renderControls();
        return null;
      }
      this.queued = null;
      if (!answer.ok) {
        this.pause();
        this.showError(`${kind}-step failed: ${answer.error}`);
        this.renderControls();
        return null;
      }
      this.showError(null);
      this.notice = null;
      run.supply(answer);
      const step = run.step();
      if (step) this.applyStep(step);
      this.render();
      return step;
    }

    doStep(kind) {
      void this.stepFromPython(kind);
      return null;
    }

    runAnimated() {
      if (this.run.done) return;
      this.running = true;
      this.renderControls();
      const loop = async () => {
        while (this.running && !this.run.done) {
          const step = await this.stepFromPython(this.run.nextKind);
          if (step === null) break;
          await new Promise((resolve) => requestAnimationFrame(resolve));
        }
        this.pause();
      };
      void loop();
    }

    renderControls() {
      super.renderControls();
      if (this.busy) {
        this.controls.e.disabled = true;
        this.controls.m.disabled = true;
      }
    }
  };
}

/**
 * The covariance type and ln p, BIC and AIC against K for the student's data, by gmmlib's EM
 * in em-core (held to gmmlib's bic/aic): GaussianMixture's defaults (reg_covar included) from
 * the current seed's starts. It does not use the student's functions.
 */
function mountModelChoice(explorer, root) {
  let covarianceType = "full";
  const box = document.createElement("div");
  root.append(box);
  const panel = mountCriteriaPanel(box, {
    covarianceType,
    onChange: (type) => {
      covarianceType = type;
      explorer.updateCriteria();
    },
  });
  const note = document.createElement("p");
  note.className = "gx-caption";
  note.textContent = "Computed by gmmlib's EM (not your functions), from this seed's start " +
    "for each K, with GaussianMixture's defaults.";
  box.append(note);
  explorer.updateCriteria = () => {
    const { rules, data, dataset, seed } = explorer;
    const starts = dataset.starts;
    panel.update({
      data,
      kMax: explorer.kMax,
      k: explorer.k,
      startFor: (k) => initFromIndices(data, starts[String(k)][seed % starts[String(k)].length],
        covarianceType),
      opts: {
        regCovar: rules.reg_covar, tol: rules.tol, maxIter: rules.max_iter,
        collapseTol: rules.collapse_tol, nkEps: rules.nk_eps, covarianceType,
      },
    });
  };
  explorer.updateCriteria();
  return panel;
}

/** anywidget's entry: mount the explorer in `el`, steps driven by the model's Python side. */
function render({ model, el }) {
  const channel = makeChannel(model);
  const WidgetExplorer = widgetExplorerClass(channel, model.get("driver_names") ?? {});
  const root = document.createElement("div");
  el.append(root);
  const catalogue = structuredClone(model.get("catalogue"));
  const [name, ds] = Object.entries(catalogue.datasets)[0];
  const params = new URLSearchParams({ dataset: name, k: ds.k, seed: ds.seed });
  const explorer = new WidgetExplorer(root, catalogue, { params });
  explorer.criteriaPanel = mountModelChoice(explorer, root);
  root.dataset.ready = "true";
  // For the browser tests (as the book's page sets window.emExplorer).
  globalThis.emExplorers = [...(globalThis.emExplorers ?? []), explorer];
  return () => {
    explorer.pause();
    channel.close();
  };
}

export default { render };
