"""Crash points for tests: ``SLUICE_CRASH_AT=<name>`` makes the broker SIGKILL itself there.

Kill -9 from outside cannot hit a chosen instant (between a data-object PUT
and its manifest updates, say); this can. Names in use: upload.before_put,
upload.after_put, upload.after_manifests, compaction.before_put,
compaction.after_put, compaction.after_manifest. Unset (always, outside
tests), a crash point costs one dict lookup.
"""
from __future__ import annotations

import os
import signal

_AT = os.environ.get("SLUICE_CRASH_AT")


def crash_point(name: str) -> None:
    if _AT is not None and _AT == name:
        os.kill(os.getpid(), signal.SIGKILL)
