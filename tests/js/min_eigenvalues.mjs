// Print the explorer's collapse-rule eigenvalues (em-core.mjs minEigenvalues) for covariances and
// a data subspace given as JSON { covs: [[a, b, d], ...], subspace: null | [[qx, qy], ...] }:
//   node tests/js/min_eigenvalues.mjs '{"covs": [[2, 0.5, 1]], "subspace": [[0.6, 0.8]]}'
import { minEigenvalues } from "../../book/_extra/explorer/collapse-rule.mjs";

const { covs, subspace } = JSON.parse(process.argv[2]);
const lam = minEigenvalues(Float64Array.from(covs.flat()), covs.length, subspace);
// JSON has no Infinity: send it as a string.
process.stdout.write(JSON.stringify(Array.from(lam, (v) => (Number.isFinite(v) ? v : String(v)))));
