"""The collapse experiment: EM driving one component onto a single point, reproducibly.

A Gaussian mixture's likelihood is unbounded: a component whose mean sits on a data point and
whose covariance shrinks to zero makes ln p(X) -> +inf. With too many components or a bad start,
EM walks straight into this. This module turns docs/DESIGN.md's recipe into a citable experiment:

- data: ``gmmlib.datasets.collapse_data()`` (20 points in 2-D, generator seed 0);
- start: ``gmmlib.datasets.collapse_init(X, K, seed)`` (K distinct data points as means, every
  covariance the data covariance, equal weights);
- EM: ``gmmlib.GaussianMixture(...).steps(X)`` from that start; the collapse rule, the report and
  the MAP prior are gmmlib's (`gmmlib.diagnostics`, `gmmlib.prior`), never re-implemented here.

Command line (console script ``gmm-collapse``, or ``python -m gmmlib.collapse``)::

    gmm-collapse                       # = gmm-collapse run with the reference case
    gmm-collapse run --components 4 --seed 22 --reg-covar 0 --no-prior --max-iter 100 --out DIR
    gmm-collapse sweep-k               # collapse rate and speed over seeds, K = 2..8
    gmm-collapse sweep-reg             # final ln p(X) as reg_covar goes 1e-2 -> 1e-12
    gmm-collapse sweep-fixes           # reg_covar=0 vs reg_covar=1e-6 vs the MAP prior
    gmm-collapse all --out DIR         # the reference run and the three sweeps, defaults

Each command prints its table (sweeps report progress on stderr) and writes, into ``--out``,
``<name>.json`` (every parameter, the per-iteration / per-run table, library versions) and a
figure ``<name>.png`` + ``<name>.svg``. Files are written to a temporary folder inside ``--out``
and renamed into place at the end, so a failure leaves no half-written output. On the same machine
and libraries the same inputs give byte-identical JSON (and PNG/SVG with the same fonts).

The same functions are importable for the book: `run_experiment`, `sweep_k`, `sweep_reg`,
`sweep_fixes` return plain records (dicts); `plot_run`, `plot_sweep_k`, `plot_sweep_reg`,
`plot_sweep_fixes` draw them on a new matplotlib Figure.

The package, one idea per module: `experiment` (one traced run and its record), `sweeps` (the
three sweeps), `figures` (one figure per record kind), `report` (tables, JSON, writing the
files), `cli` (the command line). The modules use only each other's public names (each
module's ``__all__``): the record parts (`experiment.data_record`, `environment_record`,
`prior_record`, `command_line`) and the table formatters
(`report.format_value`, `format_sweep_k`, `format_sweep_reg`, `format_sweep_fixes`).
"""

from gmmlib.collapse.cli import main
from gmmlib.collapse.experiment import RECORD_FORMAT, REFERENCE, run_experiment, trace_em
from gmmlib.collapse.figures import plot_run, plot_sweep_fixes, plot_sweep_k, plot_sweep_reg
from gmmlib.collapse.report import format_table, record_json, write_outputs
from gmmlib.collapse.sweeps import sweep_fixes, sweep_k, sweep_reg

__all__ = [
    "REFERENCE",
    "RECORD_FORMAT",
    "trace_em",
    "run_experiment",
    "sweep_k",
    "sweep_reg",
    "sweep_fixes",
    "plot_run",
    "plot_sweep_k",
    "plot_sweep_reg",
    "plot_sweep_fixes",
    "format_table",
    "record_json",
    "write_outputs",
    "main",
]
