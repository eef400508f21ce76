"""Copy detection's threshold, measured: how alike independent answers get, how alike copies stay.

    python benchmarks/copy_threshold.py [--k 20 25 30] [--class-size 100]

The honest class: ten correct answers to em_by_hand's e_step, m_step and log_likelihood written
independently (tests/fixtures/copying/valid_*.py, the three valid styles of
tests/fixtures/make_submissions.py, and the course's model answer in solutions/). For each
fingerprint length k it prints the scores (`grading.copying.matches`: the share of a function
found in another document) of every honest function against the code students can see and
against every other honest student, and the scores of two kinds of copy that must be found:
gmmlib's own functions pasted with every name changed, docstrings removed and comments added,
and each honest student's answers handed to a classmate disguised the same way. The threshold
must sit above every honest score and below every copy's. It also prints copydetect's default
tokenisation (every name, attribute and call replaced by one letter) for comparison, and with
``--class-size`` the time `copy_report` takes on a class of that size.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FIXTURES = ROOT / "tests" / "fixtures"

from copydetect import CodeFingerprint, compare_files  # noqa: E402

from grading import copying  # noqa: E402
from grading.course import EXERCISES, SOLUTIONS  # noqa: E402

GRADED = ("e_step", "m_step", "log_likelihood")


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def honest_class() -> dict[str, str]:
    """{student: the code of their e_step, m_step and log_likelihood cells}."""
    students = {p.stem: p.read_text() for p in sorted((FIXTURES / "copying").glob("valid_*.py"))}
    submissions = _load(FIXTURES / "make_submissions.py", "make_submissions")
    for name in ("LOOPS", "EINSUM", "SCIPY"):
        answers = getattr(submissions, name)
        students[f"make_submissions.{name}"] = "\n\n".join(
            answers[f"em_by_hand_{part}"] for part in GRADED if f"em_by_hand_{part}" in answers
        )
    model = copying.notebook_units(SOLUTIONS / "em_by_hand" / "em_by_hand.ipynb", "model")
    students["model answer"] = "\n\n".join(u.source for u in model if u.name in GRADED)
    return students


def units_of(students: dict[str, str]) -> dict[str, list]:
    return {s: copying.code_units(code, s, s) for s, code in students.items()}


def best(part_text: str, documents: dict, bp, skip="") -> tuple[float, str]:
    """The highest share of ``part_text`` found in one of ``documents`` ({label: text})."""
    part = copying._fingerprint(part_text, bp)
    return max(
        ((copying.share(part, doc), label) for label, doc in documents.items() if label != skip),
        default=(0.0, "-"),
    )


def measure(units: dict, documents: dict, bp, functions=True) -> list[tuple[float, str, str]]:
    """(best share, what, where) of every answer (and, with ``functions``, every judged
    function) of ``units`` over ``documents`` ({label: fingerprint}), its owner's left out."""
    rows = []
    for owner, us in units.items():
        kept = [u for u in us if copying.judged(u)]
        value, where = best("\n".join(u.normalised for u in kept), documents, bp, owner)
        rows.append((value, f"{owner} (answer)", where))
        if functions:
            for u in kept:
                value, where = best(u.normalised, documents, bp, owner)
                rows.append((value, f"{owner}:{u.name}", where))
    return sorted(rows, reverse=True)


def fingerprints(documents: dict, bp) -> dict:
    return {label: copying._document(us, bp)[0] for label, us in documents.items()}


def default_tokenisation(students: dict[str, str]) -> list[tuple[float, str, str]]:
    """The same honest pairs scored by copydetect's own filter (names -> V, k = 25)."""
    found = []
    for owner, code in students.items():
        for unit in copying.code_units(code, owner, owner):
            if unit.name not in GRADED:
                continue
            fp = CodeFingerprint("a.py", 25, 1, fp=io.StringIO(unit.source))
            best = (0.0, "-")
            for other, other_code in students.items():
                if other != owner:
                    doc = CodeFingerprint("b.py", 25, 1, fp=io.StringIO(other_code))
                    best = max(best, (float(compare_files(fp, doc)[1][0]), other))
            found.append((best[0], f"{owner}:{unit.name}", best[1]))
    return sorted(found, reverse=True)


