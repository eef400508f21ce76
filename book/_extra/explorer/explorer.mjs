// explorer.mjs: the EM explorer's entry point, and the controller that wires the session (state,
// EM run, history, address: session.mjs) to the views (scatter.mjs, marks.mjs, trace.mjs,
// controls.mjs) and the interaction (interaction.mjs).
//
//   const explorer = await mount(element, options);
//
// builds the explorer inside `element` and resolves to it. Options (all optional):
//   data      data.json's contents (palette, neutral grey, gmmlib's rule constants, data sets);
//             without it, fetched from dataUrl (default: data.json next to this module)
//   params    the state to open in, as an address query (URLSearchParams or string; url.mjs
//             has the format: dataset, k, seed, reg, cov, means, points, step, go)
//   driver    { createRun(data, start, opts) } whose runs have em-core's EMRun interface
//             (step(), nextKind, iteration, params, stopReason, collapse, ...): replaces
//             em-core's E- and M-steps, e.g. by the student's Python functions; a step() may
//             return a Promise. Default: em-core's EMRun.
//   covTypes  the covariance types an address may ask for (default: em-core's COVARIANCE_TYPES;
//             the run gets opts.covarianceType, the criteria panel offers the choice)
//   writeUrl  write the state back to the page's address as the reader works (replaceState)
//   onState   called with the state's query string after every change the reader makes
//   stylesheet  false to skip adding explorer.css (a front end that styles it itself)
//   hint      words put before the hint above the plot (e.g. whose steps these are)
//   hide      names of controls to leave out (their field is hidden): "reg", "dataset", "own",
//             "seed", "nextSeed", "k", "time" (the timeline), "add" (data by hand), ...
// The explorer is also exposed as `window.emExplorer` (tests and the benchmark read its state).

import { buildControls, renderAlert, renderControls } from "./controls.mjs";
import { el, svg } from "./dom.mjs";
import { clampToPlot, plotSize, toData, toScreen, visibleBox } from "./geometry.mjs";
import { listenToControls } from "./actions.mjs";
import { attachHandle, attachPlot } from "./interaction.mjs";
import { MarksLayer } from "./marks.mjs";
import { PointsLayer, drawAxes } from "./scatter.mjs";
import { Session } from "./session.mjs";
import { TRACE_H, drawTrace } from "./trace.mjs";
import { captionText } from "./words.mjs";
import { explorerState, loadDataset } from "./inspect.mjs";
import { COVARIANCE_TYPES } from "./em-core.mjs";
import { mountCriteriaPanel } from "./criteria-panel.mjs";

const RUN_DELAY_MS = 90; // between animated steps
const URL_EVERY_MS = 250; // at most this often to the address bar (browsers throttle it)
const CRITERIA_AFTER_MS = 200; // the criteria table waits for the data to stop changing
const CRITERIA_MAX_N = 5000; // beyond this, fitting every K live would stall the page
let counter = 0;

const after = (value, f) => (value && typeof value.then === "function" ? value.then(f) : f(value));

export class Explorer {
  constructor(root, session, opts = {}) {
    this.root = root;
    this.session = session;
    this.opts = opts;
    this.uid = `emx${++counter}`;
    this.stats = { frames: 0, frameMs: [] }; // drag frames: work time per frame (ms)
    this.running = false;
    this.runTimer = null;
    this.urlTimer = null;
    this.urlWritten = 0;
    this.build();
    this.layout();
    new ResizeObserver(() => this.layout()).observe(this.plotWrap);
  }

