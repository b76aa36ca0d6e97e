"""Time as a dependency: the broker's timers and "now" come from a ``Clock``.

Components that expire things (group sessions, rebalance timeouts, leases,
retention) take a ``Clock`` instead of calling ``time`` and
``loop.call_later`` themselves, so tests and the in-process cluster rig can
drive them with a ``ManualClock``: time moves only when the test says so, and
timers fire in deadline order, deterministically, without sleeping.

    clock = SystemClock()               # production: wall time, the event loop's timers
    clock = ManualClock(start_ms=0)     # tests
    handle = clock.call_later(1.5, fn, arg)
    clock.advance(2.0)                  # fn(arg) has run
"""
from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
import time
from typing import Any, Callable, Protocol


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now_ms(self) -> int:
        """Wall-clock milliseconds since the epoch (timestamps that are stored)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (intervals, deadlines)."""
        ...

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> TimerHandle:
        """Run ``fn(*args)`` once, ``delay`` seconds from now."""
        ...


class SystemClock:
    """Wall time and the running event loop's timers."""

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    def monotonic(self) -> float:
        return time.monotonic()

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> TimerHandle:
        return asyncio.get_running_loop().call_later(delay, fn, *args)


class _ManualTimer:
    __slots__ = ("when", "fn", "args", "cancelled", "context")

    def __init__(self, when: float, fn: Callable[..., Any], args: tuple) -> None:
        self.when, self.fn, self.args, self.cancelled = when, fn, args, False
        self.context = contextvars.copy_context()

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A clock that moves only in ``advance``; timers fire in (deadline, creation) order,
    each in the context it was set in (as the event loop's ``call_later`` does)."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now = start_ms / 1000
        self._timers: list[tuple[float, int, _ManualTimer]] = []
        self._seq = itertools.count()

    def now_ms(self) -> int:
        return int(self._now * 1000)

    def monotonic(self) -> float:
        return self._now

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> _ManualTimer:
        timer = _ManualTimer(self._now + max(delay, 0.0), fn, args)
        heapq.heappush(self._timers, (timer.when, next(self._seq), timer))
        return timer

    def advance(self, seconds: float) -> int:
        """Move time forward, firing every timer that falls due (timers set by
        a firing timer fire too if they fall within the step); returns how many fired."""
        end = self._now + seconds
        fired = 0
        while self._timers and self._timers[0][0] <= end:
            when, _, timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self._now = max(self._now, when)
            timer.context.run(timer.fn, *timer.args)
            fired += 1
        self._now = end
        return fired

    def pending(self) -> int:
        return sum(1 for _, _, t in self._timers if not t.cancelled)

    def next_deadline(self) -> float | None:
        """When (on ``monotonic``) the next timer falls due; None if none is set."""
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None
