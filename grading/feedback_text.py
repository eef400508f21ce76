"""What a feedback page says about points: the header (the total and one row per part), the
line after the notebook's own summary cell, and any text of the student's shown literally.

The total is final once every written answer has its mark (``gmm-grade --update`` reads them
from formgrader); until then the header says what is still to be graded by hand.
"""

from __future__ import annotations

import re


def literal(text: str) -> str:
    """``text`` shown as it is in markdown: every punctuation character backslash-escaped (a
    message can quote the student's own exception text: no link, image or table cell of
    theirs), on one line."""
    return re.sub(r"([!-/:-@\[-`{-~])", r"\\\1", " ".join(str(text).split()))


def fmt_points(points) -> str:
    """A part's points as the page shows them (``pending`` while a human has not scored it)."""
    return "pending" if points is None else f"{points:g}"


def totals(result) -> str:
    """The points so far in words: the total once every part is scored (marks given by hand
    included), else the autograded points and what is still to be graded by hand."""
    parts = result["parts"]
    auto = [p for p in parts if p["kind"] == "auto"]
    manual = [p for p in parts if p["kind"] == "manual"]
    got = sum(p["points"] or 0 for p in auto)
    auto_max = sum(p["max_points"] for p in auto)
    hand = sum(p["points"] or 0 for p in manual)
    hand_max = sum(p["max_points"] for p in manual)
    total, total_max = got + hand, auto_max + hand_max
    if not manual:
        return f"**Total: {total:g} / {total_max:g}.** Autograded: {got:g} / {auto_max:g}."
    if any(p["points"] is None for p in manual):
        return (
            f"**Autograded: {got:g} / {auto_max:g}.** Written answers ({hand_max:g} points) are "
            f"graded by hand later: your total so far is {total:g} / {total_max:g}."
        )
    return (
        f"**Total: {total:g} / {total_max:g}.** Autograded: {got:g} / {auto_max:g}; graded by "
        f"hand: {hand:g} / {hand_max:g}."
    )


#: The line after the notebook's own summary cell, whose count is the visible tests' only.
PROGRESS = (
    "{totals} The count above is what your notebook printed: the visible tests in your own run, "
    "before the hidden tests{hand}. The points here are the ones that count."
)


def summary_markdown(result) -> str:
    parts = result["parts"]
    lines = [
        f"# Feedback: {result['assignment']} ({result['student']})",
        "",
        totals(result),
        "",
        "| part | points | out of | note |",
        "|---|---|---|---|",
    ]
    for p in parts:
        note = literal(p.get("message") or "")
        points = fmt_points(p["points"])
        lines.append(f"| `{p['grade_id']}` | {points} | {p['max_points']:g} | {note} |")
    if result.get("flags"):
        lines += [
            "",
            "Your instructor will look at this submission: "
            + literal("; ".join(result["flags"][:5])),
        ]
    return "\n".join(lines)
