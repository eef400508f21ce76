"""Copy detection: every graded function compared with the code students see and with classmates'.

Students have gmmlib's source, the book's listings and the release notebooks, each holding
working answers to part of the exercises. `copy_report` cuts every answer cell into units
(`grading.codeunits`) and compares them with the code students can see (one document per file),
with every classmate's answer to the same assignment and with the model answer, by copydetect's
winnowing (MOSS's algorithm) on normalised code; the release's answer stubs are boilerplate.
A score is the share of a student's code found in another document; `compare` says which shares
make a match; the thresholds and `K_GRAM` come from `benchmarks/copy_threshold.py`. Matches go to
``OUT/copying.csv`` and ``.html`` (instructors only) and, through `review_rows`, on the review
list.
"""

from __future__ import annotations

import csv
import html
import io
import re
from collections import defaultdict
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import nbformat
import numpy as np
from copydetect import CodeFingerprint
from nbgrader.utils import is_solution

from grading.codeunits import Unit, cell_id, code_units, notebook_units
from grading.course import ASSIGNMENTS, EXERCISES, REPO, SOLUTIONS

#: Characters of normalised code per fingerprint (copydetect's "noise threshold"): a shared
#: stretch shorter than this is never seen. Window = 1: every k-gram is kept (short code).
K_GRAM = 25
WINDOW = 1
#: Shares found elsewhere from which a match is reported (see `compare`), set from the
#: measurement in benchmarks/RESULTS.md: an answer as a whole in one visible file, one function
#: in one visible file, an answer as a whole in a classmate's answer.
ANSWER_VISIBLE = 0.75
FUNCTION_VISIBLE = 0.9
ANSWER_CLASSMATE = 0.9
#: Units with less normalised code than this are not judged (a one-line function matches
#: everything and proves nothing).
MIN_CHARS = 80

CSV_NAME = "copying.csv"
HTML_NAME = "copying.html"
CSV_HEADER = ["student_id", "assignment", "scope", "functions", "score", "other", "other_code"]

_BOOK_CODE = re.compile(r"^```+\s*(?:\{code-cell\}[^\n]*|python|ipython3?)\n(.*?)^```", re.M | re.S)
_LITERALINCLUDE = re.compile(r"^```+\s*\{literalinclude\}\s+(\S+)", re.M)


def visible_documents(
    assignments, repo: Path = REPO, release: Path = EXERCISES, library: dict | None = None
) -> dict:
    """{label: [units]}: every file of code the students can read, one document per file.

    gmmlib's source (the student wheel ships all of it), the book's code cells and the files
    it includes (``library``, if `_library_documents` was read already), and the release
    notebooks' given cells (their answer cells are `boilerplate`)."""
    documents = dict(_library_documents(repo) if library is None else library)
    for assignment in assignments:
        documents |= _notebook_document(release, assignment, "release", answers=False)
    return {label: units for label, units in documents.items() if units}


def _library_documents(repo: Path = REPO) -> dict:
    """{label: [units]} of gmmlib's source and the book's code: the same for every assignment,
    so `copy_report` reads them once per run."""
    documents = {}
    for path in sorted((repo / "gmmlib").rglob("*.py")):
        label = str(path.relative_to(repo))
        documents[label] = code_units(path.read_text(), label, label)
    for page in sorted((repo / "book").glob("*.md")):
        text = page.read_text()
        label = str(page.relative_to(repo))
        # A code cell's options (":tags: [...]") are not code.
        cells = [re.sub(r"^:[\w-]+:.*\n", "", b, flags=re.M) for b in _BOOK_CODE.findall(text)]
        documents[label] = [u for c in cells for u in code_units(c, label, label)]
        for include in _LITERALINCLUDE.findall(text):
            target = (page.parent / include).resolve()
            if target.is_file() and target.suffix == ".py":
                name = str(target.relative_to(repo)) if target.is_relative_to(repo) else include
                if name not in documents:
                    documents[name] = code_units(target.read_text(), name, name)
    return documents


def _notebook_document(folder: Path, assignment: str, kind: str, answers: bool) -> dict:
    """{label: [units]} of one notebook's answer cells (or its given cells, ``answers=False``),
    labelled by its path and ``kind``; empty if the notebook is missing."""
    path = folder / assignment / ASSIGNMENTS[assignment]
    if not path.is_file():
        return {}
    label = f"{path.relative_to(folder.parent)} ({kind})"
    nb = nbformat.read(str(path), as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and is_solution(c) == answers]
    return {
        label: [u for i, c in enumerate(cells) for u in code_units(c.source, label, cell_id(c, i))]
    }


def model_answers(assignments, solutions: Path = SOLUTIONS) -> dict:
    """{label: [units]}: the course's own answers (solutions/), in case a copy leaked. Judged
    as a classmate's answer is: the model answer is one more independent answer."""
    documents = {}
    for assignment in assignments:
        documents |= _notebook_document(solutions, assignment, "model answer", answers=True)
    return documents


