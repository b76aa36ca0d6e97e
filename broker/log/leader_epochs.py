"""A partition's leader-epoch history (Kafka's ``LeaderEpochFileCache``, KIP-101/320).

Which offset each leader (ownership) epoch began at, so that
OffsetForLeaderEpoch can tell a client where an epoch ended. An entry is
assigned when an owner starts serving the partition at a new epoch (at its
log end offset) and when a batch of a newer epoch is appended or replayed;
the history goes to the bucket with the partition's manifest
(``Manifest.leader_epochs``) on the upload task's manifest updates, so it
costs no request of its own on the produce or fetch path.

Pure logic, no I/O.
"""
from __future__ import annotations

import bisect
from collections.abc import Iterable

UNDEFINED_EPOCH = -1
UNDEFINED_EPOCH_OFFSET = -1


class LeaderEpochCache:
    """(epoch, start offset) entries, epochs strictly and offsets weakly increasing."""

    __slots__ = ("_epochs", "_starts")

    def __init__(self, entries: Iterable[tuple[int, int]] = ()) -> None:
        self._epochs: list[int] = []
        self._starts: list[int] = []
        for epoch, start in entries:
            self.assign(epoch, start)

    @property
    def entries(self) -> tuple[tuple[int, int], ...]:
        return tuple(zip(self._epochs, self._starts))

    @property
    def latest_epoch(self) -> int:
        return self._epochs[-1] if self._epochs else UNDEFINED_EPOCH

    def assign(self, epoch: int, start_offset: int) -> bool:
        """Record that ``epoch`` begins at ``start_offset``; True if that changed
        anything. As Kafka's ``assign``: entries of this or a later epoch, or
        starting at or after ``start_offset``, give way to the new one."""
        if epoch < 0 or start_offset < 0:
            return False
        if self._epochs and epoch == self._epochs[-1] and start_offset >= self._starts[-1]:
            return False
        keep = len(self._epochs)
        while keep and (self._epochs[keep - 1] >= epoch or self._starts[keep - 1] >= start_offset):
            keep -= 1
        del self._epochs[keep:], self._starts[keep:]
        self._epochs.append(epoch)
        self._starts.append(start_offset)
        return True

    def truncate_from_start(self, log_start_offset: int) -> None:
        """The log now starts at ``log_start_offset`` (DeleteRecords,
        retention): as Kafka's ``truncateFromStart``, epochs that began below
        it go, but the last of them is kept, beginning at the new start."""
        n = bisect.bisect_right(self._starts, log_start_offset)
        if n == 0:
            return
        del self._epochs[:n - 1], self._starts[:n - 1]
        self._starts[0] = log_start_offset

    def end_offset_for(self, requested: int, log_end_offset: int) -> tuple[int, int]:
        """(epoch, end offset) for ``requested``, as Kafka's ``endOffsetFor``:
        the current epoch ends at the log end; an older one at the start of
        the next known epoch, answered with the largest known epoch not above
        it (or ``requested`` itself when it is older than every entry); an
        unknown newer epoch (or none known) is (-1, -1)."""
        if requested == UNDEFINED_EPOCH or not self._epochs:
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if requested == self._epochs[-1]:
            return requested, log_end_offset
        higher = bisect.bisect_right(self._epochs, requested)
        if higher == len(self._epochs):
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if higher == 0:
            return requested, self._starts[0]
        return self._epochs[higher - 1], self._starts[higher]

    def upto(self, offset: int) -> tuple[tuple[int, int], ...]:
        """The entries starting at or below ``offset`` (what a manifest whose
        uploaded end is ``offset`` can hold)."""
        n = bisect.bisect_right(self._starts, offset)
        return tuple(zip(self._epochs[:n], self._starts[:n]))
