"""Brokers of the cluster: one registration object per broker in the bucket.

Brokers pointed at the same object store (bucket and prefix) form one cluster.
Each writes ``cluster/brokers/<node.id>.json`` at start (its advertised
endpoint and a fresh incarnation id) and deletes it after a clean shutdown,
once everything it held is uploaded. A registered broker is a member; the
others learn of it by listing ``cluster/brokers/`` on every heartbeat.

A broker that dies without deregistering stays a member (its partitions keep
it as owner and are unavailable until it returns); taking over a dead
broker's partitions is failover, which needs its WAL and is built on top.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

from objectstore import NotFound, ObjectStore

log = logging.getLogger(__name__)

BROKERS_PREFIX = "cluster/brokers/"


@dataclass(frozen=True)
class BrokerRegistration:
    node_id: int
    host: str
    port: int
    incarnation: str
    registered_ms: int
    rack: str | None = None

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes | bytearray) -> "BrokerRegistration":
        d = json.loads(data)
        return cls(int(d["node_id"]), str(d["host"]), int(d["port"]), str(d["incarnation"]),
                   int(d["registered_ms"]), d.get("rack"))


def registration_key(node_id: int) -> str:
    return f"{BROKERS_PREFIX}{node_id}.json"


class Membership:
    """The registered brokers, as last listed (this broker's own always included)."""

    def __init__(self, store: ObjectStore, me: BrokerRegistration) -> None:
        self.store = store
        self.me = me
        self.brokers: dict[int, BrokerRegistration] = {me.node_id: me}

    async def register(self) -> None:
        await self.store.put(registration_key(self.me.node_id), self.me.encode())
        await self.refresh()

    async def deregister(self) -> None:
        await self.store.delete(registration_key(self.me.node_id))

    async def refresh(self) -> bool:
        """List the registrations; True if the set of members changed."""
        keys = await self.store.list(BROKERS_PREFIX)
        found: dict[int, BrokerRegistration] = {self.me.node_id: self.me}
        for key in keys:
            name = key[len(BROKERS_PREFIX):]
            if not name.endswith(".json") or not name[:-5].isdigit():
                continue
            node = int(name[:-5])
            if node == self.me.node_id:
                continue
            known = self.brokers.get(node)
            if known is not None:
                found[node] = known   # registrations do not change within an incarnation
                continue
            try:
                found[node] = BrokerRegistration.decode(await self.store.get(key))
            except NotFound:
                continue              # deregistered meanwhile
            except (ValueError, KeyError) as exc:
                log.warning("membership: ignoring a bad registration %s: %s", key, exc)
        changed = found.keys() != self.brokers.keys()
        self.brokers = found
        return changed
