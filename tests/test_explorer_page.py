"""The book's explorer page opens in the state its address asks for.

`book/explorer.md` forwards its query string (`explorer.html?dataset=...&k=...&seed=...&reg=...`)
to the explorer's frame, so a checkpoint in a chapter can link to the explorer in the state it
talks about. These tests open such addresses in headless Chromium (Debian's, via Playwright) and
check both ends: the frame's address carries the same parameters, and the widget shows that
state (data set, K, seed and reg_covar in its controls and in `emExplorer.state()`). Every
distinct link to the explorer page in the built book is followed the same way, so a link whose
parameter the page or the explorer ignores (a misspelt name, a data set that does not exist, a
K beyond the slider, which the explorer would silently replace) fails here, naming the link.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qsl, urljoin, urlparse

import pytest
from browser import WAIT_MS, new_context
from test_book import toc_pages

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = json.loads((ROOT / "book" / "_extra" / "explorer" / "data.json").read_text())

#: The frame the explorer page embeds (book/explorer.md).
FRAME = "iframe.gmm-explorer-frame"


class _Links(HTMLParser):
    """The href of every <a> in a page."""

    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.hrefs.append(href)


def explorer_links(book_html: Path) -> dict[str, list[str]]:
    """Each distinct link to the explorer page with a query, and the pages that carry it."""
    found: dict[str, list[str]] = {}
    for page in toc_pages():
        parser = _Links()
        parser.feed((book_html / f"{page}.html").read_text(encoding="utf-8"))
        for href in parser.hrefs:
            if urlparse(href).path == "explorer.html" and urlparse(href).query:
                found.setdefault(href, []).append(page)
    return found


def wait_for_frame(page):
    """The explorer frame of `page`, once the explorer at the frame's final address is ready
    (the page re-points the frame to the forwarded query as it loads)."""
    frame_el = page.locator(FRAME)
    assert frame_el.count() == 1, "the explorer page embeds exactly one explorer frame"
    frame_el.scroll_into_view_if_needed()
    page.wait_for_function(
        """(sel) => {
            const f = document.querySelector(sel);
            const doc = f && f.contentDocument;
            const root = doc && doc.getElementById('em-explorer');
            const wanted = new URL(f.getAttribute('src'), location.href).href;
            return Boolean(root) && root.dataset.ready === 'true'
                && f.contentWindow.location.href === wanted;
        }""",
        arg=FRAME,
        timeout=WAIT_MS,
    )
    return frame_el.element_handle().content_frame()


def open_explorer_page(chromium, url: str):
    """Open the explorer page at `url`: (context, page, frame, console errors)."""
    context = new_context(chromium, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    page.goto(url, wait_until="load")
    return context, page, wait_for_frame(page), errors


def shown_state(frame) -> dict:
    """What the widget shows: its controls (what a reader sees) and its state object."""
    return frame.evaluate(
        """() => {
            const root = document.getElementById('em-explorer');
            const s = window.emExplorer.state();
            return {
                frame_url: location.href,
                dataset_select: root.querySelector('.gx-controls select').value,
                k_slider: root.querySelector('.gx-controls input[type=range]').value,
                k_output: root.querySelector('.gx-controls output').textContent,
                seed_box: root.querySelector('.gx-controls input[type=number]').value,
                reg_ticked: root.querySelector('.gx-controls input[type=checkbox]').checked,
                caption: root.querySelector('.gx-caption').textContent,
                state: {dataset: s.dataset, k: s.k, seed: s.seed, regCovar: s.regCovar,
                        iteration: s.iteration, nextKind: s.nextKind, position: s.position},
                problems: s.problems,
            };
        }"""
    )


def state_problems(asked: dict[str, str], shown: dict) -> list[str]:
    """Each asked parameter the widget does not show (an empty list: every one took effect)."""
    problems = []
    frame_query = dict(parse_qsl(urlparse(shown["frame_url"]).query))
    if frame_query != asked:
        problems.append(f"the frame's address has {frame_query}, the page was asked for {asked}")
    state = shown["state"]
    for name, value in asked.items():
        if name == "dataset":
            if value not in CATALOGUE["datasets"]:
                problems.append(f"dataset={value}: not one of {sorted(CATALOGUE['datasets'])}")
            elif not (state["dataset"] == shown["dataset_select"] == value):
                problems.append(
                    f"dataset={value}: the widget shows {shown['dataset_select']!r} "
                    f"(state {state['dataset']!r})"
                )
        elif name == "k":
            if not (str(state["k"]) == shown["k_slider"] == shown["k_output"] == value):
                problems.append(
                    f"k={value}: the slider shows {shown['k_slider']} ({shown['k_output']}), "
                    f"state K = {state['k']}"
                )
            elif f"K = {value}," not in shown["caption"]:
                problems.append(f"k={value}: the plot's caption says {shown['caption']!r}")
        elif name == "seed":
            if not (str(state["seed"]) == shown["seed_box"] == value):
                problems.append(
                    f"seed={value}: the seed box shows {shown['seed_box']}, "
                    f"state seed {state['seed']}"
                )
            elif f"seed {value}" not in shown["caption"]:
                problems.append(f"seed={value}: the plot's caption says {shown['caption']!r}")
        elif name == "reg":
            reg = float(value)
            if shown["reg_ticked"] != (reg > 0) or state["regCovar"] != reg:
                problems.append(
                    f"reg={value}: reg_covar box ticked={shown['reg_ticked']}, "
                    f"state reg_covar {state['regCovar']}"
                )
        elif name == "step" and str(state["position"]) != value:
            problems.append(f"step={value}: the widget shows step {state['position']}")
        elif name in ("cov", "means", "drop", "add", "step", "steps", "go"):
            # The explorer's own check (url.mjs): each parameter it could not use, named.
            problems += [p for p in shown["problems"] if p.startswith(f"{name}=")]
        else:
            problems.append(f"{name}={value}: not a parameter the explorer reads")
    # A fresh start in that state (unless the link asks for a step): nothing run yet.
    if "step" not in asked and (state["iteration"], state["nextKind"]) != (0, "E"):
        problems.append(f"not a fresh start: {state}")
    return problems


def test_explorer_page_forwards_its_query_to_the_frame(book_server, chromium, artifacts_dir):
    """A state unlike the frame's default in every parameter (tilted, K = 3, seed 0, no reg,
    full covariances, the start): the frame's address carries it and the widget shows it."""
    asked = {"dataset": "faithful", "k": "5", "seed": "17", "reg": "1e-06", "cov": "diag",
             "step": "3"}  # fmt: skip
    defaults = {"dataset": "tilted", "k": "3", "seed": "0"}
    assert all(asked[name] != value for name, value in defaults.items())
    query = "&".join(f"{name}={value}" for name, value in asked.items())
    context, page, frame, errors = open_explorer_page(
        chromium, f"{book_server}/explorer.html?{query}"
    )
    try:
        shown = shown_state(frame)
        page.locator(FRAME).screenshot(path=str(artifacts_dir / "explorer-page-forwarded.png"))
    finally:
        context.close()
    assert state_problems(asked, shown) == [], shown
    assert errors == []


