// interaction.mjs: what pointer and keys do on the scatter. A mean handle is dragged (mouse,
// pen or finger) or moved with the arrow keys (Shift: bigger steps; Enter/Space say where it
// is): the fit restarts from there. On the plot, a click on empty space adds a point, a
// modifier click (Shift, Alt, Ctrl or Cmd) or a long press on a point removes it, and a point
// can be dragged: the fit follows (session.mjs, editPoints). Pointer moves are coalesced to one
// update per animation frame. `ex` is the controller (explorer.mjs): size, svg, session,
// moveMean, editWith, say.

import { toData } from "./geometry.mjs";
import { meanWhere } from "./words.mjs";

/** How long a press on a point, without moving, removes it (ms). */
export const LONG_PRESS_MS = 600;
/** A pointer that moves less than this (px) from where it went down is a click. */
const CLICK_SLOP = 5;
/** A point within this (px) of the pointer is under it. */
const HIT_PX = 9;

/** Shift, Alt, Ctrl or Cmd held: a click that removes a point. */
const modified = (ev) => ev.shiftKey || ev.altKey || ev.ctrlKey || ev.metaKey;

/** Screen position of a pointer event inside the scatter's SVG. */
function plotXY(ex, ev) {
  const r = ex.svg.getBoundingClientRect();
  return [ev.clientX - r.left, ev.clientY - r.top];
}

/** Coalesce: remember the latest `job`, run it once on the next animation frame. */
export function frameQueue(ex) {
  let pending = null;
  const flush = () => {
    if (pending === null) return;
    const job = pending;
    pending = null;
    const t0 = performance.now();
    job();
    ex.stats.frames += 1;
    ex.stats.frameMs.push(performance.now() - t0);
  };
  const queue = (job) => {
    const first = pending === null;
    pending = job;
    if (first) requestAnimationFrame(flush);
  };
  return { queue, flush };
}

/** Drag and keys for the handle of component j's mean. */
export function attachHandle(ex, handle, j) {
  const moves = frameQueue(ex);
  let dragging = false;
  const moveTo = (ev) => {
    const [px, py] = plotXY(ex, ev);
    moves.queue(() => ex.moveMean(j, ...toData(ex.size, px, py), { focus: false }));
  };
  handle.addEventListener("pointerdown", (ev) => {
    if (modified(ev)) return; // a modifier click removes the point under the mean (attachPlot)
    ev.preventDefault();
    ev.stopPropagation();
    try {
      handle.setPointerCapture(ev.pointerId);
    } catch {
      // a synthetic pointer (no active pointer to capture): moves still reach the handle
    }
    handle.focus({ preventScroll: true });
    dragging = true;
    handle.classList.add("gx-dragging");
  });
  handle.addEventListener("pointermove", (ev) => {
    if (dragging) moveTo(ev);
  });
  const end = (ev) => {
    if (!dragging) return;
    moveTo(ev);
    moves.flush();
    dragging = false;
    handle.classList.remove("gx-dragging");
  };
  handle.addEventListener("pointerup", end);
  handle.addEventListener("pointercancel", end);
  handle.addEventListener("keydown", (ev) => {
    const means = ex.session.entry.params.means;
    if (ev.key === "Enter" || ev.key === " ") {
      // The handle announces itself as a button: Enter/Space say where it is and how to move it.
      ev.preventDefault();
      ex.say(meanWhere(j, means[2 * j], means[2 * j + 1]));
      return;
    }
    const { x0, x1 } = ex.size.view;
    const step = ((x1 - x0) / 50) * (ev.shiftKey ? 5 : 1);
    const d = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, step],
      ArrowDown: [0, -step] }[ev.key];
    if (!d) return;
    ev.preventDefault();
    ex.moveMean(j, means[2 * j] + d[0], means[2 * j + 1] + d[1], { focus: true });
  });
}

/** Clicks, modifier clicks, long presses and drags on the plot's points. */
export function attachPlot(ex) {
  const moves = frameQueue(ex);
  let press = null; // { id, x, y, point, moved, timer }
  const cancelTimer = () => {
    if (press?.timer) clearTimeout(press.timer);
    if (press) press.timer = null;
  };
  ex.svg.addEventListener("pointerdown", (ev) => {
    if ((ev.target.closest?.(".gx-mean") && !modified(ev)) || ev.button > 0) return;
    const [px, py] = plotXY(ex, ev);
    const [x, y] = toData(ex.size, px, py);
    const point = ex.session.nearestPoint(x, y, HIT_PX / ex.size.s);
    if (point >= 0 && modified(ev)) {
      ev.preventDefault();
      ex.editWith((s) => s.removePoint(point));
      return;
    }
    ev.preventDefault();
    try {
      ex.svg.setPointerCapture(ev.pointerId);
    } catch {
      // synthetic pointer
    }
    press = { id: ev.pointerId, x: px, y: py, point, moved: false, timer: null };
    if (point >= 0) {
      press.timer = setTimeout(() => {
        const p = press;
        if (!p || p.moved) return;
        press = null;
        ex.editWith((s) => s.removePoint(p.point));
      }, LONG_PRESS_MS);
    }
  });
  ex.svg.addEventListener("pointermove", (ev) => {
    if (!press || ev.pointerId !== press.id) return;
    const [px, py] = plotXY(ex, ev);
    if (!press.moved && Math.hypot(px - press.x, py - press.y) < CLICK_SLOP) return;
    press.moved = true;
    cancelTimer();
    if (press.point < 0) return;
    const p = press;
    moves.queue(() => {
      ex.editWith((s) => s.movePoint(p.point, ...ex.clamp(...toData(ex.size, px, py))));
      p.point = ex.session.points.length - 1; // a moved point becomes the last (session.mjs)
    });
  });
  const end = (ev) => {
    if (!press || ev.pointerId !== press.id) return;
    const p = press;
    press = null;
    cancelTimer();
    if (ev.type === "pointercancel") return;
    if (p.point >= 0 && p.moved) {
      moves.flush();
    } else if (p.point < 0 && !p.moved) {
      const [x, y] = ex.clamp(...toData(ex.size, p.x, p.y));
      ex.editWith((s) => s.addPoint(x, y));
    }
  };
  ex.svg.addEventListener("pointerup", end);
  ex.svg.addEventListener("pointercancel", end);
  // A long press removes a point: no context menu on top of it (touch screens open one).
  ex.svg.addEventListener("contextmenu", (ev) => ev.preventDefault());
}
