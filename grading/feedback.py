"""Feedback HTML for one student's notebook: their own run, the spec's verdicts, nothing hidden.

The graded notebook ran the release's visible tests only (`grading.student_run`), so no hidden
test can be in its outputs. `redact` stays as a second line of defence (a stray hidden block,
nbgrader's own feedback from formgrader): test cells show their visible part only, their errors
their last line, and output quoting a hidden-test line is withheld. Each graded cell is followed
by its final points and reason; a summary table (grades.csv's numbers) opens the page.
"""

from __future__ import annotations

import copy
import html
import re
from pathlib import Path

import mistune
import nbformat
from nbconvert.preprocessors import Preprocessor
from nbconvert.preprocessors.coalescestreams import CR_PAT
from nbgrader.utils import is_grade, is_solution
from traitlets import Bool

from grading.cells import BEGIN_HIDDEN, END_HIDDEN, HIDDEN, grade_id, summary_cell_id
from grading.feedback_text import PROGRESS, fmt_points, literal, summary_markdown, totals
from grading.mathjax import POLICY, script_tags

HIDDEN_NOTE = (
    "# (hidden tests: the grader runs them outside your notebook; each part's result and "
    "message are above)\n"
)
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
BASE64 = re.compile(r"[A-Za-z0-9+/\s]*={0,2}\s*")
#: The classes the page styles; `redact` sets them on the score lines it adds, and nothing
#: else reaches the page's markup (a student's cell metadata can hold any string).
SCORE_CLASSES = ("score", "score lost")

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta http-equiv="Content-Security-Policy" content="{policy}">
{scripts}
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.45; color: #1d1d1d; }}
pre {{ background: #f6f8fa; padding: .6rem .8rem; overflow-x: auto; border-radius: 4px; }}
pre.output {{ background: #fff; border-left: 3px solid #ccc; }}
pre.error {{ background: #fff0f0; border-left: 3px solid #c00; }}
.score {{ background: #eef6ee; border-left: 3px solid #2a2; padding: .3rem .8rem; }}
.score.lost {{ background: #fdf3e6; border-color: #d80; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: .2rem .5rem; }}
</style></head><body class="feedback-page">
{body}
</body></html>
"""

#: Markdown to HTML with any raw HTML escaped (a student's cell cannot inject a script); maths
#: (``$...$``, ``$$...$$``) is kept for MathJax (`grading.mathjax`) in elements of class "math".
_md = mistune.create_markdown(escape=True, plugins=["table", "math"])


def _output_html(out) -> str:
    kind = out.get("output_type")
    if kind == "stream":
        return f'<pre class="output">{html.escape(str(out.get("text", ""))[:20000])}</pre>'
    if kind == "error":
        text = ANSI.sub("", "\n".join(out.get("traceback") or []))[:20000]
        return f'<pre class="error">{html.escape(text)}</pre>'
    data = out.get("data", {})
    png = data.get("image/png")
    if isinstance(png, str) and BASE64.fullmatch(png):
        return f'<img alt="figure" src="data:image/png;base64,{"".join(png.split())}">'
    if png is not None:  # the student's code made this output: it is not a PNG
        return '<pre class="output">[figure not shown: its data is not a base64 PNG]</pre>'
    if "text/plain" in data:
        return f'<pre class="output">{html.escape(str(data["text/plain"])[:20000])}</pre>'
    return ""


#: The most a feedback page's body may hold, and any one cell's source on it (characters).
PAGE_CHARS = 2_000_000
SOURCE_CHARS = 50_000
CUT = "[the rest of this page is not shown: it is longer than {:,} characters]"


def render_html(nb, title: str, scripts: str = "") -> str:
    """A small HTML page for a (redacted) notebook, at most `PAGE_CHARS` long (the summary and
    score lines come first in their cells, so a long answer cannot push them off before their
    own cell). ``scripts``: the page's MathJax tags (`grading.mathjax.script_tags`); without
    them the maths shows as TeX."""
    parts, size = [], 0
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            css = cell.metadata.get("feedback_class")
            css = css if css in SCORE_CLASSES else None  # only the grader's own score lines
            body = _md(cell.source[:SOURCE_CHARS])
            html_cell = [f'<div class="{css}">{body}</div>' if css else body]
        elif cell.cell_type == "code":
            html_cell = [f"<pre><code>{html.escape(cell.source[:SOURCE_CHARS])}</code></pre>"]
            html_cell += [_output_html(out) for out in cell.get("outputs", [])]
        else:
            continue
        size += sum(len(h) for h in html_cell)
        if size > PAGE_CHARS:
            parts.append(f'<pre class="error">{CUT.format(PAGE_CHARS)}</pre>')
            break
        parts.extend(html_cell)
    return PAGE.format(
        title=html.escape(title), policy=POLICY, scripts=scripts, body="\n".join(parts)
    )


def visible_part(source: str) -> str:
    """A test cell's source without its hidden-test blocks."""
    return HIDDEN.sub(HIDDEN_NOTE, source)


#: What makes a hidden-test line the grader's own rather than a line anyone might write:
#: a string (a test's message), an assertion, a private name (``_reference``), test data
#: (a seed, an array literal) or several numbers.
_DISTINCTIVE = re.compile(r"[\"']|\bassert|(?<![\w.])_[A-Za-z]\w*|default_rng\(|np\.array\(\[")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:e-?\d+)?")


def distinctive(line: str) -> bool:
    """Whether a hidden-test line really identifies the hidden tests.

    ``lls = [log_likelihood(X, weights, means, covariances)]`` is in a hidden test and also in
    many students' own ``fit_em``: finding it in an output proves nothing, and a student's own
    code must never be withheld for it.
    """
    return bool(_DISTINCTIVE.search(line)) or len(_NUMBER.findall(line)) >= 2


def hidden_lines(*source_nbs) -> set[str]:
    """Whitespace-normalised distinctive lines (20+ characters) only the hidden tests contain.

    Pass every source notebook of the course: a student's gradebook copy holds the hidden tests
    of all assignments, so output from one notebook can quote another's.
    """
    blocks = re.compile(rf"{BEGIN_HIDDEN}(.*?){END_HIDDEN}", re.S)
    cells = [c for nb in source_nbs for c in nb.cells]
    visible = " ".join(" ".join(blocks.sub("", c.source).split()) for c in cells)
    lines = set()
    for cell in cells:
        for block in blocks.findall(cell.source):
            for line in block.splitlines():
                line = " ".join(line.split())
                if len(line) >= 20 and line not in visible and distinctive(line):
                    lines.add(line)
    return lines


def _leaks(text, secret) -> bool:
    flat = " ".join(str(text).split())
    return any(line in flat for line in secret)


WITHHELD = "[output withheld: it contains the grader's hidden code]"
READS_HIDDEN = "[output withheld: this cell reads the grader's hidden tests]"


def coalesce_streams(cell) -> None:
    """Merge each of a code cell's streams (stdout, stderr) into one output, in place.

    How a kernel splits a cell's printing into messages depends on timing (ipykernel flushes on
    a clock and on ``flush()``), so the same cell can come back as one output or several. Merged
    by name, as nbclient's ``coalesce_streams`` does, the feedback page is the same on every
    run, and a hidden-test line printed in pieces is one piece again before `_scrub_outputs`.
    """
    merged, streams = [], {}
    for out in cell.get("outputs", []):
        if out.get("output_type") != "stream":
            merged.append(out)
        elif out.get("name") in streams:
            streams[out.get("name")].text += str(out.get("text", ""))
        else:
            out = copy.deepcopy(out)
            out.text = str(out.get("text", ""))
            streams[out.get("name")] = out
            merged.append(out)
    for out in streams.values():  # what a terminal shows after a carriage return
        out.text = CR_PAT.sub("", out.text)
    cell.outputs = merged


def _output_text(out) -> str:
    return " ".join(
        [
            str(out.get("text", "")),
            str(out.get("evalue", "")),
            " ".join(out.get("traceback") or []),
            str(out.get("data", {}).get("text/plain", "")),
        ]
    )


def _scrub_outputs(cell, secret, withheld):
    """Drop any output that quotes hidden-test code (e.g. a cell that read the gradebook).

    The cell's outputs are read together as well as one by one: a line printed half to stdout
    and half to stderr withholds them all.
    """
    coalesce_streams(cell)
    outputs = cell.get("outputs", [])
    name = cell.metadata.get("nbgrader", {}).get("grade_id", "a cell")
    note = nbformat.v4.new_output("stream", name="stdout", text=WITHHELD)
    leaks = [_leaks(_output_text(out), secret) for out in outputs]
    if not any(leaks) and (
        _leaks("".join(str(out.get("text", "")) for out in outputs), secret)
        or _leaks(" ".join(_output_text(out) for out in outputs), secret)
    ):
        leaks = [True] * len(outputs)  # pieces of one line, in several outputs
    withheld.extend(name for leak in leaks if leak)
    cell.outputs = [
        copy.deepcopy(note) if leak else out for out, leak in zip(outputs, leaks, strict=True)
    ]


def _last_line(out):
    """An error output reduced to its exception and message (tracebacks quote hidden tests)."""
    if out.get("output_type") != "error":
        return out
    line = f"{out.get('ename')}: {ANSI.sub('', str(out.get('evalue')))}"[:500]
    return nbformat.v4.new_output("error", ename=out.get("ename"), evalue=line, traceback=[line])


def redact(nb, source_nb, result, withheld=None, secret=None):
    """A copy of ``nb`` that is safe to show the student (see the module docstring).

    ``withheld`` (a list), if given, collects the cells whose output was withheld; ``secret``
    is the set of hidden-test lines to keep out (default: this notebook's, `hidden_lines`).
    """
    withheld = [] if withheld is None else withheld
    nb = copy.deepcopy(nb)
    secret = hidden_lines(source_nb) if secret is None else secret
    # What the student wrote is theirs to see: a hidden-test line they also wrote is no secret.
    tests = {grade_id(c) for c in source_nb.cells if is_grade(c) and not is_solution(c)}
    own = " ".join(
        " ".join(c.source.split())
        for c in nb.cells
        if c.cell_type == "code" and grade_id(c) not in tests
    )
    secret = {line for line in secret if line not in own}
    result = copy.deepcopy(result)
    for p in result["parts"]:
        if _leaks(p.get("message") or "", secret):
            p["message"] = WITHHELD
    result["flags"] = [WITHHELD if _leaks(f, secret) else f for f in result.get("flags", [])]
    source = {
        c.metadata.get("nbgrader", {}).get("grade_id"): c
        for c in source_nb.cells
        if c.metadata.get("nbgrader")
    }
    parts = {p["grade_id"]: p for p in result["parts"]}
    # Cells the scan found reading the hidden tests (`grading.scan.reads_hidden_tests`), named
    # as the re-check names them: their grade_id, or "added cell N" for a cell the student added.
    suspects, added = set(result.get("withhold_outputs", ())), 0
    cells = [nbformat.v4.new_markdown_cell(summary_markdown(result))]
    for cell in nb.cells:
        cell.metadata.pop("feedback_class", None)  # the student's, not a score line's
        meta = cell.metadata.get("nbgrader", {})
        gid = meta.get("grade_id")
        src = source.get(gid)
        name = gid
        if cell.cell_type == "code" and (src is None or src.cell_type != "code"):
            added += 1
            name = f"added cell {added}"
        if cell.cell_type == "code" and name in suspects and cell.get("outputs"):
            withheld.append(name)
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=READS_HIDDEN)]
        if src is not None and (
            is_grade(src) and not is_solution(src) or BEGIN_HIDDEN in src.source
        ):
            cell.source = visible_part(src.source)
            cell.outputs = [_last_line(out) for out in cell.get("outputs", [])]
        if BEGIN_HIDDEN in cell.source:  # a stray copy anywhere else
            cell.source = visible_part(cell.source)
        if cell.cell_type == "code":
            _scrub_outputs(cell, secret, withheld)
        if not meta.get("solution") and _leaks(cell.source, secret):
            withheld.append(gid or "a cell")
            cell.source = WITHHELD
        cells.append(cell)
        if gid is not None and gid == summary_cell_id(result["assignment"]):
            hand = any(p["kind"] == "manual" and p["points"] is not None for p in parts.values())
            line = PROGRESS.format(
                totals=totals(result), hand=" and any marks given by hand" if hand else ""
            )
            progress = nbformat.v4.new_markdown_cell(line)
            progress.metadata["feedback_class"] = "score"
            cells.append(progress)
        if gid in parts:
            p = parts[gid]
            note = f" — {literal(p['message'])}" if p.get("message") else ""
            score = nbformat.v4.new_markdown_cell(
                f"**{gid}: {fmt_points(p['points'])} / {p['max_points']:g}**{note}"
            )
            lost = p["points"] is not None and p["points"] < p["max_points"]
            score.metadata["feedback_class"] = "score lost" if lost else "score"
            cells.append(score)
    nb.cells = cells
    return nb


def write_feedback(
    notebook_path: Path, source_nb, result, out: Path, secret=None, feedback: Path | None = None
) -> list:
    """Write the feedback page; return the cells whose output had to be withheld.

    ``feedback``: the feedback folder whose ``_mathjax/`` the page loads (default: three levels
    up, ``<feedback>/<student>/<assignment>/<page>``); `grading.mathjax.install` fills it, once
    per run (`grading.export.export`)."""
    nb = nbformat.read(notebook_path, as_version=4)
    title = f"Feedback: {result['assignment']} ({result['student']})"
    withheld = []
    scripts = script_tags(out, Path(out).parents[2] if feedback is None else feedback)
    body = render_html(redact(nb, source_nb, result, withheld, secret), title, scripts)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(body)
    return withheld


class HideHiddenTests(Preprocessor):
    """nbgrader's own feedback (formgrader's button) with the same redaction: hidden-test
    blocks, tracebacks in their cells and any output quoting them (`grading.course.configure`
    puts it in ``GenerateFeedback.preprocessors``)."""

    enabled = Bool(True)  # nbconvert registers extra preprocessors switched off

    def preprocess(self, nb, resources):
        secret = hidden_lines(nb)
        for cell in nb.cells:
            if BEGIN_HIDDEN in cell.source:
                cell.source = visible_part(cell.source)
                if cell.cell_type == "code":
                    cell.outputs = [_last_line(out) for out in cell.outputs]
            if cell.cell_type == "code":
                _scrub_outputs(cell, secret, [])
            if _leaks(cell.source, secret):
                cell.source = WITHHELD
        return nb, resources