def test_explorer_page_without_a_query_shows_its_default(book_server, chromium):
    """No query: the frame keeps the address written in book/explorer.md (tilted, K 3, seed 0)."""
    context, _page, frame, errors = open_explorer_page(chromium, f"{book_server}/explorer.html")
    try:
        shown = shown_state(frame)
    finally:
        context.close()
    assert state_problems({"dataset": "tilted", "k": "3", "seed": "0"}, shown) == [], shown
    assert shown["reg_ticked"] is False and errors == []


def test_a_misspelt_parameter_is_caught(book_server, chromium):
    """The check below is not vacuous: a link asking for K = 12 (the slider stops at 8) or for a
    data set that does not exist is reported, although the explorer still opens."""
    context, _page, frame, _errors = open_explorer_page(
        chromium, f"{book_server}/explorer.html?dataset=faithfull&k=12&seed=3"
    )
    try:
        shown = shown_state(frame)
    finally:
        context.close()
    problems = state_problems({"dataset": "faithfull", "k": "12", "seed": "3"}, shown)
    assert any(p.startswith("dataset=faithfull") for p in problems), problems
    assert any(p.startswith("k=12") for p in problems), problems


def test_every_checkpoint_link_opens_the_state_it_names(book_html, book_server, chromium):
    """Every distinct `explorer.html?...` link in the built book: each of its parameters reaches
    the frame and shows in the widget; none is silently ignored."""
    links = explorer_links(book_html)
    in_sources = {
        href.replace("&amp;", "&")
        for source in (ROOT / "book").glob("*.md")
        for href in re.findall(r'href="(explorer\.html\?[^"]+)"', source.read_text())
    }
    # The built pages carry every link the sources write (none lost to the build).
    assert in_sources and in_sources <= set(links), (sorted(in_sources), sorted(links))
    report = {}
    for href, pages in sorted(links.items()):
        url = urljoin(f"{book_server}/{pages[0]}.html", href)
        asked = dict(parse_qsl(urlparse(url).query, keep_blank_values=True))
        context, _page, frame, errors = open_explorer_page(chromium, url)
        try:
            shown = shown_state(frame)
        finally:
            context.close()
        problems = state_problems(asked, shown) + errors
        if problems:
            report[f"{href} (in {', '.join(pages)})"] = problems
    assert not report, "\n".join(f"{link}: {p}" for link, p in report.items())


