// explorer.mjs: the interactive EM explorer (UI only; the maths is in em-core.mjs).
//
// mountExplorer(root, options) builds the explorer inside `root`:
//   - a canvas of points soft-coloured by their responsibilities, and an SVG layer with each
//     component's 1-sigma and 2-sigma ellipses and a draggable, focusable mean handle;
//   - E-step / M-step / Run / Reset buttons (the step that comes next is the enabled one and the
//     status line says it), a K slider, a data-set select, a seed, a reg_covar toggle;
//   - a colour key, axes with the data set's labels, a live log-likelihood trace with values,
//     and a plain-words message when a component collapses (or is empty), kept current.
// The component colours come from data.json, written from gmmlib.plotting.PALETTE: component k
// has the same colour here as in every figure of the book. Components are numbered from 0. The
// rules' constants (tol, max_iter, the reg_covar the toggle switches on, collapse_tol, the N_k
// guard) and each data set's subspace come from gmmlib through data.json too.
// Options: { dataUrl, params: URLSearchParams (dataset, k, seed, reg) }.
// The instance is also exposed as `window.emExplorer` (tests and the benchmark read its state).

import {
  EMRun,
  SingularCovarianceError,
  axisTicks,
  collapseReport,
  collapsedComponents,
  ellipseAxes,
  explainCollapse,
  formatNumber,
  initFromIndices,
  initFromMeans,
  logLikelihood,
  makeData,
} from "./em-core.mjs";

const UNASSIGNED = "#9a9a9a";
const RUN_DELAY_MS = 90; // between animated steps
const SVG_NS = "http://www.w3.org/2000/svg";

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

const num = formatNumber; // one number format everywhere (em-core.mjs)
/** Room around the scatter for the axes' values and labels (px). */
const MARGIN = { l: 52, r: 10, t: 10, b: 44 };
/** Room around the trace for its values (px). */
const TRACE_PAD = { l: 70, r: 12, t: 10, b: 30 };
const TRACE_H = 140;

function ensureStylesheet() {
  const href = new URL("explorer.css", import.meta.url).href;
  if ([...document.querySelectorAll("link[rel=stylesheet]")].some((l) => l.href === href)) return;
  document.head.append(el("link", { rel: "stylesheet", href }));
}

let counter = 0;

