"""Broker: what every request handler can reach (config, partitions, sessions, metrics)."""
from __future__ import annotations

import asyncio
import logging

from .config import BrokerConfig
from .errors import ErrorCode
from .failpoints import hold_point
from .fetch_session import FetchSessionCache
from .coordinator.group import GroupCoordinator
from objectstore import open_object_store

from .tiering.metered_store import MeteredStore
from .metrics import BrokerMetrics
from .log.replica_manager import ReplicaManager
from .tiering.tasks import Tiering
from .cluster.metadata import topic_name_error

log = logging.getLogger(__name__)


class Broker:
    def __init__(self, config: BrokerConfig, data_dir: str, *, object_store: str, advertised_host: str,
                 advertised_port: int, metrics: BrokerMetrics | None = None) -> None:
        self.config = config
        self.node_id: int = config["node.id"]
        self.advertised_host = advertised_host
        self.advertised_port = advertised_port
        self.metrics = metrics or BrokerMetrics()
        store = MeteredStore(open_object_store(object_store), self.metrics)
        self.replicas = ReplicaManager(config, data_dir, store, metrics=self.metrics)
        self.groups = GroupCoordinator(self)
        self.tiering = Tiering(self.replicas, self.groups, self.metrics)
        self.metrics.wal_bytes.set_function(lambda: self.replicas.wal.size_bytes)
        self.fetch_sessions = FetchSessionCache(config["max.incremental.fetch.session.cache.slots"])
        self._load_hold: asyncio.Task | None = None

    async def start(self) -> None:
        """Load state from the object store and the WAL, then start background work."""
        await self.replicas.start(self.groups)  # replays the group snapshot and the WAL's group entries
        released = hold_point("groups.loading")
        if released is None:
            self.groups.finish_loading()
        else:  # tests: the coordinator stays loading while the broker serves
            self._load_hold = asyncio.get_running_loop().create_task(self._finish_loading(released))
        self.tiering.start()

    async def _finish_loading(self, released: asyncio.Event) -> None:
        await released.wait()
        self.groups.finish_loading()

    def auto_create(self, name: str) -> ErrorCode:
        """Create a topic on first reference, as auto.create.topics.enable does."""
        if topic_name_error(name):  # Kafka checks the name even when not creating
            return ErrorCode.INVALID_TOPIC_EXCEPTION
        if not self.config["auto.create.topics.enable"]:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        self.replicas.create_topic(name, self.config["num.partitions"])
        return ErrorCode.NONE

    async def close(self) -> None:
        """Clean shutdown: upload everything (bounded), then close the WAL and the store."""
        if self._load_hold is not None:
            self._load_hold.cancel()
        self.groups.shutdown()
        await self.tiering.stop(self.config["s3.shutdown.timeout.ms"] / 1000)
        await self.replicas.close()
