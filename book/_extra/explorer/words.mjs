// words.mjs: everything the explorer says, as plain strings from plain state (no DOM): the status
// line, the collapse and empty-component explanations (moved here from em-core.mjs), the plot's
// caption, the trace's summary and the timeline's position. Components are numbered from 0, as in
// gmmlib and the book.

import { EMPTY_NK } from "./collapse-rule.mjs";
import { componentList, formatNumber as num } from "./format.mjs";

/**
 * What a collapse report means, in plain words, in three parts (joined by describeCollapse):
 * `what` happened to this component, `why` it matters, and how `fix` it. An empty component
 * (N_k < EMPTY_NK) gets its own words; with reg_covar > 0 the density is capped, so the words do
 * not promise an unbounded likelihood.
 */
export function explainCollapse(report) {
  const { component, iteration, nk, nPoints, minEigenvalue, threshold, regCovar } = report;
  const k = report.nComponents;
  const fewer = k > 1 ? `use fewer components (K = ${k - 1})` : null;
  if (report.empty ?? nk < EMPTY_NK) {
    return {
      what:
        `Component ${component} is empty at iteration ${iteration}: no point gives it more ` +
        `than a sliver of responsibility (N_k = ${num(nk)}).`,
      why:
        "Its weight is ~0 and its mean and ellipse no longer describe any data. This is not a " +
        "collapse onto a point: the component is simply unused.",
      fix: ["drag its mean back onto the data", fewer, "or pick another seed"]
        .filter(Boolean).join("; "),
    };
  }
  const onto = nPoints === 1 ? "a single data point" : nPoints === 0
    ? "no point in particular" : `just ${nPoints} data points`;
  const tiny = Math.abs(minEigenvalue - regCovar) < 1e-3 * threshold;
  const size = tiny
    ? "its ellipse has shrunk to zero width (smallest variance ≈ " +
      `${regCovar > 0 ? "reg_covar" : "0"})`
    : `its ellipse is only ${num(Math.sqrt(Math.max(minEigenvalue, 0)), 2)} wide ` +
      `(smallest variance ${num(minEigenvalue)}, at most ${num(threshold)} ` +
      `above reg_covar = ${num(regCovar)})`;
  return {
    what:
      `Component ${component} collapsed at iteration ${iteration}: it sits on ${onto} ` +
      `(N_k = ${num(nk)}) and ${size}.`,
    why: regCovar > 0
      ? `With reg_covar = ${num(regCovar)} no variance can fall below it, so the ` +
        "density and ln p(X) stay finite, but the component still sits on those points: " +
        "reg_covar stops the crash, not the collapse."
      : "Its density at that point grows without bound, so the log-likelihood can too: a flaw " +
        "of maximum likelihood, not a bug.",
    fix: [fewer, "or pick another seed"].filter(Boolean).join("; "),
  };
}

/** The whole message for one component: what happened, why it matters, how to fix it. */
export function describeCollapse(report) {
  const { what, why, fix } = explainCollapse(report);
  return `${what} ${why} To fix: ${fix}.`;
}

/** "component 2 collapsed, component 5 empty" for the reports of one moment ("" for none). */
export function troubleWords(reports) {
  const broken = reports.filter((r) => !r.empty);
  const empty = reports.filter((r) => r.empty);
  return [
    broken.length ? `${componentList(broken)} collapsed` : null,
    empty.length ? `${componentList(empty)} empty` : null,
  ].filter(Boolean).join(", ");
}

/**
 * The status line for a moment of the run: `entry` is the history entry shown (iteration,
 * nextKind, stopReason, collapsedNow), `latest` whether it is the newest one, `tol` the
 * convergence tolerance, `notice` one-off words put first.
 */
