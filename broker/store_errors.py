"""Object-store failures logged once per kind until that kind works again.

A store that is down fails every upload, claim, heartbeat and snapshot every
few hundred milliseconds; one warning per kind (what was attempted, and the
exception's type) and one line when it works again keep the log readable.
"""
from __future__ import annotations

import logging


class StoreErrors:
    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self._failing: set[str] = set()

    def failed(self, what: str, exc: BaseException) -> None:
        kind = f"{what}:{type(exc).__name__}"
        if kind not in self._failing:
            self._failing.add(kind)
            self.log.warning("object store: %s failed (%s: %s); retrying quietly until it works again",
                             what, type(exc).__name__, exc)

    def ok(self, what: str) -> None:
        gone = {k for k in self._failing if k.startswith(what + ":")}
        if gone:
            self._failing -= gone
            self.log.info("object store: %s works again", what)
