"""The controller: one broker at a time, by a lease in the bucket.

``cluster/controller.json`` holds ``{"node_id", "epoch", "incarnation",
"expires_ms"}``. A broker takes it with a conditional write when it is absent,
expired, or already its own; the holder renews it every heartbeat, with one
If-Match PUT on the etag of its last write (no GET; a lost race re-reads).
Another broker reads it only once the expiry it last read has passed (by its
own clock), so a standby costs one GET per lease period. The epoch goes up
whenever the holder changes (or restarts), so a controller decision can carry
the epoch it was made under.

What the controller decides (placement of partitions without a live owner) is
written to the metadata document by conditional update; the lease only keeps
two brokers from making such decisions at the same time.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

from objectstore import ObjectStore
from objectstore.manifest import conditional_update, conditional_update_stored, json_decoder, json_encode

log = logging.getLogger(__name__)

CONTROLLER_KEY = "cluster/controller.json"


@dataclass
class Lease:
    node_id: int
    epoch: int
    incarnation: str
    expires_ms: int


class _Taken(Exception):
    pass


class ControllerLease:
    def __init__(self, store: ObjectStore, node_id: int, incarnation: str, *, lease_ms: int) -> None:
        self.store = store
        self.node_id = node_id
        self.incarnation = incarnation
        self.lease_ms = lease_ms
        self.current: Lease | None = None
        # bytes and etag of our last write: a renewal is then one If-Match PUT, no GET
        self._known: tuple[bytes | bytearray, str] | None = None

    @property
    def holder(self) -> int:
        return self.current.node_id if self.current is not None else -1

    def is_mine(self, now_ms: int) -> bool:
        c = self.current
        return c is not None and c.node_id == self.node_id and c.incarnation == self.incarnation \
            and c.expires_ms > now_ms

    async def tick(self, now_ms: int) -> bool:
        """Take or renew the lease if we may; True if we hold it afterwards."""
        held = self.current
        if held is not None and held.incarnation != self.incarnation and held.expires_ms > now_ms:
            return False        # another's, not expired as far as we know: nothing to ask
        def take(cur: dict | None) -> dict:
            if cur is not None:
                held = Lease(**cur)
                mine = held.node_id == self.node_id and held.incarnation == self.incarnation
                if not mine and held.expires_ms > now_ms:
                    raise _Taken(json.dumps(cur))
                epoch = held.epoch if mine else held.epoch + 1
            else:
                epoch = 1
            return asdict(Lease(self.node_id, epoch, self.incarnation, now_ms + self.lease_ms))
        try:
            stored = await conditional_update_stored(self.store, CONTROLLER_KEY, take,
                                                     json_decoder(CONTROLLER_KEY), json_encode,
                                                     known=self._known)
        except _Taken as held:
            self._known = None
            self.current = Lease(**json.loads(str(held)))
            return False
        except BaseException:
            self._known = None
            raise
        assert stored.value is not None and stored.data is not None and stored.etag is not None
        self._known = (stored.data, stored.etag)
        new = Lease(**stored.value)
        if self.current is None or self.current.epoch != new.epoch:
            log.info("controller: node %d holds the lease at epoch %d", new.node_id, new.epoch)
        self.current = new
        return True

    async def release(self) -> None:
        """Let the lease lapse now (clean shutdown): expire it if it is still ours."""
        def expire(cur: dict | None) -> dict | None:
            if cur is None or cur["node_id"] != self.node_id or cur["incarnation"] != self.incarnation:
                raise _Taken("")
            return dict(cur, expires_ms=0)
        try:
            await conditional_update(self.store, CONTROLLER_KEY, expire,
                                     json_decoder(CONTROLLER_KEY), json_encode)
        except _Taken:
            pass