export function statusText({ entry, latest, tol, notice, nPoints, kNeeded }) {
  let text;
  if (!entry.params) {
    text = `${nPoints} point${nPoints === 1 ? "" : "s"}: click the plot to add points; EM ` +
      `starts once there are more than K (at least ${kNeeded}).`;
    return notice ? `${notice} ${text}` : text;
  }
  const t = entry.iteration;
  const trouble = troubleWords(entry.collapsedNow);
  const back = latest ? "" : " (looking back: Forward replays the run)";
  if (entry.nextKind === "E") {
    text = `Iteration ${t}. Next: E-step — recolour each point by its responsibilities.${back}`;
  } else if (entry.nextKind === "M") {
    text = `Iteration ${t}. Next: M-step — refit the weights, means and ellipses to the ` +
      `colours.${back}`;
  } else if (entry.stopReason === "converged") {
    text = `Converged after ${t} iterations: ln p(X) per point changed by less than ${num(tol)}.`;
  } else if (entry.stopReason === "max_iter") {
    text = `Stopped after ${t} iterations (the limit). Press Reset to start again.`;
  } else if (entry.stopReason === "collapse") {
    text = `Stopped at iteration ${t}: ${trouble || "a component collapsed"}.`;
  } else {
    text =
      `Stopped at iteration ${t}: a covariance is no longer positive definite, so its ` +
      "density (and ln p(X)) is undefined. Press Reset, or switch reg_covar on.";
  }
  if (trouble && entry.stopReason !== "collapse") text += ` Now: ${trouble} (see the message).`;
  return notice ? `${notice} ${text}` : text;
}

/** How the alert ends: stopped (a button follows), EM going on, or EM ended. */
export function alertTail({ entry, regCovar }) {
  const t = entry.iteration;
  if (entry.stopReason === "collapse") return `EM has stopped at iteration ${t}. `;
  const broken = entry.collapsedNow.some((r) => !r.empty);
  const how = regCovar > 0
    ? `with reg_covar = ${num(regCovar)} no variance can drop below it, so ln p(X) stays finite.`
    : broken
      ? "without reg_covar the variance heads to 0 and ln p(X) to +∞."
      : "the empty component takes no part in the fit.";
  const where = entry.nextKind === null ? `EM ended at iteration ${t}` : `EM goes on (iteration ${t})`;
  return `${where}: ${how}`;
}

/** The plot's caption (what is drawn, for every reader). */
export function captionText({ title, n, k, seed, entry }) {
  const t = entry.iteration;
  return `${title}: ${n} points, K = ${k}, seed ${seed}, iteration ${t}. ` +
    (entry.colours
      ? "Each point's colour blends the component colours by its responsibilities. "
      : "Points are grey until the first E-step assigns responsibilities. ") +
    "Solid ellipses: 1 standard deviation; dashed: 2.";
}

/** The trace's summary under the chart, and whether ln p(X) ever went down. */
export function traceWords(ll) {
  const last = ll.length - 1;
  let decreased = false;
  for (let i = 1; i < ll.length; i++) {
    if (ll[i] < ll[i - 1] - 1e-9 * Math.abs(ll[i - 1])) decreased = true;
  }
  if (last < 0) return { text: "No log-likelihood yet.", decreased };
  const text = `ln p(X) = ${num(ll[last], 6)} at iteration ${last}` +
    (ll.length > 1 ? ` (started at ${num(ll[0], 6)}). ` : ". ") +
    (ll.length > 1
      ? decreased ? "It went down: that should never happen in EM." : "It has never gone down."
      : "");
  return { text, decreased };
}

/** The timeline's position in words (its aria-valuetext and visible label). */
export function positionWords(entry, position, last) {
  const what = entry.kind === null
    ? "the start"
    : entry.kind === "E" ? `the E-step of iteration ${entry.iteration + 1}`
      : `the M-step of iteration ${entry.iteration}`;
  return `Step ${position} of ${last}: after ${what}`;
}

/** A mean handle's accessible name. */
export function meanLabel(j, colourName, mx, my, weight) {
  return `Mean of component ${j} (${colourName}) at x ${num(mx)}, y ${num(my)}, weight ` +
    `${num(weight)}. Drag it or use the arrow keys; the fit restarts from there.`;
}

/** What Enter or Space on a mean says. */
export function meanWhere(j, mx, my) {
  return `Mean of component ${j} is at x ${num(mx)}, y ${num(my)}. Move it with the arrow ` +
    "keys (Shift for bigger steps); EM restarts from where you leave it.";
}
