"""RemoteReadPacer: catch-up Fetch bytes yield to produce (fake clock, no sleeps)."""
from __future__ import annotations

import math

import pytest

from broker.log.read_pacer import (
    BURST,
    IDLE_RESTART,
    MAX_DELAY,
    MIN_FETCH_BYTES,
    MIN_RATE,
    START_RATE,
    WINDOW,
    RemoteReadPacer,
)

MB = 1 << 20


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_unpaced_by_default_and_without_produce_traffic():
    clock = Clock()
    p = RemoteReadPacer(target=0.02, clock=clock)
    assert p.enabled and p.rate == math.inf
    for _ in range(50):            # 50 x 8 MiB in 1 s, no produce requests at all
        p.charge(8 * MB)
        assert p.delay() == 0.0
        clock.t += 0.02
    assert p.rate == math.inf and p.fetch_limit() is None
    assert not RemoteReadPacer(clock=clock).enabled


def test_static_cap_is_a_token_bucket():
    clock = Clock()
    p = RemoteReadPacer(max_rate=10 * MB, clock=clock)
    p.charge(2 * MB)               # the burst: a fifth of a second's worth
    assert p.delay() == 0.0
    p.charge(5 * MB)               # 5 MiB of debt at 10 MiB/s
    assert abs(p.delay() - 0.5) < 1e-9
    clock.t += 0.25
    assert abs(p.delay() - 0.25) < 1e-9
    clock.t += 0.25
    assert p.delay() == 0.0
    p.charge(1000 * MB)            # never longer than MAX_DELAY at once
    assert p.delay() == MAX_DELAY
    assert p.charged_total == 1007 * MB


def _window(p: RemoteReadPacer, clock: Clock, *, read: int | None, produce_s: float | None) -> None:
    """One window: ``read`` bytes (None: what the allowance lets through), one
    produce request answered after ``produce_s``."""
    if read is None:
        read = int(p.rate * WINDOW)
    token = object()
    p.produce_started(token)
    p.charge(read)
    end = clock.t + WINDOW
    if produce_s is not None:
        clock.t += produce_s
        p.observe_produce(token)
    clock.t = end
    p.delay()                      # closes the window


def test_slow_produce_halves_the_catch_up_rate_down_to_the_floor_then_it_recovers():
    clock = Clock()
    p = RemoteReadPacer(target=0.02, clock=clock)
    p.charge(1)                    # a reader already flowing before produce traffic: no slow start
    # catch-up flowing at 100 MiB/s, produce answered in 80 ms: paced at half what flowed
    _window(p, clock, read=20 * MB, produce_s=0.08)
    assert p.rate == pytest.approx(50 * MB)
    _window(p, clock, read=10 * MB, produce_s=0.08)     # still slow: halved again
    assert p.rate == pytest.approx(25 * MB)
    for _ in range(20):
        _window(p, clock, read=2 * MB, produce_s=0.08)
    assert p.rate == MIN_RATE      # still progressing
    assert p.fetch_limit() == max(MIN_FETCH_BYTES, int(MIN_RATE * BURST))   # short bursts
    # produce fast again: an allowance the reader uses grows by a quarter per window...
    rates = []
    for _ in range(10):
        _window(p, clock, read=None, produce_s=0.005)
        rates.append(p.rate)
    assert rates[0] == pytest.approx(MIN_RATE * 1.25)
    assert all(a < b for a, b in zip(rates, rates[1:]))
    # ... one it does not use stays where it is (no burst builds up) ...
    before = p.rate
    for _ in range(10):
        _window(p, clock, read=int(p.rate * WINDOW / 4), produce_s=0.005)
    assert p.rate == before
    # ... and without catch-up reads at all it grows until pacing stops
    for _ in range(200):
        _window(p, clock, read=0, produce_s=0.005)
        if p.rate == math.inf:
            break
    assert p.rate == math.inf
    # (a reader arriving now, after that idle time and next to produce traffic, starts slow)
    assert p.fetch_limit() == max(MIN_FETCH_BYTES, int(START_RATE * BURST))


