"""`Observer.serve_pending`, the one loop that serves stopped calls (re-check and kernel).

No seccomp here: the observer's listener is a pipe holding one byte per "stopped call", and
`Observer.serve` is replaced by one that takes a byte. The caps, the hang-up and the credit
of the serving thread's wait for a CPU (`Waited`) are asserted on counts and on a clock the
test moves itself, never on the machine's time.
"""

from __future__ import annotations

import os
import types

import pytest

from grading import observer as observer_module
from grading.observer import BURST_CALLS, Observer, Waited


@pytest.fixture
def calls(tmp_path):
    """An `Observer` over a pipe: ``put(n)`` stops n calls, ``observer.served`` counts the
    calls answered; ``hang_up_after``: serve says the child is gone at that call."""
    read, write = os.pipe()
    observer = Observer(read, str(tmp_path))
    observer.served, observer.hang_up_after = 0, None

    def serve():
        os.read(read, 1)
        observer.served += 1
        return observer.served != observer.hang_up_after

    observer.serve = serve

    def put(n):
        os.write(write, b"c" * n)

    yield observer, put
    observer.close()
    os.close(write)


def test_a_burst_serves_what_is_pending_then_stops_at_a_quiet_listener(calls):
    observer, put = calls
    put(5)
    assert observer.serve_pending() is True
    assert observer.served == 5


def test_a_burst_stops_at_its_call_cap_with_calls_still_pending(calls):
    observer, put = calls
    put(BURST_CALLS + 10)
    assert observer.serve_pending() is True
    assert observer.served == BURST_CALLS
    assert observer.serve_pending(max_calls=4) is True
    assert observer.served == BURST_CALLS + 4


def _before_each_call(observer, effect) -> None:
    """Make ``observer`` run ``effect()`` before it answers each call."""
    serve = observer.serve

    def answer():
        effect()
        return serve()

    observer.serve = answer


def test_a_burst_stops_at_its_time_cap(calls, monkeypatch):
    """Each call takes 0.1 s of the test's own clock: a 0.25 s burst answers three."""
    observer, put = calls
    clock = [0.0]
    monkeypatch.setattr(observer_module, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))

    def tick():
        clock[0] += 0.1

    _before_each_call(observer, tick)
    put(100)
    assert observer.serve_pending(max_calls=1000, max_seconds=0.25) is True
    assert observer.served == 3


def test_a_hang_up_ends_the_burst_and_says_so(calls):
    observer, put = calls
    observer.hang_up_after = 3
    put(10)
    assert observer.serve_pending() is False
    assert observer.served == 3


def test_the_wait_since_the_thread_went_to_sleep_is_credited_idle_wake_ups_are_not(
    calls, monkeypatch
):
    """The serving thread's run-queue wait (here a counter the test moves) from `sleeping` to
    the end of the burst is the calls' wait for the grader; a wake-up with no call stopped
    (the caller's tick) adds nothing, and the credit stands when the child hangs up."""
    observer, put = calls
    run_queue = [10.0]
    monkeypatch.setattr(observer_module, "run_queue_wait", lambda: run_queue[0])
    waited = Waited()
    observer.waited = waited
    waited.sleeping()
    run_queue[0] += 0.5  # an idle tick: woken by the caller's timeout, no call stopped
    waited.sleeping()
    run_queue[0] += 0.25  # woken by a call: the wait to get a CPU

    def waits_while_serving():
        run_queue[0] += 0.125

    _before_each_call(observer, waits_while_serving)
    put(2)
    assert observer.serve_pending() is True
    assert waited() == 0.25 + 2 * 0.125
    observer.hang_up_after = observer.served + 1
    put(1)
    waited.sleeping()
    assert observer.serve_pending() is False
    assert waited() == 0.25 + 3 * 0.125