export class Explorer {
  constructor(root, catalogue, opts = {}) {
    this.root = root;
    this.catalogue = catalogue; // data.json: { k_max, n_seeds, datasets: {name: {...}} }
    this.kMax = catalogue.k_max;
    // gmmlib's rule constants: GaussianMixture's default tol, max_iter, reg_covar, collapse_tol,
    // and gmmlib.em.NK_EPS (scripts/make_explorer_fixtures.py writes them; none is typed here).
    this.rules = catalogue.gmmlib;
    // [name, hex] per component, from gmmlib.plotting via data.json (no copy kept here).
    this.palette = catalogue.palette.map(({ name, hex }) => [name, hex]);
    this.rgb = this.palette.map(([, hex]) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)));
    this.notice = null; // one-off words for the status line (a restart, a kept setting)
    this.nSeeds = catalogue.n_seeds;
    this.uid = `emx${++counter}`;
    this.stats = { frames: 0, frameMs: [] }; // drag frames: work time per frame (ms)
    this.running = false;
    this.runTimer = null;
    this.pending = null; // latest pointer position during a drag, handled once per frame
    this.build();
    const p = opts.params ?? new URLSearchParams();
    const name = catalogue.datasets[p.get("dataset")] ? p.get("dataset") : "tilted";
    const ds = catalogue.datasets[name];
    const k = clampInt(p.get("k"), 1, this.kMax, ds.k);
    const seed = clampInt(p.get("seed"), 0, this.nSeeds - 1, ds.seed);
    const reg = Number.parseFloat(p.get("reg") ?? "0");
    this.regValue = Number.isFinite(reg) && reg > 0 ? reg : this.rules.reg_covar;
    this.controls.reg.checked = Number.isFinite(reg) && reg > 0;
    this.selectDataset(name, { k, seed });
    new ResizeObserver(() => this.layout()).observe(this.plotWrap);
  }

  // ------------------------------------------------------------------------------------------
  // DOM
  // ------------------------------------------------------------------------------------------

  build() {
    const id = (s) => `${this.uid}-${s}`;
    const c = {};
    c.dataset = el("select", { id: id("dataset") });
    for (const [name, ds] of Object.entries(this.catalogue.datasets)) {
      c.dataset.append(el("option", { value: name, text: ds.title }));
    }
    c.k = el("input", { id: id("k"), type: "range", min: 1, max: this.kMax, step: 1, value: 3 });
    c.kOut = el("output", { for: id("k"), class: "gx-out" });
    c.seed = el("input", {
      id: id("seed"), type: "number", min: 0, max: this.nSeeds - 1, step: 1, value: 0,
      inputmode: "numeric",
    });
    c.nextSeed = el("button", { type: "button", class: "gx-small", text: "Next seed" });
    c.reg = el("input", { id: id("reg"), type: "checkbox" });
    c.regLabel = el("label", { for: id("reg") });
    c.e = el("button", { type: "button", class: "gx-step", "data-kind": "E", text: "E-step" });
    c.m = el("button", { type: "button", class: "gx-step", "data-kind": "M", text: "M-step" });
    c.run = el("button", { type: "button", class: "gx-run", text: "Run" });
    c.reset = el("button", { type: "button", text: "Reset" });
    this.controls = c;

    this.status = el("p", { class: "gx-status", role: "status", "aria-live": "polite" });
    this.canvas = el("canvas", { class: "gx-canvas", "aria-hidden": "true" });
    this.svg = svg("svg", { class: "gx-svg", role: "group", "aria-label": "Mixture components" });
    this.svg.append(svg("desc", {}));
    this.svg.firstChild.textContent =
      "Ellipses at 1 and 2 standard deviations around each mean. Each mean is a handle: drag it, " +
      "or focus it with Tab and move it with the arrow keys; the fit restarts from there.";
    this.layers = { axes: svg("g", { class: "gx-axes" }), ellipses: svg("g"), highlight: svg("g"),
      means: svg("g") };
    this.svg.append(this.layers.axes, this.layers.ellipses, this.layers.highlight, this.layers.means);
    this.plotWrap = el("div", { class: "gx-plot" }, this.canvas, this.svg);
    this.plotCaption = el("p", { class: "gx-caption", id: id("cap") });
    this.hint = el("p", {
      class: "gx-hint",
      text: "Drag a mean (a dot with a cross) to move it, or Tab to it and use the arrow keys: " +
        "EM restarts from where you leave it.",
    });
    this.key = el("ul", { class: "gx-key", "aria-label": "Colour key: one colour per component" });
    this.svg.setAttribute("aria-describedby", id("cap"));

    this.trace = svg("svg", { class: "gx-trace", role: "img", height: TRACE_H });
    this.traceText = el("p", { class: "gx-trace-text", "aria-live": "off" });
    this.alert = el("div", { class: "gx-alert", role: "alert", hidden: "" });

    const field = (label, input, ...extra) =>
      el("div", { class: "gx-field" }, el("label", { for: input.id, text: label }), input, ...extra);
    const controls = el(
      "div",
      { class: "gx-controls", role: "group", "aria-label": "Explorer controls" },
      field("Data set", c.dataset),
      field("Components K", c.k, c.kOut),
      field("Seed", c.seed, c.nextSeed),
      el("div", { class: "gx-field gx-check" }, c.reg, c.regLabel),
    );
    const steps = el(
      "div",
      { class: "gx-buttons", role: "group", "aria-label": "EM steps" },
      c.e, c.m, c.run, c.reset,
    );
    const traceBox = el(
      "figure",
      { class: "gx-trace-box" },
      el("figcaption", { text: "Log-likelihood ln p(X) (total over points) after each iteration" }),
      this.trace,
      this.traceText,
    );
    this.root.classList.add("gx");
    this.root.replaceChildren(
      controls, steps, this.status, this.alert, this.hint, this.plotWrap, this.key,
      this.plotCaption, traceBox,
    );

    c.dataset.addEventListener("change", () => {
      // Keep the reader's K and seed (every data set offers K 1..k_max and the same seeds).
      const { k, seed } = this;
      this.selectDataset(c.dataset.value, { k, seed });
      this.notice = `Switched to ${this.dataset.title}: kept K = ${this.k} and seed ${this.seed}.`;
      this.renderControls();
    });
    c.k.addEventListener("input", () => {
      const lost = this.hasProgress();
      this.restartFromSeed();
      if (lost) this.notice = `K changed to ${this.k}: EM restarted from iteration 0.`;
      this.renderControls();
    });
    c.seed.addEventListener("change", () => this.restartFromSeed());
    c.nextSeed.addEventListener("click", () => {
      c.seed.value = (this.seed + 1) % this.nSeeds;
      this.restartFromSeed();
    });
    c.reg.addEventListener("change", () => {
      const lost = this.hasProgress();
      this.restart(this.start);
      if (lost) {
        this.notice = `reg_covar switched ${c.reg.checked ? "on" : "off"}: EM restarted from ` +
          "iteration 0, same start.";
      }
      this.renderControls();
    });
    c.e.addEventListener("click", () => this.doStep("E"));
    c.m.addEventListener("click", () => this.doStep("M"));
    c.run.addEventListener("click", () => (this.running ? this.pause() : this.runAnimated()));
    c.reset.addEventListener("click", () => this.restartFromSeed());
  }

  // ------------------------------------------------------------------------------------------
  // state changes
  // ------------------------------------------------------------------------------------------

  /** True once a step was taken (a restart would throw work away, so it is announced). */
  hasProgress() {
    return Boolean(this.run) && (this.run.iteration > 0 || this.run.nextKind !== "E");
  }

  get regCovar() {
    return this.controls.reg.checked ? this.regValue : 0;
  }

  selectDataset(name, { k, seed } = {}) {
    const ds = this.catalogue.datasets[name];
    this.datasetName = name;
    this.dataset = ds;
    this.data = makeData(ds.X, { subspace: ds.subspace ?? null });
    this.controls.dataset.value = name;
    this.controls.k.value = k ?? ds.k;
    this.controls.seed.value = seed ?? ds.seed;
    this.fitView();
    this.restartFromSeed();
  }

  /** Load any 2-D points (the benchmark uses this): starts given as { K: [[indices], ...] }. */
  loadDataset(name, points, { title = name, k = 3, seed = 0, starts } = {}) {
    this.catalogue.datasets[name] = { title, X: points, k, seed, starts };
    if (![...this.controls.dataset.options].some((o) => o.value === name)) {
      this.controls.dataset.append(el("option", { value: name, text: title }));
    }
    this.selectDataset(name, { k, seed });
  }

  /** Start from the seed's starting means (the data points gmmlib's collapse_init picks). */
  restartFromSeed() {
    const c = this.controls;
    this.k = clampInt(c.k.value, 1, this.kMax, this.dataset.k);
    this.seed = clampInt(c.seed.value, 0, this.nSeeds - 1, 0);
    c.k.value = this.k;
    c.seed.value = this.seed;
    const starts = this.dataset.starts?.[String(this.k)];
    const indices = starts ? starts[this.seed % starts.length] : seededIndices(this.data.n, this.k, this.seed);
    this.restart(initFromIndices(this.data, indices));
  }

  /** Restart EM from `start` (equal weights, data covariance): iteration 0, next step E. */
  restart(start, { draw = true } = {}) {
    this.pause();
    this.start = start;
    const { tol, max_iter: maxIter, collapse_tol: collapseTol, nk_eps: nkEps } = this.rules;
    this.run = new EMRun(this.data, start, {
      regCovar: this.regCovar, tol, maxIter, collapseTol, nkEps,
    });
    this.resp = null;
    this.colours = null;
    this.collapsedNow = []; // reports for the components collapsed (or empty) at the latest M-step
    this.collapseSince = new Map(); // component -> first iteration it was seen collapsed
    this.notice = null;
    this.llTrace = [safeLogLikelihood(this.data, start)];
    this.lastStep = null;
    this.layoutMarks();
    if (draw) this.render();
  }

  /** Drag / arrow-key move: the fit restarts from the new means, and one E-step recolours. */
  moveMean(j, x, y) {
    const means = this.run.params.means.slice();
    [means[2 * j], means[2 * j + 1]] = this.clampToPlot(x, y);
    this.restart(initFromMeans(this.data, means), { draw: false });
    this.doStep("E");
  }

  doStep(kind) {
    if (this.run.nextKind !== kind) return null;
    this.notice = null;
    const step = this.run.step();
    if (step) this.applyStep(step);
    this.render();
    return step;
  }

  applyStep(step) {
    this.lastStep = step;
    if (step.kind === "E") {
      this.resp = step.resp;
      this.colours = softColours(step.resp, this.data.n, this.run.k, this.rgb);
      this.llTrace[step.iteration - 1] = step.logLikelihood;
    } else {
      this.llTrace[step.iteration] = safeLogLikelihood(this.data, step.params);
      this.updateCollapsed(step);
    }
  }

  /** After an M-step: which components are collapsed (or empty) now, by em-core's rule. */
  updateCollapsed(step) {
    const run = this.run;
    const { components, lam } = collapsedComponents(
      step.params, run.regCovar, run.threshold, this.data.subspace,
    );
    for (const j of [...this.collapseSince.keys()]) {
      if (!components.includes(j)) this.collapseSince.delete(j);
    }
    this.collapsedNow = components.map((j) => {
      if (!this.collapseSince.has(j)) this.collapseSince.set(j, step.iteration);
      return collapseReport(
        this.data, step.params, step.resp, j, this.collapseSince.get(j), lam, run.regCovar,
        run.threshold,
      );
    });
  }

  runAnimated() {
    if (this.run.done) return;
    this.running = true;
    const tick = () => {
      const kind = this.run.nextKind;
      if (!this.running || kind === null) {
        this.pause();
        return;
      }
      this.doStep(kind);
      if (this.run.done) this.pause();
      else this.runTimer = setTimeout(tick, RUN_DELAY_MS);
    };
    tick();
    this.renderControls();
  }

  pause() {
    this.running = false;
    clearTimeout(this.runTimer);
    this.runTimer = null;
    if (this.run) this.renderControls();
  }

  continueAfterCollapse() {
    this.run.onCollapse = "continue";
    if (this.run.stopReason === "collapse") {
      // Go on from the collapsed parameters while every Cholesky factorisation succeeds.
      this.run.nextKind = "E";
      this.run.stopReason = null;
    }
    this.render();
  }

  // ------------------------------------------------------------------------------------------
  // geometry
  // ------------------------------------------------------------------------------------------

  fitView() {
    const { x, n } = this.data;
    let x0 = Infinity;
    let x1 = -Infinity;
    let y0 = Infinity;
    let y1 = -Infinity;
    for (let i = 0; i < n; i++) {
      x0 = Math.min(x0, x[2 * i]);
      x1 = Math.max(x1, x[2 * i]);
      y0 = Math.min(y0, x[2 * i + 1]);
      y1 = Math.max(y1, x[2 * i + 1]);
    }
    const pad = 0.12 * Math.max(x1 - x0, y1 - y0, 1e-9);
    this.view = { x0: x0 - pad, x1: x1 + pad, y0: y0 - pad, y1: y1 + pad };
    this.layout();
  }

  layout() {
    const v = this.view;
    if (!v) return;
    const w = Math.max(200, this.plotWrap.clientWidth || 600);
    this.traceWidth = Math.max(200, this.trace.clientWidth || w);
    const aspect = (v.y1 - v.y0) / (v.x1 - v.x0);
    // The height follows the width only (never the window's height: inside an iframe that is
    // sized to this page, a window-dependent height would feed back on itself).
    const iw = w - MARGIN.l - MARGIN.r;
    const ih = Math.round(Math.min(Math.max(iw * Math.min(aspect, 1.1), 200), 540));
    const h = ih + MARGIN.t + MARGIN.b;
    const s = Math.min(iw / (v.x1 - v.x0), ih / (v.y1 - v.y0));
    this.size = {
      w, h, s,
      ox: MARGIN.l + (iw - s * (v.x1 - v.x0)) / 2,
      oy: MARGIN.t + (ih - s * (v.y1 - v.y0)) / 2,
    };
    const dpr = window.devicePixelRatio || 1;
    this.canvas.width = Math.round(w * dpr);
    this.canvas.height = Math.round(h * dpr);
    this.canvas.style.height = `${h}px`;
    this.svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    this.svg.style.height = `${h}px`;
    this.plotWrap.style.height = `${h}px`;
    this.drawAxes();
    if (this.run) this.render();
  }

  /** The part of the data plane inside the plot's axes: [x0, x1, y0, y1] in data units. */
  visibleBox() {
    const { w, h } = this.size;
    const [x0, y1] = this.toData(MARGIN.l, MARGIN.t);
    const [x1, y0] = this.toData(w - MARGIN.r, h - MARGIN.b);
    return [x0, x1, y0, y1];
  }

  /** A mean cannot leave the plot: it is held at the edge of the axes' box. */
  clampToPlot(x, y) {
    const [x0, x1, y0, y1] = this.visibleBox();
    const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, Number.isFinite(v) ? v : (lo + hi) / 2));
    return [clamp(x, x0, x1), clamp(y, y0, y1)];
  }

  /** Axes on the scatter: a box, ticks with values, and the data set's axis labels. */
  drawAxes() {
    const { w, h } = this.size;
    const [x0, x1, y0, y1] = this.visibleBox();
    const g = this.layers.axes;
    g.replaceChildren();
    const left = MARGIN.l;
    const right = w - MARGIN.r;
    const top = MARGIN.t;
    const bottom = h - MARGIN.b;
    g.append(svg("rect", {
      class: "gx-frame", x: left, y: top, width: right - left, height: bottom - top,
    }));
    const xTicks = axisTicks(x0, x1, Math.max(3, Math.floor((right - left) / 70)));
    xTicks.values.forEach((v, i) => {
      const [px] = this.toScreen(v, 0);
      g.append(svg("line", { class: "gx-tick", x1: px, x2: px, y1: bottom, y2: bottom + 5 }));
      const t = svg("text", {
        class: "gx-tick-label", x: px, y: bottom + 18, "text-anchor": "middle", "data-axis": "x",
      });
      t.textContent = xTicks.labels[i];
      g.append(t);
    });
    const yTicks = axisTicks(y0, y1, Math.max(3, Math.floor((bottom - top) / 60)));
    yTicks.values.forEach((v, i) => {
      const [, py] = this.toScreen(0, v);
      g.append(svg("line", { class: "gx-tick", x1: left - 5, x2: left, y1: py, y2: py }));
      const t = svg("text", {
        class: "gx-tick-label", x: left - 8, y: py + 4, "text-anchor": "end", "data-axis": "y",
      });
      t.textContent = yTicks.labels[i];
      g.append(t);
    });
    const [xName, yName] = this.dataset.axes ?? ["x₁", "x₂"];
    const xl = svg("text", {
      class: "gx-axis-label", x: (left + right) / 2, y: h - 6, "text-anchor": "middle",
    });
    xl.textContent = `${xName} →`;
    const yl = svg("text", {
      class: "gx-axis-label", x: 0, y: 0, "text-anchor": "middle",
      transform: `translate(14 ${(top + bottom) / 2}) rotate(-90)`,
    });
    yl.textContent = `${yName} →`;
    g.append(xl, yl);
  }

  toScreen(x, y) {
    const { s, ox, oy } = this.size;
    return [ox + (x - this.view.x0) * s, oy + (this.view.y1 - y) * s];
  }

  toData(px, py) {
    const { s, ox, oy } = this.size;
    return [this.view.x0 + (px - ox) / s, this.view.y1 - (py - oy) / s];
  }

  // ------------------------------------------------------------------------------------------
  // drawing
  // ------------------------------------------------------------------------------------------

  /** One SVG group per component (ellipses + handle), rebuilt only when K changes. */
  layoutMarks() {
    const k = this.run.k;
    if (this.marks && this.marks.length === k) return;
    this.layers.ellipses.replaceChildren();
    this.layers.means.replaceChildren();
    this.marks = [];
    this.key.replaceChildren();
    for (let j = 0; j < k; j++) {
      const [colourName, colour] = this.palette[j % this.palette.length];
      this.key.append(
        el("li", { "data-component": j },
          el("span", { class: "gx-swatch", style: `background:${colour}`, "aria-hidden": "true" }),
          el("span", { class: "gx-key-label", text: `component ${j} (${colourName})` })),
      );
      const g = svg("g", { class: "gx-comp", "data-component": j });
      const halo1 = svg("ellipse", { class: "gx-halo" });
      const halo2 = svg("ellipse", { class: "gx-halo" });
      const e1 = svg("ellipse", { class: "gx-ell gx-ell1", stroke: colour, "data-sigma": 1 });
      const e2 = svg("ellipse", { class: "gx-ell gx-ell2", stroke: colour, "data-sigma": 2 });
      g.append(halo2, e2, halo1, e1);
      this.layers.ellipses.append(g);
      const handle = svg("g", {
        class: "gx-mean", tabindex: 0, role: "button", "data-component": j,
        "aria-roledescription": "draggable mean",
      });
      handle.append(
        svg("circle", { class: "gx-hit", r: 22 }),
        svg("circle", { class: "gx-dot", r: 9, fill: colour }),
        svg("path", { class: "gx-cross", d: "M-4 0H4M0 -4V4" }),
      );
      this.layers.means.append(handle);
      this.attachHandle(handle, j);
      this.marks.push({ g, halo1, halo2, e1, e2, handle });
    }
  }

  attachHandle(handle, j) {
    handle.addEventListener("pointerdown", (ev) => {
      ev.preventDefault();
      try {
        handle.setPointerCapture(ev.pointerId);
      } catch {
        // a synthetic pointer (no active pointer to capture): moves still reach the handle
      }
      handle.focus({ preventScroll: true });
      this.dragging = j;
      handle.classList.add("gx-dragging");
    });
    handle.addEventListener("pointermove", (ev) => {
      if (this.dragging !== j) return;
      const r = this.svg.getBoundingClientRect();
      this.queueMove(j, ev.clientX - r.left, ev.clientY - r.top);
    });
    const end = (ev) => {
      if (this.dragging !== j) return;
      const r = this.svg.getBoundingClientRect();
      this.queueMove(j, ev.clientX - r.left, ev.clientY - r.top);
      this.flushMove();
      this.dragging = null;
      handle.classList.remove("gx-dragging");
    };
    handle.addEventListener("pointerup", end);
    handle.addEventListener("pointercancel", end);
    handle.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" || ev.key === " ") {
        // The handle announces itself as a button: Enter/Space say where it is and how to move it.
        ev.preventDefault();
        const m = this.run.params.means;
        this.notice =
          `Mean of component ${j} is at x ${num(m[2 * j])}, y ${num(m[2 * j + 1])}. Move it ` +
          "with the arrow keys (Shift for bigger steps); EM restarts from where you leave it.";
        this.renderControls();
        return;
      }
      const step = ((this.view.x1 - this.view.x0) / 50) * (ev.shiftKey ? 5 : 1);
      const d = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] }[
        ev.key
      ];
      if (!d) return;
      ev.preventDefault();
      const m = this.run.params.means;
      this.moveMean(j, m[2 * j] + d[0], m[2 * j + 1] + d[1]);
      this.marks[j].handle.focus({ preventScroll: true });
    });
  }

  /** Pointer moves are coalesced: at most one re-fit + redraw per animation frame. */
  queueMove(j, px, py) {
    const first = this.pending === null;
    this.pending = { j, px, py };
    if (first) requestAnimationFrame(() => this.flushMove());
  }

  flushMove() {
    if (this.pending === null) return;
    const { j, px, py } = this.pending;
    this.pending = null;
    const t0 = performance.now();
    const [x, y] = this.toData(px, py);
    this.moveMean(j, x, y);
    this.stats.frames += 1;
    this.stats.frameMs.push(performance.now() - t0);
  }

  render() {
    this.drawPoints();
    this.drawMarks();
    this.drawTrace();
    this.renderControls();
  }

  drawPoints() {
    const ctx = this.canvas.getContext("2d");
    const dpr = this.canvas.width / this.size.w;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, this.size.w, this.size.h);
    const { x, n } = this.data;
    if (n > 1000) {
      this.drawPointsAsPixels(ctx, dpr);
      return;
    }
    const r = n > 100 ? 3 : 5;
    const { s, ox, oy } = this.size;
    const { x0, y1 } = this.view;
    // One path per distinct colour (points sure of their component share one): few fills.
    const groups = new Map();
    for (let i = 0; i < n; i++) {
      const c = this.colours ? this.colours[i] : -1;
      let g = groups.get(c);
      if (!g) groups.set(c, (g = []));
      g.push(i);
    }
    ctx.lineWidth = 0.6;
    ctx.strokeStyle = "rgba(0,0,0,0.55)";
    for (const [c, idx] of groups) {
      ctx.beginPath();
      for (const i of idx) {
        const px = ox + (x[2 * i] - x0) * s;
        const py = oy + (y1 - x[2 * i + 1]) * s;
        ctx.moveTo(px + r, py);
        ctx.arc(px, py, r, 0, 2 * Math.PI);
      }
      ctx.fillStyle = c < 0 ? UNASSIGNED : `rgb(${c >> 16},${(c >> 8) & 255},${c & 255})`;
      ctx.fill();
      if (n <= 1000) ctx.stroke();
    }
  }

  /** Many points: write small discs straight into the pixels (no path rasterisation). */
  drawPointsAsPixels(ctx, dpr) {
    const W = this.canvas.width;
    const H = this.canvas.height;
    if (!this.pixels || this.pixels.width !== W || this.pixels.height !== H) {
      this.pixels = ctx.createImageData(W, H);
      this.pixels32 = new Uint32Array(this.pixels.data.buffer);
      const R = Math.max(1.5, 2.4 * dpr);
      this.disc = []; // [dx, dy, isRim] offsets of one disc
      for (let dy = -Math.ceil(R); dy <= Math.ceil(R); dy++) {
        for (let dx = -Math.ceil(R); dx <= Math.ceil(R); dx++) {
          const d = Math.hypot(dx, dy);
          if (d <= R) this.disc.push(dx, dy, d > R - 1 ? 1 : 0);
        }
      }
    }
    const buf = this.pixels32;
    buf.fill(0);
    const { x, n } = this.data;
    const { s, ox, oy } = this.size;
    const { x0, y1 } = this.view;
    const disc = this.disc;
    const grey = 0xff9a9a9a;
    for (let i = 0; i < n; i++) {
      const cx = Math.round((ox + (x[2 * i] - x0) * s) * dpr);
      const cy = Math.round((oy + (y1 - x[2 * i + 1]) * s) * dpr);
      let fill = grey;
      if (this.colours) {
        const c = this.colours[i]; // 0xRRGGBB -> little-endian ABGR
        fill = 0xff000000 | ((c & 255) << 16) | (c & 0xff00) | (c >> 16);
      }
      // Rim: the fill colour at 55% brightness.
      const rim =
        0xff000000 |
        ((((fill >> 16) & 255) * 0.55) << 16) |
        ((((fill >> 8) & 255) * 0.55) << 8) |
        ((fill & 255) * 0.55);
      for (let q = 0; q < disc.length; q += 3) {
        const px = cx + disc[q];
        const py = cy + disc[q + 1];
        if (px >= 0 && px < W && py >= 0 && py < H) buf[py * W + px] = disc[q + 2] ? rim : fill;
      }
    }
    ctx.putImageData(this.pixels, 0, 0);
  }

  drawMarks() {
    const { params } = this.run;
    const { s } = this.size;
    for (let j = 0; j < params.k; j++) {
      const m = this.marks[j];
      const mx = params.means[2 * j];
      const my = params.means[2 * j + 1];
      const [cx, cy] = this.toScreen(mx, my);
      const a = params.covs[3 * j];
      const b = params.covs[3 * j + 1];
      const d = params.covs[3 * j + 2];
      const finite = [cx, cy, a, b, d].every(Number.isFinite);
      for (const [sig, e, halo] of [[1, m.e1, m.halo1], [2, m.e2, m.halo2]]) {
        if (!finite) {
          e.setAttribute("visibility", "hidden");
          halo.setAttribute("visibility", "hidden");
          continue;
        }
        const { rx, ry, angle } = ellipseAxes(a, b, d, sig);
        for (const node of [e, halo]) {
          node.removeAttribute("visibility");
          node.setAttribute("cx", cx.toFixed(2));
          node.setAttribute("cy", cy.toFixed(2));
          node.setAttribute("rx", Math.max(rx * s, 0.3).toFixed(2));
          node.setAttribute("ry", Math.max(ry * s, 0.3).toFixed(2));
          node.setAttribute(
            "transform",
            `rotate(${((-angle * 180) / Math.PI).toFixed(3)} ${cx.toFixed(2)} ${cy.toFixed(2)})`,
          );
        }
      }
      if (finite) m.handle.setAttribute("transform", `translate(${cx.toFixed(2)} ${cy.toFixed(2)})`);
      const name = this.palette[j % this.palette.length][0];
      m.handle.setAttribute(
        "aria-label",
        `Mean of component ${j} (${name}) at x ${num(mx)}, y ${num(my)}, weight ` +
          `${num(params.weights[j])}. Drag it or use the arrow keys; the fit restarts from there.`,
      );
      const isCollapsed = this.collapsedNow.some((r) => r.component === j);
      m.g.classList.toggle("gx-collapsed", isCollapsed);
      m.handle.classList.toggle("gx-collapsed", isCollapsed);
    }
    // Collapse highlight: the points each collapsed component holds (none for an empty one).
    this.layers.highlight.replaceChildren();
    const held = new Set();
    for (const r of this.collapsedNow) {
      if (r.empty) continue;
      for (const i of r.points.length ? r.points : [r.point]) held.add(i);
    }
    {
      for (const i of [...held].sort((a, b) => a - b)) {
        const [px, py] = this.toScreen(this.data.x[2 * i], this.data.x[2 * i + 1]);
        this.layers.highlight.append(
          svg("circle", {
            class: "gx-hot", cx: px.toFixed(2), cy: py.toFixed(2), r: 17, "data-point": i,
          }),
        );
      }
    }
    const t = this.run.iteration;
    this.plotCaption.textContent =
      `${this.dataset.title}: ${this.data.n} points, K = ${params.k}, seed ${this.seed}, ` +
      `iteration ${t}. ` +
      (this.colours
        ? "Each point's colour blends the component colours by its responsibilities. "
        : "Points are grey until the first E-step assigns responsibilities. ") +
      "Solid ellipses: 1 standard deviation; dashed: 2.";
  }

  drawTrace() {
    const w = this.traceWidth || 300; // measured in layout(): no forced reflow per frame
    const h = TRACE_H;
    const pad = TRACE_PAD;
    this.trace.setAttribute("viewBox", `0 0 ${w} ${h}`);
    const ll = this.llTrace;
    const finite = ll.filter(Number.isFinite);
    this.trace.replaceChildren();
    const last = ll.length - 1;
    const xs = (i) => pad.l + ((w - pad.l - pad.r) * i) / Math.max(last, 1);
    const label = (x, y, text, anchor, axis = "x") => {
      const t = svg("text", { class: "gx-tick-label", x, y, "text-anchor": anchor, "data-axis": axis });
      t.textContent = text;
      this.trace.append(t);
    };
    this.trace.append(svg("path", {
      class: "gx-trace-axis", d: `M${pad.l} ${pad.t} V${h - pad.b} H${w - pad.r}`,
    }));
    // x axis: the iterations, first and last (and the middle when there is room).
    const xTicks = last >= 4 ? [0, Math.round(last / 2), last] : last > 0 ? [0, last] : [0];
    for (const i of xTicks) label(xs(i), h - pad.b + 16, String(i), "middle");
    label(w - pad.r, h - 2, "iteration", "end");
    if (finite.length) {
      const lo = Math.min(...finite);
      const hi = Math.max(...finite);
      const span = hi - lo || 1;
      const ys = (v) => pad.t + (h - pad.t - pad.b) * (1 - (v - lo) / span);
      // y axis: round values of ln p(X) between the lowest and highest, one precision for all.
      const yTicks = axisTicks(lo, lo + span, 3);
      yTicks.values.forEach((v, i) => {
        const y = ys(v);
        this.trace.append(svg("line", { class: "gx-tick", x1: pad.l - 4, x2: pad.l, y1: y, y2: y }));
        label(pad.l - 6, y + 4, yTicks.labels[i], "end", "y");
      });
      const pts = ll
        .map((v, i) => (Number.isFinite(v) ? `${xs(i).toFixed(1)},${ys(v).toFixed(1)}` : null))
        .filter(Boolean);
      this.trace.append(svg("polyline", { class: "gx-trace-line", points: pts.join(" ") }));
      for (const p of pts) {
        const [cx, cy] = p.split(",");
        this.trace.append(svg("circle", { class: "gx-trace-dot", cx, cy, r: 2.5 }));
      }
    }
    if (ll[last] === Infinity) {
      // ln p(X) = +infinity (a variance reached 0): an arrow off the top of the chart.
      const ax = xs(last).toFixed(1);
      this.trace.append(
        svg("path", { class: "gx-trace-inf", d: `M${ax} ${h - pad.b} V${pad.t} m-5 6 l5 -6 l5 6` }),
      );
      label(Number(ax) - 8, pad.t + 12, "+∞", "end");
    }
    let decreased = false;
    for (let i = 1; i < ll.length; i++) {
      if (ll[i] < ll[i - 1] - 1e-9 * Math.abs(ll[i - 1])) decreased = true;
    }
    this.trace.setAttribute(
      "aria-label",
      `Log-likelihood trace over ${ll.length} values, latest ${num(ll[last], 6)}.`,
    );
    this.traceText.textContent =
      `ln p(X) = ${num(ll[last], 6)} at iteration ${last}` +
      (ll.length > 1 ? ` (started at ${num(ll[0], 6)}). ` : ". ") +
      (ll.length > 1
        ? decreased
          ? "It went down: that should never happen in EM."
          : "It has never gone down."
        : "");
    this.traceText.dataset.decreased = String(decreased);
  }

  /** "component 2", "components 2 and 5", "components 2, 5 and 7". */
  static componentList(reports) {
    const ids = reports.map((r) => String(r.component));
    if (ids.length === 1) return `component ${ids[0]}`;
    return `components ${ids.slice(0, -1).join(", ")} and ${ids[ids.length - 1]}`;
  }

  renderControls() {
    const c = this.controls;
    const run = this.run;
    const next = run.nextKind;
    c.kOut.textContent = String(this.k);
    c.regLabel.textContent = `reg_covar = ${num(this.regValue)} (added to every variance)`;
    c.e.disabled = next !== "E" || this.running;
    c.m.disabled = next !== "M" || this.running;
    c.e.classList.toggle("gx-next", next === "E");
    c.m.classList.toggle("gx-next", next === "M");
    c.e.textContent = next === "E" ? "E-step (next)" : "E-step";
    c.m.textContent = next === "M" ? "M-step (next)" : "M-step";
    c.run.textContent = this.running ? "Pause" : "Run";
    c.run.disabled = next === null && !this.running;
    c.run.setAttribute("aria-pressed", String(this.running));
    this.root.dataset.next = next ?? "none";
    this.root.dataset.iteration = String(run.iteration);

    const t = run.iteration;
    const now = this.collapsedNow;
    const broken = now.filter((r) => !r.empty);
    const empty = now.filter((r) => r.empty);
    const trouble = [
      broken.length ? `${Explorer.componentList(broken)} collapsed` : null,
      empty.length ? `${Explorer.componentList(empty)} empty` : null,
    ].filter(Boolean).join(", ");
    let text;
    if (next === "E") {
      text = `Iteration ${t}. Next: E-step — recolour each point by its responsibilities.`;
    } else if (next === "M") {
      text = `Iteration ${t}. Next: M-step — refit the weights, means and ellipses to the colours.`;
    } else if (run.stopReason === "converged") {
      text = `Converged after ${t} iterations: ln p(X) per point changed by less than ` +
        `${num(run.tol)}.`;
    } else if (run.stopReason === "max_iter") {
      text = `Stopped after ${t} iterations (the limit). Press Reset to start again.`;
    } else if (run.stopReason === "collapse") {
      text = `Stopped at iteration ${t}: ${trouble || "a component collapsed"}.`;
    } else {
      text =
        `Stopped at iteration ${t}: a covariance is no longer positive definite, so its ` +
        "density (and ln p(X)) is undefined. Press Reset, or switch reg_covar on.";
    }
    if (trouble && run.stopReason !== "collapse") text += ` Now: ${trouble} (see the message).`;
    if (this.notice) text = `${this.notice} ${text}`;
    this.status.textContent = text;

    // The alert says what holds now; it is rebuilt only when that changes (screen readers
    // announce each change).
    const stopped = run.stopReason === "collapse";
    const alertKey = JSON.stringify([now.map((r) => r.message), stopped, run.stopReason, t]);
    if (alertKey === this.alertKey) return;
    this.alertKey = alertKey;
    if (now.length) {
      const head = broken.length ? "Collapse. " : "Empty component. ";
      const parts = [el("strong", { text: head })];
      if (now.length === 1) {
        parts.push(el("span", { class: "gx-alert-item", text: `${now[0].message} ` }));
      } else {
        // Several at once: one line each, then the explanation once per kind (no repetition).
        const list = el("ul", { class: "gx-alert-list" });
        for (const r of now) list.append(el("li", { text: explainCollapse(r).what }));
        parts.push(list);
        for (const group of [broken, empty]) {
          if (!group.length) continue;
          const { why, fix } = explainCollapse(group[0]);
          parts.push(el("span", { class: "gx-alert-item", text: `${why} To fix: ${fix}.` }));
        }
      }
      if (stopped) {
        const btn = el("button", { type: "button", class: "gx-small", text: "Continue anyway" });
        btn.addEventListener("click", () => this.continueAfterCollapse());
        parts.push(el("span", { text: `EM has stopped at iteration ${t}. ` }), btn);
      } else {
        const how = this.regCovar > 0
          ? `with reg_covar = ${num(this.regCovar)} no variance can drop below it, so ln p(X) ` +
            "stays finite."
          : broken.length
            ? "without reg_covar the variance heads to 0 and ln p(X) to +∞."
            : "the empty component takes no part in the fit.";
        const where = next === null ? `EM ended at iteration ${t}` : `EM goes on (iteration ${t})`;
        parts.push(el("span", { text: `${where}: ${how}` }));
      }
      this.alert.replaceChildren(...parts);
      this.alert.hidden = false;
      this.alert.dataset.component = String(now[0].component);
      this.alert.dataset.iteration = String(now[0].iteration);
    } else {
      this.alert.hidden = true;
      this.alert.replaceChildren();
      delete this.alert.dataset.component;
      delete this.alert.dataset.iteration;
    }
  }

  // ------------------------------------------------------------------------------------------
  // for tests and the benchmark
  // ------------------------------------------------------------------------------------------

  state() {
    const run = this.run;
    const p = run.params;
    const k = p.k;
    return {
      dataset: this.datasetName,
      n: this.data.n,
      k,
      seed: this.seed,
      regCovar: this.regCovar,
      iteration: this.run.iteration,
      nextKind: this.run.nextKind,
      stopReason: this.run.stopReason,
      running: this.running,
      weights: Array.from(p.weights),
      means: Array.from({ length: k }, (_, j) => [p.means[2 * j], p.means[2 * j + 1]]),
      covariances: Array.from({ length: k }, (_, j) => [p.covs[3 * j], p.covs[3 * j + 1], p.covs[3 * j + 2]]),
      dataCovariance: this.data.cov.slice(),
      threshold: run.threshold,
      tol: run.tol,
      maxIter: run.maxIter,
      logLikelihood: this.llTrace.slice(),
      // The first 50 points' colours as [r, g, b].
      colours: this.colours
        ? Array.from(this.colours.slice(0, 50), (c) => [c >> 16, (c >> 8) & 255, c & 255])
        : null,
      collapsedNow: this.collapsedNow.map((r) => ({
        component: r.component, iteration: r.iteration, empty: r.empty, nPoints: r.nPoints,
      })),
      collapse: this.run.collapse && {
        component: this.run.collapse.component,
        iteration: this.run.collapse.iteration,
        nPoints: this.run.collapse.nPoints,
        points: this.run.collapse.points,
        point: this.run.collapse.point,
      },
    };
  }
}

