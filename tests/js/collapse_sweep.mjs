// For every K and seed in the explorer's data.json starts of one data set, run the explorer's EM
// core from that start (reg_covar and max_iter from argv; tol, collapse_tol and the N_k guard
// gmmlib's, from data.json, as the explorer runs) and print where it stops, as JSON:
//   node tests/js/collapse_sweep.mjs <dataset> <maxK> <nSeeds> <regCovar> <maxIter>
import { readFileSync } from "node:fs";
import { initFromIndices, makeData } from "../../book/_extra/explorer/em-core.mjs";
import { EMRun } from "../../book/_extra/explorer/em-run.mjs";

const [name, maxK, nSeeds, reg, maxIter] = process.argv.slice(2);
const url = new URL("../../book/_extra/explorer/data.json", import.meta.url);
const catalogue = JSON.parse(readFileSync(url, "utf8"));
const ds = catalogue.datasets[name];
const { tol, collapse_tol: collapseTol, nk_eps: nkEps } = catalogue.gmmlib;
const data = makeData(ds.X, { subspace: ds.subspace });
const out = [];
for (let k = 1; k <= Number(maxK); k++) {
  for (let seed = 0; seed < Number(nSeeds); seed++) {
    const run = new EMRun(data, initFromIndices(data, ds.starts[String(k)][seed]), {
      regCovar: Number(reg), tol, maxIter: Number(maxIter), collapseTol, nkEps,
    });
    while (run.step() !== null);
    const c = run.collapse;
    out.push({
      k, seed, stop: run.stopReason, iteration: run.iteration, converged: run.converged,
      collapse: c && { component: c.component, iteration: c.iteration, n_points: c.nPoints },
    });
  }
}
process.stdout.write(JSON.stringify(out));
