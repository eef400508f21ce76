// criteria-panel.mjs: the covariance-type control and a live table of ln p, BIC and AIC against
// K for the current data. A view only: the numbers come from em-core's criteriaAgainstK (which
// gmmlib's bic/aic hold to 1e-9, tests/test_explorer_criteria.py); the explorer's entry owns the
// state and calls update() when the data, the start (seed) or the covariance type change.
//
//   const panel = mountCriteriaPanel(el, { covarianceType: "full", onChange: (type) => ... });
//   panel.update({ data, startFor, opts, kMax, k });   // recomputes and redraws
import { criteriaAgainstK } from "./criteria.mjs";
import { COVARIANCE_TYPES } from "./em-core.mjs";
import { formatNumber } from "./format.mjs";

let counter = 0;

const WORDS = {
  full: "full: each component its own ellipse, any tilt",
  tied: "tied: one ellipse shape shared by all components",
  diag: "diag: axis-aligned ellipses",
  spherical: "spherical: circles",
};

function node(tag, attrs = {}, text = null) {
  const e = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) e.setAttribute(key, value);
  if (text !== null) e.textContent = text;
  return e;
}

/**
 * Mount the control and the table in `root`. `onChange(type)` is called when the reader picks
 * another covariance type (the entry restarts EM in that type, then calls update()).
 * Returns { select, table, update(state), rows (the last rows computed) }.
 */
export function mountCriteriaPanel(root, { covarianceType = "full", onChange = () => {} } = {}) {
  const id = `gxc${++counter}`;
  const select = node("select", { id: `${id}-type` });
  for (const type of COVARIANCE_TYPES) {
    const option = node("option", { value: type }, WORDS[type]);
    if (type === covarianceType) option.selected = true;
    select.append(option);
  }
  select.addEventListener("change", () => onChange(select.value));
  const field = node("div", { class: "gx-field" });
  field.append(node("label", { for: select.id }, "Covariance type"), select);
  const caption = node("caption", {}, "ln p(X), BIC and AIC against K (lower BIC/AIC is better)");
  const table = node("table", { class: "gx-criteria", "aria-live": "off" });
  const head = node("tr");
  for (const h of ["K", "ln p(X)", "BIC", "AIC", "EM stopped"]) head.append(node("th", { scope: "col" }, h));
  const body = node("tbody");
  table.append(caption, node("thead"), body);
  table.tHead.append(head);
  const box = node("section", { class: "gx-criteria-box", "aria-label": "Model choice" });
  box.append(field, table);
  root.append(box);

  const panel = { select, table, rows: [] };
  /** Recompute for K = 1..kMax from startFor(k) with EMRun options `opts`, mark K = k. */
  panel.update = ({ data, startFor, opts, kMax, k }) => {
    select.value = opts.covarianceType ?? "full";
    const ks = Array.from({ length: kMax }, (_, i) => i + 1);
    const rows = criteriaAgainstK(data, ks, startFor, opts);
    panel.rows = rows;
    const finite = (key) => rows.filter((r) => Number.isFinite(r[key]));
    const best = (key) => finite(key).reduce((a, b) => (b[key] < a[key] ? b : a), finite(key)[0]);
    const bestBic = best("bic")?.k;
    const bestAic = best("aic")?.k;
    body.replaceChildren(
      ...rows.map((r) => {
        const tr = node("tr", r.k === k ? { class: "gx-current", "aria-current": "true" } : {});
        tr.append(
          node("th", { scope: "row" }, String(r.k)),
          node("td", {}, formatNumber(r.logLikelihood, 5)),
          node("td", {}, formatNumber(r.bic, 5) + (r.k === bestBic ? " (lowest)" : "")),
          node("td", {}, formatNumber(r.aic, 5) + (r.k === bestAic ? " (lowest)" : "")),
          node("td", {}, r.collapsed ? "collapsed" : r.stop.replace("_", " ")),
        );
        return tr;
      }),
    );
    return rows;
  };
  return panel;
}
