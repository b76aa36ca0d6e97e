"""Catch-up reads yield to produce: pacing of Fetch bytes served from object storage.

A consumer catching up from the object store makes the broker, the object
store and the consumer itself busy at once; on a small machine that shows
as produce latency for everyone at the tail (measured: p99 52 -> 613 ms at
20 MB/s with one cold catch-up reader, BENCHMARKS.md). Tail traffic comes
first, so Fetch responses holding object-store bytes (block cache or GET;
not the tail cache or the WAL) are paced by a token bucket:

* ``remote.log.manager.fetch.max.bytes.per.second`` caps the rate outright
  (Kafka's tiered-storage quota, KIP-956; unlimited by default);
* below that cap the rate adapts (AIMD, as TCP does): in every window in which
  a produce request took (or is still taking) longer than
  ``remote.fetch.produce.latency.target.ms`` while catch-up bytes were
  flowing, the allowance halves (down to a floor, so a catch-up reader always
  progresses); in every calm window in which the reader used it, it grows by
  a quarter, and past the cap pacing stops. Without produce traffic nothing
  is paced.

A reader that starts (or resumes after ``IDLE_RESTART`` without object-store
bytes) while produce requests are arriving starts at ``START_RATE`` and grows
from there, as TCP's slow start does: unpaced, its first answers read tens of
MB at full speed before the first slow produce window could halve anything
(measured: the first second of a paced catch-up had produce p50 75 ms, p99
425 ms, against 6-8 / 20-70 ms in the seconds after it).

Pacing delays the response, so the consumer waits before its next fetch and
the object store, the broker and the consumer all slow down; while paced, one
answer also reads at most ``BURST`` seconds' worth of object-store bytes, so
the reads come in short bursts rather than whole 50 MB answers.
The delay of one response is bounded (``MAX_DELAY``) well below any client's
request timeout.
"""
from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Callable

WINDOW = 0.2           # seconds per adaptation step
MIN_RATE = 4 << 20     # bytes/s: the floor, so catch-up always progresses
MAX_DELAY = 5.0        # seconds one Fetch response may be held back
BURST = 0.05           # seconds' worth of object-store bytes per paced Fetch answer
MIN_FETCH_BYTES = 256 << 10
START_RATE = 16 << 20  # bytes/s a reader starts at next to live produce traffic (slow start)
IDLE_RESTART = 1.0     # seconds: a reader idle this long starts slow again; produce this recent is "live"
INCREASE = 1.25        # per calm window in which the allowance was used
DECREASE = 0.5         # per window with slow produce requests


