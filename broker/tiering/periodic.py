"""``PeriodicTask``: the shape of the merge, retention and GC tasks."""
from __future__ import annotations

import asyncio
import logging

from objectstore import ObjectStoreError

log = logging.getLogger(__name__)

MIN_INTERVAL = 0.01     # seconds between two runs of a periodic task, even at interval 0 (tests)


class PeriodicTask:
    """Runs ``run_once`` every ``interval`` seconds (the first time one
    interval after ``start``) until ``stop``. A failed run is logged (an
    object-store error once per kind, until that kind works again) and the
    next one comes at the next interval."""

    name = "task"

    def __init__(self, rm, interval: float) -> None:
        self.rm = rm
        self.interval = interval
        self.busy = False               # a run is in progress
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"tiering {self.name}")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(max(self.interval, MIN_INTERVAL))
            await self.ready()
            self.busy = True
            try:
                await self.run_once()
                self.rm.storage_ok(self.name)
            except asyncio.CancelledError:
                raise
            except ObjectStoreError as exc:
                self.rm.storage_error(self.name, exc)
            except Exception:  # a bug must not stop the task for good, nor go unseen
                log.exception("%s failed", self.name)
            finally:
                self.busy = False

    async def ready(self) -> None:
        """Wait, after the interval, for a good moment to run (default: none)."""

    async def run_once(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        """Cancel the task, wherever it is (every task's work is safe to cut
        short: what is not in a manifest yet is garbage, collected later)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
