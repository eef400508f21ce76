"""The feedback page: maths rendered offline (MathJax copied beside the pages, no CDN), the
total in the header, the marks given by hand after ``gmm-grade --update``, and the line after
the notebook's own summary cell giving the points that count."""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from grading import mathjax
from grading.cells import summary_cell_id
from grading.feedback import write_feedback
from grading.gradebook import apply_hand_scores

ASSIGNMENT = "em_by_hand"
#: Any reference to another host: http(s)://, protocol-relative //, in any attribute or CSS.
REMOTE = re.compile(r"""(?:https?:)?//[\w.-]+\.[a-z]{2,}""", re.I)


def _source_and_run():
    """A small source notebook (an answer, its test, a written answer, the summary cell) and the
    student's run of it (the summary cell printed the visible tests' count)."""

    def cell(kind, source, gid, **meta):
        new = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
        c = new(source)
        c.metadata["nbgrader"] = {"grade_id": gid, "schema_version": 3, **meta}
        return c

    intro = nbformat.v4.new_markdown_cell(
        r"The weights $\pi_k$ sum to one: $$\sum_k \pi_k = 1.$$ Cost: \$5, not maths."
    )
    cells = [
        intro,
        cell(
            "code",
            "def e_step(X):\n    return X",
            f"{ASSIGNMENT}_e_step",
            solution=True,
            grade=False,
            locked=False,
        ),
        cell(
            "code",
            "assert e_step(1) == 1",
            f"{ASSIGNMENT}_e_step_tests",
            solution=False,
            grade=True,
            locked=True,
            points=3,
        ),
        cell(
            "markdown",
            r"Because $\ln \sum_k$ is not $\sum_k \ln$.",
            f"{ASSIGNMENT}_written",
            solution=True,
            grade=True,
            locked=False,
            points=2,
        ),
        cell(
            "code",
            "print('Visible tests pass for 3 of 3 autograded points.')",
            summary_cell_id(ASSIGNMENT),
            solution=False,
            grade=False,
            locked=True,
        ),
    ]
    source = nbformat.v4.new_notebook(cells=cells)
    run = nbformat.from_dict(nbformat.v4.new_notebook(cells=[dict(c) for c in cells]))
    run.cells[-1].outputs = [
        nbformat.v4.new_output(
            "stream", name="stdout", text="Visible tests pass for 3 of 3 autograded points.\n"
        )
    ]
    return source, run


def _result(e_step=3.0, written=None):
    return {
        "student": "alice",
        "assignment": ASSIGNMENT,
        "status": "ok",
        "flags": [],
        "parts": [
            {
                "grade_id": f"{ASSIGNMENT}_e_step_tests",
                "kind": "auto",
                "max_points": 3.0,
                "points": e_step,
                "message": "",
            },
            {
                "grade_id": f"{ASSIGNMENT}_written",
                "kind": "manual",
                "max_points": 2.0,
                "points": written,
                "message": "to be graded by hand",
            },
        ],
    }


def _page(tmp_path, result) -> tuple[Path, str]:
    source, run = _source_and_run()
    graded = tmp_path / "graded.ipynb"
    nbformat.write(run, graded)
    feedback = tmp_path / "feedback"
    page = feedback / "alice" / ASSIGNMENT / f"{ASSIGNMENT}.html"
    write_feedback(graded, source, result, page, secret=set())
    mathjax.install(feedback)
    return page, page.read_text()


def _text(page_html: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page_html)).split())


def _script_sources(page_html: str) -> list[str]:
    return re.findall(r'<script[^>]*\bsrc="([^"]+)"', page_html)


def test_the_page_loads_mathjax_from_beside_it_and_never_from_a_cdn(tmp_path):
    page, text = _page(tmp_path, _result())
    assert not REMOTE.search(text), f"the page names a remote host: {REMOTE.search(text)[0]}"
    (src,) = _script_sources(text)
    assert not src.startswith("/"), src
    assert (page.parent / src).resolve().is_file(), f"{src} does not exist beside the page"
    # The maths reaches MathJax as TeX in elements of class "math"; prices stay text.
    assert r'<span class="math">\(\pi_k\)</span>' in text
    assert r"$$" in text and r"\sum_k \pi_k = 1." in text
    assert "Cost: $5, not maths." in _text(text)
    # A feedback folder copied elsewhere (sent to a student, put on a course site) still works.
    moved = tmp_path / "elsewhere" / "feedback"
    shutil.copytree(tmp_path / "feedback", moved)
    shutil.rmtree(tmp_path / "feedback")
    copy = moved / page.relative_to(tmp_path / "feedback")
    assert (copy.parent / src).resolve().is_file()
    fonts = list((moved / mathjax.FOLDER).rglob("*.woff"))
    assert fonts, "MathJax's fonts were not copied"
    assert (moved / mathjax.FOLDER / "LICENSE").is_file()