def test_a_produce_request_still_waiting_counts_as_slow():
    clock = Clock()
    p = RemoteReadPacer(target=0.02, clock=clock)
    p.charge(1)                    # a reader already flowing before produce traffic: no slow start
    stuck = object()
    p.produce_started(stuck)       # never answered within the window
    p.charge(20 * MB)
    clock.t += WINDOW
    p.delay()
    assert p.rate == pytest.approx(50 * MB)
    p.observe_produce(stuck)


def test_slow_produce_without_catch_up_bytes_changes_nothing():
    clock = Clock()
    p = RemoteReadPacer(target=0.02, clock=clock)
    for _ in range(10):
        _window(p, clock, read=0, produce_s=0.5)
    assert p.rate == math.inf


def test_adaptation_never_exceeds_the_static_cap():
    clock = Clock()
    p = RemoteReadPacer(max_rate=30 * MB, target=0.02, clock=clock)
    _window(p, clock, read=6 * MB, produce_s=0.08)      # flowing at 30 MiB/s: halved
    _window(p, clock, read=6 * MB, produce_s=0.08)
    assert p.rate < 30 * MB
    for _ in range(20):
        _window(p, clock, read=None, produce_s=0.001)
    assert p.rate == 30 * MB


def test_a_reader_starting_next_to_produce_traffic_starts_slow_and_grows():
    """TCP's slow start: unpaced, a new catch-up reader's first answers read tens of
    MB at full speed before any window could react."""
    clock = Clock()
    p = RemoteReadPacer(target=0.02, clock=clock)
    live = object()
    p.produce_started(live)                         # live produce traffic...
    p.observe_produce(live)                         # ...answered at once
    assert p.fetch_limit() == max(MIN_FETCH_BYTES, int(START_RATE * BURST))   # the first answer is short
    assert p.rate == START_RATE
    rates = []
    for _ in range(10):                             # calm windows, allowance used: grows by a quarter each
        _window(p, clock, read=None, produce_s=0.005)
        rates.append(p.rate)
    assert rates == sorted(rates) and rates[-1] == pytest.approx(START_RATE * 1.25 ** 10)
    # the reader pauses: while it is away nothing changes back...
    clock.t += IDLE_RESTART / 2
    p.charge(MB)
    assert p.rate >= rates[-1]
    # ...but after IDLE_RESTART without object-store bytes it starts slow again
    clock.t += IDLE_RESTART + 0.1
    p.produce_started(live)
    p.observe_produce(live)
    p.charge(MB)
    assert p.rate == START_RATE
    # no produce traffic: a starting reader is not paced at all
    q = RemoteReadPacer(target=0.02, clock=clock)
    assert q.fetch_limit() is None
    q.charge(50 * MB)
    assert q.rate == math.inf and q.delay() == 0.0


def test_a_new_cap_applies_at_once_and_an_adapted_allowance_below_it_stays():
    """remote.log.manager.fetch.max.bytes.per.second is a dynamic broker config:
    a cap set on an unpaced reader paces it from now on; lifted, it is unpaced
    again; an allowance the adaptation set below both caps keeps adapting."""
    clock = Clock()
    p = RemoteReadPacer(clock=clock)
    p.set_max_rate(10 * MB)
    assert p.rate == p.max_rate == 10 * MB
    p.charge(2 * MB)               # the new bucket's burst: a fifth of a second's worth
    assert p.delay() == 0.0
    p.charge(5 * MB)
    assert abs(p.delay() - 0.5) < 1e-9
    p.set_max_rate(math.inf)
    assert p.rate == math.inf and p.delay() == 0.0

    p = RemoteReadPacer(max_rate=64 * MB, target=0.01, clock=clock)
    _window(p, clock, read=8 * MB, produce_s=0.05)     # slow produce: the allowance drops below the cap
    adapted = p.rate
    assert adapted < 32 * MB
    p.set_max_rate(32 * MB)
    assert p.rate == adapted and p.max_rate == 32 * MB
    p.set_max_rate(adapted / 2)    # a cap below the allowance wins
    assert p.rate == adapted / 2
