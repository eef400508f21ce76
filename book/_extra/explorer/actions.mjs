// actions.mjs: what each control does to the session (clicks, inputs, keys on form controls),
// then a redraw. A restart that throws steps away is announced on the status line. `ex` is the
// controller (explorer.mjs).

import { OWN } from "./url.mjs";

const after = (value, f) => (value && typeof value.then === "function" ? value.then(f) : f(value));

export function listenToControls(ex, c) {
const s = ex.session;
  const change = (node, event, action) => node.addEventListener(event, () => {
    ex.pause();
    s.notice = null;
    after(action(), () => ex.render({ user: true }));
  });
  change(c.dataset, "change", () => {
    if (c.dataset.value === OWN) s.drawOwn();
    else s.selectDataset(c.dataset.value);
    s.notice = `Switched to ${s.title}: kept K = ${s.k} and seed ${s.seed}.`;
    ex.layout();
  });
  change(c.own, "click", () => {
    s.drawOwn();
    ex.layout();
  });
  const restartAnnounced = (words, apply) => () => {
    const lost = s.hasProgress();
    apply();
    if (lost) s.notice = words();
  };
  change(c.k, "input", restartAnnounced(() => `K changed to ${s.k}: EM restarted from iteration 0.`,
    () => {
      s.k = Number(c.k.value);
      s.restartFromSeed();
    }));
  change(c.seed, "change", () => {
    s.seed = Math.min(s.nSeeds - 1, Math.max(0, Number.parseInt(c.seed.value, 10) || 0));
    s.restartFromSeed();
  });
  change(c.nextSeed, "click", () => {
    s.seed = (s.seed + 1) % s.nSeeds;
    s.restartFromSeed();
  });
  change(c.reg, "change", restartAnnounced(
    () => `reg_covar switched ${s.regOn ? "on" : "off"}: EM restarted from iteration 0, same start.`,
    () => {
      s.regOn = c.reg.checked;
      s.restart();
    }));
  // The covariance type: criteria-panel.mjs's select (explorer.mjs passes its changes here).
  ex.changeCovType = (type) => {
    ex.pause();
    s.notice = null;
    restartAnnounced(
      () => `Covariance type ${s.covType}: EM restarted from iteration 0, same start.`,
      () => {
        s.covType = type;
        s.restart();
      })();
    ex.render({ user: true, data: true });
  };
  change(c.e, "click", () => s.doStep("E"));
  change(c.m, "click", () => s.doStep("M"));
  change(c.reset, "click", () => s.restartFromSeed());
  c.run.addEventListener("click", () => (ex.running ? ex.pause() : ex.runAnimated()));
  change(c.time, "input", () => s.scrub(Number(c.time.value)));
  change(c.first, "click", () => s.scrub(0));
  change(c.back, "click", () => s.scrub(s.position - 1));
  change(c.forward, "click", () => s.stepForward());
  change(c.latest, "click", () => s.scrub(s.history.length - 1));
  change(c.add, "click", () => {
    const [x, y] = [Number(c.px.value), Number(c.py.value)];
    if (c.px.value === "" || c.py.value === "" || !Number.isFinite(x + y)) {
      s.notice = "Give x and y as numbers to add a point.";
      return null;
    }
    return s.addPoint(...ex.clamp(x, y));
  });
  change(c.removeLast, "click", () => s.points.length && s.removePoint(s.points.length - 1));
}
