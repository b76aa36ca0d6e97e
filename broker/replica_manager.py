"""ReplicaManager: the broker's partitions over one WAL and one tail cache.

It is the single storage-facing interface the API handlers call (create and
delete topics, find a partition, append, read). It implements ``BatchStore``
for its partitions: a batch is written to the WAL and kept in the tail cache;
reads come from the tail cache, else from the WAL file.

WAL entry kinds (key = topic id (16 bytes) + partition (int32)):
  1 BATCH      data = one record batch, offsets already assigned
  2 LOG_START  data = int64 new log start offset (DeleteRecords)
Kind 3 GROUP (key = group id, UTF-8) belongs to the group coordinator: offset
commits, offset deletes, group tombstones and group metadata; the encoding is
in ``group_coordinator.py``. Recovery hands those entries to ``on_group_entry``.
"""
from __future__ import annotations

import asyncio
import logging
import os
import struct
import uuid

from cache import TailCache
from wal import WriteAheadLog

from .config import BrokerConfig, TOPIC_CONFIGS, validate_topic_config
from .partition import Partition
from .records import read_header
from .topics import MetadataStore, Topic

log = logging.getLogger(__name__)

KIND_BATCH = 1
KIND_LOG_START = 2
KIND_GROUP = 3
_I64 = struct.Struct(">q")


class ReplicaManager:
    def __init__(self, config: BrokerConfig, data_dir: str, *, metrics=None) -> None:
        self.config = config
        self.data_dir = data_dir
        self.metrics = metrics
        os.makedirs(data_dir, exist_ok=True)
        self.metadata = MetadataStore(data_dir)
        self.wal = WriteAheadLog(os.path.join(data_dir, "wal"),
                                 segment_bytes=config["wal.segment.bytes"],
                                 on_fsync=metrics.observe_fsync if metrics else None)
        self.tail_cache = TailCache(config["cache.tail.bytes"])
        self.partitions: dict[tuple[str, int], Partition] = {}
        for topic in self.metadata.topics.values():
            self._open_partitions(topic, 0)

    # ---------------------------------------------------------------- recovery
    def recover(self, on_group_entry=None) -> None:
        """Rebuild every partition from the WAL (offsets, log start, producer state);
        group-coordinator entries go to ``on_group_entry(key, data)``."""
        by_key = {p.key: p for p in self.partitions.values()}
        batches = 0
        for entry in self.wal.recover():
            if entry.kind == KIND_GROUP:
                if on_group_entry is not None:
                    on_group_entry(bytes(entry.key), bytes(entry.data))
                continue
            p = by_key.get(entry.key)
            if p is None:
                continue  # topic deleted since
            if entry.kind == KIND_BATCH:
                p.replay_batch(read_header(entry.data), entry.location)
                batches += 1
            elif entry.kind == KIND_LOG_START:
                p.set_log_start_offset(_I64.unpack(entry.data)[0])
        log.info("recovered %d batches across %d partitions from the WAL", batches, len(by_key))

    # ------------------------------------------------------------- BatchStore
    def write_batch(self, partition: Partition, base_offset: int, data):
        loc, fut = self.wal.append(KIND_BATCH, partition.key, data)
        self.tail_cache.put(partition.key, base_offset, data)
        return loc, fut

    def read_batch(self, partition: Partition, base_offset: int, location) -> bytes:
        data = self.tail_cache.get(partition.key, base_offset)
        if data is None:
            data = self.wal.read(location)
        return data

    # ------------------------------------------------------------------ topics
    def _open_partitions(self, topic: Topic, start: int) -> None:
        for i in range(start, topic.partitions):
            self.partitions[(topic.name, i)] = Partition(topic.topic_id.bytes, topic.name, i, self)

    def create_topic(self, name: str, partitions: int, configs: dict[str, str] | None = None) -> Topic:
        configs = dict(configs or {})
        for k, v in configs.items():
            validate_topic_config(k, v)
        topic = Topic(name, uuid.uuid4(), partitions, configs)
        self.metadata.topics[name] = topic
        self.metadata.save()
        self._open_partitions(topic, 0)
        log.info("created topic %s with %d partitions", name, partitions)
        return topic

    def delete_topic(self, name: str) -> Topic:
        topic = self.metadata.topics.pop(name)
        self.metadata.save()
        for i in range(topic.partitions):
            p = self.partitions.pop((name, i))
            self.tail_cache.discard_partition(p.key)
            p.wake_waiters()
        log.info("deleted topic %s", name)
        return topic

    def add_partitions(self, name: str, count: int) -> None:
        topic = self.metadata.topics[name]
        old = topic.partitions
        topic.partitions = count
        self.metadata.save()
        self._open_partitions(topic, old)

    def topic_config(self, topic: Topic, name: str):
        if name in topic.configs:
            return TOPIC_CONFIGS[name][0](topic.configs[name])
        return self.config.topic_default(name)

    def get(self, topic: str, index: int) -> Partition | None:
        return self.partitions.get((topic, index))

    def topic_by_id(self, topic_id: uuid.UUID) -> Topic | None:
        return self.metadata.by_id(topic_id)

    # ---------------------------------------------------------- log start
    def delete_records(self, partition: Partition, offset: int) -> asyncio.Future:
        """Advance the log start offset durably (DeleteRecords)."""
        _, fut = self.wal.append(KIND_LOG_START, partition.key, _I64.pack(offset))
        partition.set_log_start_offset(offset)
        return fut

    def append_group_entry(self, group_id: str, data: bytes) -> asyncio.Future:
        """Queue a group-coordinator entry (kind 3); the future resolves after its fsync."""
        _, fut = self.wal.append(KIND_GROUP, group_id.encode(), data)
        return fut

    async def close(self) -> None:
        await self.wal.close()
