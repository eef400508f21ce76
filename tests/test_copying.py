"""Copy detection (`grading.copying`): copies found through renaming, honest answers left alone.

The honest class is tests/fixtures/copying/valid_*.py: correct answers written independently,
in different styles. The copies are made by tests/fixtures/copying/disguise.py (every bound
name changed, docstrings removed, comments added).
"""

from __future__ import annotations

import ast
import csv
import functools
import importlib.util
import runpy
from pathlib import Path

import nbformat
import numpy as np
import pytest
from copydetect import compare_files

from gmmlib import em
from grading import copying
from grading.codeunits import code_units, normalise
from grading.course import EXERCISES, SOLUTIONS
from grading.pipeline import export

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "copying"
VALID = sorted(FIXTURES.glob("valid_*.py"))


def _disguise():
    spec = importlib.util.spec_from_file_location("disguise", FIXTURES / "disguise.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


disguise = _disguise()


@functools.cache
def visible():
    return copying.visible_documents(["em_by_hand"])


@functools.cache
def boilerplate():
    return tuple(copying.boilerplate(["em_by_hand"]))


def honest_class() -> dict[str, list]:
    return {p.stem: code_units(p.read_text(), p.stem, p.stem) for p in VALID}


def test_the_honest_answers_are_correct():
    """The test data is what it claims: each valid_* file computes gmmlib's numbers."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(25, 2))
    weights, means = np.array([0.2, 0.3, 0.5]), rng.normal(size=(3, 2))
    A = rng.normal(size=(3, 2, 2))
    covariances = A @ A.transpose(0, 2, 1) + 0.5 * np.eye(2)
    resp = em.e_step(X, weights, means, covariances)
    assert len(VALID) >= 5
    for path in VALID:
        ns = runpy.run_path(str(path))
        np.testing.assert_allclose(ns["e_step"](X, weights, means, covariances), resp, rtol=1e-8)
        got = ns["log_likelihood"](X, weights, means, covariances)
        assert np.isclose(got, em.log_likelihood(X, weights, means, covariances)), path.name
        for g, e in zip(ns["m_step"](X, resp), em.m_step(X, resp), strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-7, atol=1e-12, err_msg=path.name)


def test_normalise_ignores_names_comments_and_docstrings_but_not_the_calls():
    plain = "def e_step(X, w):\n    r = np.exp(X - w)\n    return r / r.sum(axis=1)\n"
    dressed = (
        'def mine(data, pis):\n    """Responsibilities."""\n    # exponentiate\n'
        "    gamma = np.exp(data - pis)  # (N, K)\n    return gamma / gamma.sum(axis=1)\n"
    )
    other_call = "def e_step(X, w):\n    r = np.exp2(X - w)\n    return r / r.sum(axis=1)\n"
    assert normalise(plain) == normalise(dressed)
    assert normalise(plain) != normalise(other_call)
    assert "np.exp" in normalise(plain) and "gamma" not in normalise(dressed)


def test_cells_are_cut_into_functions_and_magics_do_not_break_parsing():
    code = "%matplotlib inline\nimport numpy as np\n\ndef a(x):\n    return x\n\ny = a(2)\n"
    units = code_units(code, "alice", "em_by_hand_e_step")
    assert [u.name for u in units] == ["a", "<cell>"]
    broken = code_units("def a(x:\n    return x  # oops\n", "bob", "cell")
    assert [u.name for u in broken] == ["<cell>"] and "#" not in broken[0].normalised


def test_gmmlib_pasted_with_renamed_names_is_found():
    pasted = disguise.disguise(disguise.pasted_gmmlib())
    assert "my_means" in pasted and '"""' not in pasted  # really disguised
    answers = {"paster": code_units(pasted, "paster", "em_by_hand_e_step")} | honest_class()
    found = copying.compare(answers, visible(), boilerplate())
    assert {m.student for m in found} == {"paster"}, [(m.student, m.other) for m in found]
    match = next(m for m in found if m.other == "gmmlib/em.py")
    assert match.score >= copying.ANSWER_VISIBLE
    assert {"e_step", "m_step", "log_likelihood"} <= {u.name for u in match.units}
    assert any(u.name == "log_gaussian_density" for u in match.other_units), match.other_units


def test_one_function_pasted_from_gmmlib_is_found():
    """Only e_step (and its helpers) pasted; m_step and log_likelihood the student's own."""
    pasted = disguise.disguise(disguise.pasted_gmmlib())
    tree = ast.parse(pasted)
    keep = [n for n in tree.body if getattr(n, "name", "") not in ("m_step", "log_likelihood")]
    own = [n for n in ast.parse(VALID[2].read_text()).body if getattr(n, "name", "") != "e_step"]
    code = ast.unparse(ast.Module(body=keep + own, type_ignores=[]))
    found = copying.compare({"part": code_units(code, "part", "c")}, visible(), boilerplate())
    assert [m.other for m in found] == ["gmmlib/em.py"], found
    assert "e_step" in {u.name for u in found[0].units}
    assert "m_step" not in {u.name for u in found[0].units}


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_a_classmate_copy_puts_both_on_the_list(path):
    honest = honest_class()
    copy = disguise.disguise(path.read_text())
    assert copy != path.read_text()
    answers = honest | {"copier": code_units(copy, "copier", "c")}
    pairs = {(m.student, m.other) for m in copying.compare(answers, visible(), boilerplate())}
    assert pairs == {("copier", path.stem), (path.stem, "copier")}, pairs


def test_the_honest_class_is_not_flagged():
    honest = honest_class()
    models = copying.model_answers(["em_by_hand"])
    found = copying.compare(honest, visible(), boilerplate(), models)
    assert found == [], [(m.student, m.scope, round(m.score, 2), m.other) for m in found]


def test_share_is_copydetects_own_number():
    """`copying.share` (computed from one side, for speed) gives what copydetect's
    ``compare_files`` gives, on every pair of an honest answer's functions, whole answers,
    disguised copies and the visible files, boilerplate removed."""
    bp = boilerplate()
    texts = [u.normalised for us in honest_class().values() for u in us if copying.judged(u)]
    texts += [copying._Prints(bp).document(us)[0].raw_code for us in honest_class().values()]
    texts += [copying._Prints(bp).document(us)[0].raw_code for us in visible().values()][:6]
    texts.append(normalise(disguise.disguise(VALID[0].read_text())))
    prints = [copying._fingerprint(t, bp) for t in texts]
    checked = 0
    for part in prints:
        for whole in prints:
            expected = float(compare_files(part, whole)[1][0]) if part.hashes & whole.hashes else 0
            assert copying.share(part, whole) == pytest.approx(expected, abs=1e-12)
            checked += 0 < expected < 1
    assert checked > 20  # partial overlaps were compared, not only 0 and 1


def _notebook(code: str, folder: Path, student: str) -> Path:
    """The release notebook with ``code``'s functions in the answer cells named for them (the
    rest in e_step's cell), as a student hands it in."""
    nb = nbformat.read(EXERCISES / "em_by_hand" / "em_by_hand.ipynb", as_version=4)
    cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nb.cells}
    text = {gid: [] for gid in cells}
    for node in ast.parse(code).body:
        gid = f"em_by_hand_{getattr(node, 'name', '')}"
        text[gid if gid in cells else "em_by_hand_e_step"].append(ast.unparse(node))
    for gid, parts in text.items():
        if parts:
            cells[gid].source = "\n\n".join(parts)
    path = folder / student / "em_by_hand.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, path)
    return path


