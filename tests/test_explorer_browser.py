"""The EM explorer in a real browser (headless Debian Chromium), served from the built book.

Drag a mean (the fit restarts from the drop point), press E then M (colours, then ellipses
change; the log-likelihood does not go down), move a mean from the keyboard, break it (K high on
the collapse data: the collapse message names gmmlib's component and iteration), a phone-width
layout, and the book pages that embed it. Every page must log no console errors. Screenshots go
to artifacts/explorer-*.png.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from gmmlib.datasets import collapse_data, collapse_init, tilted_blobs
from gmmlib.em import e_step, log_likelihood

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import make_explorer_fixtures as mef  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]


class Page:
    """A Playwright page that records console errors, page errors and failed requests."""

    def __init__(self, browser, width=1000, height=900, **context_options):
        self.context = browser.new_context(
            viewport={"width": width, "height": height}, **context_options
        )
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("requestfailed", lambda r: self.errors.append(f"request failed: {r.url}"))

    def open_explorer(self, url: str):
        self.page.goto(url)
        self.page.wait_for_selector("#em-explorer[data-ready=true]", timeout=15000)
        return self.page

    def close(self):
        self.context.close()


@pytest.fixture
def tab(chromium):
    pages = []

    def make(**kw):
        p = Page(chromium, **kw)
        pages.append(p)
        return p

    yield make
    for p in pages:
        p.close()


def state(page):
    return page.evaluate("emExplorer.state()")


def canvas_pixels(page) -> str:
    return page.evaluate("document.querySelector('.gx-canvas').toDataURL()")


def ellipse_attrs(page) -> list:
    return page.evaluate(
        """[...document.querySelectorAll('.gx-ell')].map(e =>
            ['cx','cy','rx','ry','transform'].map(a => e.getAttribute(a)))"""
    )


def handle_centre(page, j: int) -> tuple[float, float]:
    box = page.locator(f".gx-mean[data-component='{j}'] .gx-dot").bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def test_drag_a_mean_restarts_the_fit(book_server, tab, artifacts_dir):
    t = tab()
    page = t.open_explorer(f"{book_server}/explorer/index.html?dataset=tilted&k=3&seed=0")
    page.get_by_role("button", name="Run").click()
    page.wait_for_function("emExplorer.run.iteration >= 4")
    page.get_by_role("button", name="Pause").click()
    before = state(page)
    assert before["iteration"] >= 4

    x0, y0 = handle_centre(page, 1)
    x1, y1 = x0 + 90, y0 - 60
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=12)
    page.mouse.up()
    page.wait_for_timeout(100)
    after = state(page)

    # The dragged mean is where it was dropped (on screen, and in data units).
    hx, hy = handle_centre(page, 1)
    assert abs(hx - x1) < 1.0 and abs(hy - y1) < 1.0
    svg_box = page.locator(".gx-svg").bounding_box()
    drop = page.evaluate(
        "([px, py]) => emExplorer.toData(px, py)", [x1 - svg_box["x"], y1 - svg_box["y"]]
    )
    px_in_data = 1.0 / page.evaluate("emExplorer.size.s")  # events carry whole pixels
    np.testing.assert_allclose(after["means"][1], drop, rtol=0, atol=px_in_data)
    assert np.hypot(*np.subtract(after["means"][1], before["means"][1])) > 50 * px_in_data
    # The others stay where they were; the fit restarted: iteration 0, equal weights, every
    # covariance the data covariance (gmmlib.init.init_from_means), responsibilities computed.
    np.testing.assert_allclose(after["means"][0], before["means"][0], rtol=1e-15)
    np.testing.assert_allclose(after["means"][2], before["means"][2], rtol=1e-15)
    assert after["iteration"] == 0 and after["nextKind"] == "M"
    np.testing.assert_allclose(after["weights"], [1 / 3] * 3, rtol=1e-15)
    for cov in after["covariances"]:
        np.testing.assert_allclose(cov, after["dataCovariance"], rtol=1e-15)
    X = tilted_blobs(600, random_state=0)[0]
    means = np.array(after["means"])
    weights, _, covs = collapse_init(X, 3, 0)  # equal weights, data covariance: the reset
    assert len(after["logLikelihood"]) == 1
    assert after["logLikelihood"][0] == pytest.approx(
        log_likelihood(X, weights, means, covs), rel=1e-9
    )
    assert after["colours"] is not None
    page.screenshot(path=str(artifacts_dir / "explorer-drag.png"), full_page=True)
    assert t.errors == []


def test_e_then_m_changes_colours_then_ellipses(book_server, tab, artifacts_dir):
    t = tab()
    page = t.open_explorer(f"{book_server}/explorer/index.html?dataset=faithful&k=2&seed=3")
    assert page.locator("#em-explorer").get_attribute("data-next") == "E"
    assert "Next: E-step" in page.locator(".gx-status").inner_text()
    assert page.get_by_role("button", name="M-step").is_disabled()
    pixels0, ell0, s0 = canvas_pixels(page), ellipse_attrs(page), state(page)
    assert s0["colours"] is None  # grey before the first E-step

    page.get_by_role("button", name="E-step").click()
    pixels1, ell1, s1 = canvas_pixels(page), ellipse_attrs(page), state(page)
    assert pixels1 != pixels0, "the E-step must recolour the points"
    assert ell1 == ell0, "the E-step does not move the ellipses"
    assert "Next: M-step" in page.locator(".gx-status").inner_text()
    assert page.get_by_role("button", name="E-step").is_disabled()

    page.get_by_role("button", name="M-step").click()
    ell2, s2 = ellipse_attrs(page), state(page)
    assert ell2 != ell1, "the M-step must refit the ellipses"
    assert s2["means"] != s1["means"] and s2["covariances"] != s1["covariances"]
    ll = s2["logLikelihood"]
    assert len(ll) == 2 and ll[1] >= ll[0]

    page.get_by_role("button", name="E-step").click()
    page.get_by_role("button", name="M-step").click()
    pixels3 = canvas_pixels(page)
    assert pixels3 != pixels1
    ll = state(page)["logLikelihood"]
    assert all(b >= a for a, b in zip(ll, ll[1:], strict=False))
    page.screenshot(path=str(artifacts_dir / "explorer-e-then-m.png"), full_page=True)

    # Run to convergence: the trace never goes down, and the page says so.
    page.get_by_role("button", name="Run").click()
    page.wait_for_function("emExplorer.run.nextKind === null", timeout=30000)
    s = state(page)
    assert s["stopReason"] == "converged" and not s["running"]
    assert page.get_by_role("button", name="Run").is_disabled()
    assert "Converged after" in page.locator(".gx-status").inner_text()
    ll = s["logLikelihood"]
    assert all(b >= a - 1e-9 * abs(a) for a, b in zip(ll, ll[1:], strict=False))
    assert "never gone down" in page.locator(".gx-trace-text").inner_text()
    # The colours are gmmlib's responsibilities at the final parameters, blended.
    X = mef.dataset("faithful")
    resp = e_step(
        X,
        np.array(s["weights"]),
        np.array(s["means"]),
        np.array([[[a, b], [b, d]] for a, b, d in s["covariances"]]),
    )
    palette = np.array([[0xE6, 0x9F, 0x00], [0x56, 0xB4, 0xE9]])  # Okabe-Ito orange, sky blue
    shown = np.array(s["colours"])
    np.testing.assert_allclose(shown, (resp @ palette)[: len(shown)], atol=0.51)
    page.screenshot(path=str(artifacts_dir / "explorer-converged.png"), full_page=True)
    assert t.errors == []


def test_keyboard_moves_a_mean(book_server, tab):
    t = tab()
    page = t.open_explorer(f"{book_server}/explorer/index.html?dataset=tilted&k=3&seed=0")
    before = state(page)
    handle = page.locator(".gx-mean[data-component='0']")
    handle.focus()
    assert "Mean of component 1" in handle.get_attribute("aria-label")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowUp")
    after = state(page)
    assert after["means"][0][0] > before["means"][0][0]
    assert after["means"][0][1] > before["means"][0][1]
    assert after["iteration"] == 0 and after["nextKind"] == "M"
    assert page.evaluate("document.activeElement.dataset.component") == "0"
    # Every control is labelled and reachable.
    for label in ("Data set", "Components K", "Seed"):
        assert page.get_by_label(label).count() == 1
    assert page.get_by_label("reg_covar", exact=False).count() == 1
    assert t.errors == []


def test_break_it_collapse_is_detected_like_gmmlib(book_server, tab, artifacts_dir):
    K, seed = 8, 0
    X = collapse_data()
    ref = mef.reference_steps(
        X, *collapse_init(X, K, seed), reg_covar=0.0, max_iter=100, on_collapse="warn"
    )
    report = ref[-1].collapse
    assert report is not None

    t = tab()
    page = t.open_explorer(f"{book_server}/explorer/index.html?dataset=collapse&k=4&seed=0")
    slider = page.get_by_label("Components K")
    slider.focus()
    page.keyboard.press("End")  # K = 8, "too high" for 20 points
    assert state(page)["k"] == K
    page.get_by_role("button", name="Run").click()
    alert = page.get_by_role("alert")
    alert.wait_for(state="visible", timeout=20000)
    text = alert.inner_text()
    assert f"Component {report.component + 1} collapsed at iteration {report.iteration}" in text
    assert "single data point" in text or f"{report.n_points} data points" in text
    s = state(page)
    assert s["stopReason"] == "collapse" and s["nextKind"] is None
    assert s["collapse"]["component"] == report.component
    assert s["collapse"]["iteration"] == report.iteration
    assert s["collapse"]["nPoints"] == report.n_points
    held = np.flatnonzero(ref[-1].resp[:, report.component] > 0.5).tolist()
    assert s["collapse"]["points"] == held
    # Highlighted: the collapsed component, and a ring on each point it holds.
    assert page.locator(f".gx-comp.gx-collapsed[data-component='{report.component}']").count() == 1
    rings = page.locator(".gx-hot")
    assert sorted(int(rings.nth(i).get_attribute("data-point")) for i in range(rings.count())) == (
        held
    )
    assert "Stopped" in page.locator(".gx-status").inner_text()
    page.screenshot(path=str(artifacts_dir / "explorer-collapse.png"), full_page=True)

    # reg_covar on: the same start still collapses (same iteration), but EM can go on with a
    # finite log-likelihood, bounded because no variance can fall below reg_covar.
    page.get_by_label("reg_covar", exact=False).check()
    page.get_by_role("button", name="Run").click()
    alert.wait_for(state="visible", timeout=20000)
    assert state(page)["collapse"]["iteration"] == report.iteration
    page.get_by_role("button", name="Continue anyway").click()
    page.get_by_role("button", name="Run").click()
    page.wait_for_function("emExplorer.run.nextKind === null", timeout=60000)
    s = state(page)
    assert s["regCovar"] == 1e-6
    assert s["iteration"] > report.iteration
    assert all(np.isfinite(s["logLikelihood"]))
    page.screenshot(path=str(artifacts_dir / "explorer-collapse-reg.png"), full_page=True)
    assert t.errors == []


def test_phone_width(book_server, tab, artifacts_dir):
    t = tab(width=375, height=740, has_touch=True, is_mobile=True)
    page = t.open_explorer(f"{book_server}/explorer/index.html?dataset=collapse&k=4&seed=8")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.get_by_role("button", name="Run").click()
    page.get_by_role("alert").wait_for(state="visible", timeout=20000)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    # A finger drag (real touch events through the DevTools protocol) moves a mean too.
    x0, y0 = handle_centre(page, 0)
    cdp = t.context.new_cdp_session(page)
    path = [(x0, y0), (x0 + 10, y0 + 5), (x0 + 20, y0 + 10), (x0 + 30, y0 + 15)]
    cdp.send(
        "Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x0, "y": y0}]}
    )
    for x, y in path[1:]:
        cdp.send(
            "Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]}
        )
        page.wait_for_timeout(30)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    page.wait_for_timeout(100)
    s = state(page)
    assert s["iteration"] == 0 and s["collapse"] is None
    hx, hy = handle_centre(page, 0)
    assert abs(hx - (x0 + 30)) < 1 and abs(hy - (y0 + 15)) < 1
    page.screenshot(path=str(artifacts_dir / "explorer-phone.png"), full_page=True)
    assert t.errors == []


@pytest.mark.parametrize("page_name", ["explorer.html", "02-em-steps.html", "04-break-it.html"])
def test_embedded_in_the_book(book_server, tab, artifacts_dir, page_name):
    t = tab(width=1280, height=900)
    page = t.page
    page.goto(f"{book_server}/{page_name}")
    frame_el = page.locator("iframe[src^='explorer/index.html']")
    assert frame_el.count() >= 1
    frame_el.first.scroll_into_view_if_needed()
    frame = frame_el.first.element_handle().content_frame()
    frame.wait_for_selector("#em-explorer[data-ready=true]", timeout=15000)
    frame.get_by_role("button", name="E-step").click()
    assert frame.locator("#em-explorer").get_attribute("data-next") == "M"
    frame_el.first.screenshot(path=str(artifacts_dir / f"explorer-in-{page_name}.png"))
    page.wait_for_load_state("networkidle")  # late requests (e.g. the favicon probe) included
    assert t.errors == [], (
        "console errors on the book page (a 404 for /favicon.ico means the book sets no "
        "favicon: html.favicon in book/_config.yml)"
    )
