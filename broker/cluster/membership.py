"""Brokers of the cluster: a registration and a beat object per broker in the bucket.

Brokers pointed at the same object store (bucket and prefix) form one cluster.
Each writes ``cluster/brokers/<node.id>.json`` at start (its advertised
endpoint and a fresh incarnation id) and rewrites ``cluster/brokers/<node.id>.beat``
every heartbeat (a counter, and the bytes/s produced per partition it owns,
which the controller's balancer reads); it deletes both after a clean
shutdown, once everything it held is uploaded.

Liveness without clocks shared between machines: every heartbeat a broker
lists ``cluster/brokers/`` with the etags (one LIST) and notes, by its own
clock, when each beat object last changed. A broker whose beat has not
changed for ``broker.session.timeout.ms`` is registered but not live: it is
left out of Metadata and gets nothing new. A beat notice (notify.py) that
came before the LIST showing that beat dates it from the notice instead, so
the controller times a session from the beat itself. Registrations are read (GET) only
when theirs changes (a new broker, a restart); beats only by the controller.
Taking a dead broker's partitions over is failover, built on top.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

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
    # where the WAL lives: "file" (only this broker reads it), "s3" (the bucket) or
    # "shared" (wal_dir, a volume every broker mounts there): the others can take over
    wal: str = "file"
    wal_dir: str | None = None

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes | bytearray) -> "BrokerRegistration":
        d = json.loads(data)
        return cls(int(d["node_id"]), str(d["host"]), int(d["port"]), str(d["incarnation"]),
                   int(d["registered_ms"]), d.get("rack"), str(d.get("wal", "file")), d.get("wal_dir"))


def registration_key(node_id: int) -> str:
    return f"{BROKERS_PREFIX}{node_id}.json"


def beat_key(node_id: int) -> str:
    return f"{BROKERS_PREFIX}{node_id}.beat"


class Membership:
    """The registered brokers, as last listed (this broker's own always
    included), which of them are live, and (for the controller) their load."""

    def __init__(self, store: ObjectStore, me: BrokerRegistration, *, clock: Clock,
                 session_timeout_ms: int) -> None:
        self.store = store
        self.me = me
        self.clock = clock
        self.session_timeout_ms = session_timeout_ms
        self.brokers: dict[int, BrokerRegistration] = {me.node_id: me}
        self._reg_etags: dict[int, str] = {}
        self._seen: dict[int, tuple[str, int]] = {}   # node -> (beat etag, when it last changed, our clock)
        self._beat_etags: dict[int, str] = {}         # node -> etag of the beat last read (fetch_loads)
        self._listed_beats: dict[int, str] = {}       # node -> etag of its beat in the last listing
        self._heard: dict[int, tuple[str, int]] = {}  # node -> (etag of a beat notice, when it came, our clock)
        self._beat = 0
        self._listed_at = clock.now_ms()
        # bytes/s per partition ("<topic id hex>:<index>") each broker produced over its last beat
        self.loads: dict[int, dict[str, float]] = {}

    async def register(self) -> None:
        await self.store.put(registration_key(self.me.node_id), self.me.encode())
        await self.refresh()

    async def beat(self, load: dict[str, float]) -> str:
        """Prove liveness: rewrite our beat object (1 PUT); its new etag."""
        self._beat += 1
        self.loads[self.me.node_id] = load
        body = json.dumps({"incarnation": self.me.incarnation, "beat": self._beat, "load": load},
                          sort_keys=True).encode()
        return await self.store.put(beat_key(self.me.node_id), body)

    def heard(self, node: int, etag: str) -> None:
        """A beat notice (notify.py): ``node`` says it wrote the beat ``etag``
        by now. Used only once a LIST shows that very beat."""
        if node != self.me.node_id and (node in self.brokers or len(self._heard) < 1024):
            self._heard[node] = (etag, self.clock.now_ms())

    async def deregister(self) -> None:
        await self.store.delete(beat_key(self.me.node_id))
        await self.store.delete(registration_key(self.me.node_id))

    def is_live(self, node: int) -> bool:
        if node == self.me.node_id:
            return True
        seen = self._seen.get(node)
        return node in self.brokers and seen is not None \
            and self.clock.now_ms() - seen[1] < self.session_timeout_ms

    def next_expiry_ms(self) -> int | None:
        """When the first of the other live brokers stops being live unless
        its beat changes meanwhile (our clock), or None."""
        times = [seen[1] + self.session_timeout_ms for n, seen in self._seen.items()
                 if n != self.me.node_id and n in self.brokers and self.is_live(n)]
        return min(times) if times else None

    def live(self) -> dict[int, BrokerRegistration]:
        return {n: b for n, b in self.brokers.items() if self.is_live(n)}

    async def refresh(self) -> bool:
        """List ``cluster/brokers/`` (one LIST; a GET per new or changed
        registration); True if the set of members, or of live members, changed."""
        before, members = set(self.live()), set(self.brokers)
        infos = await self.store.list_info(BROKERS_PREFIX)
        now = self.clock.now_ms()
        if now - self._listed_at > self.session_timeout_ms // 2:
            # We could not list for a while (the store was away): we saw no beats, which
            # says nothing of the others. Their silence is timed from now.
            self._seen = {n: (etag, now) for n, (etag, _) in self._seen.items()}
        self._listed_at = now
        found: dict[int, BrokerRegistration] = {self.me.node_id: self.me}
        beats: dict[int, str] = {}
        for info in infos:
            name = info.key[len(BROKERS_PREFIX):]
            stem, _, kind = name.partition(".")
            if not stem.isdigit() or int(stem) == self.me.node_id:
                continue
            node = int(stem)
            if kind == "beat":
                beats[node] = info.etag
                continue
            if kind != "json":
                continue
            known = self.brokers.get(node)
            if known is not None and self._reg_etags.get(node) == info.etag:
                found[node] = known
                continue
            try:
                found[node] = BrokerRegistration.decode(await self.store.get(info.key))
            except NotFound:
                continue              # deregistered meanwhile
            except (ValueError, KeyError) as exc:
                log.warning("membership: ignoring a bad registration %s: %s", info.key, exc)
                continue
            self._reg_etags[node] = info.etag
            self._seen[node] = ("", now)           # (re)registered: live from now
        for node in found:
            etag = beats.get(node)
            seen = self._seen.get(node)
            if etag is not None and (seen is None or seen[0] != etag):
                heard = self._heard.get(node)
                # A notice of this very beat came before this LIST: the beat is as old as
                # the notice (never older: it was written before the notice was sent).
                since = heard[1] if heard is not None and heard[0] == etag and heard[1] <= now else now
                if seen is not None and since < seen[1]:
                    since = now    # a notice older than what we saw last: not of this beat
                self._seen[node] = (etag, since)
        self._seen = {n: v for n, v in self._seen.items() if n in found}
        self._heard = {n: v for n, v in self._heard.items() if n in found}
        self._reg_etags = {n: v for n, v in self._reg_etags.items() if n in found}
        self.brokers = found
        self._listed_beats = beats
        return set(self.live()) != before or set(found) != members

    async def fetch_loads(self) -> None:
        """The controller's read of the live brokers' beats (a GET per changed one)."""
        for node in self.live():
            if node == self.me.node_id:
                continue
            etag = self._listed_beats.get(node)
            if etag is None or self._beat_etags.get(node) == etag:
                continue
            try:
                d = json.loads(await self.store.get(beat_key(node)))
                self.loads[node] = {str(k): float(v) for k, v in d.get("load", {}).items()}
                self._beat_etags[node] = etag
            except NotFound:
                continue
            except (ValueError, KeyError, AttributeError) as exc:
                log.warning("membership: ignoring a bad beat of node %d: %s", node, exc)
        self.loads = {n: v for n, v in self.loads.items() if n in self.brokers}
