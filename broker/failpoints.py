"""Failpoints for tests; unset (always, outside tests) ``crash_point`` costs one comparison.

``SLUICE_CRASH_AT=<name>`` makes the broker SIGKILL itself there. Kill -9 from
outside cannot hit a chosen instant (between a data-object PUT and its
manifest updates, say); this can. Names in use: upload.before_put,
upload.after_put, upload.after_manifests, merge.before_put, merge.after_put,
merge.after_manifest, handoff.before_flip, handoff.after_flip.

In process (the cluster rig, tests/cluster_rig.py), several brokers share one
process, so a failpoint is armed for one of them: ``arm(name, node_id)``
makes ``crash_point(name)`` raise ``InjectedFailure`` (or another exception,
or call a function) when it is reached by that broker, i.e. with
``current_node`` set to its node id. The rig sets ``current_node`` around
everything it runs for a broker (start, requests, uploads, close); every task
and ``Clock`` timer the broker creates from there inherits it (contextvars).
``InjectedFailure`` is a BaseException, so the broker's ``except Exception``
recovery does not swallow it: like the SIGKILL it stands in for, it ends what
the task was doing, and the rig then drops the broker as crashed.

    failpoints.arm("upload.after_put", 2)           # broker 2's next upload stops there
    failpoints.arm("upload.before_put", None, StoreUnavailable("injected"), times=None)
    failpoints.disarm_all()

``SLUICE_HOLD_AT=<name>`` holds the broker in a state that otherwise lasts only
until it listens, until the test sends SIGUSR1 — so a test can watch that
state without racing a timer. Names in use: groups.loading (the group
coordinator stays loading while the broker already serves).
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import signal
from dataclasses import dataclass
from typing import Callable, Union

log = logging.getLogger(__name__)

_AT = os.environ.get("SLUICE_CRASH_AT")
_HOLD = os.environ.get("SLUICE_HOLD_AT")

# The broker a task works for (None outside the rig).
current_node: contextvars.ContextVar[int | None] = contextvars.ContextVar("sluice_node", default=None)


class InjectedFailure(BaseException):
    """Raised at an armed failpoint (the in-process stand-in for SIGKILL)."""


Action = Union[type[BaseException], BaseException, Callable[[str], None]]


@dataclass
class Armed:
    name: str
    node_id: int | None          # None: any broker
    action: Action
    times: int | None            # None: every time until disarmed
    hits: int = 0


_armed: dict[str, list[Armed]] = {}
_on = _AT is not None            # anything to check at all: the one comparison when unset


def crash_point(name: str) -> None:
    if _on:
        _reached(name)


def _reached(name: str) -> None:
    if _AT == name:
        os.kill(os.getpid(), signal.SIGKILL)
    node = current_node.get()
    for a in _armed.get(name, ()):
        if (a.node_id is None or a.node_id == node) and (a.times is None or a.hits < a.times):
            a.hits += 1
            log.warning("failpoint: %s reached by node %s", name, node)
            act = a.action
            if isinstance(act, BaseException):
                raise act
            if isinstance(act, type) and issubclass(act, BaseException):
                raise act(f"failpoint {name} (node {node})")
            act(name)
            return


def arm(name: str, node_id: int | None, action: Action = InjectedFailure, *,
        times: int | None = 1) -> Armed:
    """At ``crash_point(name)`` reached by broker ``node_id`` (None: any), the
    next ``times`` times (None: always): raise ``action`` (an exception class
    is instantiated with a message) or call it with the name (a function)."""
    global _on
    armed = Armed(name, node_id, action, times)
    _armed.setdefault(name, []).append(armed)
    _on = True
    return armed


def disarm_all() -> None:
    global _on
    _armed.clear()
    _on = _AT is not None


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
