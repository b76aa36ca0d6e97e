"""Broker: what every request handler can reach (config, cluster, partitions, sessions, metrics)."""
from __future__ import annotations

import asyncio
import logging

from objectstore import ObjectStore, ObjectStoreError, open_object_store

from .clock import Clock, SystemClock
from .cluster import Cluster, TopicExists, topic_name_error
from .config import BrokerConfig
from .coordinator.group import GroupCoordinator
from .coordinator.log import WalGroupLog
from .coordinator.snapshot import GroupSnapshots
from .errors import ErrorCode
from .failpoints import hold_point
from .fetch_session import FetchSessionCache
from .log.replica_manager import ReplicaManager
from .metrics import BrokerMetrics
from .tiering.metered_store import MeteredStore
from .tiering.tasks import Tiering

log = logging.getLogger(__name__)


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
        store = MeteredStore(store, self.metrics)
        self.cluster = Cluster(config, store, host=advertised_host, port=advertised_port, clock=self.clock)
        self.replicas = ReplicaManager(config, data_dir, store, metrics=self.metrics,
                                       metadata=self.cluster.metadata)
        group_log = WalGroupLog(self.replicas.append_group_entry)
        self.groups = GroupCoordinator(config, group_log, self.clock)
        # a shard's snapshot is written at the epoch its coordinator partition is owned at
        self.group_snapshots = GroupSnapshots(store, self.groups,
                                              partitions=config["offsets.topic.num.partitions"],
                                              epoch_of=self._coordinator_epoch)
        group_log.on_append = self.group_snapshots.note  # each entry dirties its partition's snapshot
        self.tiering = Tiering(self.replicas, self.group_snapshots, self.metrics)
        self.metrics.wal_bytes.set_function(lambda: self.replicas.wal.size_bytes)
        self.fetch_sessions = FetchSessionCache(config["max.incremental.fetch.session.cache.slots"])
        self._load_hold: asyncio.Task | None = None

    def _coordinator_epoch(self, shard: int) -> int:
        """The epoch this broker owns coordinator partition ``shard`` at; 0 if
        another broker owns it, so a snapshot this broker writes for it loses
        to the owner's (until group APIs answer NOT_COORDINATOR there)."""
        owner, epoch = self.cluster.coordinator(shard)
        return epoch if owner is not None and owner.node_id == self.node_id else 0

    async def start(self) -> None:
        """Join the cluster, load state from the object store and the WAL, then start background work."""
        await self.cluster.start(self.replicas.apply_delta, legacy_dir=self.data_dir)
        await self.group_snapshots.load()  # the bucket's group snapshots, into the coordinator
        await self.replicas.start(self.group_snapshots)  # then the WAL's group entries on top
        released = hold_point("groups.loading")
        if released is None:
            self.groups.finish_loading()
        else:  # tests: the coordinator stays loading while the broker serves
            self._load_hold = asyncio.get_running_loop().create_task(self._finish_loading(released))
        self.tiering.start()

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
        await self.cluster.halt()
        await self.tiering.halt()
        self.groups.shutdown()
        await self.replicas.close()

    async def close(self) -> None:
        """Clean shutdown: upload everything (bounded), leave the cluster, close the WAL and the store."""
        if self._load_hold is not None:
            self._load_hold.cancel()
        self.groups.shutdown()
        uploaded = await self.tiering.stop(self.config["s3.shutdown.timeout.ms"] / 1000)
        await self.cluster.stop(deregister=uploaded)
        await self.replicas.close()
