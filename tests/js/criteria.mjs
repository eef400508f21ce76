// ln p, BIC and AIC against K from the explorer's core (em-core.mjs criteriaAgainstK), printed as
// JSON. Used by tests/test_explorer_criteria.py:
//   node tests/js/criteria.mjs '{"X": [[x, y], ...], "subspace": null, "covariance_type": "diag",
//     "starts": {"1": [i], "2": [i, j], ...}, "rules": {tol, max_iter, reg_covar, ...}}'
import { criteriaAgainstK } from "../../book/_extra/explorer/criteria.mjs";
import { initFromIndices, makeData } from "../../book/_extra/explorer/em-core.mjs";

const input = JSON.parse(process.argv[2]);
const data = makeData(input.X, { subspace: input.subspace });
const { rules, covariance_type: covarianceType } = input;
const ks = Object.keys(input.starts).map(Number);
const rows = criteriaAgainstK(
  data,
  ks,
  (k) => initFromIndices(data, input.starts[String(k)], covarianceType),
  {
    regCovar: rules.reg_covar,
    tol: rules.tol,
    maxIter: rules.max_iter,
    collapseTol: rules.collapse_tol,
    nkEps: rules.nk_eps,
    covarianceType,
  },
);
process.stdout.write(JSON.stringify(rows));
