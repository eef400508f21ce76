// Drive the explorer's DOM-free session (book/_extra/explorer/session.mjs) through scripted
// actions and print, as JSON, for each script: the address it ends on, what it shows then, and
// what a new session opened at that address shows (tests/test_explorer_session.py compares them).
//   node tests/js/session_script.mjs '[{"query": "dataset=faithful&k=2", "actions": ["E", "M"]}]'
// Actions: "E", "M" (that step, if next), "forward", "end" (run to the end), "scrub:<position>",
// "mean:<j>:<x>:<y>" (drag a mean), "add:<x>:<y>", "remove:<i>", "move:<i>:<x>:<y>" (points by
// hand), "own" (draw your own data), "k:<K>", "seed:<s>", "reg:on|off", "continue".
import { readFileSync } from "node:fs";
import { Session } from "../../book/_extra/explorer/session.mjs";

const url = new URL("../../book/_extra/explorer/data.json", import.meta.url);
const catalogue = JSON.parse(readFileSync(url, "utf8"));

function act(s, action) {
  const [name, ...args] = action.split(":");
  const n = args.map(Number);
  const table = {
    E: () => s.doStep("E"),
    M: () => s.doStep("M"),
    forward: () => s.stepForward(),
    end: () => s.toEnd(),
    scrub: () => s.scrub(n[0]),
    mean: () => s.moveMean(n[0], n[1], n[2]),
    add: () => s.addPoint(n[0], n[1]),
    remove: () => s.removePoint(n[0]),
    move: () => s.movePoint(n[0], n[1], n[2]),
    own: () => s.drawOwn(),
    k: () => {
      s.k = n[0];
      s.restartFromSeed();
    },
    seed: () => {
      s.seed = n[0];
      s.restartFromSeed();
    },
    reg: () => {
      s.regOn = args[0] === "on";
      s.restart();
    },
    continue: () => s.continueAfterCollapse(),
  };
  if (!table[name]) throw new Error(`unknown action ${action}`);
  table[name]();
}

/** What the session shows: the data, the settings, the entry's parameters, trace and colours. */
function shown(s) {
  const e = s.entry;
  const p = e.params;
  return {
    dataset: s.datasetName, k: s.k, seed: s.seed, reg_covar: s.regCovar, cov: s.covType,
    points: s.points, position: s.position, steps: s.history.length - 1,
    iteration: e.iteration, kind: e.kind, next: e.nextKind, stop: e.stopReason,
    weights: p && Array.from(p.weights),
    means: p && Array.from({ length: p.k }, (_, j) => [p.means[2 * j], p.means[2 * j + 1]]),
    covariances: p && Array.from({ length: p.k }, (_, j) => Array.from(p.covs.subarray(3 * j, 3 * j + 3))),
    start_means: s.start && Array.from({ length: s.start.k },
      (_, j) => [s.start.means[2 * j], s.start.means[2 * j + 1]]),
    trace: e.trace.map((v) => (Number.isFinite(v) ? v : String(v))),
    colours: e.colours && Array.from(e.colours),
    collapsed: e.collapsedNow.map((r) => [r.component, r.iteration, r.empty]),
  };
}

const scripts = JSON.parse(process.argv[2]);
const out = scripts.map(({ query, actions }) => {
  const s = Session.fromQuery(catalogue, query);
  for (const a of actions) act(s, a);
  const address = s.query();
  const again = Session.fromQuery(catalogue, address);
  return {
    address, shown: shown(s), reopened: shown(again), asked: s.problems, problems: again.problems,
  };
});
process.stdout.write(JSON.stringify(out));
