// The explorer's EM core has no rule constant of its own: leave out any of gmmlib's values (tol,
// maxIter, regCovar, collapseTol, nkEps) and EMRun refuses, naming it. Prints, as JSON, the
// error message for each option left out (null if EMRun accepted the options).
//   node tests/js/rules_required.mjs tests/fixtures/explorer/<case>.json
import { readFileSync } from "node:fs";
import { initFromIndices, makeData } from "../../book/_extra/explorer/em-core.mjs";
import { EMRun } from "../../book/_extra/explorer/em-run.mjs";

const fixture = JSON.parse(readFileSync(process.argv[2], "utf8"));
const data = makeData(fixture.X, { subspace: fixture.subspace });
const start = initFromIndices(data, fixture.start_indices);
const full = {
  regCovar: fixture.reg_covar,
  tol: fixture.tol,
  maxIter: fixture.max_iter,
  collapseTol: fixture.collapse_tol,
  nkEps: fixture.nk_eps,
};
const out = {};
for (const name of [null, ...Object.keys(full)]) {
  const opts = { ...full };
  if (name !== null) delete opts[name];
  try {
    new EMRun(data, start, opts);
    out[name ?? "none"] = null;
  } catch (err) {
    out[name ?? "none"] = `${err.name}: ${err.message}`;
  }
}
process.stdout.write(JSON.stringify(out));
