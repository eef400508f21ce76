// Drive the explorer's DOM-free session (book/_extra/explorer/session.mjs) through scripted
// actions and print, as JSON, for each script: the address it ends on, what it shows then, and
// what a new session opened at that address shows (tests/test_explorer_session.py compares them).
//   node tests/js/session_script.mjs '[{"query": "dataset=faithful&k=2", "actions": ["E", "M"]}]'
// Actions: "E", "M" (that step, if next), "forward", "end" (run to the end), "scrub:<position>",
// "mean:<j>:<x>:<y>" (drag a mean), "add:<x>:<y>", "remove:<i>", "move:<i>:<x>:<y>" (points by
// hand), "own" (draw your own data), "k:<K>", "seed:<s>", "reg:on|off", "continue", "stale" (a
// step asked for, then a restart before it arrives). With "later": true the steps come from a
// driver whose steps are Promises (as a notebook widget's Python steps are).
import { readFileSync } from "node:fs";
import { EMRun } from "../../book/_extra/explorer/em-run.mjs";
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
  return table[name]();
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

/**
 * A driver whose steps arrive later (a Promise, as from Python through a notebook widget), with
 * a restart while one is on its way when `interrupt` is set.
 */
const laterDriver = {
  createRun(data, start, opts) {
    const run = new EMRun(data, start, opts);
    const step = run.step.bind(run);
    run.step = () => new Promise((resolve) => setTimeout(() => resolve(step()), 1));
    return run;
  },
};

async function play({ query, actions, later = false }) {
  const options = later ? { driver: laterDriver } : {};
  const s = Session.fromQuery(catalogue, query, options);
  await s.ready;
  for (const a of actions) {
    if (a === "stale") {
      // Ask for a step, then restart before it arrives: the late step must be dropped.
      const late = s.stepForward();
      s.restartFromSeed();
      await late;
      continue;
    }
    await act(s, a);
  }
  const address = s.query();
  const again = Session.fromQuery(catalogue, address, options);
  await again.ready;
  return {
    address, shown: shown(s), reopened: shown(again), asked: s.problems, problems: again.problems,
  };
}

const scripts = JSON.parse(process.argv[2]);
const out = [];
for (const script of scripts) out.push(await play(script));
process.stdout.write(JSON.stringify(out));
