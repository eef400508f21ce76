"""Figures of the collapse experiment (`gmmlib.collapse`): one function per record kind.

Each takes the JSON-ready record its experiment returns and gives a matplotlib Figure, built
with the object API (no pyplot, no global backend) and fixed rc settings, so the same record
draws the same PNG and SVG bytes every time.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from gmmlib.diagnostics import min_eigenvalues
from gmmlib.plotting import PALETTE, component_colors, covariance_ellipse

__all__ = ["plot_run", "plot_sweep_k", "plot_sweep_reg", "plot_sweep_fixes", "RC"]
#: matplotlib rc settings for every figure: fixed SVG hash salt and fonts, for identical bytes.
RC = {
    "svg.hashsalt": "gmm-collapse",
    "svg.fonttype": "path",
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "path.simplify": False,
}
# Log-scale eigenvalue plots draw values below this floor (an exact collapse gives 0 or a tiny
# negative number from rounding) at the floor, and say so in the legend.
_PLOT_FLOOR = 1e-20


def _new_figure(width, height):
    return Figure(figsize=(width, height), layout="constrained")


def _clip_floor(values, floor: float) -> np.ndarray:
    """Values for a log axis: anything below ``floor`` (zero, negative, NaN) drawn at ``floor``."""
    v = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(v) & (v > floor), v, floor)


def _run_plot_floor(lam: np.ndarray, threshold: float) -> float:
    """A floor three decades below the smallest positive eigenvalue (at most 1e-60 below)."""
    positive = lam[np.isfinite(lam) & (lam > 0)]
    low = min(float(positive.min()) if positive.size else threshold, threshold)
    return max(1e-60, 10.0 ** (math.floor(math.log10(low)) - 3))


def plot_run(record: dict):
    """Data + each component's 2-sigma ellipse over the iterations; ln p(X), lambda_min traces."""
    X = np.asarray(record["data"]["X"])
    trace = record["result"]
    params = trace["parameters"]
    K = trace["n_components"]
    colours = component_colors(K)
    collapse = trace["collapse"]
    fig = _new_figure(12.0, 4.2)
    ax_data, ax_ll, ax_eig = fig.subplots(1, 3, width_ratios=(1.25, 1.0, 1.0))

    ax_data.scatter(X[:, 0], X[:, 1], s=18, color="#555555", zorder=3, label="data")
    T = len(params) - 1
    for t, p in enumerate(params):
        alpha = 0.12 + 0.88 * (t / T if T else 1.0)
        for k in range(K):
            cov = np.asarray(p["covariances"][k])
            if not np.all(np.isfinite(cov)):
                continue
            last = t == T
            ax_data.add_patch(
                covariance_ellipse(
                    p["means"][k],
                    cov,
                    2.0,
                    edgecolor=colours[k],
                    alpha=alpha,
                    linewidth=2.0 if last else 0.7,
                    zorder=2,
                )
            )
        means = np.asarray(p["means"])
        ax_data.scatter(
            means[:, 0],
            means[:, 1],
            s=6,
            c=colours,
            alpha=alpha,
            zorder=4,
            marker="x",
            linewidths=0.8,
        )
    if collapse is not None:
        m = collapse["mean"] if "mean" in collapse else params[-1]["means"][collapse["component"]]
        ax_data.scatter(
            [m[0]],
            [m[1]],
            s=160,
            facecolors="none",
            edgecolors="#D55E00",
            linewidths=2.0,
            zorder=5,
            label=f"component {collapse['component']} collapses "
            f"(iteration {collapse['iteration']})",
        )
    ax_data.set_aspect("equal", adjustable="datalim")
    ax_data.set_title(f"2σ ellipses, iterations 0–{T} (faint = early)")
    ax_data.legend(loc="lower left", fontsize=7, frameon=False)

    rows = trace["rows"]
    its = [r["iteration"] - 1 for r in rows]  # ln p(X | theta_{t-1}) belongs to theta_{t-1}
    ll = [r.get("log_likelihood") for r in rows]
    ax_ll.plot(its, ll, marker="o", markersize=3, color=PALETTE[0])
    ax_ll.set_xlabel("EM iteration t (parameters θ_t)")
    ax_ll.set_ylabel("ln p(X | θ_t)")
    ax_ll.set_title("log-likelihood")
    ax_ll.grid(alpha=0.3)

    if collapse is not None:
        ax_ll.annotate(
            f"θ_{collapse['iteration']}: component {collapse['component']} collapsed,\n"
            "ln p(X) → +∞ as its variance → 0",
            xy=(0.97, 0.04),
            xycoords="axes fraction",
            ha="right",
            va="bottom",
            fontsize=7,
            color="#D55E00",
        )

    lam0 = min_eigenvalues(np.asarray(params[0]["covariances"]))
    lam = np.vstack([lam0[None], np.asarray([r["min_eigenvalues"] for r in rows]).reshape(-1, K)])
    x = [0] + [r["iteration"] for r in rows]
    threshold = record["parameters"]["collapse_threshold"] + record["parameters"]["reg_covar"]
    floor = _run_plot_floor(lam, threshold)
    for k in range(K):
        ax_eig.plot(
            x,
            _clip_floor(lam[:, k], floor),
            marker="o",
            markersize=3,
            color=colours[k],
            label=f"component {k}",
        )
    if np.any(~(lam > floor)):
        ax_eig.axhline(
            floor, color="#777777", linewidth=0.6, label=f"≤ {floor:.0e}: 0 up to rounding"
        )
    ax_eig.axhline(
        threshold, color="#D55E00", linestyle="--", linewidth=1, label="collapse threshold"
    )
    if collapse is not None:
        ax_eig.axvline(collapse["iteration"], color="#D55E00", linewidth=0.8, alpha=0.6)
    ax_eig.set_yscale("log")
    ax_eig.set_xlabel("EM iteration t")
    ax_eig.set_ylabel("smallest eigenvalue of Σ_k (log scale)")
    ax_eig.set_title("smallest covariance eigenvalue")
    ax_eig.grid(alpha=0.3)
    ax_eig.legend(fontsize=7, frameon=False)
    p = record["parameters"]
    fig.suptitle(
        f"Collapse experiment: K={p['n_components']}, seed={p['seed']}, "
        f"reg_covar={p['reg_covar']:g}, prior={'on' if p['prior'] else 'off'}"
    )
    return fig