def test_install_copies_once_and_replaces_another_version(tmp_path):
    feedback = tmp_path / "feedback"
    folder = mathjax.install(feedback)
    script = folder / mathjax.SCRIPT
    before = script.stat().st_mtime_ns
    assert mathjax.install(feedback) == folder and script.stat().st_mtime_ns == before
    (folder / ".version").write_text("0.0")
    script.write_text("stale")
    mathjax.install(feedback)
    assert script.read_bytes() == (mathjax.source() / mathjax.SCRIPT).read_bytes()


def test_the_policy_lets_in_only_the_local_script_and_its_configuration(tmp_path):
    _, text = _page(tmp_path, _result())
    (policy,) = re.findall(r'Content-Security-Policy" content="([^"]+)"', text)
    assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    inline = re.findall(r"<script>(.*?)</script>", text, re.S)
    assert inline == [mathjax.CONFIG]  # the one inline script, allowed by its hash
    assert mathjax.CONFIG_HASH in policy


def test_header_before_hand_grading_says_what_is_pending(tmp_path):
    _, text = _page(tmp_path, _result(e_step=0.0))
    words = _text(text)
    assert "Autograded: 0 / 3." in words
    assert "Written answers (2 points) are graded by hand later" in words
    assert "your total so far is 0 / 5" in words


def test_after_update_the_page_shows_the_hand_marks_and_the_new_total(tmp_path):
    """What ``gmm-grade --update`` does to a result (`apply_hand_scores`, marks read from
    formgrader's gradebook) and then to its page: the written answer's mark, the overridden
    part, the total, and the line after the summary cell all follow."""
    result = _result(e_step=0.0)
    results = {"alice": [result]}
    changed = apply_hand_scores(
        results,
        {
            ("alice", ASSIGNMENT, f"{ASSIGNMENT}_written"): 1.5,
            ("alice", ASSIGNMENT, f"{ASSIGNMENT}_e_step_tests"): 2.0,
        },
    )
    assert changed == 2
    _, text = _page(tmp_path, result)
    words = _text(text)
    assert "Total: 3.5 / 5. Autograded: 2 / 3; graded by hand: 1.5 / 2." in words
    assert "graded by hand later" not in words
    assert f"{ASSIGNMENT}_written: 1.5 / 2 — graded by hand" in words
    assert f"{ASSIGNMENT}_e_step_tests: 2 / 3 — set by hand (autograded 0)" in words
    # The notebook's own line (visible tests, before any override) is followed by the current one.
    printed = words.index("Visible tests pass for 3 of 3 autograded points.")
    after = words[printed:]
    assert "Total: 3.5 / 5" in after, "no current total after the notebook's own count"
    assert "and any marks given by hand" in after


def test_a_notebook_without_written_answers_shows_its_total(tmp_path):
    result = _result()
    result["parts"] = result["parts"][:1]
    _, text = _page(tmp_path, result)
    assert "Total: 3 / 3. Autograded: 3 / 3." in _text(text)


@pytest.mark.slow
@pytest.mark.browser
def test_chromium_renders_the_maths_with_no_network(tmp_path, chromium):
    """Opened from disk (file://, no server, no network), the page typesets its maths:
    MathJax loads from the copied folder under the page's own policy."""
    page, _ = _page(tmp_path, _result())
    context = chromium.new_context(offline=True)
    try:
        tab = context.new_page()
        errors = []
        tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        tab.goto(page.as_uri())
        tab.wait_for_selector("mjx-container", timeout=60_000)
        assert tab.locator("mjx-container").count() >= 3  # π_k, the sum, the written answer
        assert not errors, errors
    finally:
        context.close()