def boilerplate(assignments, release: Path = EXERCISES) -> list[int]:
    """Fingerprints of the release's answer cells as handed out (signatures, docstrings and the
    stub): shared by every submission, so removed from every fingerprint."""
    hashes = set()
    for assignment in assignments:
        for units in _notebook_document(release, assignment, "release", answers=True).values():
            hashes = hashes.union(*(_fingerprint(u.normalised).hashes for u in units))
    return sorted(hashes)


# ----------------------------------------------------------------------------------------------
# Comparing
# ----------------------------------------------------------------------------------------------


def _fingerprint(text: str, boilerplate_hashes=()) -> CodeFingerprint:
    return CodeFingerprint(
        "unit.py",
        K_GRAM,
        WINDOW,
        boilerplate=list(boilerplate_hashes),
        filter=False,
        fp=io.StringIO(text),
    )


def judged(unit: Unit) -> bool:
    return len(unit.normalised) >= MIN_CHARS


def share(part: CodeFingerprint, whole: CodeFingerprint) -> float:
    """Share of ``part``'s fingerprinted code whose fingerprints occur in ``whole``: copydetect's
    ``compare_files(part, whole)[1][0]`` (tests/test_copying.py holds them equal), computed from
    ``part``'s side only, since ``compare_files`` also builds the other side's slices for every
    pair of classmates (most of a class's copy-detection time)."""
    common = part.hashes & whole.hashes
    if not common or not part.filtered_code:
        return 0.0
    at = np.unique(np.fromiter(chain.from_iterable(part.hash_idx[h] for h in common), int))
    # Union of the windows [i, i + k): each start adds up to k characters before the next one.
    covered = int(np.minimum(np.diff(at), part.k).sum()) + part.k
    return covered / float(part.token_coverage)


@dataclass(frozen=True)
class Match:
    """A student's answer (or one of its functions) found in another document."""

    student: str
    score: float
    scope: str  # "answer" (the whole answer) or the one function's name
    other: str  # a classmate's id or a visible source's label
    units: tuple  # the student's functions that share code with the other document
    other_units: tuple  # the other document's functions that share code with them


class _Prints:
    """Fingerprints by text and shares by pair, each computed once per `compare`: a ring of
    identical answers costs one fingerprint and one comparison, not one per pair."""

    def __init__(self, bp):
        self.bp, self.by_text, self.shares = list(bp), {}, {}

    def of(self, text: str) -> CodeFingerprint:
        if text not in self.by_text:
            self.by_text[text] = _fingerprint(text, self.bp)
        return self.by_text[text]

    def document(self, units: list[Unit]) -> tuple[CodeFingerprint, list]:
        kept = [u for u in units if judged(u)]
        return self.of("\n".join(u.normalised for u in kept)), kept

    def share(self, part: CodeFingerprint, whole: CodeFingerprint) -> float:
        key = (id(part), id(whole))  # both held in by_text while this object lives
        if key not in self.shares:
            self.shares[key] = share(part, whole)
        return self.shares[key]


def _shared(units, prints: _Prints, doc, other_units, least=0.5) -> tuple[tuple, tuple]:
    """The functions of each side that share fingerprints (at least ``least`` of the
    student's function is found in the other's document ``doc``)."""
    fp = {u: prints.of(u.normalised) for u in (*units, *other_units)}
    mine = tuple(u for u in units if prints.share(fp[u], doc) >= least) or tuple(units)
    hashes = set().union(*(fp[u].hashes for u in mine))
    theirs = sorted(
        ((len(hashes & fp[u].hashes), i) for i, u in enumerate(other_units)),
        reverse=True,
    )
    return mine, tuple(other_units[i] for n, i in theirs[:6] if n)


def compare(answers: dict, visible: dict, boilerplate_hashes=(), models=None) -> list[Match]:
    """Every match of ``answers`` ({student: [units]}, one assignment) with the ``visible``
    documents ({label: [units]}), the ``models`` (model answers, same form) and each other
    (both students of a pair).

    Rules (thresholds measured by benchmarks/copy_threshold.py): against visible code, the
    whole answer reaches `ANSWER_VISIBLE` or one function `FUNCTION_VISIBLE`; against a
    classmate or a model answer, the whole answer reaches `ANSWER_CLASSMATE` (short functions
    written independently can match another answer almost entirely; whole answers do not).
    """
    prints = _Prints(boilerplate_hashes)
    docs = {("visible", label): prints.document(us) for label, us in visible.items()}
    docs |= {("model", label): prints.document(us) for label, us in (models or {}).items()}
    docs |= {("student", s): prints.document(us) for s, us in answers.items()}
    found = {}
    for student in sorted(answers):
        answer, kept = docs[("student", student)]
        if not kept:
            continue
        for (kind, label), (doc, doc_units) in docs.items():
            if label == student or not answer.hashes & doc.hashes:
                continue
            whole = prints.share(answer, doc)
            if kind == "visible":
                best, unit = max(
                    ((prints.share(prints.of(u.normalised), doc), u) for u in kept),
                    key=lambda p: p[0],
                )
                if whole < ANSWER_VISIBLE and best < FUNCTION_VISIBLE:
                    continue
                scope, value = ("answer", whole) if whole >= ANSWER_VISIBLE else (unit.name, best)
            elif whole >= ANSWER_CLASSMATE:
                scope, value = "answer", whole
            else:
                continue
            mine, theirs = _shared(kept, prints, doc, doc_units)
            found[(student, label)] = Match(student, value, scope, label, mine, theirs)
    for (student, other), m in list(found.items()):  # a shared pair: both on the list
        if other in answers and other != student and (other, student) not in found:
            _, kept = docs[("student", other)]
            _, mine = docs[("student", student)]
            found[(other, student)] = Match(other, m.score, "answer", student, tuple(kept), mine)
    return sorted(found.values(), key=lambda m: (m.student, -m.score, m.other))


