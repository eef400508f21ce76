"""The third edition's new chapters (issue 23): built, listed, labelled, and working in a browser.

`tests/test_book.py` checks every page of the table of contents; these tests name the four new
chapters, so a rename or a lost figure or equation in one of them fails here by name.
"""

from __future__ import annotations

import re

import pytest
from test_book import BOOK, _visit, parse, toc_pages

#: page -> (figures it draws, equation labels it defines)
NEW_CHAPTERS = {
    "how-fast-em-converges": (
        3,
        ["eq:em-linear", "eq:missing-information", "eq:gain-ratio", "eq:squarem"],
    ),
    "identifiability-and-icl": (1, ["eq:identifiable", "eq:icl"]),
    "em-in-general": (
        2,
        ["eq:em-general", "eq:minorise", "eq:bernoulli-mixture", "eq:bernoulli-em"],
    ),
    "mixture-as-density": (1, []),
}


def test_new_chapters_are_in_the_table_of_contents_after_what_they_extend():
    pages = toc_pages()
    for name in NEW_CHAPTERS:
        assert name in pages, f"{name} is not in book/_toc.yml"
    assert pages.index("how-fast-em-converges") < pages.index("identifiability-and-icl")
    assert pages.index("em-in-general") < pages.index("mixture-as-density")


def test_new_chapters_assert_their_claims():
    """Each new page checks what it says: hidden cells with named asserts."""
    for name in NEW_CHAPTERS:
        source = (BOOK / f"{name}.md").read_text()
        hidden = re.findall(
            r"```\{code-cell\} ipython3\n:tags: \[remove-cell\]\n(.*?)```", source, re.S
        )
        asserts = sum(cell.count("assert ") for cell in hidden)
        assert asserts >= 3, f"{name}: only {asserts} asserts in hidden cells"


def test_new_chapters_have_their_figures_and_equations(book_html):
    for name, (n_figures, labels) in NEW_CHAPTERS.items():
        tags = parse(book_html / f"{name}.html")
        images = [a for tag, a in tags if tag == "img" and "_images" in (a.get("src") or "")]
        assert len(images) >= n_figures, f"{name}: {len(images)} figures, expected {n_figures}"
        assert all((a.get("alt") or "").strip() for a in images), f"{name}: a figure lacks alt"
        ids = {a.get("id") for _, a in tags}
        for label in labels:
            assert f"equation-{label.replace(':', '-')}" in ids, f"{name}: {label} not defined"


@pytest.mark.browser
def test_new_chapters_work_in_headless_chromium(book_server, chromium, artifacts_dir):
    """No console errors, no failed or external requests, maths typeset, every image loaded."""
    shots = artifacts_dir / "book"
    shots.mkdir(exist_ok=True)
    report = {}
    for name in NEW_CHAPTERS:
        problems = _visit(chromium, book_server, name, shots / f"{name}.png")
        bad = {k: problems[k] for k in ("console", "failed", "status", "external") if problems[k]}
        math = problems["math"]
        if math is None or math["containers"] == 0 or math["errors"]:
            bad["math"] = math
        broken = [i["src"] for i in problems["images"] if not i["ok"]]
        if broken:
            bad["images"] = broken
        if bad:
            report[name] = bad
    assert not report, report
