// marks.mjs: each component on the scatter's SVG layer (its 1- and 2-sigma ellipses with white
// halos, and its mean: a focusable, draggable handle), the colour key, and the rings around the
// points a collapsed component holds. Components are numbered from 0, coloured by data.json's
// palette (gmmlib.plotting.PALETTE).

import { el, svg } from "./dom.mjs";
import { ellipseAttrs, toScreen } from "./geometry.mjs";
import { meanLabel } from "./words.mjs";

export class MarksLayer {
  /** `layers`: SVG groups { ellipses, highlight, means }; `key`: the <ul> colour key;
   * `onHandle(handle, j)` wires a new handle (interaction.mjs). */
  constructor(layers, key, palette, onHandle) {
    Object.assign(this, { layers, key, palette, onHandle });
    this.marks = [];
  }

  /** One SVG group per component (ellipses + handle), rebuilt only when K changes. */
  build(k) {
    if (this.marks.length === k) return;
    this.layers.ellipses.replaceChildren();
    this.layers.means.replaceChildren();
    this.key.replaceChildren();
    this.marks = [];
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
      this.onHandle(handle, j);
      this.marks.push({ g, halo1, halo2, e1, e2, handle });
    }
  }

  /** Draw the parameters of `entry` (a history entry; none when its params are null). */
  draw(size, entry, x) {
    const params = entry.params;
    this.build(params ? params.k : 0);
    if (!params) {
      this.layers.highlight.replaceChildren();
      return;
    }
    for (let j = 0; j < params.k; j++) {
      const m = this.marks[j];
      const mx = params.means[2 * j];
      const my = params.means[2 * j + 1];
      const [a, b, d] = params.covs.subarray(3 * j, 3 * j + 3);
      for (const [sig, e, halo] of [[1, m.e1, m.halo1], [2, m.e2, m.halo2]]) {
        const attrs = ellipseAttrs(size, mx, my, a, b, d, sig);
        for (const node of [e, halo]) {
          if (!attrs) {
            node.setAttribute("visibility", "hidden");
            continue;
          }
          node.removeAttribute("visibility");
          for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
        }
      }
      const [cx, cy] = toScreen(size, mx, my);
      if (Number.isFinite(cx) && Number.isFinite(cy)) {
        m.handle.setAttribute("transform", `translate(${cx.toFixed(2)} ${cy.toFixed(2)})`);
      }
      const name = this.palette[j % this.palette.length][0];
      m.handle.setAttribute("aria-label", meanLabel(j, name, mx, my, params.weights[j]));
      const isCollapsed = entry.collapsedNow.some((r) => r.component === j);
      m.g.classList.toggle("gx-collapsed", isCollapsed);
      m.handle.classList.toggle("gx-collapsed", isCollapsed);
    }
    // Collapse highlight: the points each collapsed component holds (none for an empty one).
    const held = new Set();
    for (const r of entry.collapsedNow) {
      if (r.empty) continue;
      for (const i of r.points.length ? r.points : [r.point]) held.add(i);
    }
    this.layers.highlight.replaceChildren(...[...held].sort((p, q) => p - q).map((i) => {
      const [px, py] = toScreen(size, x[2 * i], x[2 * i + 1]);
      return svg("circle", {
        class: "gx-hot", cx: px.toFixed(2), cy: py.toFixed(2), r: 17, "data-point": i,
      });
    }));
  }
}
