"""The course book: it builds warning-free, reads offline, and every page works in a browser.

The static checks read the built HTML; the browser test opens every page of the table of
contents in headless Chromium (Debian's, via Playwright) from a local server, and saves a
screenshot of each page to artifacts/book/. A second pass reads every page as a reader at the
column width: each figure's text is >= 10 px on screen, no code cell scrolls sideways, axe-core
finds no violation in the page or in the explorer's frame, and the focus ring is >= 3:1.
"""

from __future__ import annotations

import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from a11y import focus_ring_problems, own_violations, run_axe
from browser import WAIT_MS, new_context, settle

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"

#: Pages whose figures the issue asks for, with the labels they must define.
CHAPTERS = [
    "intro",
    "idea",
    "em-steps",
    "derivation",
    "break-it",
    "explorer",
    "choosing-k",
    "real-data",
    "em-coordinate-ascent",
    "convergence-and-identifiability",
    "how-fast-em-converges",
    "identifiability-and-icl",
    "beyond-one-fit",
    "em-in-general",
    "mixture-as-density",
    "exercises",
    "appendix-fast",
    "references",
]


def toc_pages() -> list[str]:
    """Every page named in book/_toc.yml, in reading order (root first)."""
    toc = yaml.safe_load((BOOK / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc.get("parts", [{"chapters": toc.get("chapters", [])}]):
        for chapter in part.get("chapters", []):
            pages.append(chapter["file"])
            pages.extend(section["file"] for section in chapter.get("sections", []))
    return [re.sub(r"\.(md|ipynb)$", "", p) for p in pages]


class _Tags(HTMLParser):
    """Collects (tag, attributes) for every start tag of an HTML page."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def parse(path: Path) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser.tags


def _is_external(url: str | None) -> bool:
    return bool(url) and (url.startswith(("http://", "https://", "//")))


# --------------------------------------------------------------------------------------------
# The build
# --------------------------------------------------------------------------------------------


def test_toc_lists_the_chapters_in_order():
    assert toc_pages() == CHAPTERS


def test_book_builds_warning_free(book_build, book_html):
    """`jupyter-book build book -W -n --keep-going` passed: a warning or a failing cell fails it."""
    log = book_build.stdout + book_build.stderr
    assert "build succeeded" in log or "Finished generating HTML" in log, log[-3000:]
    for page in toc_pages():
        assert (book_html / f"{page}.html").is_file(), f"{page}.html was not built"


def test_config_keeps_the_book_offline_and_cached():
    config = yaml.safe_load((BOOK / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "cache"
    assert config["launch_buttons"]["thebe"] is False
    sphinx = config["sphinx"]["config"]
    assert sphinx["html_extra_path"] == ["_extra"]
    assert not _is_external(sphinx["mathjax_path"])


def test_vendor_script_is_idempotent():
    """`make setup` runs scripts/vendor-mathjax.sh each time: with MathJax there it is a no-op."""
    if not (BOOK / "_extra" / "mathjax" / ".version").is_file():
        pytest.fail("MathJax is not vendored: run `make setup` (scripts/vendor-mathjax.sh)")
    before = sorted(p.stat().st_mtime_ns for p in (BOOK / "_extra" / "mathjax").rglob("*"))
    subprocess.run(["bash", str(ROOT / "scripts" / "vendor-mathjax.sh")], check=True, timeout=60)
    after = sorted(p.stat().st_mtime_ns for p in (BOOK / "_extra" / "mathjax").rglob("*"))
    assert before == after


def test_mathjax_is_vendored_into_the_build(book_html):
    assert (book_html / "mathjax" / "tex-mml-chtml.js").stat().st_size > 100_000
    fonts = list((book_html / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))
    assert len(fonts) > 10
    assert not (book_html / "_static" / "mathjax").exists(), "MathJax must not be under _static"


def test_no_page_loads_anything_from_another_host(book_html):
    """Scripts, stylesheets, fonts, images and frames all come from the build itself."""
    offenders = []
    for page in sorted(book_html.glob("*.html")):
        for tag, attrs in parse(page):
            if tag in ("script", "img", "iframe", "source", "embed") and _is_external(
                attrs.get("src")
            ):
                offenders.append((page.name, tag, attrs.get("src")))
            if tag == "link" and _is_external(attrs.get("href")):
                rel = (attrs.get("rel") or "").lower()
                if any(r in rel for r in ("stylesheet", "preload", "icon", "modulepreload")):
                    offenders.append((page.name, tag, attrs.get("href")))
    for css in book_html.glob("_static/**/*.css"):
        for url in re.findall(r"@import\s+url\(['\"]?(https?://[^)'\"]+)", css.read_text()):
            offenders.append((css.name, "@import", url))
    assert not offenders, offenders


def test_thebe_scripts_are_dropped(book_html):
    """sphinx-thebe's inline config is declared twice (a SyntaxError) and names unpkg.com."""
    for page in toc_pages():
        html = (book_html / f"{page}.html").read_text()
        assert "THEBE_JS_URL" not in html and "sphinx-thebe.js" not in html, page


def test_every_figure_has_alt_text(book_html):
    missing, count = [], 0
    for page in toc_pages():
        for tag, attrs in parse(book_html / f"{page}.html"):
            if tag == "img":
                count += 1
                if not (attrs.get("alt") or "").strip():
                    missing.append((page, attrs.get("src")))
    assert count >= 12, f"expected the chapters' figures, found {count} images"
    assert not missing, missing


def test_equation_labels_cited_by_gmmlib_exist_in_the_book(book_html):
    """Every `eq:...` label a gmmlib docstring cites is a labelled equation of the book."""
    cited = set()
    for source in (ROOT / "gmmlib").glob("*.py"):
        cited |= set(re.findall(r"\beq:[a-z0-9-]+", source.read_text()))
    assert {"eq:e-step", "eq:m-step-means", "eq:m-step-covariances"} <= cited
    html = "\n".join(p.read_text() for p in book_html.glob("*.html"))
    missing = [c for c in sorted(cited) if f'id="equation-{c.replace(":", "-")}"' not in html]
    assert not missing, f"labels cited in gmmlib but not defined in the book: {missing}"


def test_chapters_show_gmmlib_code_not_copies(book_html):
    """The E- and M-steps on the page are literalincludes of gmmlib/em.py (the code that runs)."""
    page = (book_html / "em-steps.html").read_text()
    text = re.sub(r"<[^>]+>", "", page)
    for name in ("def e_step(", "def m_step(", "def log_gaussian_density(", "logsumexp("):
        assert name in text, name
    source = (BOOK / "em-steps.md").read_text()
    for name in ("e_step", "log_gaussian_density", "m_step", "scatter_matrices"):
        assert f":pyobject: {name}" in source
    # Chapter 2 shows the reference only; the engine has its appendix.
    assert "_engine.py" not in source and ":pyobject:" in (BOOK / "appendix-fast.md").read_text()


def test_no_long_output_lines(book_html):
    """Printed output stays near the column's ~80 characters (wrapped text, not 560-char lines);
    100 leaves room for the few tables a little wider than 80, which wrap on screen."""
    import html as html_lib

    long_lines = []
    for page in toc_pages():
        source = (book_html / f"{page}.html").read_text()
        for block in re.findall(
            r'<div class="cell_output docutils container">(.*?)</div>\s*</div>', source, re.S
        ):
            for pre in re.findall(r"<pre>(.*?)</pre>", block, re.S):
                text = html_lib.unescape(re.sub(r"<[^>]+>", "", pre))
                long_lines += [(page, len(x), x[:60]) for x in text.splitlines() if len(x) > 100]
    assert not long_lines, long_lines


# One word for one thing: an E-step plus an M-step is an "iteration" (as `n_iter_` counts them),
# never a "round". "round" the adjective (round clusters, a round covariance) stays; so do
# "rounding", "around" and numpy's `round(`.
_ROUND_NOUN = re.compile(
    r"\brounds\b"  # the plural is always the noun (or the verb: "rounds to", say "underflows")
    r"|\bround\s*(?:\d|\$|\{)"  # "round 14", "round $t$"
    r"|\b(?:EM|each|every|one|per|first|last|next|this|that|a|an|the|no|same|later|final)"
    r"\s+round\b(?!\s*(?:-|\(|clusters?\b|covariances?\b|variances?\b|circles?\b"
    r"|starting\b|handles?\b|shapes?\b|blobs?\b|components?\b|ellipses?\b|and\b))",
    re.IGNORECASE,
)


def _round_as_noun(text: str) -> list[str]:
    return [text[max(0, m.start() - 40) : m.end() + 20] for m in _ROUND_NOUN.finditer(text)]


def test_round_as_noun_rule_catches_the_noun_and_spares_the_adjective():
    for bad in (
        "one EM round",
        "in round 14",
        "after 9 rounds",
        "no round can lower it",
        "round $t$ turns",
        "Each round raises",
    ):
        assert _round_as_noun(bad), bad
    for good in (
        "round clusters of equal size",
        "a round covariance",
        "np.round(final, 1)",
        "up to rounding",
        "a round handle",
        "(round, one variance)",
        "around the mean",
        "one iteration",
        "round and the same size",
    ):
        assert not _round_as_noun(good), good


def test_book_says_iteration_not_round(book_html):
    """The sources (prose, captions, alt text, labels in code) and the built pages' text."""
    found = []
    for page in toc_pages():
        source = BOOK / f"{page}.md"
        if source.is_file():
            found += [(f"{page}.md", hit) for hit in _round_as_noun(source.read_text())]
        text = re.sub(r"<[^>]+>", "", (book_html / f"{page}.html").read_text())
        found += [(f"{page}.html", hit) for hit in _round_as_noun(text)]
    for module in sorted((ROOT / "gmmlib").rglob("*.py")):  # warnings, labels and docstrings
        name = str(module.relative_to(ROOT))
        found += [(name, hit) for hit in _round_as_noun(module.read_text())]
    assert not found, f"say 'iteration' (as n_iter_), not 'round': {found}"


def chapter_numbers() -> dict[str, int]:
    """The number the built book gives each chapter: the numbered parts of _toc.yml count on
    from one part to the next (use_multitoc_numbering)."""
    toc = yaml.safe_load((BOOK / "_toc.yml").read_text())
    numbers: dict[str, int] = {}
    for part in toc.get("parts", []):
        if part.get("numbered"):
            for chapter in part.get("chapters", []):
                numbers[chapter["file"]] = len(numbers) + 1
    return numbers


def test_chapter_numbers_in_the_prose_match_the_table_of_contents():
    """A {doc} link shows the chapter's title, not its number: "chapter {doc}`x`" reads
    "chapter EM, one step at a time". The book writes "chapter 2 ({doc}`em-steps`)" (or
    "chapter 2, {doc}`...`"), and the intro's course map numbers its rows: each number must be
    the one the table of contents gives that page."""
    numbers = chapter_numbers()
    assert numbers["em-steps"] == 2 and numbers["exercises"] == len(numbers)
    wrong = []
    for source in sorted(BOOK.glob("*.md")):
        text = source.read_text()
        wrong += [(source.name, m.group(0)) for m in re.finditer(r"[Cc]hapter\s+\{doc\}", text)]
        for m in re.finditer(r"[Cc]hapters?\s+(\d+)(?:\s+\(|,\s+)\{doc\}`([^`]+)`", text):
            if numbers.get(m.group(2)) != int(m.group(1)):
                wrong.append((source.name, m.group(0), numbers.get(m.group(2))))
    intro = (BOOK / "intro.md").read_text()
    course_map = re.findall(r"^\| (\d+|–) \| \{doc\}`([^`]+)`", intro, re.M)
    for number, page in course_map:
        if numbers.get(page) != (None if number == "–" else int(number)):
            wrong.append(("intro.md", number, page, numbers.get(page)))
    missing = set(toc_pages()) - {page for _, page in course_map} - {"intro", "references"}
    assert not missing, f"the intro's course map lacks {sorted(missing)}"
    assert not wrong, wrong


def test_no_maths_left_unrendered(book_html):
    """Every formula reaches MathJax: no `$` or TeX command is left in the pages' text outside
    the math elements. (A line of inline maths that starts with "+ " becomes a list item and
    splits its formula, which then shows as raw TeX: chapter 3's weights derivation did.)"""
    import html as html_lib

    raw = []
    for page in toc_pages():
        text = (book_html / f"{page}.html").read_text()
        text = re.sub(r"<(script|style|pre|code)\b.*?</\1>", " ", text, flags=re.S)
        text = re.sub(r'<(span|div) class="math[^"]*"[^>]*>.*?</\1>', " ", text, flags=re.S)
        text = html_lib.unescape(re.sub(r"<[^>]+>", " ", text))
        raw += [
            (page, text[max(0, m.start() - 30) : m.end() + 30])
            for m in re.finditer(r"\$|\\[A-Za-z]+", text)
        ]
    assert not raw, raw[:10]


def test_every_assert_in_the_book_names_the_claim_it_checks():
    """The build checks the prose with `assert`s in its code cells (most of them hidden); each
    one carries a message quoting the sentence it checks, so a failing build says which claim
    became false. A bare `assert` would only say "AssertionError"."""
    import ast

    from myst_nb.core.read import read_myst_markdown_notebook

    bare, count = [], 0
    for source in sorted(BOOK.glob("*.md")):
        notebook = read_myst_markdown_notebook(source.read_text())
        for cell in notebook.cells:
            if cell.cell_type != "code":
                continue
            for node in ast.walk(ast.parse(cell.source)):
                if isinstance(node, ast.Assert):
                    count += 1
                    if node.msg is None:
                        bare.append((source.name, ast.unparse(node)[:80]))
    assert count > 100, f"expected the book's checks, found {count} asserts"
    assert not bare, bare


def test_derivation_is_collapsible(book_html):
    page = (book_html / "derivation.html").read_text()
    assert page.count("Show the derivation") >= 4
    assert "<details" in page


def test_explorer_is_embedded_in_chapters_2_4_and_6(book_html):
    for page, dataset in [
        ("em-steps", "tilted"),
        ("break-it", "collapse"),
        ("real-data", "faithful"),
        ("explorer", "tilted"),
    ]:
        frames = [a for t, a in parse(book_html / f"{page}.html") if t == "iframe"]
        assert any(
            (a.get("src") or "").startswith(f"explorer/index.html?dataset={dataset}")
            and (a.get("title") or "").strip()
            and "gmm-explorer-frame" in (a.get("class") or "")  # embed.js sizes it
            for a in frames
        ), (page, frames)
        scripts = [a.get("src") for t, a in parse(book_html / f"{page}.html") if t == "script"]
        assert "explorer/embed.js" in scripts, page


# --------------------------------------------------------------------------------------------
# Every page in headless Chromium
# --------------------------------------------------------------------------------------------


def _watch(context, base: str) -> tuple[dict, object]:
    """What goes wrong on the pages of ``context`` from now on: console errors, failed or
    external requests (refused, so the book is held to working offline)."""
    host = urlparse(base).netloc
    problems: dict[str, list] = {"console": [], "failed": [], "status": [], "external": []}

    def route(r):
        url = r.request.url
        if url.startswith(("data:", "blob:", "about:")) or urlparse(url).netloc == host:
            r.continue_()
        else:
            problems["external"].append(url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda m: m.type == "error" and problems["console"].append(m.text))
    page.on("pageerror", lambda e: problems["console"].append(f"uncaught: {e}"))
    page.on(
        "requestfailed",
        lambda r: (
            urlparse(r.url).netloc == host and problems["failed"].append(f"{r.url} ({r.failure})")
        ),
    )
    page.on("response", lambda r: r.status >= 400 and problems["status"].append((r.status, r.url)))
    return problems, page


def _load(page, base: str, page_name: str, problems: dict) -> None:
    """Open one page, bring its lazy iframes in and wait for its maths and requests; record
    MathJax's output and whether every image loaded in ``problems``."""
    page.goto(f"{base}/{page_name}.html", wait_until="load")
    # Lazy iframes (the explorer) load once scrolled into view: bring each one in.
    for frame in page.locator("iframe").all():
        frame.scroll_into_view_if_needed()
        settle(page)
    has_math = page.evaluate("document.querySelectorAll('.math').length") > 0
    problems["math"] = None
    if has_math:
        page.wait_for_function(
            "() => window.MathJax && window.MathJax.startup && window.MathJax.startup.promise",
            timeout=WAIT_MS,
        )
        problems["math"] = page.evaluate(
            """async () => {
                await window.MathJax.startup.promise;
                return {containers: document.querySelectorAll('mjx-container').length,
                        errors: document.querySelectorAll('mjx-merror').length,
                        math: document.querySelectorAll('.math').length};
            }"""
        )
    page.wait_for_load_state("networkidle")
    problems["images"] = page.evaluate(
        """() => Array.from(document.images).map(
               i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0}))"""
    )


def _visit(browser, base: str, page_name: str, shot: Path) -> dict:
    """Open one page; return what went wrong (console errors, failed or external requests...)."""
    context = new_context(browser, viewport={"width": 1280, "height": 900})
    try:
        problems, page = _watch(context, base)
        _load(page, base, page_name, problems)
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(shot), full_page=True)
    finally:
        context.close()
    return problems


def _page_problems(problems: dict, shot: Path) -> dict:
    """What `_visit` (or the `reading` visit) found wrong with a page, by kind; {} if nothing."""
    bad = {k: problems[k] for k in ("console", "failed", "status", "external") if problems[k]}
    math = problems["math"]
    if math is not None and (math["containers"] == 0 or math["errors"]):
        bad["math"] = math
    broken = [i["src"] for i in problems["images"] if not i["ok"]]
    if broken:
        bad["images"] = broken
    if not shot.is_file() or shot.stat().st_size == 0:
        bad["screenshot"] = str(shot)
    return bad


@pytest.mark.browser
@pytest.mark.slow
def test_every_page_works_in_headless_chromium(reading):
    """No console errors, no failed or external requests, maths rendered, every image loaded
    (each page opened once, by the `reading` fixture below, which also takes the screenshot)."""
    report = {name: seen["problems"] for name, seen in reading.items() if seen["problems"]}
    assert not report, report


# --------------------------------------------------------------------------------------------
# Every page as a reader sees it: legible figures, code in the column, accessibility
# --------------------------------------------------------------------------------------------

#: Smallest rendered text size allowed in a figure, in CSS px.
MIN_TEXT_PX = 10.0


def loaded_and_typeset(page) -> None:
    """Return once the page's requests are done and MathJax has typeset its maths."""
    page.wait_for_load_state("networkidle")
    if page.evaluate("document.querySelectorAll('.math').length"):
        page.wait_for_function("() => window.MathJax && MathJax.startup.promise")
        page.evaluate("() => MathJax.startup.promise")


@pytest.fixture(scope="module")
def reading(book_server, chromium, book_html, artifacts_dir, host_links):
    """Each page at 1280x900, opened once: what went wrong while it loaded (console errors,
    failed or external requests, maths, images; screenshots in artifacts/book/), then its
    figures, overflowing code, axe findings and focus rings, and last what runs past a phone's
    screen once the viewport is narrowed to 390x844."""
    shots = artifacts_dir / "book"
    shots.mkdir(exist_ok=True)
    out = {}
    with host_links():  # (conftest.py) set up before the test's own share of it
        for name in toc_pages():
            out[name] = _read(chromium, book_server, name, shots)
    return out


def _read(chromium, book_server, name, shots) -> dict:
    """`reading`'s findings on one page."""
    context = new_context(chromium, viewport={"width": 1280, "height": 900})
    try:
        problems, page = _watch(context, book_server)
        _load(page, book_server, name, problems)  # loaded_and_typeset, and more
        images = page.evaluate(
            """() => Array.from(document.images).map(i => ({
                   src: i.currentSrc, natural: i.naturalWidth,
                   shown: i.getBoundingClientRect().width}))"""
        )
        overflow = page.evaluate(
            """() => [...document.querySelectorAll('pre')]
                   .filter(p => p.scrollWidth > p.clientWidth + 1)
                   .map(p => p.textContent.slice(0, 80))"""
        )
        # What went wrong while the page loaded, before axe and the key presses below.
        loading = {k: list(v) if isinstance(v, list) else v for k, v in problems.items()}
        axe = {"page": own_violations(run_axe(page))}
        for i, frame in enumerate(page.frames[1:]):
            frame.wait_for_selector("#em-explorer[data-ready=true]", timeout=WAIT_MS)
            axe[f"frame {i}: {frame.url}"] = own_violations(run_axe(frame))
        page.evaluate("window.scrollTo(0, 0)")
        shot = shots / f"{name}.png"
        page.screenshot(path=str(shot), full_page=True)
        focus = focus_ring_problems(page, presses=8)
        # Last, with every dropdown open (derivations, answers): displayed formulas that run
        # past the column, where the reader would have to scroll them sideways.
        page.evaluate("document.querySelectorAll('details').forEach(d => (d.open = true))")
        settle(page)
        wide_maths = page.evaluate(
            """() => [...document.querySelectorAll('mjx-container[display="true"]')]
                   .filter(m => m.scrollWidth > m.parentElement.clientWidth + 1)
                   .map(m => [m.scrollWidth, m.parentElement.clientWidth,
                              m.textContent.slice(0, 60)])"""
        )
        # Then the same page on a phone's screen, dropdowns still open: the layout is the
        # viewport's (CSS media queries; the explorer's frames follow their size), so one
        # load serves both widths.
        page.set_viewport_size(PHONE)
        settle(page)
        phone = {
            "page width": page.evaluate("document.documentElement.scrollWidth"),
            "cut off": [e for e in page.evaluate(PAST_THE_EDGE) if e[3] not in CLIPS_NOT],
        }
    finally:
        context.close()
    return {
        "problems": _page_problems(loading, shot),
        "images": images,
        "overflow": overflow,
        "axe": axe,
        "focus": focus,
        "wide_maths": wide_maths,
        "phone": phone,
    }


@pytest.mark.browser
@pytest.mark.slow
def test_figures_are_legible_at_the_column_width(reading, book_server, book_html):
    """Rendered text px = font pt x dpi / 72 x (shown width / image width) >= 10, every figure.

    The font size and dpi are read from the PNG itself: gmmlib.plotting.figure_png records the
    smallest font of the figure and its dpi when a page shows it (gmmlib.plotting.use_course_style).
    """
    from PIL import Image

    from gmmlib.plotting import PNG_KEY_DPI, PNG_KEY_MIN_FONT

    small, checked = [], 0
    for name, seen in reading.items():
        for image in seen["images"]:
            path = book_html / urlparse(image["src"]).path.lstrip("/")
            if path.suffix != ".png" or "_images" not in path.parts:
                continue
            text = Image.open(path).text
            if PNG_KEY_MIN_FONT not in text:
                small.append((name, path.name, "no font record: not drawn in the course style"))
                continue
            checked += 1
            px = (
                float(text[PNG_KEY_MIN_FONT])
                * float(text[PNG_KEY_DPI])
                / 72
                * image["shown"]
                / image["natural"]
            )
            if not px >= MIN_TEXT_PX:
                small.append((name, path.name, round(px, 1)))
    assert checked >= 12, f"expected the chapters' figures, checked {checked}"
    assert not small, small


@pytest.mark.browser
@pytest.mark.slow
def test_code_cells_stay_in_the_column(reading):
    """No code cell or output scrolls sideways at 1280 px (long lines wrap)."""
    wide = {name: seen["overflow"] for name, seen in reading.items() if seen["overflow"]}
    assert not wide, wide


@pytest.mark.browser
@pytest.mark.slow
def test_displayed_maths_fits_the_column(reading):
    """No displayed formula is wider than the column at 1280 px, dropdowns open (long ones are
    split over aligned lines). On a phone a formula may be wider than the column (MathJax does
    not wrap); there it scrolls in its own box (`test_nothing_is_cut_off_on_a_phone`)."""
    wide = {name: seen["wide_maths"] for name, seen in reading.items() if seen["wide_maths"]}
    assert not wide, wide


#: A phone's screen (CSS px), and the overflow-x of a box that lets the reader reach what it holds.
PHONE = {"width": 390, "height": 844}
CLIPS_NOT = ("auto", "scroll")

#: Every element of a page wider than a phone's screen, with the nearest ancestor that clips
#: or scrolls it (overflow-x other than visible): [element, its right edge, that ancestor, its
#: overflow-x]. MathJax's assistive MathML (read by screen readers, never shown) is left out.
PAST_THE_EDGE = """() => {
    const width = document.documentElement.clientWidth, found = [];
    for (const e of document.querySelectorAll('article *')) {
        const right = e.getBoundingClientRect().right;
        if (right <= width + 1 || e.closest('mjx-assistive-mml')) continue;
        let box = e.parentElement;
        while (box && getComputedStyle(box).overflowX === 'visible') box = box.parentElement;
        found.push([e.tagName.toLowerCase() + ' ' + (e.textContent || '').slice(0, 50),
                    Math.round(right), box && box.tagName.toLowerCase() + '.' + box.className,
                    box ? getComputedStyle(box).overflowX : 'the page']);
    }
    return found;
}"""


@pytest.mark.browser
@pytest.mark.slow
def test_nothing_is_cut_off_on_a_phone(reading):
    """At 390x844, dropdowns open, maths typeset: no page scrolls sideways, and whatever is
    wider than the screen (a long formula, a table) scrolls in a box of its own: nothing is
    clipped where the reader cannot reach it, and no page widens past the screen (each page of
    `reading`, narrowed to the phone's width once read)."""
    problems = {
        name: {"page width": seen["phone"]["page width"], "cut off": seen["phone"]["cut off"][:5]}
        for name, seen in reading.items()
        if seen["phone"]["page width"] > PHONE["width"] or seen["phone"]["cut off"]
    }
    assert not problems, problems


@pytest.mark.browser
@pytest.mark.slow
def test_no_axe_violations_on_any_page(reading):
    """axe-core on every page and in the explorer's frame: 0 violations of any impact, apart
    from the theme's listed in tests/a11y.py with their reason."""
    found = {
        (name, where): [
            (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:5]) for v in violations
        ]
        for name, seen in reading.items()
        for where, violations in seen["axe"].items()
        if violations
    }
    assert not found, "\n".join(f"{key}: {value}" for key, value in found.items())


