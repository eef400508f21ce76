// scatter.mjs: the scatter's canvas (the points, soft-coloured by their responsibilities; the
// neutral grey of gmmlib.plotting before the first E-step) and its axes (a box, ticks with
// values, the data set's axis labels) on the SVG layer.

import { svg } from "./dom.mjs";
import { axisTicks, hexToRgb } from "./format.mjs";
import { MARGIN, toScreen, visibleBox } from "./geometry.mjs";

/** Draw the points on `canvas` (CSS size `size`): `x` flat (2N), `colours` 0xRRGGBB or null. */
export class PointsLayer {
  constructor(canvas, neutralHex) {
    this.canvas = canvas;
    this.neutral = neutralHex;
    const [r, g, b] = hexToRgb(neutralHex);
    this.neutral32 = (0xff000000 | (b << 16) | (g << 8) | r) >>> 0; // little-endian ABGR
  }

  resize(size) {
    const dpr = window.devicePixelRatio || 1;
    this.canvas.width = Math.round(size.w * dpr);
    this.canvas.height = Math.round(size.h * dpr);
    this.canvas.style.height = `${size.h}px`;
  }

  draw(size, x, n, colours) {
    const ctx = this.canvas.getContext("2d");
    const dpr = this.canvas.width / size.w;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, size.w, size.h);
    if (n > 1000) {
      this.drawAsPixels(ctx, dpr, size, x, n, colours);
      return;
    }
    const r = n > 100 ? 3 : 5;
    const { s, ox, oy } = size;
    const { x0, y1 } = size.view;
    // One path per distinct colour (points sure of their component share one): few fills.
    const groups = new Map();
    for (let i = 0; i < n; i++) {
      const c = colours ? colours[i] : -1;
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
      ctx.fillStyle = c < 0 ? this.neutral : `rgb(${c >> 16},${(c >> 8) & 255},${c & 255})`;
      ctx.fill();
      ctx.stroke();
    }
  }

  /** Many points: write small discs straight into the pixels (no path rasterisation). */
  drawAsPixels(ctx, dpr, size, x, n, colours) {
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
    const { s, ox, oy } = size;
    const { x0, y1 } = size.view;
    const disc = this.disc;
    for (let i = 0; i < n; i++) {
      const cx = Math.round((ox + (x[2 * i] - x0) * s) * dpr);
      const cy = Math.round((oy + (y1 - x[2 * i + 1]) * s) * dpr);
      let fill = this.neutral32;
      if (colours) {
        const c = colours[i]; // 0xRRGGBB -> little-endian ABGR
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
}

/** Axes on the scatter, into the SVG group `g`: a box, ticks with values, the axis labels. */
export function drawAxes(g, size, [xName, yName] = ["x₁", "x₂"]) {
  const { w, h } = size;
  const [x0, x1, y0, y1] = visibleBox(size);
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
    const [px] = toScreen(size, v, 0);
    g.append(svg("line", { class: "gx-tick", x1: px, x2: px, y1: bottom, y2: bottom + 5 }));
    g.append(svg("text", {
      class: "gx-tick-label", x: px, y: bottom + 18, "text-anchor": "middle", "data-axis": "x",
      text: xTicks.labels[i],
    }));
  });
  const yTicks = axisTicks(y0, y1, Math.max(3, Math.floor((bottom - top) / 60)));
  yTicks.values.forEach((v, i) => {
    const [, py] = toScreen(size, 0, v);
    g.append(svg("line", { class: "gx-tick", x1: left - 5, x2: left, y1: py, y2: py }));
    g.append(svg("text", {
      class: "gx-tick-label", x: left - 8, y: py + 4, "text-anchor": "end", "data-axis": "y",
      text: yTicks.labels[i],
    }));
  });
  g.append(
    svg("text", {
      class: "gx-axis-label", x: (left + right) / 2, y: h - 6, "text-anchor": "middle",
      text: `${xName} →`,
    }),
    svg("text", {
      class: "gx-axis-label", x: 0, y: 0, "text-anchor": "middle",
      transform: `translate(14 ${(top + bottom) / 2}) rotate(-90)`, text: `${yName} →`,
    }),
  );
}