  build() {
    const { c, rows } = buildControls(this.uid, this.session);
    this.controls = c;
    this.status = el("p", { class: "gx-status", role: "status", "aria-live": "polite" });
    this.alert = el("div", { class: "gx-alert", role: "alert", hidden: "" });
    this.canvas = el("canvas", { class: "gx-canvas", "aria-hidden": "true" });
    this.svg = svg("svg", { class: "gx-svg", role: "group", "aria-label": "Mixture components" });
    this.svg.append(svg("desc", {
      text: "Ellipses at 1 and 2 standard deviations around each mean. Each mean is a handle: " +
        "drag it, or focus it with Tab and move it with the arrow keys; the fit restarts from " +
        "there. Click empty space to add a point; Shift-click or long-press a point to remove " +
        "it; drag a point to move it.",
    }));
    const layers = { axes: svg("g", { class: "gx-axes" }), ellipses: svg("g"),
      highlight: svg("g"), means: svg("g") };
    this.svg.append(layers.axes, layers.ellipses, layers.highlight, layers.means);
    this.axes = layers.axes;
    this.plotWrap = el("div", { class: "gx-plot" }, this.canvas, this.svg);
    this.caption = el("p", { class: "gx-caption", id: `${this.uid}-cap` });
    this.svg.setAttribute("aria-describedby", this.caption.id);
    const hint = el("p", {
      class: "gx-hint",
      text: (this.opts.hint ? `${this.opts.hint} ` : "") + "Drag a mean (a dot with a cross) to move it, or Tab to it and use the arrow keys: " +
        "EM restarts from where you leave it. Click the plot to add a point, Shift-click or " +
        "long-press one to remove it, drag one to move it: the fit follows.",
    });
    const key = el("ul", { class: "gx-key", "aria-label": "Colour key: one colour per component" });
    this.points = new PointsLayer(this.canvas, this.session.neutral);
    this.marks = new MarksLayer(layers, key, this.session.palette,
      (handle, j) => attachHandle(this, handle, j));
    this.trace = svg("svg", { class: "gx-trace", role: "img", height: TRACE_H });
    this.traceText = el("p", { class: "gx-trace-text", "aria-live": "off" });
    const traceBox = el("figure", { class: "gx-trace-box" },
      el("figcaption", { text: "Log-likelihood ln p(X) (total over points) after each iteration" }),
      this.trace, this.traceText);
    this.root.classList.add("gx");
    // The accent (next step, the trace) and the warning colour (ln p = +infinity): gmmlib's.
    const hex = (name) => this.session.palette.find(([n]) => n === name)?.[1];
    this.root.style.setProperty("--gx-accent", hex("blue") ?? this.session.palette[0][1]);
    this.root.style.setProperty("--gx-warn", hex("vermillion") ?? this.session.palette[1][1]);
    const criteriaBox = el("div", { class: "gx-criteria-wrap" });
    this.root.replaceChildren(rows.settings, rows.steps, rows.timeline, this.status, this.alert,
      hint, this.plotWrap, key, this.caption, rows.data, traceBox, criteriaBox);
    this.criteria = mountCriteriaPanel(criteriaBox, {
      covarianceType: this.session.covType, onChange: (type) => this.changeCovType(type),
    });
    this.criteriaBox = criteriaBox;
    this.criteriaKey = null;
    this.criteriaTimer = null;
    attachPlot(this);
    listenToControls(this, c);
    // A front end may leave controls out (e.g. a notebook whose M-step takes no reg_covar).
    for (const name of this.opts.hide ?? []) {
      const field = c[name]?.closest(".gx-field, .gx-check, .gx-timeline, .gx-data") ?? c[name];
      if (field) field.hidden = true;
    }
  }

  // ------------------------------------------------------------------- actions and drawing

  /** Drag or arrow keys: component j's mean to (x, y) in data units (held inside the plot). */
  moveMean(j, x, y, { focus = false } = {}) {
    this.pause();
    this.session.notice = null;
    after(this.session.moveMean(j, ...this.clamp(x, y)), () => {
      this.render({ user: true });
      if (focus) this.marks.marks[j]?.handle.focus({ preventScroll: true });
    });
  }

  /** A change of the data by hand (`fn(session)`), then a redraw. */
  editWith(fn) {
    this.pause();
    this.session.notice = null;
    after(fn(this.session), () => this.render({ user: true }));
  }

  /** One-off words on the status line. */
  say(text) {
    this.session.notice = text;
    this.renderControls();
  }

  clamp(x, y) {
    return clampToPlot(this.size, x, y);
  }

  layout() {
    this.size = plotSize(this.session.viewBox(), this.plotWrap.clientWidth);
    this.traceWidth = Math.max(200, this.trace.clientWidth || this.size.w);
    this.points.resize(this.size);
    this.svg.setAttribute("viewBox", `0 0 ${this.size.w} ${this.size.h}`);
    this.svg.style.height = `${this.size.h}px`;
    this.plotWrap.style.height = `${this.size.h}px`;
    drawAxes(this.axes, this.size, this.session.dataset?.axes);
    this.render();
  }

  render({ user = false } = {}) {
    const s = this.session;
    const e = s.entry;
    const data = s.data;
    this.points.draw(this.size, data ? data.x : [], data ? data.n : 0, e.colours);
    this.marks.draw(this.size, e, data ? data.x : []);
    drawTrace(this.trace, this.traceText, this.traceWidth, e.trace, s.history.at(-1).trace);
    this.caption.textContent = e.params
      ? captionText({ title: s.title, n: data.n, k: s.k, seed: s.seed, entry: e })
      : `${s.title}: ${s.points.length} points, K = ${s.k}, seed ${s.seed}. Click to add points.`;
    this.renderControls();
    this.scheduleCriteria();
    if (user) this.stateChanged();
  }

