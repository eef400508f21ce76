// controls.mjs: the explorer's form controls and what they show: data set, K, seed, reg_covar
// (the covariance type is criteria-panel.mjs's); the E-step / M-step / Run / Reset buttons; the timeline (a range input and
// buttons to move through the run's history); the keyboard path for data by hand (x, y, Add a
// point, Remove the last point); the status line and the collapse alert. Building and showing
// only: the controller (explorer.mjs) listens to them.

import { el } from "./dom.mjs";
import { explainCollapse, positionWords, statusText, alertTail } from "./words.mjs";
import { formatNumber as num } from "./format.mjs";
import { OWN } from "./url.mjs";

/** Build every control; returns { c: the inputs and buttons by name, rows: the groups }. */
export function buildControls(uid, session) {
  const id = (s) => `${uid}-${s}`;
  const c = {};
  c.dataset = el("select", { id: id("dataset") });
  for (const [name, ds] of Object.entries(session.catalogue.datasets)) {
    c.dataset.append(el("option", { value: name, text: ds.title }));
  }
  c.dataset.append(el("option", { value: OWN, text: "Your own data (draw it)" }));
  c.k = el("input", { id: id("k"), type: "range", min: 1, max: session.kMax, step: 1, value: 3 });
  c.kOut = el("output", { for: id("k"), class: "gx-out" });
  c.seed = el("input", {
    id: id("seed"), type: "number", min: 0, max: session.nSeeds - 1, step: 1, value: 0,
    inputmode: "numeric",
  });
  c.nextSeed = el("button", { type: "button", class: "gx-small", text: "Next seed" });
  c.reg = el("input", { id: id("reg"), type: "checkbox" });
  c.regLabel = el("label", { for: id("reg") });
  c.e = el("button", { type: "button", class: "gx-step", "data-kind": "E", text: "E-step" });
  c.m = el("button", { type: "button", class: "gx-step", "data-kind": "M", text: "M-step" });
  c.run = el("button", { type: "button", class: "gx-run", text: "Run" });
  c.reset = el("button", { type: "button", text: "Reset" });
  c.time = el("input", { id: id("time"), type: "range", min: 0, max: 0, step: 1, value: 0 });
  c.timeOut = el("output", { for: id("time"), class: "gx-time-out" });
  c.first = el("button", { type: "button", class: "gx-small", text: "Start" });
  c.back = el("button", { type: "button", class: "gx-small", text: "Back" });
  c.forward = el("button", { type: "button", class: "gx-small", text: "Forward" });
  c.latest = el("button", { type: "button", class: "gx-small", text: "Latest" });
  c.px = el("input", { id: id("px"), type: "number", step: "any", value: 0, class: "gx-coord" });
  c.py = el("input", { id: id("py"), type: "number", step: "any", value: 0, class: "gx-coord" });
  c.add = el("button", { type: "button", class: "gx-small", text: "Add a point" });
  c.removeLast = el("button", { type: "button", class: "gx-small", text: "Remove the last point" });
  c.own = el("button", { type: "button", class: "gx-small", text: "Draw your own data" });

  const field = (label, input, ...extra) =>
    el("div", { class: "gx-field" }, el("label", { for: input.id, text: label }), input, ...extra);
  const settings = [
    field("Data set", c.dataset, c.own),
    field("Components K", c.k, c.kOut),
    field("Seed", c.seed, c.nextSeed),
  ];
  settings.push(el("div", { class: "gx-field gx-check" }, c.reg, c.regLabel));
  const rows = {
    settings: el("div", { class: "gx-controls", role: "group", "aria-label": "Explorer controls" },
      ...settings),
    steps: el("div", { class: "gx-buttons", role: "group", "aria-label": "EM steps" },
      c.e, c.m, c.run, c.reset),
    timeline: el("div", { class: "gx-timeline", role: "group", "aria-label": "The run's history" },
      el("label", { for: c.time.id, text: "Timeline" }), c.time,
      c.first, c.back, c.forward, c.latest, c.timeOut),
    data: el("div", { class: "gx-data", role: "group", "aria-label": "Data by hand" },
      field("x", c.px), field("y", c.py), c.add, c.removeLast),
  };
  return { c, rows };
}

/** Show the session's state in the controls, buttons and status line. */
export function renderControls(c, root, status, session, running) {
  const e = session.entry;
  const next = e.nextKind;
  c.dataset.value = session.datasetName;
  c.k.value = String(session.k);
  c.kOut.textContent = String(session.k);
  c.seed.value = String(session.seed);
  c.reg.checked = session.regOn;
  c.regLabel.textContent = `reg_covar = ${num(session.regValue)} (added to every variance)`;
  c.e.disabled = next !== "E" || running;
  c.m.disabled = next !== "M" || running;
  c.e.classList.toggle("gx-next", next === "E");
  c.m.classList.toggle("gx-next", next === "M");
  c.e.textContent = next === "E" ? "E-step (next)" : "E-step";
  c.m.textContent = next === "M" ? "M-step (next)" : "M-step";
  c.run.textContent = running ? "Pause" : "Run";
  c.run.disabled = next === null && !running;
  c.run.setAttribute("aria-pressed", String(running));
  c.reset.disabled = !session.run;
  const last = session.history.length - 1;
  c.time.max = String(last);
  c.time.value = String(session.position);
  c.time.disabled = last === 0;
  const where = positionWords(e, session.position, last);
  c.time.setAttribute("aria-valuetext", where);
  c.timeOut.textContent = where;
  c.first.disabled = c.back.disabled = session.position === 0 || running;
  c.forward.disabled = next === null || running;
  c.latest.disabled = session.latest || running;
  c.removeLast.disabled = session.points.length === 0;
  root.dataset.next = next ?? "none";
  root.dataset.iteration = String(e.iteration);
  root.dataset.position = String(session.position);
  status.textContent = statusText({
    entry: e, latest: session.latest, tol: session.rules.tol, notice: session.notice,
    nPoints: session.points.length, kNeeded: session.k + 1,
  });
}

/**
 * The alert says what holds at the moment shown (collapsed or empty components); it is rebuilt
 * only when that changes (screen readers announce each change). `onContinue` is the "Continue
 * anyway" button's action.
 */
export function renderAlert(alert, session, onContinue) {
  const e = session.entry;
  const now = e.collapsedNow;
  const stopped = e.stopReason === "collapse";
  const key = JSON.stringify([now.map((r) => r.message), stopped, e.stopReason, e.iteration]);
  if (key === alert.dataset.key) return;
  alert.dataset.key = key;
  if (!now.length) {
    alert.hidden = true;
    alert.replaceChildren();
    delete alert.dataset.component;
    delete alert.dataset.iteration;
    return;
  }
  const broken = now.filter((r) => !r.empty);
  const empty = now.filter((r) => r.empty);
  const parts = [el("strong", { text: broken.length ? "Collapse. " : "Empty component. " })];
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
  parts.push(el("span", { text: alertTail({ entry: e, regCovar: session.regCovar }) }));
  if (stopped) {
    const btn = el("button", { type: "button", class: "gx-small", text: "Continue anyway" });
    btn.addEventListener("click", onContinue);
    parts.push(btn);
  }
  alert.replaceChildren(...parts);
  alert.hidden = false;
  alert.dataset.component = String(now[0].component);
  alert.dataset.iteration = String(now[0].iteration);
}
