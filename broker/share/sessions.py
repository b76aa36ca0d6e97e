"""Share sessions (KIP-932): which partitions a member's ShareFetch covers, and its epoch.

Kafka's ShareSessionCache, pure: the key is (group id, member id); epoch 0
opens a session (replacing one the member had), -1 closes it, and every
other request must carry the session's next epoch (INVALID_SHARE_SESSION_EPOCH
otherwise; no session: SHARE_SESSION_NOT_FOUND). A request adds its
partitions to the session's and removes its forgotten ones, and a fetch
covers all of the session's. At most ``group.share.max.share.sessions``
sessions per broker (SHARE_SESSION_LIMIT_REACHED).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Iterable

from .errors import ShareErrorCode

INITIAL_EPOCH, FINAL_EPOCH = 0, -1

TopicPartition = tuple[uuid.UUID, int]


class ShareSessionError(Exception):
    """A session error; its message is for the log: Kafka 4.4 answers these without one."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(eq=False)
class ShareSession:
    group_id: str
    member_id: str
    connection_id: int
    epoch: int = 1                     # the epoch the next request must carry
    partitions: dict[TopicPartition, None] = field(default_factory=dict)   # in request order


class ShareSessionCache:
    def __init__(self, max_sessions: int) -> None:
        self.max_sessions = max_sessions
        self.sessions: dict[tuple[str, str], ShareSession] = {}

    def get(self, group_id: str, member_id: str) -> ShareSession | None:
        return self.sessions.get((group_id, member_id))

    def resolve(self, group_id: str, member_id: str, epoch: int, connection_id: int,
                partitions: Iterable[TopicPartition], forgotten: Iterable[TopicPartition]) -> ShareSession:
        """The session this request belongs to, updated with its partitions (epoch -1 too: the
        caller closes it after its acknowledgements)."""
        key = (group_id, member_id)
        if epoch == INITIAL_EPOCH:
            if key not in self.sessions and len(self.sessions) >= self.max_sessions:
                raise ShareSessionError(ShareErrorCode.SHARE_SESSION_LIMIT_REACHED,
                                        "The share session cache is full.")
            s = self.sessions[key] = ShareSession(group_id, member_id, connection_id)
        else:
            s0 = self.sessions.get(key)
            if s0 is None:
                raise ShareSessionError(ShareErrorCode.SHARE_SESSION_NOT_FOUND,
                                        f"Share session for member {member_id} not found.")
            s = s0
            if epoch != FINAL_EPOCH:
                if epoch != s.epoch:
                    raise ShareSessionError(ShareErrorCode.INVALID_SHARE_SESSION_EPOCH,
                                            f"The share session epoch {epoch} is not {s.epoch}.")
                s.epoch = s.epoch + 1 if s.epoch < 2**31 - 1 else 1
            s.connection_id = connection_id
        for tp in forgotten:
            s.partitions.pop(tp, None)
        for tp in partitions:
            s.partitions.setdefault(tp, None)
        return s

    def close(self, session: ShareSession) -> None:
        if self.sessions.get((session.group_id, session.member_id)) is session:
            del self.sessions[(session.group_id, session.member_id)]

    def of_connection(self, connection_id: int) -> list[ShareSession]:
        return [s for s in self.sessions.values() if s.connection_id == connection_id]