@dataclass
class RemoteReadPacer:
    """Token bucket over object-store Fetch bytes, its rate steered by produce latency."""

    max_rate: float = math.inf            # bytes/s; inf = no cap
    target: float = 0.0                   # seconds; 0 = do not adapt
    clock: Callable[[], float] = time.monotonic
    rate: float = field(init=False)       # current allowance (inf = not paced)
    tokens: float = field(init=False, default=0.0)
    paced_seconds: float = field(init=False, default=0.0)
    charged_total: int = field(init=False, default=0)
    _last: float = field(init=False)
    _window_start: float = field(init=False)
    _window_bytes: int = field(init=False, default=0)
    _window_slowest: float = field(init=False, default=0.0)
    _in_flight: dict = field(init=False, default_factory=dict)   # produce token -> start
    _last_charge: float = field(init=False, default=-math.inf)   # when object-store bytes last flowed
    _last_produce: float = field(init=False, default=-math.inf)  # when a produce request last arrived

    def __post_init__(self) -> None:
        self.rate = self.max_rate
        now = self.clock()
        self._last = self._window_start = now
        self.tokens = self._burst()

    def set_max_rate(self, max_rate: float) -> None:
        """A new cap (the dynamic broker config): an allowance at the old cap, or
        above the new one, moves to the new cap; one the adaptation set below
        both stays and grows from there."""
        old, self.max_rate = self.max_rate, max_rate
        if self.rate == old or self.rate > max_rate:
            self.rate = max_rate
            self.tokens = min(self.tokens, self._burst())

    @property
    def enabled(self) -> bool:
        return self.max_rate != math.inf or self.target > 0

    def _burst(self) -> float:
        # A fifth of a second's worth: a bucket that filled while nobody read
        # must not let a whole second of catch-up through at once.
        return max(MIN_FETCH_BYTES, self.rate * 0.2) if self.rate != math.inf else math.inf

    def _refill(self, now: float) -> None:
        if self.rate == math.inf:
            self.tokens = math.inf
        else:
            if self.tokens == math.inf:
                self.tokens = self._burst()
            self.tokens = min(self._burst(), self.tokens + (now - self._last) * self.rate)
        self._last = now

    def _adapt(self, now: float) -> None:
        """Close the window(s) up to ``now``: steer the rate by what they saw."""
        if now - self._window_start < WINDOW:
            return
        elapsed = now - self._window_start
        flowing = self._window_bytes / elapsed
        slowest = self._window_slowest
        if self._in_flight:     # a produce still waiting counts as slow already
            slowest = max(slowest, now - min(self._in_flight.values()))
        if self.target > 0 and slowest > self.target and self._window_bytes > 0:
            base = flowing if self.rate == math.inf else min(self.rate, flowing * 2)
            self.rate = max(MIN_RATE, base * DECREASE)
        elif self.rate != math.inf and (flowing >= self.rate / 2 or not self._window_bytes):
            # grow only an allowance that was used (or not needed at all), so a
            # reader held back by something else cannot build up a burst
            self.rate *= INCREASE
            if self.rate >= self.max_rate or (self.max_rate == math.inf and self.rate > 1 << 40):
                self.rate = self.max_rate
        self._window_start, self._window_bytes, self._window_slowest = now, 0, 0.0

    def _slow_start(self, now: float) -> None:
        """A reader (re)starting next to live produce traffic starts at START_RATE."""
        if (self.target > 0 and self.rate > START_RATE and now - self._last_charge > IDLE_RESTART
                and now - self._last_produce < IDLE_RESTART):
            self.rate = float(START_RATE)
            self.tokens = self._burst()
            self._last = self._window_start = now
            self._window_bytes, self._window_slowest = 0, 0.0

    def produce_started(self, token: object) -> None:
        """A produce request arrived (``observe_produce(token)`` when answered):
        while it waits, its age already steers the rate."""
        self._in_flight[token] = self._last_produce = self.clock()

    def observe_produce(self, token: object) -> None:
        """The produce request ``token`` was answered."""
        now = self.clock()
        started = self._in_flight.pop(token, None)
        if started is not None and now - started > self._window_slowest:
            self._window_slowest = now - started
        self._adapt(now)

    def charge(self, nbytes: int) -> None:
        """``nbytes`` were read from the object store tiers for a Fetch."""
        now = self.clock()
        if nbytes:
            self._slow_start(now)
            self._last_charge = now
        self._adapt(now)
        self._refill(now)
        self._window_bytes += nbytes
        self.charged_total += nbytes
        if self.rate != math.inf:
            self.tokens -= nbytes

    def delay(self) -> float:
        """Seconds the current Fetch response should wait (0 when not in debt)."""
        now = self.clock()
        self._adapt(now)
        self._refill(now)
        if self.tokens >= 0:
            return 0.0
        return min(MAX_DELAY, -self.tokens / self.rate)

    def fetch_limit(self) -> int | None:
        """Object-store bytes one Fetch answer may read while paced (None: not paced).

        Without it a paced consumer still reads a whole answer (tens of MB) at
        full speed before waiting, and the machine is saturated for that long;
        answers of BURST seconds' worth keep the bursts short."""
        self._slow_start(self.clock())
        if self.rate == math.inf:
            return None
        return max(MIN_FETCH_BYTES, int(self.rate * BURST))

    async def pace(self) -> float:
        """Wait out the debt, if any; returns the seconds waited."""
        d = self.delay()
        if d > 0:
            await asyncio.sleep(d)
            self.paced_seconds += d
        return d
