"""Helpers shared by the browser tests: waits that do not depend on how busy the machine is.

Every wait in a browser test waits for a condition (an element, a state of the page), never
for a fixed time, and its ceiling is generous: a loaded machine makes a passing test slower,
never a failing one. `settle` replaces "sleep a little, then read the state" after input.
"""

from __future__ import annotations

#: Ceiling of every wait for a condition, in milliseconds (Playwright's default is 30 s).
WAIT_MS = 120_000


def new_context(browser, **options):
    """A browser context whose waits (navigation, selectors, functions) allow `WAIT_MS`."""
    context = browser.new_context(**options)
    context.set_default_timeout(WAIT_MS)
    context.set_default_navigation_timeout(WAIT_MS)
    return context


def settle(page) -> None:
    """Return once the page has handled the input sent so far and drawn the result: the events
    are dispatched already, and two animation frames run every redraw they scheduled."""
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