def time_class(n: int, disguise) -> None:
    """Time `copying.copy_report` on a class of ``n``: the valid_* answers, then renamed copies
    of them (the worst case: every student matches several others)."""
    valid = sorted((FIXTURES / "copying").glob("valid_*.py"))
    release = nbformat.read(EXERCISES / "em_by_hand" / "em_by_hand.ipynb", as_version=4)
    with tempfile.TemporaryDirectory() as tmp:
        submissions = {}
        for i in range(n):
            code = valid[i % len(valid)].read_text()
            if i >= len(valid):
                code = disguise.disguise(code)
            nb = nbformat.from_dict(release)
            cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution"))
            cell.source = code
            path = Path(tmp) / f"s{i:03d}.ipynb"
            nbformat.write(nb, path)
            submissions[f"s{i:03d}"] = {"em_by_hand": path}
        wall, cpu = time.perf_counter(), time.process_time()
        rows = copying.copy_report(Path(tmp), submissions, ["em_by_hand"])
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    listed = len({r["student_id"] for r in rows})
    print(
        f"\ncopy_report on {n} students ({n - len(valid)} renamed copies): {cpu:.1f} s CPU, "
        f"{wall:.1f} s wall; {len(rows)} matches, {listed} students listed"
    )


def _show(title: str, rows, n=None):
    print(f"  {title}: {len(rows)}")
    for value, what, where in rows[:n]:
        print(f"    {value:5.2f}  {what:<44} in {where}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[20, 25, 30])
    parser.add_argument("--class-size", type=int, default=0, help="also time a class this big")
    args = parser.parse_args(argv)
    disguise = _load(FIXTURES / "copying" / "disguise.py", "disguise")
    students = honest_class()
    honest = units_of(students)
    visible = copying.visible_documents(["em_by_hand"])
    paste = {
        "gmmlib pasted": copying.code_units(disguise.disguise(disguise.pasted_gmmlib()), "p", "p")
    }
    shared = {
        s: copying.code_units(disguise.disguise(code), "copy", s) for s, code in students.items()
    }
    in_use = copying.K_GRAM
    print(
        f"honest class: {len(students)} students; in use: k = {in_use}, answer vs visible >= "
        f"{copying.ANSWER_VISIBLE}, function vs visible >= {copying.FUNCTION_VISIBLE}, answer vs "
        f"classmate >= {copying.ANSWER_CLASSMATE}"
    )
    for k in args.k:
        copying.K_GRAM = k
        bp = copying.boilerplate(["em_by_hand"])
        print(f"\nk = {k}" + ("  (in use)" if k == in_use else ""))
        vis, mates = fingerprints(visible, bp), fingerprints(honest, bp)
        honest_vis = measure(honest, vis, bp)
        honest_mates = measure(honest, mates, bp)
        pasted = measure(paste, vis, bp)
        copies = sorted(
            measure({f"copy of {s}": us}, {s: mates[s]}, bp, functions=False)[0]
            for s, us in shared.items()
        )
        answers = [r for r in honest_vis if r[1].endswith("(answer)")]
        functions = [r for r in honest_vis if not r[1].endswith("(answer)")]
        _show("honest answers vs visible code, highest 3", answers, 3)
        _show("honest functions vs visible code, highest 3", functions, 3)
        mate_answers = [r for r in honest_mates if r[1].endswith("(answer)")]
        _show("honest answers vs classmates, highest 3", mate_answers, 3)
        mate_functions = [r for r in honest_mates if not r[1].endswith("(answer)")]
        _show(
            "honest functions vs classmates (not a rule: for comparison), highest 3",
            mate_functions,
            3,
        )
        _show("gmmlib pasted and disguised vs visible code", pasted)
        _show("classmate copies, disguised, vs the original (lowest 3)", copies, 3)
    copying.K_GRAM = in_use
    bp = copying.boilerplate(["em_by_hand"])
    students_only = {s: us for s, us in honest.items() if s != "model answer"}
    models = copying.model_answers(["em_by_hand"])
    flagged = copying.compare(students_only, visible, bp, models)
    print(
        f"\nthe rules in use on the honest class (the model answer as a model answer): "
        f"{len(flagged)} matches"
    )
    for m in flagged:
        print(f"  {m.student} {m.scope} {m.score:.2f} in {m.other}")
    print("\ncopydetect's default tokenisation (every name -> V, k = 25), honest vs classmates:")
    _show("functions, highest 3", default_tokenisation(students), 3)
    if args.class_size:
        time_class(args.class_size, disguise)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
