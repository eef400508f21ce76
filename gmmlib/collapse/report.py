"""Reporting the collapse experiment: text tables, JSON records, files written all or nothing."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib
import numpy as np

from gmmlib.collapse.figures import RC

__all__ = [
    "format_value",
    "format_table",
    "format_sweep_k",
    "format_sweep_reg",
    "format_sweep_fixes",
    "record_json",
    "write_outputs",
]

# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def format_value(value, spec: str = ".6g") -> str:
    """``value`` formatted with ``spec``; "-" for a missing value (None)."""
    if value is None:
        return "-"
    return format(value, spec)


def format_table(trace: dict) -> str:
    """The per-iteration table of a run: ln p(X), each n_k and lambda_min, the collapse marked."""
    rows = trace["rows"]
    K = trace["n_components"]
    head = f"{'iter':>4}  {'ln p(X|θ_t-1)':>14}  "
    head += "  ".join(f"{'n_' + str(k):>7}" for k in range(K))
    head += "  " + "  ".join(f"{'λmin_' + str(k):>10}" for k in range(K))
    lines = [head]
    for r in rows:
        line = f"{r['iteration']:>4}  {format_value(r.get('log_likelihood'), '14.6f'):>14}  "
        line += "  ".join(f"{v:7.3f}" for v in r.get("nk", [math.nan] * K))
        line += "  " + "  ".join(f"{v:10.3e}" for v in r["min_eigenvalues"])
        if r["collapsed"]:
            line += "  <- collapse: component " + ", ".join(str(k) for k in r["collapsed"])
        lines.append(line)
    c = trace["collapse"]
    if c is not None:
        bound = (
            f"threshold {c['threshold']:.3e}"
            if not c["reg_covar"]
            else f"reg_covar + threshold = {c['reg_covar'] + c['threshold']:.6e}"
        )
        lines.append(
            f"COLLAPSE at iteration {c['iteration']}: component {c['component']} sits on "
            f"{c['n_points']} data point(s) (n_k = {c['nk']:.8g}), smallest eigenvalue "
            f"{c['min_eigenvalue']:.3e} <= {bound}"
        )
    if trace["final_log_likelihood"] is not None:
        lines.append(f"final ln p(X | θ_{trace['n_iter']}) = {trace['final_log_likelihood']:.6f}")
    if trace["status"] != "collapsed":
        words = {
            "converged": "converged",
            "max_iter": "stopped at max_iter",
            "crashed": "crashed: a covariance has no Cholesky factor",
        }[trace["status"]]
        lines.append(
            f"{'no collapse' if c is None else 'EM went on'}: {words} after "
            f"{trace['n_iter']} iterations"
        )
    return "\n".join(lines)


def format_sweep_k(record) -> str:
    """The `sweep_k` record as a text table: collapse rate and speed per K."""
    lines = [
        f"{'K':>3}  {'collapsed':>10}  {'rate':>5}  {'single point':>12}  "
        f"{'median iter':>11}  {'iter range':>10}"
    ]
    for s in record["summary"]:
        rng = "-" if s["min_iteration"] is None else f"{s['min_iteration']}-{s['max_iteration']}"
        lines.append(
            f"{s['n_components']:>3}  {s['n_collapsed']:>4}/{s['n_runs']:<5}  "
            f"{s['collapse_rate']:5.2f}  {s['n_single_point']:>12}  "
            f"{format_value(s['median_iteration'], 'g'):>11}  {rng:>10}"
        )
    return "\n".join(lines)


def format_sweep_reg(record) -> str:
    """The `sweep_reg` record as a text table: final ln p(X) per reg_covar."""
    lines = [f"{'reg_covar':>9}  {'final ln p(X)':>14}  {'slope':>7}  {'predicted':>9}  collapsed"]
    for r in record["rows"]:
        col = (
            ", ".join(
                f"k={c['component']} on {c['n_points']} pt, {c['collapsed_directions']} dir"
                for c in r["collapsed_at_end"]
            )
            or "none"
        )
        lines.append(
            f"{r['reg_covar']:9.0e}  {format_value(r['final_log_likelihood'], '14.4f'):>14}  "
            f"{format_value(r.get('measured_slope'), '7.3f'):>7}  "
            f"{r['predicted_slope']:9.2f}  {col}"
        )
    return "\n".join(lines)


def format_sweep_fixes(record) -> str:
    """The `sweep_fixes` record as a text table: what each fix prevents."""
    floor = record["parameters"]["covariance_prior"]["eigenvalue_floor"]
    lines = [f"{'fix':<16}  {'crashed':>8}  {'collapsed':>9}  {'smallest eigenvalue':>19}"]
    for f in record["fixes"]:
        lines.append(
            f"{f['name']:<16}  {f['n_crashed']:>3}/{f['n_runs']:<4}  "
            f"{f['n_collapsed']:>4}/{f['n_runs']:<4}  "
            f"{format_value(f['smallest_eigenvalue'], '19.3e')}"
        )
    lines.append(f"MAP prior eigenvalue floor lambda_min(Psi)/(N+nu+D+1) = {floor:.3e}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Writing outputs: JSON + PNG + SVG, all or nothing
# --------------------------------------------------------------------------------------------


def _jsonable(value):
    """Plain JSON types; non-finite floats become the strings "inf", "-inf", "nan"."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        v = float(value)
        if math.isfinite(v):
            return v
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return value


def record_json(record: dict) -> str:
    """The record as JSON text (stable key order, shortest round-trip floats)."""
    return json.dumps(_jsonable(record), indent=1, allow_nan=False, ensure_ascii=False) + "\n"


def _save_figure(fig, png: Path, svg: Path) -> None:
    with matplotlib.rc_context(RC):
        fig.savefig(png, dpi=110, metadata={"Software": None})
        fig.savefig(svg, metadata={"Date": None, "Creator": None})


def write_outputs(out: Path, outputs: Sequence[tuple[str, dict, Callable]]) -> list[Path]:
    """Write ``name``.json/.png/.svg into ``out`` for each ``(name, record, plot)``.

    Everything is built in a temporary folder inside ``out`` and renamed into place only once
    every file exists, so an error (or Ctrl-C) leaves ``out`` as it was.
    """
    out = Path(out)
    tmp = Path(tempfile.mkdtemp(prefix=".gmm-collapse-partial-", dir=out))
    try:
        names = []
        for name, record, plot in outputs:
            (tmp / f"{name}.json").write_text(record_json(record), encoding="utf-8")
            with matplotlib.rc_context(RC):
                fig = plot(record)
            _save_figure(fig, tmp / f"{name}.png", tmp / f"{name}.svg")
            names += [f"{name}{suffix}" for suffix in (".json", ".png", ".svg")]
        targets = []
        for file_name in names:
            os.replace(tmp / file_name, out / file_name)
            targets.append(out / file_name)
        return targets
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
