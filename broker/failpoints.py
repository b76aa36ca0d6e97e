"""Failpoints for tests, set from the environment; unset (always, outside tests) each
costs one comparison.

``SLUICE_CRASH_AT=<name>`` makes the broker SIGKILL itself there. Kill -9 from
outside cannot hit a chosen instant (between a data-object PUT and its
manifest updates, say); this can. Names in use: upload.before_put,
upload.after_put, upload.after_manifests, merge.before_put, merge.after_put,
merge.after_manifest.

``SLUICE_HOLD_AT=<name>`` holds the broker in a state that otherwise lasts only
until it listens, until the test sends SIGUSR1 — so a test can watch that
state without racing a timer. Names in use: groups.loading (the group
coordinator stays loading while the broker already serves).
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal

log = logging.getLogger(__name__)

_AT = os.environ.get("SLUICE_CRASH_AT")
_HOLD = os.environ.get("SLUICE_HOLD_AT")


def crash_point(name: str) -> None:
    if _AT is not None and _AT == name:
        os.kill(os.getpid(), signal.SIGKILL)


def hold_point(name: str) -> asyncio.Event | None:
    """None unless SLUICE_HOLD_AT names ``name``; else an event that SIGUSR1 sets.

    The handler is installed before this returns, so a test that saw the broker
    ready may signal at once (SIGUSR1's default action would kill the broker).
    """
    if _HOLD is None or _HOLD != name:
        return None
    released = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, released.set)
    log.warning("failpoint: holding at %s until SIGUSR1", name)
    return released
