// widget-entry.mjs: the explorer as an anywidget front end (gmmlib.explore), its EM steps
// computed in Python by the student's functions.
//
// anywidget calls render({ model, el }). The model holds `catalogue` (data.json's format, built
// by gmmlib.explore.catalogue for the student's X) and `driver_names`. Each E- or M-step is a
// request to Python, a custom message {type: "step", id, kind, X, ...} (X: the points shown,
// which the reader may have edited by hand); Python answers {type: "step", id, kind, ok, ...}
// with the responsibilities and gmmlib's ln p(X), or the new parameters, or an error in words
// (gmmlib/explore.py, StepDriver). The answer then goes through em-core's EMRun loop
// (DrivenRun below), so the stopping and collapse rules are the book's. The explorer itself is
// explorer.mjs's mount(), given a driver whose runs are DrivenRuns.
//
// Built into gmmlib/_explorer/explorer.bundle.mjs by scripts/bundle_explorer.py (anywidget loads
// one ES module from a blob: relative imports do not resolve there).
import { asCovarianceType } from "./em-core.mjs";
import { EMRun } from "./em-run.mjs";
import { mount } from "./explorer.mjs";

/**
 * An EMRun whose step maths come from Python: step() asks for the next step's answer, supply()s
 * it, then runs EMRun's step on it (returns a Promise). A failed answer rejects with Python's
 * words (the explorer shows them on the status line and the run stays where it was).
 */
export class DrivenRun extends EMRun {
  constructor(data, start, opts, request) {
    super(data, start, opts);
    this.request = request;
    this.answer = null;
  }

  async step() {
    const kind = this.nextKind;
    if (kind === null) return super.step();
    const p = this.params;
    const content = kind === "E"
      ? { kind, weights: Array.from(p.weights), means: Array.from(p.means), covs: Array.from(p.covs) }
      : { kind, k: this.k, resp: Array.from(this.resp) };
    const answer = await this.request({ ...content, X: Array.from(this.data.x) });
    if (!answer.ok) throw new Error(answer.error);
    this.supply(answer);
    return super.step();
  }

  supply(answer) {
    this.answer = answer;
  }

  computeE() {
    const { resp, logLikelihood } = this.take("E");
    return { resp: Float64Array.from(resp), logLikelihood: logLikelihood ?? NaN };
  }

  /** The student's m_step returns full covariances: another type takes their form, as gmmlib's. */
  computeM() {
    const { weights, means, covs } = this.take("M");
    const w = Float64Array.from(weights);
    return {
      k: this.k,
      weights: w,
      means: Float64Array.from(means),
      covs: asCovarianceType(Float64Array.from(covs), this.k, w, this.covarianceType),
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

/** anywidget's entry: mount the explorer in `el`, steps driven by the model's Python side. */
async function render({ model, el }) {
  const channel = makeChannel(model);
  const names = model.get("driver_names") ?? {};
  const catalogue = structuredClone(model.get("catalogue"));
  const [name, ds] = Object.entries(catalogue.datasets)[0];
  const root = document.createElement("div");
  el.append(root);
  const explorer = await mount(root, {
    data: catalogue,
    params: new URLSearchParams({ dataset: name, k: ds.k, seed: ds.seed }),
    writeUrl: false,
    stylesheet: false, // anywidget adds the widget's _css (gmmlib/_explorer/explorer.css)
    // The student's m_step has no reg_covar: the switch would change only the collapse rule.
    hide: ["reg"],
    hint: `Steps are computed by ${names.e ?? "an e_step"} and ${names.m ?? "an m_step"} in ` +
      "Python.",
    driver: {
      createRun: (data, start, opts) => new DrivenRun(data, start, opts, channel.request),
    },
  });
  // For the browser tests (as the book's page sets window.emExplorer): one per widget.
  globalThis.emExplorers = [...(globalThis.emExplorers ?? []), explorer];
  return () => {
    explorer.pause();
    channel.close();
  };
}

export default { render };
