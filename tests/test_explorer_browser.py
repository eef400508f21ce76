"""The EM explorer in a real browser (headless Debian Chromium), served from the built book.

Drag a mean (the fit restarts from the drop point), press E then M (colours, then ellipses
change; the log-likelihood does not go down), move a mean from the keyboard, break it (K high on
the collapse data: the collapse message names gmmlib's component and iteration), a phone-width
layout, and the book pages that embed it (the frame fits its content at desktop and phone
widths, collapse message showing). Each fix of issue 14 has its test: means held inside the plot,
an empty component's own words, components numbered from 0, K and seed kept across data sets,
a collapse message that never goes stale, one number format, the drag hint, the colour key, axes
on the scatter and values on the trace, Enter/Space on a mean, announced restarts. axe-core finds
no violation in the explorer's main states. Every page must log no console errors. Screenshots
go to artifacts/explorer-*.png.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from a11y import focus_ring_problems, own_violations, run_axe
from browser import WAIT_MS, new_context, settle

from gmmlib import GaussianMixture, plotting
from gmmlib.datasets import collapse_data, collapse_init, tilted_blobs
from gmmlib.diagnostics import collapse_threshold
from gmmlib.em import e_step, log_likelihood

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import make_explorer_fixtures as mef  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]


class Page:
    """A Playwright page that records console errors, page errors and failed requests."""

    def __init__(self, browser, width=1000, height=900, **context_options):
        self.context = new_context(
            browser, viewport={"width": width, "height": height}, **context_options
        )
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("requestfailed", lambda r: self.errors.append(f"request failed: {r.url}"))

    def open_explorer(self, url: str):
        self.page.goto(url)
        self.page.wait_for_selector("#em-explorer[data-ready=true]", timeout=WAIT_MS)
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
    settle(page)
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
    page.wait_for_function("emExplorer.run.nextKind === null", timeout=WAIT_MS)
    s = state(page)
    assert s["stopReason"] == "converged" and not s["running"]
    assert page.get_by_role("button", name="Run").is_disabled()
    assert "Converged after" in page.locator(".gx-status").inner_text()
    ll = s["logLikelihood"]
    assert all(b >= a - 1e-9 * abs(a) for a, b in zip(ll, ll[1:], strict=False))
    assert "never gone down" in page.locator(".gx-trace-text").inner_text()
    # It ran with gmmlib's rule constants (data.json's, from GaussianMixture's defaults) and
    # stopped on the iteration gmmlib's fit stops on from the same start (reg_covar off).
    X = mef.dataset("faithful")
    defaults = GaussianMixture().get_params()
    assert (s["tol"], s["maxIter"]) == (defaults["tol"], defaults["max_iter"])
    assert s["threshold"] == pytest.approx(
        collapse_threshold(X, defaults["collapse_tol"]), rel=1e-12
    )
    gm = GaussianMixture(2, reg_covar=0.0, means_init=collapse_init(X, 2, 3)[1]).fit(X)
    assert (s["iteration"], s["stopReason"]) == (gm.n_iter_, gm.stop_reason_)
    # The colours are gmmlib's responsibilities at the final parameters, blended.
    resp = e_step(
        X,
        np.array(s["weights"]),
        np.array(s["means"]),
        np.array([[[a, b], [b, d]] for a, b, d in s["covariances"]]),
    )
    palette = 255 * plotting.component_colors(2)  # gmmlib's palette, exported via data.json
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
    assert "Mean of component 0 (blue)" in handle.get_attribute("aria-label")  # gmmlib's numbering
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
    rules = mef.gmmlib_rules()  # the explorer's tol and max_iter (data.json's)
    ref = mef.reference_steps(
        X,
        *collapse_init(X, K, seed),
        reg_covar=0.0,
        max_iter=rules["max_iter"],
        on_collapse="warn",
        tol=rules["tol"],
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
    alert.wait_for(state="visible", timeout=WAIT_MS)
    text = alert.inner_text()
    assert f"Component {report.component} collapsed at iteration {report.iteration}" in text
    assert "EM has stopped" in text and "grows without bound" in text
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
    ringed = {int(rings.nth(i).get_attribute("data-point")) for i in range(rings.count())}
    assert set(held) <= ringed  # and the points of any other component collapsed at that round
    assert own_violations(run_axe(page)) == []
    assert "Stopped" in page.locator(".gx-status").inner_text()
    page.screenshot(path=str(artifacts_dir / "explorer-collapse.png"), full_page=True)

    # reg_covar on: the same start still collapses (same iteration), but EM can go on with a
    # finite log-likelihood, bounded because no variance can fall below reg_covar.
    page.get_by_label("reg_covar", exact=False).check()
    assert "reg_covar switched on: EM restarted" in page.locator(".gx-status").inner_text()
    assert alert.is_hidden()  # the old message went with the old run
    page.get_by_role("button", name="Run").click()
    alert.wait_for(state="visible", timeout=WAIT_MS)
    assert state(page)["collapse"]["iteration"] == report.iteration
    text = alert.inner_text()
    assert "grows without bound" not in text and "reg_covar = 1e-6" in text
    page.get_by_role("button", name="Continue anyway").click()
    text = alert.inner_text()
    assert "EM has stopped" not in text and "EM goes on" in text  # no stale words
    page.get_by_role("button", name="Run").click()
    page.wait_for_function("emExplorer.run.nextKind === null", timeout=WAIT_MS)
    s = state(page)
    assert s["regCovar"] == GaussianMixture().reg_covar == 1e-6  # gmmlib's, via data.json
    assert s["iteration"] > report.iteration
    assert all(np.isfinite(s["logLikelihood"]))
    # The message now names every component collapsed at the end, and the status agrees.
    text, status = alert.inner_text(), page.locator(".gx-status").inner_text()
    now = s["collapsedNow"]
    assert now, "the collapse recipe ends with collapsed components"
    for c in now:
        assert f"Component {c['component']} " in text
        assert str(c["component"]) in status
    assert f"EM ended at iteration {s['iteration']}" in text
    assert "0.00000100" not in page.locator("#em-explorer").inner_text()  # one number format
    page.screenshot(path=str(artifacts_dir / "explorer-collapse-reg.png"), full_page=True)
    assert t.errors == []


def test_phone_width(book_server, tab, artifacts_dir):
    t = tab(width=375, height=740, has_touch=True, is_mobile=True)
    page = t.open_explorer(f"{book_server}/explorer/index.html?dataset=collapse&k=4&seed=8")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.get_by_role("button", name="Run").click()
    page.get_by_role("alert").wait_for(state="visible", timeout=WAIT_MS)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    # A finger drag (real touch events through the DevTools protocol) moves a mean too.
    page.locator(".gx-mean[data-component='0']").scroll_into_view_if_needed()
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
    settle(page)
    s = state(page)
    assert s["iteration"] == 0 and s["collapse"] is None
    hx, hy = handle_centre(page, 0)
    assert abs(hx - (x0 + 30)) < 1 and abs(hy - (y0 + 15)) < 1
    page.screenshot(path=str(artifacts_dir / "explorer-phone.png"), full_page=True)
    assert t.errors == []


@pytest.mark.parametrize("page_name", ["explorer.html", "em-steps.html", "break-it.html"])
def test_embedded_in_the_book(book_server, tab, artifacts_dir, page_name):
    t = tab(width=1280, height=900)
    page = t.page
    page.goto(f"{book_server}/{page_name}")
    frame_el = page.locator("iframe[src^='explorer/index.html']")
    assert frame_el.count() >= 1
    frame_el.first.scroll_into_view_if_needed()
    frame = frame_el.first.element_handle().content_frame()
    frame.wait_for_selector("#em-explorer[data-ready=true]", timeout=WAIT_MS)
    frame.get_by_role("button", name="E-step").click()
    assert frame.locator("#em-explorer").get_attribute("data-next") == "M"
    frame_el.first.screenshot(path=str(artifacts_dir / f"explorer-in-{page_name}.png"))
    # Every resource has loaded (or failed, which t.errors records): the load events fired, the
    # favicon probe included. (Not "networkidle", which a lazy iframe elsewhere on the page can
    # hold off past any timeout on a loaded machine.)
    for doc in (page, frame):
        doc.wait_for_function("document.readyState === 'complete'", timeout=WAIT_MS)
    assert t.errors == [], (
        "console errors on the book page (a 404 for /favicon.ico means the book sets no "
        "favicon: html.favicon in book/_config.yml)"
    )


# --------------------------------------------------------------------------------------------
# Issue 14: each fix, one test
# --------------------------------------------------------------------------------------------


def test_standalone_page_has_a_title_instructions_and_no_axe_violations(book_server, tab):
    t = tab(width=1280, height=900)
    page = t.open_explorer(f"{book_server}/explorer/index.html")
    assert page.title().startswith("EM explorer")
    assert page.get_by_role("heading", level=1).inner_text() == "EM explorer"
    intro = page.locator(".gx-intro").inner_text()
    assert "E-step" in intro and "Drag a mean" in intro
    # The widget itself says a mean can be dragged (the hint sits above the plot).
    assert "Drag a mean" in page.locator(".gx-hint").inner_text()
    assert own_violations(run_axe(page)) == []
    page.get_by_role("button", name="E-step").click()
    assert own_violations(run_axe(page)) == []
    assert focus_ring_problems(page, presses=30) == []  # the timeline and data rows too
    assert t.errors == []


def test_colour_key_axes_and_trace_values(book_server, tab):
    t = tab(width=1000, height=900)
    page = t.open_explorer(f"{book_server}/explorer/index.html?dataset=faithful&k=3&seed=0")
    key = page.locator(".gx-key li")
    assert key.count() == 3
    for j in range(3):
        item = key.nth(j)
        assert item.inner_text() == f"component {j} ({plotting.PALETTE_NAMES[j]})"
        swatch = item.locator(".gx-swatch").evaluate("e => getComputedStyle(e).backgroundColor")
        rgb = [int(v) for v in swatch[swatch.index("(") + 1 : -1].split(",")[:3]]
        np.testing.assert_array_equal(rgb, 255 * plotting.component_colors(3)[j])
        # The label is dark text, never the palette colour (yellow on white is unreadable).
        colour = item.locator(".gx-key-label").evaluate("e => getComputedStyle(e).color")
        assert colour == "rgb(27, 27, 27)"
    # Axes: Old Faithful says which axis is the eruption, with values along both axes.
    labels = page.locator(".gx-axis-label").all_text_contents()  # SVG text: no innerText
    assert any("eruption duration" in x for x in labels)
    assert any("waiting time" in x for x in labels)
    assert page.locator(".gx-axes .gx-tick-label").count() >= 6
    # The trace has values: the iterations along x and ln p(X) along y.
    for _ in range(3):
        page.get_by_role("button", name="E-step").click()
        page.get_by_role("button", name="M-step").click()
    values = page.locator(".gx-trace .gx-tick-label[data-axis=x]").all_text_contents()
    assert "0" in values and "3" in values
    ll = state(page)["logLikelihood"]
    # ln p(X) along y: round values within the trace's range, all with one precision (the
    # step's), never two (as -25.05 beside -56.587 once were).
    y_values = page.locator(".gx-trace .gx-tick-label[data-axis=y]").all_text_contents()
    assert len(y_values) >= 2, y_values
    assert all(min(ll) <= float(v) <= max(ll) for v in y_values), (y_values, ll)
    for axis in (".gx-trace [data-axis=y]", ".gx-axes [data-axis=x]", ".gx-axes [data-axis=y]"):
        labels = page.locator(axis).all_text_contents()
        decimals = {len(v.split(".")[1]) if "." in v else 0 for v in labels}
        assert len(labels) >= 2 and len(decimals) == 1, (axis, labels)
    assert t.errors == []


def test_a_dragged_mean_stays_inside_the_plot(book_server, tab):
    t = tab(width=1000, height=900)
    page = t.open_explorer(f"{book_server}/explorer/index.html?dataset=tilted&k=3&seed=0")
    x0, y0 = handle_centre(page, 2)
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 - 3000, y0 - 3000, steps=8)  # far past the top-left corner
    page.mouse.up()
    settle(page)
    box = page.locator(".gx-svg").bounding_box()
    hx, hy = handle_centre(page, 2)
    assert box["x"] <= hx <= box["x"] + box["width"] and box["y"] <= hy <= box["y"] + box["height"]
    x_lo, x_hi, y_lo, y_hi = page.evaluate("emExplorer.visibleBox()")
    mx, my = state(page)["means"][2]
    assert x_lo <= mx <= x_hi and y_lo <= my <= y_hi
    # It can be grabbed again.
    page.mouse.move(hx, hy)
    page.mouse.down()
    page.mouse.move(hx + 120, hy + 120, steps=6)
    page.mouse.up()
    settle(page)
    assert state(page)["means"][2][0] > mx
    assert t.errors == []


def test_an_empty_component_has_its_own_words(book_server, tab):
    t = tab(width=1000, height=900)
    page = t.open_explorer(f"{book_server}/explorer/index.html?dataset=tilted&k=3&seed=0")
    # A start with component 1 far from every point (as a mean dragged off the data would be).
    page.evaluate(
        """() => {
            const ex = window.emExplorer;
            const m = ex.run.params.means;
            ex.session.startMeans = [[m[0], m[1]], [40, 40], [m[4], m[5]]];
            ex.session.restart();
            ex.doStep('E'); ex.doStep('M');
        }"""
    )
    s = state(page)
    assert s["collapsedNow"] and s["collapsedNow"][0]["component"] == 1
    assert s["collapsedNow"][0]["empty"] is True
    text = page.get_by_role("alert").inner_text()
    assert "Component 1 is empty at iteration 1" in text
    assert "collapsed" not in text and "single data point" not in text
    assert "component 1 empty" in page.locator(".gx-status").inner_text()
    assert own_violations(run_axe(page)) == []
    assert t.errors == []


def test_switching_data_set_keeps_k_and_seed_and_says_so(book_server, tab):
    t = tab(width=1000, height=900)
    page = t.open_explorer(f"{book_server}/explorer/index.html?dataset=tilted&k=6&seed=17")
    page.get_by_label("Data set").select_option("collapse")
    s = state(page)
    assert (s["dataset"], s["k"], s["seed"]) == ("collapse", 6, 17)
    assert "kept K = 6 and seed 17" in page.locator(".gx-status").inner_text()
    assert t.errors == []


def test_changing_k_or_reg_covar_mid_fit_says_it_restarted(book_server, tab):
    t = tab(width=1000, height=900)
    page = t.open_explorer(f"{book_server}/explorer/index.html?dataset=tilted&k=3&seed=0")
    page.get_by_role("button", name="E-step").click()
    page.get_by_role("button", name="M-step").click()
    slider = page.get_by_label("Components K")
    slider.focus()
    page.keyboard.press("ArrowRight")
    status = page.locator(".gx-status").inner_text()
    assert "K changed to 4: EM restarted from iteration 0" in status
    assert state(page)["iteration"] == 0
    page.get_by_role("button", name="E-step").click()
    page.get_by_label("reg_covar", exact=False).check()
    assert "reg_covar switched on: EM restarted" in page.locator(".gx-status").inner_text()
    # Before any step there is nothing to lose, and nothing to announce.
    page.get_by_label("reg_covar", exact=False).uncheck()
    assert "restarted" not in page.locator(".gx-status").inner_text()
    assert t.errors == []


def test_enter_and_space_on_a_mean_answer(book_server, tab):
    t = tab(width=1000, height=900)
    page = t.open_explorer(f"{book_server}/explorer/index.html?dataset=tilted&k=3&seed=0")
    handle = page.locator(".gx-mean[data-component='2']")
    assert handle.get_attribute("role") == "button"
    before = state(page)
    for key in ("Enter", " "):
        handle.focus()
        page.evaluate("document.querySelector('.gx-status').textContent = ''")
        page.keyboard.press(key)
        status = page.locator(".gx-status").inner_text()
        assert status.startswith("Mean of component 2 is at x ") and "arrow keys" in status
    assert state(page)["means"] == before["means"]  # announcing does not move it
    assert t.errors == []


PAGES_WITH_THE_EXPLORER = [
    "explorer.html",
    "em-steps.html",
    "break-it.html",
    "real-data.html",
]


@pytest.mark.parametrize("width,height", [(1280, 900), (390, 844)])
@pytest.mark.parametrize("page_name", PAGES_WITH_THE_EXPLORER)
def test_embedded_explorer_shows_all_of_itself(
    book_server, tab, artifacts_dir, page_name, width, height
):
    """The frame fits its content, collapse message showing: nothing clipped, no inner scroll."""
    mobile = {"has_touch": True, "is_mobile": True} if width < 500 else {}
    t = tab(width=width, height=height, **mobile)
    page = t.page
    page.goto(f"{book_server}/{page_name}")
    frame_el = page.locator("iframe.gmm-explorer-frame").first
    frame_el.scroll_into_view_if_needed()
    frame = frame_el.element_handle().content_frame()
    frame.wait_for_selector("#em-explorer[data-ready=true]", timeout=WAIT_MS)
    # Break it: the collapse data, K = 8 (seed 0 collapses at round 8), run to the collapse.
    frame.get_by_label("Data set").select_option("collapse")
    frame.get_by_label("Components K").focus()
    frame.page.keyboard.press("End")
    frame.get_by_role("button", name="Run").click()
    frame.get_by_role("alert").wait_for(state="visible", timeout=WAIT_MS)
    # The frame follows the content's height (posted by the explorer, set by embed.js).
    page.wait_for_function(
        """() => { const f = document.querySelector('iframe.gmm-explorer-frame');
                   const d = f.contentDocument.documentElement;
                   return Math.abs(f.clientHeight - d.getBoundingClientRect().height) <= 1; }""",
        timeout=WAIT_MS,
    )
    inner = frame.evaluate(
        """() => { const d = document.documentElement;
                   return {sw: d.scrollWidth, cw: d.clientWidth, sh: d.scrollHeight,
                           ch: d.clientHeight,
                           trace: document.querySelector('.gx-trace')
                                      .getBoundingClientRect().bottom,
                           alert: document.querySelector('.gx-alert')
                                      .getBoundingClientRect().bottom}; }"""
    )
    assert inner["sw"] <= inner["cw"], inner  # no sideways scroll inside the frame
    assert inner["sh"] <= inner["ch"] + 1, inner  # no inner vertical scroll
    assert inner["trace"] <= inner["ch"] and inner["alert"] <= inner["ch"], inner
    assert page.evaluate("document.documentElement.scrollWidth") <= width  # page fits the width
    frame_el.screenshot(path=str(artifacts_dir / f"explorer-fit-{page_name}-{width}.png"))
    assert own_violations(run_axe(frame)) == []  # the explorer inside the frame, collapse showing
    # Every resource of the page and the frame has loaded (or failed, which t.errors records):
    # their load events fired. (Not Playwright's "networkidle", which a lazy iframe elsewhere on
    # the page can hold off past any timeout on a loaded machine.)
    for doc in (page, frame):
        doc.wait_for_function("document.readyState === 'complete'", timeout=WAIT_MS)
    assert t.errors == []


# --------------------------------------------------------------------------------------------
# Issue 24: the timeline, the address, data by hand
# --------------------------------------------------------------------------------------------


def drawn(page) -> dict:
    """What the page draws: the canvas, the ellipses, the trace and the shown state."""
    return {
        "pixels": canvas_pixels(page),
        "ellipses": ellipse_attrs(page),
        "trace": page.locator(".gx-trace").inner_html(),
        "state": {k: v for k, v in state(page).items() if k not in ("query", "steps")},
    }


def test_the_timeline_scrubs_scatter_ellipses_and_trace_in_step(book_server, tab, artifacts_dir):
    """Each position of the timeline draws what the E- and M-steps drew when they were taken,
    and the timeline and its buttons work from the keyboard."""
    t = tab(width=1000, height=900)
    page = t.open_explorer(f"{book_server}/explorer/index.html?dataset=faithful&k=2&seed=3")
    taken = [drawn(page)]
    for kind in ("E-step", "M-step", "E-step", "M-step"):
        page.get_by_role("button", name=kind).click()
        taken.append(drawn(page))
    page.get_by_role("button", name="Run").click()
    page.wait_for_function("emExplorer.session.entry.nextKind === null", timeout=WAIT_MS)
    last = state(page)["position"]
    assert last > 4
    timeline = page.get_by_label("Timeline")
    timeline.focus()
    page.keyboard.press("Home")
    assert state(page)["position"] == 0
    now = drawn(page)
    # Back at the start the future of the trace is drawn faint behind: the rest is as before.
    assert now["pixels"] == taken[0]["pixels"] and now["ellipses"] == taken[0]["ellipses"]
    assert now["state"] == taken[0]["state"]
    for p in range(1, 5):
        page.keyboard.press("ArrowRight")
        now = drawn(page)
        for key in ("pixels", "ellipses", "state"):
            assert now[key] == taken[p][key], (p, key)
        assert timeline.get_attribute("aria-valuetext").startswith(f"Step {p} of {last}")
    assert "looking back" in page.locator(".gx-status").inner_text()
    page.screenshot(path=str(artifacts_dir / "explorer-timeline.png"), full_page=True)
    assert own_violations(run_axe(page)) == []
    # The buttons, pressed from the keyboard.
    for name, expected in (("Back", 3), ("Start", 0), ("Forward", 1), ("Latest", last)):
        button = page.get_by_role("button", name=name, exact=True)
        button.focus()
        page.keyboard.press("Enter")
        assert state(page)["position"] == expected, name
    assert drawn(page)["trace"] != taken[-1]["trace"]  # the whole run's trace again
    assert t.errors == []


def test_a_copied_address_reproduces_what_was_shown(book_server, tab):
    """Step, drag a mean, add a point, run, go back: the address the page wrote opens, in a new
    tab, exactly what was shown (every parameter, colour, pixel and ellipse)."""
    t = tab(width=1000, height=900)
    page = t.open_explorer(f"{book_server}/explorer/index.html?dataset=tilted&k=3&seed=0")
    page.get_by_role("button", name="E-step").click()
    page.get_by_role("button", name="M-step").click()
    x0, y0 = handle_centre(page, 1)
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + 60, y0 + 40, steps=6)
    page.mouse.up()
    settle(page)
    box = page.locator(".gx-svg").bounding_box()
    page.mouse.click(box["x"] + 80, box["y"] + 40)  # a point far from the data
    settle(page)
    page.get_by_label("Timeline").focus()
    page.keyboard.press("Home")
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    shown = drawn(page)
    expected = state(page)["query"]
    assert "means=" in expected and "add=" in expected and "step=3" in expected
    # The address follows (written at most every 250 ms: wait for it).
    page.wait_for_function("q => location.search === '?' + q", arg=expected, timeout=WAIT_MS)
    copied = page.evaluate("location.href")  # (page.url may lag behind replaceState)
    other = tab(width=1000, height=900)
    reopened = other.open_explorer(copied)
    assert drawn(reopened) == shown
    assert reopened.evaluate("location.href") == copied  # opening it writes nothing new
    assert t.errors == [] and other.errors == []


def point_on_screen(page, i: int) -> tuple[float, float]:
    """Where point i of the data is drawn, in page pixels (read afresh: the layout can move)."""
    box = page.locator(".gx-svg").bounding_box()
    px, py = page.evaluate(f"emExplorer.toScreen(...emExplorer.session.points.at({i}))")
    return box["x"] + px, box["y"] + py


def test_data_by_hand(book_server, tab, artifacts_dir):
    """Click adds a point, a modifier click or a long press removes one, a point can be dragged,
    and x, y and "Add a point" do it from the keyboard: the fit follows each time (EM runs to
    its end from the same start)."""
    t = tab(width=1000, height=900)
    page = t.open_explorer(f"{book_server}/explorer/index.html?dataset=collapse&k=2&seed=0")
    n0 = state(page)["n"]
    box = page.locator(".gx-svg").bounding_box()
    at = (box["x"] + 0.5 * box["width"], box["y"] + 0.3 * box["height"])
    page.mouse.click(*at)
    settle(page)
    s = state(page)
    assert s["n"] == n0 + 1 and s["nextKind"] is None and s["steps"] > 0
    assert "add=" in s["query"]
    added = page.evaluate("emExplorer.session.points.at(-1)")
    drop = page.evaluate(
        "([px, py]) => emExplorer.toData(px, py)", [at[0] - box["x"], at[1] - box["y"]]
    )
    np.testing.assert_allclose(added, drop, atol=2 / page.evaluate("emExplorer.size.s"))
    # Drag it: it follows the pointer, the fit follows it.
    before = state(page)["means"]
    x0, y0 = point_on_screen(page, -1)
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + 40, y0 + 60, steps=6)
    page.mouse.up()
    settle(page)
    moved = page.evaluate("emExplorer.session.points.at(-1)")
    assert moved[0] > added[0] and moved[1] < added[1]
    assert state(page)["n"] == n0 + 1 and state(page)["means"] != before
    # Shift-click removes it.
    page.keyboard.down("Shift")
    page.mouse.click(*point_on_screen(page, -1))
    page.keyboard.up("Shift")
    settle(page)
    assert state(page)["n"] == n0 and "add=" not in state(page)["query"]
    # A long press on a data point removes it (wait for it, never a fixed time).
    page.mouse.move(*point_on_screen(page, 5))
    page.mouse.down()
    page.wait_for_function(f"emExplorer.state().n === {n0 - 1}", timeout=WAIT_MS)
    page.mouse.up()
    assert "drop=5" in state(page)["query"]
    # The keyboard path: x, y, then "Add a point".
    page.get_by_label("x", exact=True).fill("0.5")
    page.get_by_label("y", exact=True).fill("-0.25")
    page.get_by_role("button", name="Add a point").focus()
    page.keyboard.press("Enter")
    assert page.evaluate("emExplorer.session.points.at(-1)") == [0.5, -0.25]
    page.get_by_role("button", name="Remove the last point").click()
    assert state(page)["n"] == n0 - 1
    assert own_violations(run_axe(page)) == []
    assert t.errors == []


def test_draw_your_own_data(book_server, tab, artifacts_dir):
    """An empty plane: EM waits for more points than components, then follows each click."""
    t = tab(width=1000, height=900)
    page = t.open_explorer(f"{book_server}/explorer/index.html?dataset=tilted&k=2&seed=0")
    page.get_by_role("button", name="Draw your own data").click()
    s = state(page)
    assert (s["dataset"], s["n"], s["means"]) == ("own", 0, [])
    assert "click the plot to add points" in page.locator(".gx-status").inner_text()
    assert page.get_by_role("button", name="E-step").is_disabled()
    assert own_violations(run_axe(page)) == []
    box = page.locator(".gx-svg").bounding_box()
    spots = [(0.25, 0.3), (0.3, 0.4), (0.2, 0.35), (0.7, 0.6), (0.75, 0.7), (0.8, 0.65)]
    for i, (fx, fy) in enumerate(spots):
        page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
        settle(page)
        s = state(page)
        assert s["n"] == i + 1
        assert (len(s["means"]) == 2) == (i + 1 > 2), s  # EM runs once N > K
    assert s["nextKind"] is None and s["stopReason"] in ("converged", "max_iter")
    xs = sorted(m[0] for m in s["means"])
    assert xs[0] < 0 < xs[1]  # one component on each cloud
    page.screenshot(path=str(artifacts_dir / "explorer-own-data.png"), full_page=True)
    reopened = tab(width=1000, height=900)
    page.wait_for_function("q => location.search === '?' + q", arg=s["query"], timeout=WAIT_MS)
    other = reopened.open_explorer(page.evaluate("location.href"))
    assert state(other)["means"] == s["means"]
    assert t.errors == [] and reopened.errors == []


def test_data_by_hand_with_a_finger_at_phone_width(book_server, tab, artifacts_dir):
    """At 390 px, with real touch events: a tap adds a point, a long press removes one, and the
    new rows (timeline, data by hand) fit the width."""
    t = tab(width=390, height=844, has_touch=True, is_mobile=True)
    page = t.open_explorer(f"{book_server}/explorer/index.html?dataset=collapse&k=2&seed=0")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    n0 = state(page)["n"]
    cdp = t.context.new_cdp_session(page)

    def touch(kind, x=None, y=None):
        points = [] if x is None else [{"x": x, "y": y}]
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

    page.locator(".gx-plot").scroll_into_view_if_needed()
    x, y = point_on_screen(page, 7)
    touch("touchStart", x, y)  # hold until the point goes (a condition, never a fixed time)
    page.wait_for_function(f"emExplorer.state().n === {n0 - 1}", timeout=WAIT_MS)
    touch("touchEnd")
    assert "drop=7" in state(page)["query"]
    box = page.locator(".gx-svg").bounding_box()
    tap = (box["x"] + 0.5 * box["width"], box["y"] + 0.15 * box["height"])
    touch("touchStart", *tap)
    touch("touchEnd")
    settle(page)
    s = state(page)
    assert s["n"] == n0 and "add=" in s["query"] and s["nextKind"] is None
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(artifacts_dir / "explorer-phone-by-hand.png"), full_page=True)
    assert t.errors == []


def test_covariance_type_reaches_the_fit_the_table_and_the_address(book_server, tab):
    """The covariance type (criteria panel's select, from the keyboard) restarts EM in that
    type, is written into the address, and a copied address opens it again."""
    t = tab(width=1000, height=900)
    page = t.open_explorer(f"{book_server}/explorer/index.html?dataset=faithful&k=3&seed=0")
    page.wait_for_selector("#em-explorer[data-criteria]", timeout=WAIT_MS)
    select = page.get_by_label("Covariance type")
    select.focus()
    select.select_option("diag")
    page.get_by_role("button", name="Run").click()
    page.wait_for_function("emExplorer.session.entry.nextKind === null", timeout=WAIT_MS)
    s = state(page)
    assert s["covType"] == "diag" and "cov=diag" in s["query"]
    assert all(b == 0 for _, b, _ in s["covariances"])  # axis-aligned ellipses
    # The table follows the type: one row per K, the current K marked.
    page.wait_for_function(
        "document.getElementById('em-explorer').dataset.criteria.includes('|diag|')",
        timeout=WAIT_MS,
    )
    assert page.locator(".gx-criteria tbody tr").count() == 8
    assert page.locator(".gx-criteria tr[aria-current=true] th").inner_text() == "3"
    assert own_violations(run_axe(page)) == []
    page.wait_for_function("q => location.search === '?' + q", arg=s["query"], timeout=WAIT_MS)
    other = tab(width=1000, height=900)
    again = other.open_explorer(page.evaluate("location.href"))
    s2 = state(again)
    for key in ("covType", "iteration", "weights", "means", "covariances", "logLikelihood"):
        assert s2[key] == s[key], key
    assert again.get_by_label("Covariance type").input_value() == "diag"
    assert t.errors == [] and other.errors == []