def plot_sweep_k(record: dict):
    """Collapse rate against K, and the iteration of the collapse (median and quartiles)."""
    s = record["summary"]
    K = [r["n_components"] for r in s]
    fig = _new_figure(9.0, 3.6)
    ax_rate, ax_it = fig.subplots(1, 2)
    ax_rate.bar(K, [r["collapse_rate"] for r in s], color=PALETTE[0], label="any collapse")
    ax_rate.bar(
        K, [r["n_single_point"] / r["n_runs"] for r in s], color=PALETTE[4], label="onto one point"
    )
    ax_rate.set_xlabel("number of components K")
    ax_rate.set_ylabel(f"fraction of {s[0]['n_runs'] if s else 0} seeds")
    ax_rate.set_ylim(0, 1.05)
    ax_rate.set_title("how often EM collapses")
    ax_rate.legend(fontsize=7, frameon=False)
    for r in record["runs"]:
        if r["collapse_iteration"] is not None:
            jitter = ((r["seed"] * 0.6180339887) % 1.0 - 0.5) * 0.5
            ax_it.plot(
                r["n_components"] + jitter,
                r["collapse_iteration"],
                ".",
                color="#999999",
                markersize=3,
            )
    med = [
        (r["n_components"], r["median_iteration"], r["quartile_iterations"])
        for r in s
        if r["median_iteration"] is not None
    ]
    if med:
        k_, m_, q_ = zip(*med, strict=True)
        err = np.array(
            [
                [m - q[0] for m, q in zip(m_, q_, strict=True)],
                [q[1] - m for m, q in zip(m_, q_, strict=True)],
            ]
        )
        ax_it.errorbar(
            k_, m_, yerr=err, fmt="o", color=PALETTE[0], capsize=3, label="median (quartiles)"
        )
        ax_it.legend(fontsize=7, frameon=False)
    ax_it.set_xlabel("number of components K")
    ax_it.set_ylabel("EM iteration of the collapse")
    ax_it.set_title("how fast")
    ax_it.grid(alpha=0.3)
    fig.suptitle("Collapse over seeds, reg_covar = 0")
    return fig