def test_copy_report_writes_both_snippets_and_review_rows(tmp_path):
    sub, out = tmp_path / "submissions", tmp_path / "out"
    out.mkdir()
    codes = {p.stem: p.read_text() for p in VALID[:3]}
    codes["paster"] = disguise.disguise(disguise.pasted_gmmlib())
    codes["sharer"] = disguise.disguise(VALID[0].read_text())
    submissions = {s: {"em_by_hand": _notebook(c, sub, s)} for s, c in codes.items()}
    submissions["absent"] = {"em_by_hand": None}
    rows = copying.copy_report(out, submissions, ["em_by_hand"])
    assert sorted(p.name for p in out.iterdir()) == [copying.CSV_NAME, copying.HTML_NAME]
    flagged = {(r["student_id"], r["other"]) for r in rows}
    assert flagged == {
        ("paster", "gmmlib/em.py"),
        ("sharer", VALID[0].stem),
        (VALID[0].stem, "sharer"),
    }, flagged
    with open(out / copying.CSV_NAME, newline="") as f:
        assert list(csv.DictReader(f)) == rows
    page = (out / copying.HTML_NAME).read_text()
    assert "my_log_joint" in page or "my_prec_chol" in page  # the student's snippet
    assert "prec_chol = precision_cholesky" in page  # gmmlib's, beside it
    review = {(r["student_id"], r["status"]): r["reasons"] for r in copying.review_rows(out)}
    assert set(review) == {("paster", "copying"), ("sharer", "copying"), (VALID[0].stem, "copying")}
    assert "found in gmmlib/em.py" in review[("paster", "copying")]
    assert "found in sharer" in review[(VALID[0].stem, "copying")]


def test_export_puts_the_matches_on_the_review_list(tmp_path):
    """The pipeline's hook: `export` adds copying.csv's matches to needs_review.csv."""
    source = nbformat.read(SOLUTIONS / "em_by_hand" / "em_by_hand.ipynb", as_version=4)
    with open(tmp_path / copying.CSV_NAME, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(copying.CSV_HEADER)
        writer.writerow(["alice", "em_by_hand", "answer", "e_step", "0.97", "bob", "c:e_step"])
        writer.writerow(["alice", "em_by_hand", "e_step", "e_step", "0.93", "gmmlib/em.py", ""])
    summary = export(tmp_path, ["alice", "bob"], {}, {"em_by_hand": source}, [])
    with open(tmp_path / "needs_review.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["status"] == "copying"]
    assert [r["student_id"] for r in rows] == ["alice"]
    assert "answer: 97% found in bob" in rows[0]["reasons"]
    assert "function e_step: 93% found in gmmlib/em.py" in rows[0]["reasons"]
    assert any(r["status"] == "copying" for r in summary["review"])
