"""Accessibility checks shared by the browser tests: axe-core in every frame, and the focus ring.

axe-core comes from the npm registry (package.json's devDependencies, installed by `npm ci` in
`make setup`) and is injected into each frame separately, the explorer's iframe included: axe
runs with ``iframes: false`` there, so every finding names the document it is in.
axe has no rule for the focus indicator, so `focus_ring_contrast` measures it: WCAG 2.2's
"focus appearance" asks for a ring with >= 3:1 contrast against what surrounds it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"

#: Violations that come from the Jupyter Book theme (sphinx-book-theme / pydata-sphinx-theme),
#: not from our content: rule id -> [(a fragment of the offending node's selector or HTML, the
#: reason)]. A node is excused when the fragment occurs in its selector or its markup.
THEME_EXCEPTIONS: dict[str, list[tuple[str, str]]] = {
    "region": [
        (
            ".sidebar-primary-item",
            "pydata-sphinx-theme puts the site's title link (navbar-brand) in a div of the primary "
            "sidebar outside any landmark; the rest of the sidebar is inside <nav>",
        )
    ],
    "label-content-name-mismatch": [
        (
            "search-button-field",
            "pydata-sphinx-theme's search button shows 'Search' and its shortcut keys "
            "(Ctrl+K) but is named 'Search' by aria-label; the name starts with the visible "
            "word, so speech input ('click Search') still works (axe-core >= 4.12 reports "
            "the shortcut's text)",
        ),
        (
            "theme-switch-button",
            "pydata-sphinx-theme's colour-mode button holds icon-font glyphs as its text and "
            "is named 'Color mode' by aria-label: the glyphs are not words a user could speak",
        ),
    ],
}


def run_axe(frame) -> list[dict]:
    """axe-core's violations (every rule, every impact) in one Playwright Page or Frame."""
    if not AXE.is_file():
        pytest.fail(f"axe-core is missing ({AXE}): run `npm ci` (part of `make setup`)")
    if not frame.evaluate("typeof window.axe !== 'undefined'"):
        frame.add_script_tag(content=AXE.read_text(encoding="utf-8"))
    return frame.evaluate(
        """async () => {
            const r = await axe.run(document, {iframes: false, resultTypes: ['violations']});
            return r.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map(n => ({target: n.target.join(' '),
                                          html: n.html.slice(0, 160),
                                          summary: (n.failureSummary || '').slice(0, 300)}))}));
        }"""
    )


def own_violations(violations: list[dict]) -> list[dict]:
    """The violations left after the listed theme exceptions (each with its reason)."""
    left = []
    for v in violations:
        fragments = [fragment for fragment, _ in THEME_EXCEPTIONS.get(v["id"], [])]
        nodes = [
            n for n in v["nodes"] if not any(f in n["target"] or f in n["html"] for f in fragments)
        ]
        if nodes:
            left.append({**v, "nodes": nodes})
    return left


def _luminance(rgb: tuple[float, float, float]) -> float:
    def channel(c: float) -> float:
        c /= 255.0
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    """WCAG contrast ratio of two sRGB colours (0-255)."""
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


#: The focused element's outline (or, for an SVG handle, its dot's stroke) and the background
#: behind it: the first opaque background colour up the tree.
_FOCUS_JS = """() => {
    const el = document.activeElement;
    if (!el || el === document.body) return null;
    const parse = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
    let node = el.parentElement, bg = [255, 255, 255];
    while (node) {
        const c = parse(getComputedStyle(node).backgroundColor);
        if (c.length >= 3 && (c.length === 3 || c[3] > 0.99)) { bg = c.slice(0, 3); break; }
        node = node.parentElement;
    }
    const s = getComputedStyle(el);
    let ring = {style: s.outlineStyle, width: parseFloat(s.outlineWidth),
                colour: parse(s.outlineColor).slice(0, 3)};
    const dot = el.querySelector && el.querySelector('.gx-dot');
    if (dot && ring.style === 'none') {
        const d = getComputedStyle(dot);
        ring = {style: 'solid', width: parseFloat(d.strokeWidth), colour: parse(d.stroke)};
    }
    return {tag: el.tagName, text: (el.textContent || '').trim().slice(0, 40),
            cls: String(el.className && el.className.baseVal !== undefined
                        ? el.className.baseVal : el.className),
            ring, bg};
}"""


def focus_ring_problems(page_or_frame, presses: int = 6, keyboard=None) -> list[dict]:
    """Tab through the first `presses` focus stops; return those whose ring is missing or < 3:1."""
    if keyboard is None:  # a Page has a keyboard; a Frame uses its page's
        keyboard = getattr(page_or_frame, "keyboard", None) or page_or_frame.page.keyboard
    bad = []
    for _ in range(presses):
        keyboard.press("Tab")
        info = page_or_frame.evaluate(_FOCUS_JS)
        if info is None:
            continue
        ring = info["ring"]
        ok = ring["style"] not in ("none", "hidden") and ring["width"] >= 2
        ratio = contrast(tuple(ring["colour"]), tuple(info["bg"])) if ok else 0.0
        if not ok or ratio < 3.0:
            bad.append({**info, "contrast": round(ratio, 2)})
    return bad