def test_a_chapter_link_followed_by_a_click(book_server, chromium):
    """Chapter 4's checkpoint link, clicked: the collapse data, K = 4, seed 0, reg_covar off."""
    context = new_context(chromium, viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{book_server}/break-it.html", wait_until="load")
        link = page.locator("a[href^='explorer.html?dataset=collapse']")
        assert link.count() >= 1
        href = link.first.get_attribute("href")
        link.first.click()
        page.wait_for_url(re.compile(r"/explorer\.html\?"), timeout=WAIT_MS)
        shown = shown_state(wait_for_frame(page))
    finally:
        context.close()
    asked = dict(parse_qsl(urlparse(href).query))
    assert asked["dataset"] == "collapse"
    assert state_problems(asked, shown) == [], shown


def test_the_pages_address_follows_the_explorer(book_server, chromium, artifacts_dir):
    """As the reader works in the frame, the explorer page's own address (and its "own page"
    link) carries the state, so copying the address shares exactly what they see."""
    context, page, frame, errors = open_explorer_page(
        chromium, f"{book_server}/explorer.html?dataset=faithful&k=2&seed=3"
    )
    try:
        for name in ("E-step", "M-step", "E-step"):
            frame.get_by_role("button", name=name).click()
        frame.get_by_label("Timeline").focus()
        frame.page.keyboard.press("ArrowLeft")
        shown = frame.evaluate("emExplorer.state()")
        assert "step=2" in shown["query"] and "steps=3" in shown["query"]
        page.wait_for_function(
            "q => location.search === '?' + q", arg=shown["query"], timeout=WAIT_MS
        )
        link = page.locator("a.gmm-explorer-own-page").get_attribute("href")
        assert link == f"explorer/index.html?{shown['query']}"
        copied = page.evaluate("location.href")
    finally:
        context.close()
    assert errors == []
    context, page, frame, errors = open_explorer_page(chromium, copied)
    try:
        again = frame.evaluate("emExplorer.state()")
        page.locator(FRAME).screenshot(path=str(artifacts_dir / "explorer-page-shared.png"))
    finally:
        context.close()
    for key in ("dataset", "k", "seed", "position", "steps", "weights", "means", "covariances"):
        assert again[key] == shown[key], key
    assert again["logLikelihood"] == shown["logLikelihood"] and errors == []
