// trace.mjs: the log-likelihood trace, ln p(X | theta_t) after each iteration t, as an SVG chart
// with values along both axes. While the reader looks back through the run, the part still to
// come is drawn faint behind, so the chart moves in step with the scatter.

import { svg } from "./dom.mjs";
import { axisTicks, formatNumber as num } from "./format.mjs";
import { traceWords } from "./words.mjs";

/** Room around the trace for its values (px). */
const PAD = { l: 70, r: 12, t: 10, b: 30 };
export const TRACE_H = 140;

/**
 * Draw `ll` (the values up to the moment shown) on the SVG `chart`, `width` px wide, with `all`
 * (the whole run so far) faint behind; write the summary into `text`.
 */
export function drawTrace(chart, text, width, ll, all = ll) {
  const w = width || 300;
  const h = TRACE_H;
  chart.setAttribute("viewBox", `0 0 ${w} ${h}`);
  chart.replaceChildren();
  const finite = all.filter(Number.isFinite);
  const last = Math.max(all.length - 1, ll.length - 1);
  const xs = (i) => PAD.l + ((w - PAD.l - PAD.r) * i) / Math.max(last, 1);
  const label = (x, y, value, anchor, axis = "x") => chart.append(svg("text", {
    class: "gx-tick-label", x, y, "text-anchor": anchor, "data-axis": axis, text: value,
  }));
  chart.append(svg("path", {
    class: "gx-trace-axis", d: `M${PAD.l} ${PAD.t} V${h - PAD.b} H${w - PAD.r}`,
  }));
  // x axis: the iterations, first and last (and the middle when there is room).
  const xTicks = last >= 4 ? [0, Math.round(last / 2), last] : last > 0 ? [0, last] : [0];
  for (const i of xTicks) label(xs(i), h - PAD.b + 16, String(i), "middle");
  label(w - PAD.r, h - 2, "iteration", "end");
  if (finite.length) {
    const lo = Math.min(...finite);
    const hi = Math.max(...finite);
    const span = hi - lo || 1;
    const ys = (v) => PAD.t + (h - PAD.t - PAD.b) * (1 - (v - lo) / span);
    // y axis: round values of ln p(X) between the lowest and highest, one precision for all.
    const yTicks = axisTicks(lo, lo + span, 3);
    yTicks.values.forEach((v, i) => {
      const y = ys(v);
      chart.append(svg("line", { class: "gx-tick", x1: PAD.l - 4, x2: PAD.l, y1: y, y2: y }));
      label(PAD.l - 6, y + 4, yTicks.labels[i], "end", "y");
    });
    const line = (values) => values
      .map((v, i) => (Number.isFinite(v) ? `${xs(i).toFixed(1)},${ys(v).toFixed(1)}` : null))
      .filter(Boolean);
    if (all.length > ll.length) {
      chart.append(svg("polyline", { class: "gx-trace-future", points: line(all).join(" ") }));
    }
    const pts = line(ll);
    chart.append(svg("polyline", { class: "gx-trace-line", points: pts.join(" ") }));
    for (const p of pts) {
      const [cx, cy] = p.split(",");
      chart.append(svg("circle", { class: "gx-trace-dot", cx, cy, r: 2.5 }));
    }
  }
  const end = ll.length - 1;
  if (ll[end] === Infinity) {
    // ln p(X) = +infinity (a variance reached 0): an arrow off the top of the chart.
    const ax = xs(end).toFixed(1);
    chart.append(
      svg("path", { class: "gx-trace-inf", d: `M${ax} ${h - PAD.b} V${PAD.t} m-5 6 l5 -6 l5 6` }),
    );
    label(Number(ax) - 8, PAD.t + 12, "+∞", "end");
  }
  chart.setAttribute(
    "aria-label",
    ll.length
      ? `Log-likelihood trace over ${ll.length} values, latest ${num(ll[end], 6)}.`
      : "Log-likelihood trace: no values yet.",
  );
  const words = traceWords(ll);
  text.textContent = words.text;
  text.dataset.decreased = String(words.decreased);
}
