"""Fetch sessions (KIP-227): incremental fetches send only what changed.

Request (session_id, epoch) meaning, as in Kafka's FetchSession:
  (0, -1)  sessionless full fetch
  (0, 0)   full fetch that opens a new session
  (X, -1)  close session X, sessionless full fetch
  (X, 0)   close session X, open a new one with a full fetch
  (X, n>0) incremental fetch on session X; n must be the session's next epoch

In an incremental response a partition appears only when it has records, an
error, or a changed high watermark / log start offset since the last response.
"""
from __future__ import annotations

import itertools
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

from .errors import ErrorCode

FINAL_EPOCH = -1
INITIAL_EPOCH = 0


@dataclass(slots=True)
class SessionPartition:
    topic: str | None
    topic_id: uuid.UUID | None
    partition: int
    fetch_offset: int
    max_bytes: int
    current_leader_epoch: int = -1   # the client's view (KIP-320); -1: not checked
    # what the client last heard from us; -1 forces inclusion
    last_hw: int = -1
    last_log_start: int = -1


@dataclass
class FetchSession:
    id: int
    epoch: int  # the epoch the next incremental request must carry
    partitions: "OrderedDict[tuple, SessionPartition]" = field(default_factory=OrderedDict)


class FetchSessionError(Exception):
    def __init__(self, code: ErrorCode) -> None:
        super().__init__(code.name)
        self.code = code


class FetchSessionCache:
    def __init__(self, max_slots: int) -> None:
        self.max_slots = max_slots
        self._sessions: OrderedDict[int, FetchSession] = OrderedDict()
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._sessions)

    def resolve(self, session_id: int, epoch: int, requested: list[SessionPartition],
                forgotten: list[tuple]) -> tuple[FetchSession | None, list[SessionPartition], bool]:
        """Apply a request to the cache.

        Returns (session or None, partitions to fetch, incremental?). Raises
        FetchSessionError for an unknown session or wrong epoch.
        """
        if epoch == FINAL_EPOCH or epoch == INITIAL_EPOCH:
            if session_id:
                self._sessions.pop(session_id, None)
            if epoch == FINAL_EPOCH or self.max_slots <= 0:
                return None, requested, False
            session = FetchSession(next(self._ids), 1)
            for sp in requested:
                session.partitions[(sp.topic_id or sp.topic, sp.partition)] = sp
            self._sessions[session.id] = session
            while len(self._sessions) > self.max_slots:
                self._sessions.popitem(last=False)
            return session, requested, False
        session = self._sessions.get(session_id)
        if session is None:
            raise FetchSessionError(ErrorCode.FETCH_SESSION_ID_NOT_FOUND)
        if epoch != session.epoch:
            raise FetchSessionError(ErrorCode.INVALID_FETCH_SESSION_EPOCH)
        self._sessions.move_to_end(session_id)
        for sp in requested:
            key = (sp.topic_id or sp.topic, sp.partition)
            old = session.partitions.get(key)
            if old is None:
                session.partitions[key] = sp
            else:
                old.fetch_offset, old.max_bytes = sp.fetch_offset, sp.max_bytes
                old.current_leader_epoch = sp.current_leader_epoch
        for key in forgotten:
            session.partitions.pop(key, None)
        session.epoch = session.epoch + 1 if session.epoch < 2**31 - 1 else 1
        return session, list(session.partitions.values()), True
