"""Broker and topic configuration, by Apache Kafka's names and defaults.

A config FILE is Java-properties style (``key=value`` lines, ``#`` comments),
as Kafka's ``server.properties``. ``--override key=value`` wins over the file.
Unknown keys are rejected so that a typo does not silently do nothing.
Renamed keys keep working for a while as deprecated aliases
(``DEPRECATED_BROKER_CONFIGS``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger(__name__)


def _bool(v: str | bool) -> bool:
    if isinstance(v, bool):
        return v
    if v.strip().lower() in ("true", "1", "yes"):
        return True
    if v.strip().lower() in ("false", "0", "no"):
        return False
    raise ValueError(f"not a boolean: {v!r}")


def _wal_type(v: str) -> str:
    if v not in ("file", "s3"):
        raise ValueError(f"wal.type must be file or s3, not {v!r}")
    return v


# name -> (parser, default)
BROKER_DEFAULTS: dict[str, tuple[Callable[[Any], Any], Any]] = {
    "node.id": (int, 1),
    # KRaft's broker liveness settings: the cluster heartbeat (metadata refresh,
    # membership, controller lease renewal) and the controller lease's length
    "broker.heartbeat.interval.ms": (int, 2000),
    "broker.session.timeout.ms": (int, 9000),
    # SIGTERM of a cluster member hands its partitions and groups to the others
    # first (docs/cluster.md section 6), as Kafka's controlled shutdown moves leadership
    "controlled.shutdown.enable": (_bool, True),
    # AutoMQ's name: the controller evens out partitions per broker (docs/cluster.md section 8)
    "autobalancer.controller.enable": (_bool, True),
    "cluster.id": (str, ""),
    "advertised.listeners": (str, ""),
    "auto.create.topics.enable": (_bool, True),
    "num.partitions": (int, 1),
    "default.replication.factor": (int, 1),
    "delete.topic.enable": (_bool, True),
    "message.max.bytes": (int, 1048588),
    "socket.request.max.bytes": (int, 104857600),
    "log.retention.ms": (int, 604800000),
    "log.retention.bytes": (int, -1),
    "log.message.timestamp.type": (str, "CreateTime"),
    "compression.type": (str, "producer"),
    "replica.fetch.max.bytes": (int, 1048576),
    "group.initial.rebalance.delay.ms": (int, 3000),
    "group.min.session.timeout.ms": (int, 6000),
    "group.max.session.timeout.ms": (int, 1800000),
    "group.max.size": (int, 2147483647),
    "offset.metadata.max.bytes": (int, 4096),
    "offsets.retention.minutes": (int, 10080),
    "offsets.retention.check.interval.ms": (int, 600000),
    # the group coordinator's partitions (Kafka's __consumer_offsets): a group's
    # state is snapshotted, owned and fenced with its partition
    "offsets.topic.num.partitions": (int, 50),
    "transactional.id.expiration.ms": (int, 604800000),
    "producer.id.expiration.ms": (int, 86400000),
    "max.incremental.fetch.session.cache.slots": (int, 1000),
    # KIP-956's tiered-storage fetch quota: bytes/s of Fetch served from the object store
    "remote.log.manager.fetch.max.bytes.per.second": (int, 9223372036854775807),
    # Sluice's own settings (no Kafka equivalent)
    # offsets.retention.minutes in milliseconds when >= 0 (tests; Kafka has only minutes)
    "offsets.retention.ms": (int, -1),
    "wal.segment.bytes": (int, 64 << 20),
    # where the WAL lives: "file" (data dir; a dead broker's partitions wait for it) or
    # "s3" (the bucket: one PUT per group commit; survivors take over; docs/failover.md)
    "wal.type": (_wal_type, "file"),
    "wal.s3.interval.ms": (int, 0),         # group-commit window (0: as soon as the last PUT returned)
    "wal.s3.batch.bytes": (int, 8 << 20),   # a commit starts early once this much is pending
    "wal.max.bytes": (int, 1 << 30),
    "cache.tail.bytes": (int, 256 << 20),
    "cache.block.bytes": (int, 256 << 20),
    "s3.upload.interval.ms": (int, 250),
    "s3.upload.bytes": (int, 8 << 20),
    "s3.manifest.interval.ms": (int, 2000),
    "cache.block.size": (int, 4 << 20),
    "cache.readahead.blocks": (int, 2),
    "cache.readahead.bytes": (int, 8 << 20),
    "log.retention.check.interval.ms": (int, 300000),
    # segment merging (small uploaded segments into per-partition objects)
    "s3.merge.interval.ms": (int, 10000),
    "s3.merge.target.bytes": (int, 64 << 20),
    "s3.merge.max.segments": (int, 32),
    "s3.merge.max.bytes.per.run": (int, 64 << 20),
    # bytes/s merge reads plus writes (0: unpaced); like Kafka's
    # log.cleaner.io.max.bytes.per.second, it keeps background merging from
    # starving the WAL's writes on a shared disk
    "s3.merge.io.max.bytes.per.second": (int, 20 << 20),
    "s3.gc.interval.ms": (int, 60000),
    "s3.gc.grace.ms": (int, 60000),
    "s3.shutdown.timeout.ms": (int, 30000),
    # catch-up (object-store) Fetch bytes are paced while produce requests take longer (0: never)
    "remote.fetch.produce.latency.target.ms": (int, 10),
}

# Deprecated broker config names -> the name that replaced them. The old name
# still works: its value goes to the new name (a warning is logged once per
# name); when both are given, the new name wins.
DEPRECATED_BROKER_CONFIGS: dict[str, str] = {
    "s3.compaction.interval.ms": "s3.merge.interval.ms",
    "s3.compaction.target.bytes": "s3.merge.target.bytes",
    "s3.compaction.max.segments": "s3.merge.max.segments",
    "s3.compaction.max.bytes.per.run": "s3.merge.max.bytes.per.run",
    "s3.compaction.io.max.bytes.per.second": "s3.merge.io.max.bytes.per.second",
}
_warned_deprecated: set[str] = set()

# Topic-level configs users set with CreateTopics / IncrementalAlterConfigs,
# with the broker-level key their default comes from.
TOPIC_CONFIGS: dict[str, tuple[Callable[[Any], Any], str | None, Any]] = {
    "cleanup.policy": (str, None, "delete"),
    "compression.type": (str, "compression.type", None),
    "retention.ms": (int, "log.retention.ms", None),
    "retention.bytes": (int, "log.retention.bytes", None),
    "message.timestamp.type": (str, "log.message.timestamp.type", None),
    "max.message.bytes": (int, "message.max.bytes", None),
    "segment.bytes": (int, None, 1073741824),
    "segment.ms": (int, None, 604800000),
    "min.insync.replicas": (int, None, 1),
    "unclean.leader.election.enable": (_bool, None, False),
    "message.timestamp.before.max.ms": (int, None, 9223372036854775807),
    "message.timestamp.after.max.ms": (int, None, 3600000),
    "delete.retention.ms": (int, None, 86400000),
    "file.delete.delay.ms": (int, None, 60000),
    "flush.messages": (int, None, 9223372036854775807),
    "flush.ms": (int, None, 9223372036854775807),
    "index.interval.bytes": (int, None, 4096),
    "max.compaction.lag.ms": (int, None, 9223372036854775807),
    "min.compaction.lag.ms": (int, None, 0),
    "min.cleanable.dirty.ratio": (float, None, 0.5),
    "preallocate": (_bool, None, False),
    "segment.index.bytes": (int, None, 10485760),
    "segment.jitter.ms": (int, None, 0),
}

TIMESTAMP_TYPES = ("CreateTime", "LogAppendTime")
# Kafka's log compaction (keep the last record per key) is not built; a topic
# asking for it is refused (INVALID_CONFIG) rather than silently kept forever.
COMPACT_REFUSED = ("cleanup.policy=compact is not supported yet: Sluice has no log compaction; "
                   "use delete")


def parse_properties(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        sep = min((i for i in (line.find("="), line.find(":")) if i >= 0), default=-1)
        if sep < 0:
            raise ValueError(f"config line without '=': {raw!r}")
        out[line[:sep].strip()] = line[sep + 1:].strip()
    return out


@dataclass
class BrokerConfig:
    values: dict[str, Any] = field(default_factory=lambda: {k: d for k, (_, d) in BROKER_DEFAULTS.items()})

    @classmethod
    def load(cls, *, file_text: str | None = None, overrides: list[str] | None = None) -> "BrokerConfig":
        cfg = cls()
        raw: dict[str, str] = {}
        if file_text:
            raw.update(parse_properties(file_text))
        for item in overrides or []:
            if "=" not in item:
                raise ValueError(f"--override needs key=value, got {item!r}")
            k, v = item.split("=", 1)
            raw[k.strip()] = v.strip()
        for k, v in raw.items():
            new = DEPRECATED_BROKER_CONFIGS.get(k)
            if new is not None and new in raw:
                _warn_deprecated(k, new, f"ignored: {new} is given too")
                continue
            cfg.set(k, v)
        return cfg

    def set(self, key: str, value: Any) -> None:
        new = DEPRECATED_BROKER_CONFIGS.get(key)
        if new is not None:
            _warn_deprecated(key, new, f"its value applies to {new}")
            key = new
        if key not in BROKER_DEFAULTS:
            raise ValueError(f"unknown broker config {key!r}")
        parser = BROKER_DEFAULTS[key][0]
        self.values[key] = parser(value)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def topic_default(self, name: str) -> Any:
        _, broker_key, default = TOPIC_CONFIGS[name]
        return self.values[broker_key] if broker_key else default


def _warn_deprecated(old: str, new: str, what: str) -> None:
    if old not in _warned_deprecated:
        _warned_deprecated.add(old)
        log.warning("config %s is deprecated, use %s (%s)", old, new, what)


def validate_topic_config(name: str, value: str | None) -> Any:
    """Parse a topic config value; raise ValueError for unknown or invalid ones."""
    if name not in TOPIC_CONFIGS:
        raise ValueError(f"unknown topic config {name!r}")
    if value is None:
        raise ValueError(f"{name} needs a value")
    parsed = TOPIC_CONFIGS[name][0](value)
    if name == "message.timestamp.type" and parsed not in TIMESTAMP_TYPES:
        raise ValueError(f"message.timestamp.type must be one of {TIMESTAMP_TYPES}")
    if name == "cleanup.policy":
        policies = set(parsed.split(","))
        if not policies <= {"delete", "compact"}:
            raise ValueError("cleanup.policy must be delete (compact is not supported yet)")
        if "compact" in policies:
            raise ValueError(COMPACT_REFUSED)
    return parsed
