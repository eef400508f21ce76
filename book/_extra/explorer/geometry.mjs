// geometry.mjs: where things go on the scatter (no DOM): the plot's size for a width, data units
// <-> screen pixels, the box a dragged mean is held in, and an ellipse's SVG attributes.

import { ellipseAxes } from "./em-core.mjs";

/** Room around the scatter for the axes' values and labels (px). */
export const MARGIN = { l: 52, r: 10, t: 10, b: 44 };

/**
 * The plot for a view box [x0, x1, y0, y1] (data units) and a width (px): { w, h, s (px per data
 * unit), ox, oy, view }. The height follows the width only (never the window's height: inside an
 * iframe sized to this page, a window-dependent height would feed back on itself).
 */
export function plotSize([x0, x1, y0, y1], width) {
  const view = { x0, x1, y0, y1 };
  const w = Math.max(200, width || 600);
  const aspect = (y1 - y0) / (x1 - x0);
  const iw = w - MARGIN.l - MARGIN.r;
  const ih = Math.round(Math.min(Math.max(iw * Math.min(aspect, 1.1), 200), 540));
  const h = ih + MARGIN.t + MARGIN.b;
  const s = Math.min(iw / (x1 - x0), ih / (y1 - y0));
  return {
    w, h, s, view,
    ox: MARGIN.l + (iw - s * (x1 - x0)) / 2,
    oy: MARGIN.t + (ih - s * (y1 - y0)) / 2,
  };
}

export function toScreen(size, x, y) {
  return [size.ox + (x - size.view.x0) * size.s, size.oy + (size.view.y1 - y) * size.s];
}

export function toData(size, px, py) {
  return [size.view.x0 + (px - size.ox) / size.s, size.view.y1 - (py - size.oy) / size.s];
}

/** The part of the data plane inside the plot's axes: [x0, x1, y0, y1] in data units. */
export function visibleBox(size) {
  const [x0, y1] = toData(size, MARGIN.l, MARGIN.t);
  const [x1, y0] = toData(size, size.w - MARGIN.r, size.h - MARGIN.b);
  return [x0, x1, y0, y1];
}

/** A mean or a point cannot leave the plot: it is held at the edge of the axes' box. */
export function clampToPlot(size, x, y) {
  const [x0, x1, y0, y1] = visibleBox(size);
  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, Number.isFinite(v) ? v : (lo + hi) / 2));
  return [clamp(x, x0, x1), clamp(y, y0, y1)];
}

/** SVG attributes of the `sig`-sigma ellipse of covariance [[a, b], [b, d]] at (mx, my). */
export function ellipseAttrs(size, mx, my, a, b, d, sig) {
  const [cx, cy] = toScreen(size, mx, my);
  if (![cx, cy, a, b, d].every(Number.isFinite)) return null;
  const { rx, ry, angle } = ellipseAxes(a, b, d, sig);
  return {
    cx: cx.toFixed(2),
    cy: cy.toFixed(2),
    rx: Math.max(rx * size.s, 0.3).toFixed(2),
    ry: Math.max(ry * size.s, 0.3).toFixed(2),
    transform: `rotate(${((-angle * 180) / Math.PI).toFixed(3)} ${cx.toFixed(2)} ${cy.toFixed(2)})`,
  };
}
