"""broker.clock.ManualClock: deadline order, context capture, next deadline."""
from __future__ import annotations

import contextvars

from broker.clock import ManualClock

who = contextvars.ContextVar("who", default="nobody")


def test_timers_fire_in_deadline_order_within_advance():
    clock = ManualClock(start_ms=0)
    fired = []
    clock.call_later(2.0, fired.append, "b")
    clock.call_later(1.0, fired.append, "a")
    clock.call_later(2.0, fired.append, "c")
    assert clock.next_deadline() == 1.0
    assert clock.advance(1.5) == 1 and fired == ["a"]
    assert clock.next_deadline() == 2.0
    assert clock.advance(1.0) == 2 and fired == ["a", "b", "c"]
    assert clock.next_deadline() is None and clock.now_ms() == 2500


def test_cancelled_timers_have_no_deadline():
    clock = ManualClock(start_ms=0)
    clock.call_later(1.0, lambda: None).cancel()
    clock.call_later(3.0, lambda: None)
    assert clock.next_deadline() == 3.0
    assert clock.pending() == 1


def test_a_timer_runs_in_the_context_it_was_set_in():
    """As the event loop's call_later: the contextvars of whoever set the
    timer, not of whoever advances the clock (the rig's per-broker failpoint
    identity rides on this)."""
    clock = ManualClock(start_ms=0)
    seen = []

    def arm() -> None:
        who.set("broker-2")
        clock.call_later(1.0, lambda: seen.append(who.get()))
    contextvars.copy_context().run(arm)
    clock.call_later(1.0, lambda: seen.append(who.get()))
    who.set("the test")
    clock.advance(1.0)
    assert seen == ["broker-2", "nobody"]
