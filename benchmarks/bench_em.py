"""Seconds per EM iteration and peak memory: gmmlib vs scikit-learn, same work.

gmmlib's side is `GaussianMixture`, which runs the private engine `gmmlib._engine` (the
reference `gmmlib.em` is the readable maths; tests/test_engine.py holds the two equal).

For each (N, D, K): the same data, the same initial parameters (K data points as means, the data
covariance for every component, equal weights), the same number of EM rounds (tol=0 so neither
stops early), full covariances, reg_covar=1e-6. Seconds per round are differential:
(fit with 1 + n rounds - fit with 1 round) / n, each the best of a few repeats, so validation,
set-up and the final E-step, which both libraries also do, do not count as EM rounds. The two
libraries' fits are interleaved repeat by repeat, so a load that comes and goes slows both
alike; the load average is printed before and after, and a row whose differential is not
positive (the machine was too busy to measure) says so instead of printing a ratio. Peak
memory is tracemalloc's peak during one fit (numpy reports its allocations to tracemalloc),
beyond the data itself. Both run in this process with the same numpy/BLAS, so the ratio is what
the code does, not the machine; run it on an otherwise idle machine.

    python benchmarks/bench_em.py            # the five rows of the issue
    python benchmarks/bench_em.py --quick    # smaller rows, a smoke run
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import time
import tracemalloc
import warnings

import numpy as np

ROWS = [(10_000, 2, 3), (100_000, 2, 5), (100_000, 16, 8), (1_000_000, 2, 5), (200_000, 64, 16)]
QUICK_ROWS = [(10_000, 2, 3), (20_000, 16, 8), (20_000, 64, 16)]


def make_problem(N: int, D: int, K: int, seed: int = 0):
    """Data from K random Gaussians and the stated start used by both libraries."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(K, D))
    labels = rng.integers(K, size=N)
    A = rng.normal(size=(K, D, D)) / np.sqrt(D)
    X = centres[labels] + np.einsum("nde,ne->nd", A[labels], rng.normal(size=(N, D)))
    means = X[rng.choice(N, size=K, replace=False)]
    diff = X - X.mean(axis=0)
    cov = diff.T @ diff / N
    return X, np.full(K, 1.0 / K), means, np.repeat(cov[None], K, axis=0)


def fit_gmmlib(X, weights, means, covariances, n_iter):
    from gmmlib import GaussianMixture

    gm = GaussianMixture(  # on_collapse="continue": go on like scikit-learn (same work)
        len(weights),
        tol=0.0,
        max_iter=n_iter,
        reg_covar=1e-6,
        weights_init=weights,
        means_init=means,
        covariances_init=covariances,
        on_collapse="continue",
    )
    gm.fit(X)
    return gm.score(X)


def fit_sklearn(X, weights, means, covariances, n_iter):
    from sklearn.mixture import GaussianMixture

    gm = GaussianMixture(
        len(weights),
        tol=0.0,
        max_iter=n_iter,
        reg_covar=1e-6,
        weights_init=weights,
        means_init=means,
        precisions_init=np.linalg.inv(covariances),
    )
    gm.fit(X)
    return gm.score(X)


def seconds(fit, problem, n_iter):
    gc.collect()
    start = time.perf_counter()
    fit(*problem, n_iter)
    return time.perf_counter() - start


def seconds_per_iteration(fits, problem, n_iter, repeats):
    """Differential: the cost of n more EM rounds, per round, for each fit in `fits`.

    Each fit is warmed up once; then, repeat by repeat, every fit runs 1 and 1 + n rounds in
    turn (interleaved, so a passing load slows them alike), and the best of the repeats counts.
    """
    for fit in fits:
        fit(*problem, 1)
    one = [np.inf] * len(fits)
    more = [np.inf] * len(fits)
    for _ in range(repeats):
        for i, fit in enumerate(fits):
            one[i] = min(one[i], seconds(fit, problem, 1))
            more[i] = min(more[i], seconds(fit, problem, 1 + n_iter))
    return [(m - o) / n_iter for m, o in zip(more, one, strict=True)]


def peak_memory(fit, problem, n_iter):
    gc.collect()
    tracemalloc.start()
    fit(*problem, n_iter)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small rows (a smoke run)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--row", type=int, action="append", help="only these rows (0-based)")
    args = parser.parse_args(argv)
    rows = QUICK_ROWS if args.quick else ROWS
    if args.row:
        rows = [rows[i] for i in args.row]
    warnings.simplefilter("ignore")  # both warn that tol=0 did not converge: intended

    import sklearn
    from threadpoolctl import threadpool_info

    blas = ", ".join(f"{i['internal_api']} {i['num_threads']} threads" for i in threadpool_info())
    print(
        f"numpy {np.__version__}, scikit-learn {sklearn.__version__}, "
        f"Python {platform.python_version()}, {blas}; "
        f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
    )
    header = (
        f"| {'N':>9} | {'D':>3} | {'K':>3} | {'sklearn s/iter':>14} | {'gmmlib s/iter':>13} "
        f"| {'speed-up':>8} | {'sklearn peak MiB':>16} | {'gmmlib peak MiB':>15} "
        f"| {'Δ score':>9} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for N, D, K in rows:
        problem = make_problem(N, D, K)
        n_iter = max(5, min(20, int(2e7 / (N * K * D))))
        t_sk, t_gm = seconds_per_iteration((fit_sklearn, fit_gmmlib), problem, n_iter, args.repeats)
        m_sk = peak_memory(fit_sklearn, problem, n_iter) / 2**20
        m_gm = peak_memory(fit_gmmlib, problem, n_iter) / 2**20
        gap = abs(fit_sklearn(*problem, n_iter) - fit_gmmlib(*problem, n_iter))
        ratio = f"{t_sk / t_gm:>7.1f}×" if min(t_sk, t_gm) > 0 else "  busy*"
        print(
            f"| {N:>9,} | {D:>3} | {K:>3} | {t_sk:>14.4f} | {t_gm:>13.4f} | {ratio} "
            f"| {m_sk:>16.1f} | {m_gm:>15.1f} | {gap:>9.1e} |",
            flush=True,
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if "busy*" in ratio:
        print("* a differential was not positive: the machine was too busy; run it again idle")


if __name__ == "__main__":
    main()
