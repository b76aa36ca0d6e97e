"""``share.auto.offset.reset``: where a share-partition starts when it has no state.

Kafka 4.4's GroupConfig accepts ``latest`` (the default), ``earliest`` and
``by_duration:<ISO-8601 duration>`` (``PnDTnHnMn.nS``, as
java.time.Duration.parse reads it; negative durations refused)
(ShareGroupAutoOffsetResetStrategy). The start offset is then the log end,
the log start, or the first offset whose timestamp is at or after now minus
the duration (the log end if there is none).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

LATEST, EARLIEST, BY_DURATION = "latest", "earliest", "by_duration"
DEFAULT = LATEST

_DURATION = re.compile(
    r"([-+]?)P(?:([-+]?[0-9]+)D)?"
    r"(T(?:([-+]?[0-9]+)H)?(?:([-+]?[0-9]+)M)?(?:([-+]?[0-9]+)(?:[.,]([0-9]{0,9}))?S)?)?",
    re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class AutoOffsetReset:
    strategy: str
    duration_ms: int = 0


def parse_duration_ms(text: str) -> int:
    """An ISO-8601 duration in Java's Duration.parse form, in milliseconds; ValueError if bad."""
    m = _DURATION.fullmatch(text)
    if m is None or (m.group(3) == "T" or (m.group(2) is None and m.group(3) is None)):
        raise ValueError(f"{text!r} is not an ISO-8601 duration (PnDTnHnMn.nS)")
    sign = -1 if m.group(1) == "-" else 1
    days, hours, minutes, seconds = (int(g) if g else 0 for g in (m.group(2), m.group(4), m.group(5), m.group(6)))
    frac = m.group(7) or ""
    nanos = int((frac + "0" * 9)[:9]) if frac else 0
    if seconds < 0 or (m.group(6) or "").startswith("-"):
        nanos = -nanos
    total_ns = ((days * 24 + hours) * 60 + minutes) * 60 * 10**9 + seconds * 10**9 + nanos
    return sign * total_ns // 10**6


def parse(value: str) -> AutoOffsetReset:
    """The strategy ``value`` names; ValueError (INVALID_CONFIG) for anything else."""
    v = value.strip().lower()
    if v in (LATEST, EARLIEST):
        return AutoOffsetReset(v)
    if v.startswith(BY_DURATION + ":"):
        ms = parse_duration_ms(value.strip()[len(BY_DURATION) + 1:])
        if ms < 0:
            raise ValueError(f"share.auto.offset.reset: negative duration in {value!r}")
        return AutoOffsetReset(BY_DURATION, ms)
    raise ValueError(f"share.auto.offset.reset must be latest, earliest or by_duration:<ISO-8601 duration>, "
                     f"not {value!r}")


def start_offset(reset: AutoOffsetReset, *, log_start: int, log_end: int, now_ms: int,
                 offset_for_timestamp: Callable[[int], int | None]) -> int:
    """The initial share-partition start offset (``offset_for_timestamp(ts)``: the
    first offset with a timestamp >= ts, None if none, as ListOffsets answers)."""
    if reset.strategy == EARLIEST:
        return log_start
    if reset.strategy == LATEST:
        return log_end
    found = offset_for_timestamp(now_ms - reset.duration_ms)
    return log_end if found is None else max(found, log_start)
