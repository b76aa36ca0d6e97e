"""Broker: what every request handler can reach (config, cluster, partitions, sessions, metrics)."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid

from objectstore import ObjectStore, ObjectStoreError, open_object_store
from wal.dir_objects import DirWalObjects
from wal.object_log import ObjectWriteAheadLog

from .clock import Clock, SystemClock
from .cluster import Cluster, OwnershipDelta, TopicExists, topic_name_error
from .cluster.ownership import Sources
from .config import BrokerConfig
from .coordinator.classic_members import ClassicMembers
from .coordinator.consumer_group import ConsumerGroupCoordinator
from .coordinator.group import GroupCoordinator
from .coordinator.log import WalGroupLog
from .coordinator.shards import ACTIVE, LOADING, CoordinatorShards
from .coordinator.share_group import ShareGroupCoordinator
from .coordinator.snapshot import GroupSnapshots
from .errors import ErrorCode
from .failpoints import hold_point
from .fetch_session import FetchSessionCache
from .handoff import HandOffs
from .log.partition import Partition
from .log.replica_manager import KIND_GROUP_EPOCH, ReplicaManager
from .log.takeover import ListedWalObjects, StoreWalObjects
from .metrics import BrokerMetrics
from .share import state as share_state
from .share.manager import ShareKey, SharePartitionManager
from .share.resets import ShareResets
from .share.sessions import ShareSessionCache
from .share.state import ShareSnapshot, ShareUpdate
from .tiering.metered_store import MeteredStore
from .tiering.tasks import Tiering

log = logging.getLogger(__name__)


def _in_shard(shards: CoordinatorShards, shard: int, group_id: str) -> bool:
    return shards.shard_of(group_id) == shard


class Broker:
    def __init__(self, config: BrokerConfig, data_dir: str, *, object_store: str | None = None,
                 advertised_host: str, advertised_port: int, metrics: BrokerMetrics | None = None,
                 clock: Clock | None = None, store: ObjectStore | None = None) -> None:
        """``object_store`` is a URL to open; ``store`` an ObjectStore to use
        instead (brokers of the in-process cluster rig share one)."""
        self.config = config
        self.node_id: int = config["node.id"]
        self.data_dir = data_dir
        self.advertised_host = advertised_host
        self.advertised_port = advertised_port
        self.clock = clock or SystemClock()
        self.metrics = metrics or BrokerMetrics()
        if store is None:
            if object_store is None:
                raise TypeError("Broker needs object_store (a URL) or store")
            store = open_object_store(object_store)
        # where the partitions live, as DescribeLogDirs names it (apis/log_dirs.py)
        self.object_store_url: str = object_store or f"{type(store).__name__}:"
        store = MeteredStore(store, self.metrics)
        self.cluster = Cluster(config, store, host=advertised_host, port=advertised_port, clock=self.clock)
        self.replicas = ReplicaManager(config, data_dir, store, metrics=self.metrics,
                                       metadata=self.cluster.metadata)
        self.replicas.on_recovered = self._recovered
        self.replicas.dead_wals.locate = self._wal_of
        self._shared_wals: dict[str, DirWalObjects] = {}
        if isinstance(self.replicas.wal, ObjectWriteAheadLog):
            self.replicas.wal.on_fenced = self._wal_fenced
            self.cluster.on_silence = self.replicas.wal.check_fenced
        group_log = WalGroupLog(self._append_group_entry)
        self.groups = GroupCoordinator(config, group_log, self.clock)
        # a shard's snapshot is written at the epoch its coordinator partition is owned at
        self.group_snapshots = GroupSnapshots(store, self.groups,
                                              partitions=config["offsets.topic.num.partitions"],
                                              epoch_of=self._coordinator_epoch)
        group_log.on_append = self.group_snapshots.note  # each entry dirties its partition's snapshot
        self.coordinator_shards = CoordinatorShards(config["offsets.topic.num.partitions"])
        self.groups.shard_error = self.coordinator_shards.error
        self.consumer_groups = ConsumerGroupCoordinator(
            config, self.clock, self.groups, lambda: self.cluster.metadata.topics,
            lambda group_id: self.cluster.metadata.image.group_configs.get(group_id, {}))
        self.groups.consumer = self.consumer_groups
        self.consumer_groups.classic_protocol = ClassicMembers(self.consumer_groups)   # online migration
        # share groups (KIP-932): membership at the coordinator, records at the partition owner
        self.share_groups = ShareGroupCoordinator(
            config, self.clock, self.groups, self.consumer_groups, lambda: self.cluster.metadata.topics,
            lambda group_id: self.cluster.metadata.image.group_configs.get(group_id, {}))
        self.share_partitions = SharePartitionManager(
            config, self.clock, lambda group_id: self.cluster.metadata.image.group_configs.get(group_id, {}),
            persist=self._persist_share)
        self.replicas.on_share_state = self._share_state_stored
        self.replicas.share_snapshots = self._share_snapshots
        self.share_sessions = ShareSessionCache(config["group.share.max.share.sessions"])
        # AlterShareGroupOffsets / DeleteShareGroupOffsets for partitions any broker owns
        self.share_resets = ShareResets(self)
        self.replicas.on_serving = self.share_resets.serving
        self.share_groups.on_member_gone = self._share_member_gone
        self.consumer_groups.share = self.share_groups
        self.handoffs = HandOffs(self)
        self._started = False
        self._early: list[OwnershipDelta] = []          # hand-offs noted before start finished
        self._shard_loads: dict[int, asyncio.Task] = {}
        self._rates_at: tuple[float, dict[bytes, int]] = (self.clock.monotonic(), {})
        self.cluster.load_source = self._partition_rates
        self.tiering = Tiering(self.replicas, self.group_snapshots, self.metrics)
        self.metrics.wal_bytes.set_function(lambda: self.replicas.wal.size_bytes)
        self.fetch_sessions = FetchSessionCache(config["max.incremental.fetch.session.cache.slots"])
        self._load_hold: asyncio.Task | None = None
        self._shard_recovering: dict[int, Sources] = {}   # shards taken over at start
        self._recovered_queue: list[tuple] = []      # takeovers replayed, markers to clear
        self._recovered_task: asyncio.Task | None = None
        self._rejoin_task: asyncio.Task | None = None

    def _persist_share(self, key: ShareKey, entry: ShareUpdate | ShareSnapshot) -> asyncio.Future | None:
        """A share-partition's state change goes to the WAL (kind 5) at its owner."""
        t = self.replicas.topic_by_id(key[1])
        p = self.replicas.get(t.name, key[2]) if t is not None else None
        if p is None:
            return None        # no longer ours: the new owner serves what is durable
        return self.replicas.append_share_entry(p, key[0], share_state.encode(entry))

    def _share_state_stored(self, p: Partition, group_id: str, data: bytes) -> None:
        self.share_partitions.load((group_id, uuid.UUID(bytes=p.topic_id), p.index), data)

    def _share_snapshots(self, p: Partition) -> dict[str, bytes]:
        return self.share_partitions.snapshots(uuid.UUID(bytes=p.topic_id), p.index)

    def connection_closed(self, connection_id: int) -> None:
        """Kafka's ConnectionDisconnectListener: the share sessions last used on
        the connection end, and their members' acquired records go back at once."""
        for session in self.share_sessions.of_connection(connection_id):
            self.share_sessions.close(session)
            keys = [(session.group_id, tid, idx) for tid, idx in session.partitions]
            for fut in self.share_partitions.release_member(session.group_id, session.member_id, keys):
                fut.add_done_callback(lambda f: f.cancelled() or f.exception())

    def _share_member_gone(self, group_id: str, member_id: str) -> None:
        """A share group member left or expired: its share session and acquired records go."""
        session = self.share_sessions.get(group_id, member_id)
        if session is not None:
            self.share_sessions.close(session)
        for fut in self.share_partitions.release_member(group_id, member_id):
            fut.add_done_callback(lambda f: f.cancelled() or f.exception())

    def _append_group_entry(self, group_id: str, data: bytes) -> asyncio.Future:
        """A group entry goes to the WAL stamped with its coordinator partition's
        epoch, so a takeover can tell what a snapshot covers (docs/failover.md)."""
        shard = self.coordinator_shards.shard_of(group_id)
        return self.replicas.append_group_entry(group_id, data, self._coordinator_epoch(shard))

    def _coordinator_epoch(self, shard: int) -> int:
        """The epoch this broker owns coordinator partition ``shard`` at; 0 if
        another broker owns it, so a snapshot this broker writes for it loses
        to the owner's (until group APIs answer NOT_COORDINATOR there)."""
        owner, epoch = self.cluster.coordinator(shard)
        return epoch if owner is not None and owner.node_id == self.node_id else 0

    async def start(self) -> None:
        """Join the cluster, load state from the object store and the WAL, then start background work."""
        await self.cluster.start(self._apply_delta, legacy_dir=self.data_dir)
        await self.group_snapshots.load()  # the bucket's group snapshots, into the coordinator
        await self.replicas.start(self.group_snapshots)  # then the WAL's group entries on top
        # groups of coordinator partitions another broker owns are its business
        shards = self.coordinator_shards
        self.groups.unload(lambda gid: shards.shard_of(gid) not in shards.state)
        for shard in range(shards.partitions):
            if shard not in shards.state:
                self.group_snapshots.forget(shard)
        for shard, rec in list(self._shard_recovering.items()):   # taken over: the dead one's tail
            await self._take_over_groups(shard, self._coordinator_epoch(shard), rec)
        self._shard_recovering.clear()
        self._started = True
        if self.cluster.metadata.image.share_resets:
            self.share_resets.kick()       # entries left pending for partitions we now serve
        for delta in self._early:
            self.handoffs.note(delta.handoffs)
        self._early.clear()
        released = hold_point("groups.loading")
        if released is None:
            self.groups.finish_loading()
        else:  # tests: the coordinator stays loading while the broker serves
            self._load_hold = asyncio.get_running_loop().create_task(self._finish_loading(released))
        self.tiering.start()

    # ------------------------------------------------------------- ownership
    def _apply_delta(self, delta: OwnershipDelta) -> None:
        """Everything a change of ownership means for this broker: partitions
        (the ReplicaManager), coordinator partitions, and moves to hand off."""
        # share-partition state in memory is the old ownership's; a gain loads the stored one
        moved = {(c.topic.topic_id, c.index) for c in delta.lost}
        moved |= {(c.topic.topic_id, c.index) for c in delta.gained}
        moved |= {(t.topic_id, i) for t in delta.deleted_topics for i in range(t.partitions)}
        if moved:
            self.share_partitions.forget(lambda tid, index: (tid, index) in moved)
        self.replicas.apply_delta(delta)
        for loss in delta.lost:
            self.handoffs.forget(loss.topic.topic_id, loss.index)
        offsets = self.cluster.metadata.image.offsets
        for shard in delta.coordinators_lost:
            if offsets is not None:
                self.handoffs.forget(offsets.topic_id, shard)
        shards = self.coordinator_shards
        for shard in delta.coordinators_lost:
            shards.state.pop(shard, None)
            task = self._shard_loads.pop(shard, None)
            if task is not None:
                task.cancel()
            n = self.groups.unload(functools.partial(_in_shard, shards, shard))
            self.group_snapshots.forget(shard)
            log.info("coordinator partition %d: no longer ours (%d groups)", shard, n)
        for shard, epoch in delta.coordinators_gained:
            rec = delta.recovering.get((offsets.topic_id.bytes, shard)) if offsets is not None else None
            if not self._started:
                shards.state[shard] = ACTIVE        # start loads every snapshot, then the WAL
                if rec is not None:
                    self._shard_recovering[shard] = rec
            elif shards.state.get(shard) != ACTIVE:
                shards.state[shard] = LOADING
                self._shard_loads[shard] = asyncio.get_running_loop().create_task(
                    self._load_shard(shard, epoch, rec))
        if delta.handoffs:
            if self._started:
                self.handoffs.note(delta.handoffs)
            else:
                self._early.append(delta)

    async def _load_shard(self, shard: int, epoch: int, rec: Sources | None = None) -> None:
        """A coordinator partition gained after start: read its groups from
        the snapshot its previous owner wrote before handing it off (taken
        over from a dead broker: then its WAL's entries on top)."""
        shards = self.coordinator_shards
        delay = 0.1
        while shards.state.get(shard) == LOADING:
            try:
                self.groups.unload(functools.partial(_in_shard, shards, shard))   # anything stale
                n = await self.group_snapshots.load_shard(shard)
                if rec is not None:
                    await self._take_over_groups(shard, epoch, rec)
            except ObjectStoreError as exc:
                log.warning("coordinator partition %d: loading its groups failed (%s); retrying", shard, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.groups.on_loaded(functools.partial(_in_shard, shards, shard))  # members' sessions start
            shards.state[shard] = ACTIVE
            log.info("coordinator partition %d: ours at epoch %d (%d groups)", shard, epoch, n)
        self._shard_loads.pop(shard, None)

    async def _take_over_groups(self, shard: int, epoch: int, sources: Sources) -> None:
        """Replay dead coordinators' WAL entries for coordinator partition
        ``shard`` that its snapshot does not cover (stamped with an epoch at
        or above the snapshot's, and at most the one each owned it at),
        oldest owner first, into the groups and our own WAL, durably
        (docs/failover.md §3 step 6)."""
        since = self.group_snapshots.snapshot_epochs.get(shard, 0)
        n = 0
        async with contextlib.AsyncExitStack() as stack:
            fut = None
            for dead, dead_epoch, generation in sources:
                entries = await stack.enter_async_context(self.replicas.dead_wals.reading(dead, generation))
                for e in entries:
                    if e.kind != KIND_GROUP_EPOCH:
                        continue
                    group_id = bytes(e.key).decode()
                    if self.coordinator_shards.shard_of(group_id) != shard:
                        continue
                    stamped = int.from_bytes(e.data[:4], "big")
                    if not since <= stamped <= dead_epoch:
                        continue
                    payload = bytes(e.data[4:])
                    self.group_snapshots.replay(bytes(e.key), payload)
                    fut = self.replicas.append_group_entry(group_id, payload, epoch)
                    n += 1
            if fut is not None:
                await fut
        log.info("coordinator partition %d: taken over from node %s, %d group entries replayed",
                 shard, "/".join(str(src[0]) for src in sources), n)
        offsets = self.cluster.metadata.image.offsets
        if offsets is not None:
            self._recovered(offsets.topic_id, shard, epoch, sources)

    def _wal_of(self, node: int) -> ListedWalObjects | None:
        """Where broker ``node``'s WAL is, as it registered it: the bucket or a
        shared directory (None: where ours is)."""
        reg = self.cluster.membership.brokers.get(node)
        if reg is None or reg.wal == "file":
            return None
        if reg.wal == "s3":
            return StoreWalObjects(self.replicas.store)
        if not reg.wal_dir or reg.wal_dir == self.config["wal.shared.dir"]:
            return None
        if reg.wal_dir not in self._shared_wals:
            self._shared_wals[reg.wal_dir] = DirWalObjects(reg.wal_dir)
        return self._shared_wals[reg.wal_dir]

    def _recovered(self, topic_id, index: int, epoch: int, sources: Sources) -> None:
        """A takeover replayed: clear its marker (batched), then, once nothing
        waits on a dead broker's WAL, delete it below the fence."""
        self._recovered_queue.append((topic_id, index, epoch, sources))
        if self._recovered_task is None or self._recovered_task.done():
            self._recovered_task = asyncio.get_running_loop().create_task(self._clear_recovered())

    async def _clear_recovered(self) -> None:
        delay = 0.1
        while self._recovered_queue:
            todo = list(self._recovered_queue)
            try:
                await self.cluster.recovered([(t, i, e) for t, i, e, _ in todo])
                del self._recovered_queue[:len(todo)]
                for dead, generation in {(d, g) for _, _, _, sources in todo for d, _, g in sources}:
                    if not self.cluster.recovering_from(dead):
                        n = await self.replicas.dead_wals.delete_below_fence(dead, generation)
                        if n:
                            log.info("deleted %d WAL objects of node %d: every takeover from it is done",
                                     n, dead)
            except ObjectStoreError as exc:
                log.warning("takeover: could not record recovered partitions yet: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _wal_fenced(self, seq: int) -> None:
        if self._rejoin_task is None or self._rejoin_task.done():
            self._rejoin_task = asyncio.get_running_loop().create_task(self._rejoin(), name="rejoin")

    async def _rejoin(self) -> None:
        """Our WAL was fenced: we were declared dead and everything we served
        was taken over. Drop it all and join again as a new incarnation
        (docs/failover.md §4)."""
        log.error("this broker was declared dead and taken over; dropping its partitions and "
                  "rejoining the cluster as a new incarnation")
        self.replicas.drop_all()
        self.handoffs.pending.clear()
        shards = self.coordinator_shards
        for shard in list(shards.state):
            shards.state.pop(shard, None)
            task = self._shard_loads.pop(shard, None)
            if task is not None:
                task.cancel()
            self.groups.unload(functools.partial(_in_shard, shards, shard))
            self.group_snapshots.forget(shard)
        wal = self.replicas.wal
        assert isinstance(wal, ObjectWriteAheadLog)
        if wal.fenced_at is not None:
            self.replicas.dead_wals.own_fence = (self.node_id, wal.fenced_at)
        delay = 0.1
        while True:
            try:
                await wal.rejoin()
                await self.cluster.rejoin()
                break
            except ObjectStoreError as exc:
                log.warning("rejoin: %s; retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        log.info("rejoined the cluster as incarnation %s", self.cluster.incarnation)

    def _partition_rates(self) -> dict[str, float]:
        """Bytes/s produced per partition since the last call (the registration's
        ``load``, which the balancer reads)."""
        now = self.clock.monotonic()
        then, before = self._rates_at
        elapsed = max(now - then, 1e-3)
        counts = {p.key: p.bytes_in for p in self.replicas.partitions.values()}
        self._rates_at = (now, counts)
        out = {}
        for p in self.replicas.partitions.values():
            rate = (p.bytes_in - before.get(p.key, p.bytes_in)) / elapsed
            if rate > 0:
                out[f"{p.topic_id.hex()}:{p.index}"] = round(rate, 1)
        return out

    def advertise_port(self, port: int) -> None:
        """The port the listener was bound to (``--listen HOST:0``), before ``start``
        registers this broker in the cluster."""
        self.advertised_port = port
        self.cluster.set_endpoint(self.advertised_host, port)

    async def _finish_loading(self, released: asyncio.Event) -> None:
        await released.wait()
        self.groups.finish_loading()

    async def auto_create(self, name: str) -> ErrorCode:
        """Create a topic on first reference, as auto.create.topics.enable does."""
        if topic_name_error(name):  # Kafka checks the name even when not creating
            return ErrorCode.INVALID_TOPIC_EXCEPTION
        if not self.config["auto.create.topics.enable"]:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        try:
            await self.cluster.create_topic(name, self.config["num.partitions"])
        except TopicExists:  # created meanwhile (another request, another broker): read it
            try:
                await self.cluster.metadata.refresh()
            except ObjectStoreError:
                pass
        except ObjectStoreError as exc:
            log.warning("auto-creating topic %s failed: %s", name, exc)
            return ErrorCode.LEADER_NOT_AVAILABLE
        return ErrorCode.NONE

    async def halt(self) -> None:
        """Stop as a SIGKILL would, for in-process tests: no upload, no
        deregistration, no lease release; the WAL is closed as it stands."""
        if self._load_hold is not None:
            self._load_hold.cancel()
        await self.handoffs.stop()
        await self.share_resets.stop()
        for task in self._shard_loads.values():
            task.cancel()
        await self.cluster.halt()
        await self.tiering.halt()
        if isinstance(self.replicas.wal, ObjectWriteAheadLog):
            await self.replicas.wal.halt()     # nothing more reaches the bucket
        for pending in (self._recovered_task, self._rejoin_task):
            if pending is not None and not pending.done():
                pending.cancel()
        self.groups.shutdown()
        self.share_groups.shutdown()
        self.share_partitions.shutdown()
        await self.replicas.close()

    async def drain(self, timeout: float) -> bool:
        """Controlled shutdown (docs/cluster.md section 6): hand every partition
        and coordinator partition to the others, for up to ``timeout`` s; True
        if this broker owns nothing now. Skipped (False) when no other live
        broker could take them, and given up (False) when none is left."""
        c = self.cluster
        if not c.owns_anything():
            return True
        others = set(c.membership.live()) - set(c.metadata.image.draining) - {self.node_id}
        if not others:
            return False
        log.info("controlled shutdown: handing partitions to nodes %s", sorted(others))
        try:
            await c.set_draining(self.node_id, True)
            await c.tick()                       # as controller, place the moves now
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while not c.drained.is_set():
                # the others may stop too (one right after the other, or all at once)
                if not set(c.membership.live()) - set(c.metadata.image.draining) - {self.node_id}:
                    log.warning("controlled shutdown: no other live broker is left to take the partitions")
                    return False
                if loop.time() >= deadline:
                    raise asyncio.TimeoutError
                try:
                    await asyncio.wait_for(c.drained.wait(), min(0.1, deadline - loop.time()))
                except asyncio.TimeoutError:
                    pass
        except asyncio.TimeoutError:
            log.warning("controlled shutdown: not everything was handed off within %.0f s", timeout)
            return False
        except ObjectStoreError as exc:
            log.warning("controlled shutdown: %s", exc)
            return False
        log.info("controlled shutdown: everything handed off")
        return True

    async def close(self) -> None:
        """Clean shutdown: hand off (controlled.shutdown.enable), upload what
        is left (bounded), leave the cluster, close the WAL and the store."""
        if self._load_hold is not None:
            self._load_hold.cancel()
        timeout = self.config["s3.shutdown.timeout.ms"] / 1000
        if self.config["controlled.shutdown.enable"] and self._started:
            await self.drain(timeout)
        await self.handoffs.stop()
        await self.share_resets.stop()
        self.groups.shutdown()
        self.share_groups.shutdown()
        self.share_partitions.shutdown()
        uploaded = await self.tiering.stop(timeout)
        await self.cluster.stop(deregister=uploaded)
        await self.replicas.close()