@pytest.mark.browser
@pytest.mark.slow
def test_focus_ring_has_three_to_one_contrast(reading):
    bad = {name: seen["focus"] for name, seen in reading.items() if seen["focus"]}
    assert not bad, bad


# --------------------------------------------------------------------------------------------
# The page chrome: one search field, the book's title whole, nothing over the sidebar
# --------------------------------------------------------------------------------------------

#: What the reader sees of the theme's chrome: the visible search controls (fields and
#: buttons), the book's title (clipped? covered?) and what covers the primary sidebar.
CHROME = """() => {
    const shown = e => {
        const r = e.getBoundingClientRect(), s = getComputedStyle(e);
        return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none'
            && r.bottom > 0 && r.right > 0 && r.top < innerHeight && r.left < innerWidth;
    };
    const searches = Array.from(document.querySelectorAll(
        '.search-button-field, .search-button, input[type=search], form.bd-search input'))
        .filter(shown).map(e => e.className || e.tagName);
    const title = document.querySelector('.bd-sidebar-primary .logo__title');
    const sidebar = document.querySelector('.bd-sidebar-primary');
    const out = {searches, title: null, covered: []};
    if (title && shown(title)) {
        const r = title.getBoundingClientRect();
        let clipped = title.scrollWidth > title.clientWidth + 1
            || title.scrollHeight > title.clientHeight + 1;
        for (let a = title.parentElement; a && a !== document.body; a = a.parentElement) {
            const q = a.getBoundingClientRect(), s = getComputedStyle(a);
            if (s.overflow !== 'visible' && (r.top < q.top - 1 || r.bottom > q.bottom + 1
                    || r.left < q.left - 1 || r.right > q.right + 1)) clipped = true;
        }
        const hidden = [];
        for (const fx of [0.05, 0.5, 0.95]) for (const fy of [0.2, 0.5, 0.8]) {
            const x = r.left + fx * r.width, y = r.top + fy * r.height;
            const hit = document.elementFromPoint(x, y);
            if (!hit || !(title === hit || title.contains(hit) || hit.contains(title)))
                hidden.push([Math.round(x), Math.round(y), hit ? hit.className : null]);
        }
        out.title = {text: title.textContent.trim(), top: r.top, bottom: r.bottom,
                     inside: r.top >= 0 && r.left >= 0 && r.bottom <= innerHeight
                             && r.right <= innerWidth,
                     clipped, hidden};
    }
    if (sidebar && shown(sidebar)) {
        const r = sidebar.getBoundingClientRect();
        for (let y = Math.max(r.top, 0) + 4; y < Math.min(r.bottom, innerHeight); y += 40)
            for (const fx of [0.1, 0.5, 0.9]) {
                const hit = document.elementFromPoint(r.left + fx * r.width, y);
                if (hit && !sidebar.contains(hit)) out.covered.push(
                    [Math.round(r.left + fx * r.width), Math.round(y), hit.className]);
            }
    }
    return out;
}"""


