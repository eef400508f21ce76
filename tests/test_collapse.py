"""The collapse experiment (gmmlib.collapse): the reference case, the sweeps' claims, the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gmmlib import collapse
from gmmlib.collapse import main, run_experiment, sweep_fixes, sweep_k, sweep_reg
from gmmlib.datasets import collapse_data

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reference():
    return run_experiment()


# --------------------------------------------------------------------------------------------
# The reference case (K=4, seed 22, reg_covar=0, no prior): pinned
# --------------------------------------------------------------------------------------------


def test_reference_case_is_pinned(reference):
    assert collapse.REFERENCE["seed"] == 22
    result = reference["result"]
    c = result["collapse"]
    assert result["status"] == "collapsed"
    assert c["iteration"] == 9
    assert c["component"] == 2
    assert c["n_points"] == 1  # onto a single data point
    assert c["nk"] == pytest.approx(1.0, abs=1e-5)
    assert c["collapsed_directions"] == 2  # both variances gone: a point, not a line
    assert c["min_eigenvalue"] <= c["threshold"] == pytest.approx(2.358196670e-08, rel=1e-8)
    # Every earlier round is clean, and the collapsed row is marked with that component only.
    rows = result["rows"]
    assert [r["iteration"] for r in rows] == list(range(1, 10))
    assert all(r["collapsed"] == [] for r in rows[:-1])
    assert rows[-1]["collapsed"] == [2]
    # The collapsed component sits on a data point.
    X = collapse_data()
    assert np.min(np.linalg.norm(X - np.asarray(c["mean"]), axis=1)) < 1e-6


def test_reference_log_likelihood_rises_and_numbers(reference):
    rows = reference["result"]["rows"]
    ll = [r["log_likelihood"] for r in rows]
    assert ll[0] == pytest.approx(-59.050613, abs=1e-6)
    assert ll[-1] == pytest.approx(-19.943327, abs=1e-6)
    assert all(b >= a - 1e-9 for a, b in zip(ll, ll[1:], strict=False))  # EM never goes down
    # n_k of the collapsing component goes to one point; its variance to (numerically) zero.
    # 0.69861, 0.99331, 0.99999992: each >= 2e-4 from a rounding boundary; machines differ < 1e-10.
    assert [round(r["nk"][2], 3) for r in rows[-3:]] == [0.699, 0.993, 1.0]
    assert rows[-2]["min_eigenvalues"][2] == pytest.approx(4.116e-08, rel=1e-3)


def test_reference_record_has_everything_to_reproduce(reference):
    p = reference["parameters"]
    assert p["n_components"] == 4 and p["seed"] == 22 and p["reg_covar"] == 0.0
    assert p["prior"] is False and p["covariance_prior"] is None
    assert p["max_iter"] == 100 and p["collapse_tol"] == 1e-8
    assert reference["command"].startswith("gmm-collapse run --components 4 --seed 22")
    assert np.array_equal(np.asarray(reference["data"]["X"]), collapse_data())
    env = reference["environment"]
    assert env["numpy"] == np.__version__ and env["gmmlib"]
    # theta_0 ... theta_9: the start is the recipe's
    params = reference["result"]["parameters"]
    assert len(params) == 10
    assert params[0]["weights"] == [0.25] * 4


def test_table_marks_the_collapse(reference):
    table = collapse.format_table(reference["result"])
    lines = table.splitlines()
    assert "n_3" in lines[0] and "λmin_3" in lines[0]
    assert lines[9].rstrip().endswith("<- collapse: component 2")
    assert "COLLAPSE at iteration 9: component 2 sits on 1 data point(s)" in lines[-1]


def test_prior_run_does_not_collapse():
    record = run_experiment(prior=True)
    result = record["result"]
    assert result["collapse"] is None
    assert result["status"] == "converged"
    floor = record["parameters"]["covariance_prior"]["eigenvalue_floor"]
    assert min(min(r["min_eigenvalues"]) for r in result["rows"]) >= floor


# --------------------------------------------------------------------------------------------
# The sweeps' qualitative claims (small versions; the CLI runs the full ones)
# --------------------------------------------------------------------------------------------


@pytest.mark.slow  # a sweep
def test_collapse_rate_rises_with_k():
    record = sweep_k(range(2, 7), range(30))
    rates = [s["collapse_rate"] for s in record["summary"]]
    assert all(b >= a for a, b in zip(rates, rates[1:], strict=False)), rates
    assert rates[0] < 0.5 < rates[-1]
    assert rates[-1] == 1.0
    runs = record["runs"]
    assert len(runs) == 5 * 30
    ref = next(r for r in runs if r["n_components"] == 4 and r["seed"] == 22)
    assert (ref["collapse_iteration"], ref["component"], ref["n_points"]) == (9, 2, 1)


@pytest.mark.slow  # a sweep
def test_final_log_likelihood_grows_as_reg_falls():
    regs = [1e-4, 1e-6, 1e-8, 1e-10, 1e-12]
    record = sweep_reg(regs)
    rows = record["rows"]
    ll = [r["final_log_likelihood"] for r in rows]
    assert all(v is not None and math.isfinite(v) for v in ll)
    assert all(b > a + 5 for a, b in zip(ll, ll[1:], strict=False)), ll  # grows without bound
    for r in rows[1:]:
        # Each collapsed direction of a component on n points adds (n/2)(-ln reg): here one
        # component on 1 point (2 directions) + one on 2 points (1 direction) = slope 2.
        assert r["predicted_slope"] == 2.0
        assert r["measured_slope"] == pytest.approx(r["predicted_slope"], abs=0.01)
        # The collapsed direction has variance 0 + reg_covar exactly, up to the eigenvalue's
        # absolute rounding: a few eps x the largest entry (~0.05): measured <= 2.2e-17, so 1e-15
        # (not a relative tolerance: at reg_covar=1e-12 that rounding is 2e-5 of it).
        assert min(r["final_min_eigenvalues"]) == pytest.approx(r["reg_covar"], rel=0, abs=1e-15)


@pytest.mark.slow  # a sweep
def test_fixes_reg_stops_crash_not_collapse_prior_stops_collapse():
    record = sweep_fixes(range(20))
    by_name = {f["name"]: f for f in record["fixes"]}
    plain, reg, prior = by_name["reg_covar=0"], by_name["reg_covar=1e-06"], by_name["MAP prior"]
    assert plain["n_crashed"] >= 10 and plain["n_collapsed"] >= plain["n_crashed"]
    assert reg["n_crashed"] == 0 and reg["n_collapsed"] >= 10
    assert prior["n_crashed"] == 0 and prior["n_collapsed"] == 0
    floor = record["parameters"]["covariance_prior"]["eigenvalue_floor"]
    assert floor > 1e-4
    assert all(r["smallest_eigenvalue"] >= floor for r in prior["runs"])
    assert reg["smallest_eigenvalue"] >= 1e-6 * (1 - 1e-9)
    assert plain["smallest_eigenvalue"] < 1e-12
    assert plain["reference_trace"]["status"] == "crashed"


# --------------------------------------------------------------------------------------------
# Command line: outputs, reproducibility, bad options
# --------------------------------------------------------------------------------------------


def test_cli_default_is_the_reference_run_and_is_reproducible(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["--out", str(a)]) == 0
    out = capsys.readouterr().out
    assert "COLLAPSE at iteration 9: component 2" in out
    assert main(["run", "--out", str(b), "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    names = ["run.json", "run.png", "run.svg"]
    assert sorted(p.name for p in a.iterdir()) == names  # no temporary folder left behind
    # Byte for byte: promised on the same machine and libraries (the README says so), which is
    # what two runs in one process are; another processor or BLAS may differ in the last bits.
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    record = json.loads((a / "run.json").read_text())
    assert record["parameters"]["seed"] == 22
    assert record["result"]["collapse"]["iteration"] == 9
    assert (a / "run.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (a / "run.svg").read_bytes()[:2000]


@pytest.mark.slow  # a sweep
def test_cli_sweep_writes_its_record_and_reports_progress(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["sweep-k", "--k-min", "2", "--k-max", "3", "--seeds", "3", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "[1/6] K=2 seed=0" in captured.err and "[6/6] K=3 seed=2" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["sweep-k.json", "sweep-k.png", "sweep-k.svg"]
    record = json.loads((out / "sweep-k.json").read_text())
    assert record["parameters"]["k_values"] == [2, 3] and record["parameters"]["seeds"] == [0, 1, 2]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--components", "0"], "--components must be at least 1"),
        (["run", "--components", "21"], "at most the number of data points (N=20)"),
        (["run", "--reg-covar", "-1e-3"], "reg_covar must be a finite number >= 0"),
        (["run", "--reg-covar", "nan"], "reg_covar must be a finite number >= 0"),
        (["run", "--seed", "-1"], "a seed must be >= 0"),
        (["run", "--max-iter", "0"], "must be at least 1"),
        (["sweep-k", "--k-min", "0"], "--k-min must be at least 1"),
        (["sweep-k", "--k-max", "30"], "--k-max must be at most"),
        (["sweep-reg", "--reg-covar", "1e-3", "0"], "needs values > 0"),
        (["sweep-fixes", "--components", "25"], "at most the number of data points"),
    ],
)
def test_bad_options_fail_cleanly(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--out", str(out)])
    assert exc.value.code != 0
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_unwritable_output_folder_fails_cleanly(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(blocker / "results")])
    assert exc.value.code != 0
    assert "cannot write to output folder" in capsys.readouterr().err
    assert blocker.read_text() == "not a folder"


def test_failure_while_writing_leaves_no_partial_output(tmp_path, monkeypatch):
    out = tmp_path / "existing"
    out.mkdir()
    (out / "keep.txt").write_text("unrelated")

    def broken_plot(record):
        raise RuntimeError("figure failed")

    monkeypatch.setattr(collapse.cli, "plot_run", broken_plot)  # where main looks it up
    with pytest.raises(RuntimeError, match="figure failed"):
        main(["--out", str(out), "--quiet"])
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]  # no JSON, no temp folder

    fresh = tmp_path / "fresh" / "nested"
    with pytest.raises(RuntimeError):
        main(["--out", str(fresh), "--quiet"])
    assert not fresh.exists()


def test_console_script_and_module_entry_points(tmp_path):
    script = Path(sys.executable).with_name("gmm-collapse")
    for cmd in ([str(script)], [sys.executable, "-m", "gmmlib.collapse"]):
        if cmd[0] == str(script) and not script.exists():
            pytest.fail("console script missing: run `pip install -e .`")
        out = tmp_path / Path(cmd[-1]).name
        proc = subprocess.run(
            [*cmd, "run", "--components", "0", "--out", str(out)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        assert proc.returncode == 2
        assert "--components must be at least 1" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "gmmlib.collapse", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0
    assert "sweep-k" in proc.stdout and "sweep-reg" in proc.stdout


@pytest.mark.slow  # a sweep
def test_cli_all_writes_every_experiment_at_once(tmp_path, capsys):
    out = tmp_path / "all"
    assert main(["all", "--seeds", "2", "--out", str(out), "--quiet"]) == 0
    names = sorted(p.name for p in out.iterdir())
    expected = [
        f"{n}.{ext}"
        for n in ("run", "sweep-fixes", "sweep-k", "sweep-reg")
        for ext in ("json", "png", "svg")
    ]
    assert names == sorted(expected)
    records = {n: json.loads((out / f"{n}.json").read_text()) for n in ("run", "sweep-reg")}
    assert records["run"]["result"]["collapse"]["iteration"] == 9
    assert len(records["sweep-reg"]["rows"]) == 11  # 1e-2 ... 1e-12
    assert capsys.readouterr().err == ""  # --quiet: no progress either


def test_experiment_and_estimator_agree_on_rank_deficient_data():
    """A third coordinate that hardly varies (1e-6, below the rule's threshold): every component
    is flat in it, which is not a collapse, since the data are flat there too. The experiment
    used to measure the rule in all directions and flag every component from iteration 1; it
    now judges with the estimator's rule (data subspace included)."""
    from gmmlib.collapse.experiment import trace_em
    from gmmlib.diagnostics import CollapseRule

    X2 = collapse_data()
    X = np.column_stack([X2, 1e-6 * np.random.default_rng(1).standard_normal(len(X2))])
    rule = CollapseRule.for_data(X)
    assert rule.subspace is not None and rule.subspace.shape[1] == 2  # rank-deficient
    t = trace_em(X, 2, 0, reg_covar=1e-6, max_iter=30)
    assert t["status"] in ("converged", "max_iter") and t["collapse"] is None
    assert all(row["collapsed"] == [] for row in t["rows"])
    # The old rule (all D directions) would have flagged both components: the disagreement.
    last = t["rows"][-1]
    assert all(lam - 1e-6 <= rule.threshold for lam in last["min_eigenvalues"])