function clampInt(value, lo, hi, fallback) {
  const v = Number.parseInt(value, 10);
  if (!Number.isFinite(v)) return fallback;
  return Math.min(hi, Math.max(lo, v));
}

/** ln p(X | params), or +Infinity when a covariance has no Cholesky factor (a collapse). */
function safeLogLikelihood(data, params) {
  try {
    return logLikelihood(data, params);
  } catch (err) {
    if (err instanceof SingularCovarianceError) return Infinity;
    throw err;
  }
}

/** A point's colour: the responsibility-weighted blend of the component colours (0xRRGGBB). */
function softColours(resp, n, k, rgb) {
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let r = 0;
    let g = 0;
    let b = 0;
    for (let j = 0; j < k; j++) {
      const w = resp[i * k + j];
      const c = rgb[j % rgb.length];
      r += w * c[0];
      g += w * c[1];
      b += w * c[2];
    }
    out[i] = (Math.round(r) << 16) | (Math.round(g) << 8) | Math.round(b);
  }
  return out;
}

/** Distinct indices from a small seeded generator (only for data without exported starts). */
function seededIndices(n, k, seed) {
  let state = (seed * 2654435761 + 1) >>> 0;
  const rand = () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
  const picked = new Set();
  while (picked.size < Math.min(k, n)) picked.add(Math.floor(rand() * n));
  return [...picked];
}

/** Fetch data.json and mount an explorer in `root`; resolves to the Explorer. */
export async function mountExplorer(root, opts = {}) {
  ensureStylesheet();
  const url = opts.dataUrl ?? new URL("data.json", import.meta.url).href;
  const response = await fetch(url);
  if (!response.ok) throw new Error(`could not load ${url}: ${response.status}`);
  const explorer = new Explorer(root, await response.json(), opts);
  window.emExplorer = explorer;
  root.dataset.ready = "true";
  return explorer;
}