def test_chrome_check_sees_a_second_search_field_and_a_covered_title(chromium):
    """The check below is not blind: on a page with a header bar of its own over the sidebar
    (the chrome pydata-sphinx-theme 0.17 adds when navbar_persistent is unset), it reports the
    second search field, the title hidden under the bar and the bar over the sidebar."""
    html = """<!doctype html><body style="margin:0">
      <header style="position:fixed;top:0;left:0;right:0;height:64px;background:#fff;z-index:9">
        <button class="search-button-field" style="width:170px;height:30px">Search</button>
      </header>
      <div class="bd-sidebar-primary" style="position:fixed;top:0;width:250px;bottom:0">
        <a class="navbar-brand"><p class="logo__title" style="margin:40px 0">Gaussian mixtures
          and EM</p></a>
        <button class="search-button-field" style="width:200px;height:30px">Search</button>
      </div></body>"""
    context = new_context(chromium, viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.set_content(html)
        seen = page.evaluate(CHROME)
    finally:
        context.close()
    assert len(seen["searches"]) == 2, seen
    assert seen["title"]["hidden"], seen
    assert seen["covered"], seen


#: The theme's drawer on a phone: a <dialog> that takes the sidebar's nodes and classes when open.
DRAWER = """() => { const d = document.getElementById('pst-primary-sidebar-modal');
  const r = document.querySelector('.bd-sidebar-primary').getBoundingClientRect();
  return {open: !!(d && d.open), left: r.left, width: r.width}; }"""


def open_drawer(page, taps: int = 4) -> None:
    """Open the sidebar drawer as a reader would: tap the toggle, and tap it again only if the
    dialog is still closed (a tap the page lost, once in CI); a drawer that is open but still
    sliding in is waited for, never tapped again (a second tap would land on its backdrop)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    seen = None
    for _ in range(taps):
        if not page.evaluate(DRAWER)["open"]:
            page.locator(".bd-header-article .primary-toggle").first.click()
        try:
            page.wait_for_function(
                f"() => {{ const s = ({DRAWER})(); return s.open && s.left >= 0 && s.width > 0; }}",
                timeout=WAIT_MS // taps,
            )
            return
        except PlaywrightTimeout:
            seen = page.evaluate(DRAWER)
    raise AssertionError(f"the sidebar drawer did not open after {taps} taps: {seen}")


@pytest.mark.browser
@pytest.mark.parametrize("width", [390, 1280, 1500])
def test_one_search_field_and_the_whole_title_at_every_width(book_server, chromium, width):
    """At 390 (a phone), 1280 and 1500 px: one search control in view, the book's title in the
    sidebar whole (not clipped, not covered) and nothing drawn over the sidebar. On a phone the
    sidebar is a drawer: it is opened first, as a reader would."""
    problems = {}
    for name in ("intro", "break-it", "exercises"):
        context = new_context(chromium, viewport={"width": width, "height": 900})
        page = context.new_page()
        try:
            page.goto(f"{book_server}/{name}.html", wait_until="load")
            loaded_and_typeset(page)
            # The theme scrolls the sidebar to the current page's entry: back to its top.
            page.evaluate("document.querySelector('.bd-sidebar-primary').scrollTop = 0")
            closed = page.evaluate(CHROME)
            if width < 992:  # the theme's breakpoint: the sidebar is a drawer below it
                open_drawer(page)
                settle(page)
            seen = page.evaluate(CHROME)
        finally:
            context.close()
        title = seen["title"]
        bad = {}
        if len(closed["searches"]) != 1:
            bad["search controls in view"] = closed["searches"]
        if title is None or title["text"] != "Gaussian mixtures and EM":
            bad["title"] = title
        elif not title["inside"] or title["clipped"] or title["hidden"]:
            bad["title cut or covered"] = title
        if seen["covered"]:
            bad["over the sidebar"] = seen["covered"][:5]
        if bad:
            problems[name] = bad
    assert not problems, problems
