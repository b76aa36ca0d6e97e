"""Brokers of the cluster: one registration object per broker in the bucket.

Brokers pointed at the same object store (bucket and prefix) form one cluster.
Each writes ``cluster/brokers/<node.id>.json`` at start (its advertised
endpoint and a fresh incarnation id), rewrites it every heartbeat with its
beat counter and its partitions' produce rates (``beat``), and deletes it
after a clean shutdown, once everything it held is uploaded.

Liveness without clocks shared between machines: every heartbeat a broker
lists the registrations with their etags (one LIST) and notes, by its own
clock, when each one last changed. A broker whose registration has not
changed for ``broker.session.timeout.ms`` is registered but not live: it is
left out of Metadata and gets nothing new. Taking its partitions over is
failover, built on top.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace

from objectstore import NotFound, ObjectStore

from ..clock import Clock

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
    beat: int = 0
    # bytes/s produced over the last beat per partition it owns ("<topic id hex>:<index>")
    load: dict[str, float] = field(default_factory=dict)

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes | bytearray) -> "BrokerRegistration":
        d = json.loads(data)
        return cls(int(d["node_id"]), str(d["host"]), int(d["port"]), str(d["incarnation"]),
                   int(d["registered_ms"]), d.get("rack"), int(d.get("beat", 0)),
                   {str(k): float(v) for k, v in d.get("load", {}).items()})

    def bytes_per_second(self) -> float:
        return sum(self.load.values())


def registration_key(node_id: int) -> str:
    return f"{BROKERS_PREFIX}{node_id}.json"


class Membership:
    """The registered brokers, as last listed (this broker's own always
    included), and which of them are live (see the module docstring)."""

    def __init__(self, store: ObjectStore, me: BrokerRegistration, *, clock: Clock,
                 session_timeout_ms: int) -> None:
        self.store = store
        self.me = me
        self.clock = clock
        self.session_timeout_ms = session_timeout_ms
        self.brokers: dict[int, BrokerRegistration] = {me.node_id: me}
        self._seen: dict[int, tuple[str, int]] = {}   # node -> (etag, when it last changed, our clock)

    async def register(self) -> None:
        await self.store.put(registration_key(self.me.node_id), self.me.encode())
        await self.refresh()

    async def beat(self, load: dict[str, float]) -> None:
        """Prove liveness: rewrite our registration with the next beat (1 PUT)."""
        self.me = replace(self.me, beat=self.me.beat + 1, load=load)
        self.brokers[self.me.node_id] = self.me
        await self.store.put(registration_key(self.me.node_id), self.me.encode())

    async def deregister(self) -> None:
        await self.store.delete(registration_key(self.me.node_id))

    def is_live(self, node: int) -> bool:
        if node == self.me.node_id:
            return True
        seen = self._seen.get(node)
        return node in self.brokers and seen is not None \
            and self.clock.now_ms() - seen[1] < self.session_timeout_ms

    def live(self) -> dict[int, BrokerRegistration]:
        return {n: b for n, b in self.brokers.items() if self.is_live(n)}

    async def refresh(self) -> bool:
        """List the registrations (one LIST, a GET per new or changed one);
        True if the set of members, or of live members, changed."""
        before, members = set(self.live()), set(self.brokers)
        infos = await self.store.list_info(BROKERS_PREFIX)
        now = self.clock.now_ms()
        found: dict[int, BrokerRegistration] = {self.me.node_id: self.me}
        for info in infos:
            name = info.key[len(BROKERS_PREFIX):]
            if not name.endswith(".json") or not name[:-5].isdigit():
                continue
            node = int(name[:-5])
            if node == self.me.node_id:
                continue
            seen = self._seen.get(node)
            known = self.brokers.get(node)
            if seen is not None and seen[0] == info.etag and known is not None:
                found[node] = known
                continue
            try:
                found[node] = BrokerRegistration.decode(await self.store.get(info.key))
            except NotFound:
                continue              # deregistered meanwhile
            except (ValueError, KeyError) as exc:
                log.warning("membership: ignoring a bad registration %s: %s", info.key, exc)
                continue
            self._seen[node] = (info.etag, now)
        self._seen = {n: v for n, v in self._seen.items() if n in found}
        self.brokers = found
        return set(self.live()) != before or set(found) != members