# ----------------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------------


def copy_report(
    out: Path,
    submissions: dict,
    assignments=tuple(ASSIGNMENTS),
    repo: Path = REPO,
    release: Path = EXERCISES,
    solutions: Path = SOLUTIONS,
) -> list[dict]:
    """Compare every submission's answers (``submissions``: {student: {assignment: notebook
    path or None}}, as `grading.pipeline.collect` returns) with the visible code and with each
    other; write ``OUT/copying.csv`` and ``OUT/copying.html``; return the CSV's rows."""
    out = Path(out)
    rows, sections = [], []
    library = _library_documents(repo)
    for assignment in assignments:
        answers = {
            student: notebook_units(Path(found[assignment]), student)
            for student, found in sorted(submissions.items())
            if found.get(assignment)
        }
        visible = visible_documents([assignment], repo, release, library)
        models = model_answers([assignment], solutions)
        for m in compare(answers, visible, boilerplate([assignment], release), models):
            rows.append(
                {
                    "student_id": m.student,
                    "assignment": assignment,
                    "scope": m.scope,
                    "functions": " ".join(u.name for u in m.units),
                    "score": f"{m.score:.2f}",
                    "other": m.other,
                    "other_code": "; ".join(f"{u.cell}:{u.name}" for u in m.other_units),
                }
            )
            sections.append(_html_match(assignment, m))
    with open(out / CSV_NAME, "w", newline="") as f:
        writer = csv.DictWriter(f, CSV_HEADER)
        writer.writeheader()
        writer.writerows(rows)
    (out / HTML_NAME).write_text(_html_page(sections))
    return rows


def review_rows(out: Path) -> list[dict]:
    """needs_review.csv rows (status "copying") from ``OUT/copying.csv``: one per student and
    assignment, naming each match, its score and where it was found."""
    path = Path(out) / CSV_NAME
    if not path.is_file():
        return []
    reasons = defaultdict(list)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            what = "answer" if row["scope"] == "answer" else f"function {row['scope']}"
            reasons[(row["student_id"], row["assignment"])].append(
                f"{what}: {float(row['score']):.0%} found in {row['other']}"
            )
    return [
        {
            "student_id": student,
            "assignment": assignment,
            "status": "copying",
            "reasons": ("; ".join(texts) + f" (both snippets in {HTML_NAME})")[:1000],
        }
        for (student, assignment), texts in sorted(reasons.items())
    ]


def _html_match(assignment: str, m: Match) -> str:
    mine = "\n\n".join(u.source for u in m.units)
    theirs = "\n\n".join(u.source for u in m.other_units) or "(no single function)"
    what = "the answer" if m.scope == "answer" else f"function {m.scope}"
    return (
        f"<section><h2>{html.escape(m.student)} · {html.escape(assignment)}: {m.score:.0%} of "
        f"{html.escape(what)} found in {html.escape(m.other)}</h2><div class='pair'>"
        f"<pre>{html.escape(mine)}</pre><pre>{html.escape(theirs)}</pre></div></section>"
    )


def _html_page(sections: list[str]) -> str:
    body = "\n".join(sections) or "<p>No match.</p>"
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Copy detection</title>"
        "<style>body{font-family:sans-serif;margin:1em}.pair{display:flex;gap:1em}"
        "pre{flex:1;background:#f6f6f6;padding:.5em;overflow:auto;font-size:85%}"
        "h2{font-size:100%}</style></head><body><h1>Copy detection (instructors only)</h1>"
        "<p>Answers found in code the students can see (gmmlib, the book, the release) at "
        f"{ANSWER_VISIBLE:.0%} or more, or one function at {FUNCTION_VISIBLE:.0%} or more; "
        f"answers found in a classmate's at {ANSWER_CLASSMATE:.0%} or more. Code is compared "
        "normalised: names, comments, docstrings, strings and layout are ignored. Left: the "
        "student's code; right: where it was found. A match is a reason to look, not a "
        f"verdict.</p>{body}</body></html>"
    )