def plot_sweep_reg(record: dict):
    """Final ln p(X) against reg_covar (log x): it keeps growing as reg_covar -> 0."""
    rows = [r for r in record["rows"] if r["final_log_likelihood"] is not None]
    fig = _new_figure(9.0, 3.6)
    ax_ll, ax_eig = fig.subplots(1, 2)
    reg = np.array([r["reg_covar"] for r in rows])
    ll = np.array([r["final_log_likelihood"] for r in rows])
    ax_ll.plot(reg, ll, "o-", color=PALETTE[0], label="final ln p(X)")
    if len(rows) > 0:
        slope = rows[-1]["predicted_slope"]
        ref = ll[-1] - slope * (-np.log(reg[-1]))
        ax_ll.plot(
            reg,
            ref + slope * (-np.log(reg)),
            "--",
            color=PALETTE[4],
            label=f"{slope:g} × (−ln reg_covar) + c",
        )
    ax_ll.set_xscale("log")
    ax_ll.invert_xaxis()
    ax_ll.set_xlabel("reg_covar (→ 0 to the right)")
    ax_ll.set_ylabel("final ln p(X)")
    ax_ll.set_title("the likelihood is unbounded")
    ax_ll.legend(fontsize=7, frameon=False)
    ax_ll.grid(alpha=0.3)
    lam = np.array([min(r["final_min_eigenvalues"]) for r in rows])
    ax_eig.plot(
        reg, _clip_floor(lam, _PLOT_FLOOR), "o-", color=PALETTE[0], label="smallest eigenvalue"
    )
    ax_eig.plot(reg, reg, ":", color="#777777", label="= reg_covar")
    ax_eig.set_xscale("log")
    ax_eig.set_yscale("log")
    ax_eig.invert_xaxis()
    ax_eig.set_xlabel("reg_covar")
    ax_eig.set_ylabel("smallest eigenvalue at the end")
    ax_eig.set_title("the collapsed variance is reg_covar")
    ax_eig.legend(fontsize=7, frameon=False)
    ax_eig.grid(alpha=0.3)
    p = record["parameters"]
    fig.suptitle(
        f"reg_covar sweep: K={p['n_components']}, seed={p['seed']}, EM continued after the collapse"
    )
    return fig


def plot_sweep_fixes(record: dict):
    """Smallest eigenvalue over iterations for the three fixes (reference seed) + run counts."""
    fixes = record["fixes"]
    fig = _new_figure(9.0, 3.6)
    ax_tr, ax_bar = fig.subplots(1, 2)
    colours = [PALETTE[4], PALETTE[1], PALETTE[2]]
    for f, colour in zip(fixes, colours, strict=False):
        lam = [min(v) for v in f["reference_trace"]["min_eigenvalues"]]
        ax_tr.plot(
            np.arange(1, len(lam) + 1),
            _clip_floor(lam, _PLOT_FLOOR),
            "-",
            color=colour,
            label=f"{f['name']} ({f['reference_trace']['status']})",
        )
    floor = record["parameters"]["covariance_prior"]["eigenvalue_floor"]
    ax_tr.axhline(floor, color=PALETTE[2], linestyle="--", linewidth=1, label="prior floor")
    ax_tr.axhline(
        _PLOT_FLOOR, color="#777777", linewidth=0.6, label=f"≤ {_PLOT_FLOOR:.0e} (drawn here)"
    )
    ax_tr.set_yscale("log")
    ax_tr.set_xlabel("EM iteration")
    ax_tr.set_ylabel("smallest eigenvalue over components")
    ax_tr.set_title(f"seed {record['parameters']['reference_seed']}")
    ax_tr.legend(fontsize=7, frameon=False)
    ax_tr.grid(alpha=0.3)
    x = np.arange(len(fixes))
    n = [f["n_runs"] for f in fixes]
    ax_bar.bar(
        x - 0.2,
        [f["n_crashed"] / m for f, m in zip(fixes, n, strict=True)],
        0.4,
        color=PALETTE[4],
        label="crashed (no Cholesky factor)",
    )
    ax_bar.bar(
        x + 0.2,
        [f["n_collapsed"] / m for f, m in zip(fixes, n, strict=True)],
        0.4,
        color=PALETTE[0],
        label="collapsed",
    )
    ax_bar.set_xticks(x, [f["name"] for f in fixes])
    ax_bar.set_ylim(0, 1.05)
    ax_bar.set_ylabel(f"fraction of {n[0] if n else 0} seeds")
    ax_bar.set_title("what each fix stops")
    ax_bar.legend(fontsize=7, frameon=False)
    fig.suptitle(f"Fixes, K={record['parameters']['n_components']}")
    return fig