  /**
   * The table of ln p, BIC and AIC against K follows the data, the seed, K, reg_covar and the
   * covariance type, once they have stopped changing (never during a drag's frames).
   */
  scheduleCriteria() {
    const s = this.session;
    const key = [s.datasetName, s.dropped, s.added, s.seed, s.k, s.covType, s.regCovar,
      s.data?.n].join("|");
    if (key === this.criteriaKey) return;
    this.criteriaKey = key;
    clearTimeout(this.criteriaTimer);
    this.criteria.select.value = s.covType;
    const big = !s.data || s.data.n > CRITERIA_MAX_N || s.data.n < 3;
    this.criteria.table.hidden = big;
    if (big) return;
    this.criteriaTimer = setTimeout(() => {
      this.criteriaTimer = null;
      this.criteria.update({
        data: s.data, startFor: (k) => s.seedStart(k), opts: s.runOptions(),
        kMax: Math.min(s.kMax, s.data.n - 1), k: s.k,
      });
      this.root.dataset.criteria = key;
    }, CRITERIA_AFTER_MS);
  }

  renderControls() {
    renderControls(this.controls, this.root, this.status, this.session, this.running);
    renderAlert(this.alert, this.session, () => {
      this.session.continueAfterCollapse();
      this.render({ user: true });
    });
  }

  /** The reader changed something: the address follows (throttled), and onState hears it. */
  stateChanged() {
    const write = () => {
      this.urlTimer = null;
      this.urlWritten = performance.now();
      const query = this.session.query();
      if (this.opts.writeUrl) window.history.replaceState(null, "", `?${query}`);
      this.opts.onState?.(query);
    };
    if (this.urlTimer !== null) return;
    const wait = URL_EVERY_MS - (performance.now() - this.urlWritten);
    if (wait <= 0) write();
    else this.urlTimer = setTimeout(write, wait);
  }

  runAnimated() {
    if (this.session.entry.nextKind === null) return;
    this.running = true;
    const tick = () => {
      if (!this.running) return;
      after(this.session.stepForward(), (e) => {
        this.render({ user: true });
        // null: EM stopped, or a driver's step failed or was dropped (no retrying in a loop).
        if (e === null || this.session.entry.nextKind === null) this.pause();
        else if (this.running) this.runTimer = setTimeout(tick, RUN_DELAY_MS);
      });
    };
    tick();
    this.renderControls();
  }

  pause() {
    const was = this.running;
    this.running = false;
    clearTimeout(this.runTimer);
    this.runTimer = null;
    if (was) this.renderControls();
  }

  // ---------------------------------------------------- for tests and the benchmark (and old names)

  get run() {
    return this.session.run;
  }

  get data() {
    return this.session.data;
  }

  get rules() {
    return this.session.rules;
  }

  toData(px, py) {
    return toData(this.size, px, py);
  }

  toScreen(x, y) {
    return toScreen(this.size, x, y);
  }

  visibleBox() {
    return visibleBox(this.size);
  }

  /** The E- or M-step, if it is next (as the buttons do). */
  doStep(kind) {
    return after(this.session.doStep(kind), (e) => {
      this.render({ user: true });
      return e;
    });
  }

  /** Load any 2-D points as a data set (the benchmark): see inspect.mjs. */
  loadDataset(name, points, options) {
    loadDataset(this, name, points, options);
  }

  /** The state shown, as plain data (tests and the benchmark read it): see inspect.mjs. */
  state() {
    return explorerState(this);
  }
}

function ensureStylesheet() {
  const href = new URL("explorer.css", import.meta.url).href;
  if ([...document.querySelectorAll("link[rel=stylesheet]")].some((l) => l.href === href)) return;
  document.head.append(el("link", { rel: "stylesheet", href }));
}

/** Build the explorer in `element` (see the top of this file); resolves to the Explorer. */
export async function mount(element, options = {}) {
  if (options.stylesheet !== false) ensureStylesheet();
  let catalogue = options.data;
  if (!catalogue) {
    const url = options.dataUrl ?? new URL("data.json", import.meta.url).href;
    const response = await fetch(url);
    if (!response.ok) throw new Error(`could not load ${url}: ${response.status}`);
    catalogue = await response.json();
  }
  const session = Session.fromQuery(catalogue, options.params ?? "", {
    driver: options.driver ?? null, covTypes: options.covTypes ?? COVARIANCE_TYPES,
  });
  await session.ready;
  const explorer = new Explorer(element, session, options);
  window.emExplorer = explorer;
  element.dataset.ready = "true";
  return explorer;
}

/** The first version's name for mount. */
export const mountExplorer = mount;
