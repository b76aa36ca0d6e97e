"""Broker and topic configuration, by Apache Kafka's names and defaults.

A config FILE is Java-properties style (``key=value`` lines, ``#`` comments),
as Kafka's ``server.properties``. ``--override key=value`` wins over the file.
Unknown keys are rejected so that a typo does not silently do nothing.
Renamed keys keep working for a while as deprecated aliases
(``DEPRECATED_BROKER_CONFIGS``).

Dynamic broker configs (``DYNAMIC_BROKER_CONFIGS``): the few of Kafka's
dynamic broker configs that Sluice honours at run time, set with
IncrementalAlterConfigs on a BROKER resource (``kafka-configs --entity-type
brokers``), for one broker or as the cluster-wide default (resource name
""). They live in the bucket's cluster metadata document; each broker lays
them over its static configs in Kafka's order (per broker, then cluster
default, then the file and ``--override``, then the default).

Group configs (``GROUP_CONFIGS``): Kafka 4.4's per-group configs, checked as
Kafka checks them and kept in the same document.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

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


def _migration_policy(v: str) -> str:
    """Kafka's ConsumerGroupMigrationPolicy: which online conversions of a live group
    are allowed (coordinator/classic_members.py); empty groups convert under any."""
    if v.strip().lower() not in ("bidirectional", "upgrade", "downgrade", "disabled"):
        raise ValueError(f"group.consumer.migration.policy must be one of bidirectional, upgrade, "
                         f"downgrade, disabled, not {v!r}")
    return v.strip().lower()


def _consumer_assignors(v: str) -> str:
    """Kafka's group.consumer.assignors: Sluice has its two built-in ones, by name."""
    names = [a.strip() for a in v.split(",") if a.strip()]
    unknown = [a for a in names if a not in ("uniform", "range")]
    if not names or unknown:
        raise ValueError(f"group.consumer.assignors: only uniform and range are supported, not {v!r}")
    return ",".join(names)


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
    # KIP-848 consumer groups (broker/coordinator/consumer_group.py), Kafka's names and defaults
    "group.consumer.session.timeout.ms": (int, 45000),
    "group.consumer.min.session.timeout.ms": (int, 45000),
    "group.consumer.max.session.timeout.ms": (int, 60000),
    "group.consumer.heartbeat.interval.ms": (int, 5000),
    "group.consumer.min.heartbeat.interval.ms": (int, 5000),
    "group.consumer.max.heartbeat.interval.ms": (int, 15000),
    "group.consumer.assignors": (_consumer_assignors, "uniform,range"),
    "group.consumer.max.size": (int, 2147483647),
    "group.consumer.migration.policy": (_migration_policy, "bidirectional"),
    # share groups (KIP-932: broker/coordinator/share_group.py, broker/share/), Kafka's names and defaults
    "group.share.session.timeout.ms": (int, 45000),
    "group.share.heartbeat.interval.ms": (int, 5000),
    "group.share.record.lock.duration.ms": (int, 30000),
    "group.share.delivery.count.limit": (int, 5),
    "group.share.partition.max.record.locks": (int, 2000),
    "group.share.max.size": (int, 200),
    "group.share.max.share.sessions": (int, 2000),
    # how long AlterShareGroupOffsets / DeleteShareGroupOffsets wait for the
    # partitions' owners to apply them (docs/share-groups.md §10); Kafka's
    # share coordinator's bound on a state write
    "share.coordinator.write.timeout.ms": (int, 5000),
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
    # wal.type=file on a volume every broker mounts at this path: survivors take over
    # (a file per group commit, created with link(2); docs/failover.md). Empty: the data dir
    "wal.shared.dir": (str, ""),
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


Watcher = Callable[[Any], None]


@dataclass
class BrokerConfig:
    """The broker's configs: ``values`` are the static ones (defaults, the file,
    ``--override``); ``set_dynamic`` lays the dynamic ones from the cluster
    metadata over them, and ``config[key]`` answers the effective value."""

    values: dict[str, Any] = field(default_factory=lambda: {k: d for k, (_, d) in BROKER_DEFAULTS.items()})
    # dynamic configs as parsed from the metadata document: cluster-wide default and this broker's own
    dynamic_default: dict[str, Any] = field(default_factory=dict)
    dynamic_broker: dict[str, Any] = field(default_factory=dict)
    _dynamic: dict[str, Any] = field(default_factory=dict, repr=False)    # the two merged, broker's first
    _watchers: dict[str, list[Watcher]] = field(default_factory=dict, repr=False)

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
        if cfg["wal.shared.dir"] and cfg["wal.type"] != "file":
            raise ValueError("wal.shared.dir is where a wal.type=file WAL lives; with wal.type=s3 the WAL "
                             "is in the bucket")
        _check_consumer_group_bounds(cfg)
        _check_share_bounds(cfg)
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
        if self._dynamic and key in self._dynamic:
            return self._dynamic[key]
        return self.values[key]

    def topic_default(self, name: str) -> Any:
        _, broker_key, default = TOPIC_CONFIGS[name]
        return self[broker_key] if broker_key else default

    def watch(self, key: str, fn: Watcher) -> None:
        """Call ``fn(new effective value)`` whenever a dynamic change alters ``key``
        (for what reads a config once, at construction)."""
        self._watchers.setdefault(key, []).append(fn)

    def set_dynamic(self, default: dict[str, str], broker: dict[str, str]) -> list[str]:
        """Install the dynamic configs stored in the cluster metadata (cluster-wide
        default, this broker's); returns the keys whose effective value changed.
        A stored value this version cannot use (unknown name, bad value) is
        ignored with a warning, never fatal."""
        before = {k: self[k] for k in set(self._dynamic) | set(default) | set(broker) if k in self.values}
        self.dynamic_default = _parse_dynamic(default, "cluster-wide default")
        self.dynamic_broker = _parse_dynamic(broker, f"broker {self.values['node.id']}")
        self._dynamic = {**self.dynamic_default, **self.dynamic_broker}
        changed = sorted(k for k, v in before.items() if self[k] != v)
        for k in changed:
            log.info("dynamic broker config: %s=%s", k, self[k])
            for fn in self._watchers.get(k, ()):
                fn(self[k])
        return changed

    def source(self, key: str) -> str:
        """Where the effective value of ``key`` comes from (Kafka's ConfigSource names)."""
        if key in self.dynamic_broker:
            return "DYNAMIC_BROKER_CONFIG"
        if key in self.dynamic_default:
            return "DYNAMIC_DEFAULT_BROKER_CONFIG"
        return "STATIC_BROKER_CONFIG" if self.values[key] != BROKER_DEFAULTS[key][1] else "DEFAULT_CONFIG"


_SHARE_BOUNDS = {   # Kafka 4.4's ShareGroupConfig ranges of the broker configs
    "group.share.record.lock.duration.ms": (1000, 3600000),
    "group.share.delivery.count.limit": (2, 10),
    "group.share.partition.max.record.locks": (100, 10000),
    "group.share.max.size": (1, 1000),
    "group.share.max.share.sessions": (1, 2**31 - 1),
}


def _check_share_bounds(cfg: BrokerConfig) -> None:
    for name, (lo, hi) in _SHARE_BOUNDS.items():
        if not lo <= cfg[name] <= hi:
            raise ValueError(f"Invalid value {cfg[name]} for configuration {name}: Value must be in [{lo}, {hi}]")


def _check_consumer_group_bounds(cfg: BrokerConfig) -> None:
    """Kafka's GroupCoordinatorConfig checks of the KIP-848 session and heartbeat, in its words."""
    for what in ("session.timeout", "heartbeat.interval"):
        name = f"group.consumer.{what}.ms"
        lo, hi = f"group.consumer.min.{what}.ms", f"group.consumer.max.{what}.ms"
        if cfg[name] < cfg[lo]:
            raise ValueError(f"{name} must be greater than or equal to {lo}")
        if cfg[name] > cfg[hi]:
            raise ValueError(f"{name} must be less than or equal to {hi}")
    if cfg["group.consumer.heartbeat.interval.ms"] >= cfg["group.consumer.session.timeout.ms"]:
        raise ValueError("group.consumer.heartbeat.interval.ms must be less than group.consumer.session.timeout.ms")


def _parse_dynamic(raw: dict[str, str], where: str) -> dict[str, Any]:
    out = {}
    for k, v in raw.items():
        spec = DYNAMIC_BROKER_CONFIGS.get(k)
        try:
            if spec is None:
                raise ValueError("not a dynamic config of this version")
            spec.parse(k, v)
            out[k] = BROKER_DEFAULTS[k][0](v.strip())
        except ValueError as exc:
            log.warning("dynamic broker config %s=%r (%s) ignored: %s", k, v, where, exc)
    return out


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


# ------------------------------------------------------------------ Kafka's config types
# DescribeConfigs' config_type codes (Kafka's ConfigEntry.ConfigType)
TYPE_BOOLEAN, TYPE_STRING, TYPE_INT, TYPE_LONG, TYPE_DOUBLE, TYPE_LIST = 1, 2, 3, 5, 6, 7
_INT_RANGE = {TYPE_INT: (-(1 << 31), (1 << 31) - 1), TYPE_LONG: (-(1 << 63), (1 << 63) - 1)}
_TYPE_NAMES = {TYPE_INT: "INT", TYPE_LONG: "LONG"}

# Sluice's broker configs that Kafka types INT (the others that are numbers are LONGs)
BROKER_INT_CONFIGS = frozenset({
    "broker.heartbeat.interval.ms", "broker.session.timeout.ms", "default.replication.factor",
    "group.initial.rebalance.delay.ms", "group.max.session.timeout.ms", "group.max.size",
    "group.min.session.timeout.ms", "max.incremental.fetch.session.cache.slots", "message.max.bytes",
    "node.id", "num.partitions", "offset.metadata.max.bytes", "offsets.retention.minutes",
    "offsets.topic.num.partitions", "producer.id.expiration.ms", "replica.fetch.max.bytes",
    "socket.request.max.bytes", "transactional.id.expiration.ms"})


def broker_config_type(name: str) -> int:
    parser = BROKER_DEFAULTS[name][0]
    if parser is int:
        return TYPE_INT if name in BROKER_INT_CONFIGS else TYPE_LONG
    return {float: TYPE_DOUBLE, _bool: TYPE_BOOLEAN}.get(parser, TYPE_STRING)


@dataclass(frozen=True)
class ConfigSpec:
    """One config as Kafka's ConfigDef defines it: its type and validator, and
    (group configs) the range the broker allows. ``parse`` raises ValueError
    with Kafka's message."""

    type: int
    at_least: int | None = None
    one_of: tuple[str, ...] | None = None
    range: tuple[int, int] | None = None       # group configs: the broker's bounds
    at_most: int | None = None                 # group configs: the broker's bound, alone
    check: Callable[[str, str], None] | None = None

    def parse(self, name: str, value: str) -> Any:
        def invalid(why: str) -> ValueError:
            return ValueError(f"Invalid value {value} for configuration {name}: {why}")
        text = value.strip()
        parsed: Any = text
        if self.type in _INT_RANGE:
            lo, hi = _INT_RANGE[self.type]
            try:
                parsed = int(text)
            except ValueError:
                parsed = None
            if parsed is None or not lo <= parsed <= hi or not re.fullmatch(r"[+-]?\d+", text):
                raise invalid(f"Not a number of type {_TYPE_NAMES[self.type]}")
            if self.at_least is not None and parsed < self.at_least:
                raise invalid(f"Value must be at least {self.at_least}")
        elif self.type == TYPE_BOOLEAN:
            if text.lower() not in ("true", "false"):
                raise invalid("Expected value to be either true or false")
            parsed = text.lower() == "true"
        elif self.one_of is not None and text not in self.one_of:
            raise invalid(f"String must be one of: {', '.join(self.one_of)}")
        if self.range is not None and not self.range[0] <= parsed <= self.range[1]:
            raise ValueError(f"{name} must be in the range {self.range[0]} to {self.range[1]} inclusive.")
        if self.at_most is not None and parsed > self.at_most:
            raise ValueError(f"{name} must be less than or equal to {self.at_most}")
        if self.check is not None:
            self.check(name, text)
        return parsed


# Kafka's dynamic broker configs that Sluice honours at run time, as Kafka does:
# each is read where it acts (the topic defaults at produce and retention, the
# read pacer's cap), so a change applies without a restart. Kafka has many more
# dynamic configs (threads, listeners, quotas, compression, ...): Sluice either
# has no such thing or does not act on it, so they are refused as read-only
# configs are, rather than stored and ignored.
DYNAMIC_BROKER_CONFIGS: dict[str, ConfigSpec] = {
    "log.retention.ms": ConfigSpec(TYPE_LONG),
    "log.retention.bytes": ConfigSpec(TYPE_LONG),
    "message.max.bytes": ConfigSpec(TYPE_INT, at_least=0),
    "log.message.timestamp.type": ConfigSpec(TYPE_STRING, one_of=("CreateTime", "LogAppendTime")),
    "remote.log.manager.fetch.max.bytes.per.second": ConfigSpec(TYPE_LONG, at_least=1),
}
assert set(DYNAMIC_BROKER_CONFIGS) <= set(BROKER_DEFAULTS)


# ------------------------------------------------------------------ group configs
_DURATION = re.compile(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d{1,9})?)S)?)?")


def _share_auto_offset_reset(name: str, value: str) -> None:
    ok = value in ("earliest", "latest")
    if value.startswith("by_duration:"):
        m = _DURATION.fullmatch(value[len("by_duration:"):])
        ok = m is not None and any(g is not None for g in m.groups()) and not m.group(0).endswith("T")
    if not ok:
        raise ValueError(f"Invalid value {value} for configuration {name}: Invalid value `{value}` for "
                         f"configuration {name}. The value must be either 'earliest', 'latest' or of the "
                         "format 'by_duration:<PnDTnHnMn.nS>'.")


def _streams_assignor(name: str, value: str) -> None:
    if value != "sticky":
        raise ValueError(f"{name} '{value}' is not a registered task assignor. "
                         "Registered assignors are: [sticky].")


def _dlq_topic(name: str, value: str) -> None:
    if value.startswith("__"):
        raise ValueError(f"{name}: DLQ topic name must not start with '__'")


def _ms(lo: int, hi: int, at_least: int = 1) -> ConfigSpec:
    return ConfigSpec(TYPE_INT, at_least=at_least, range=(lo, hi))


# Kafka 4.4's group configs: name -> (spec, default, the broker config it defaults
# to, named as Kafka's DescribeConfigs names it). The ranges are Kafka's default
# broker bounds (group.consumer.min.session.timeout.ms and the like).
#
# consumer.session.timeout.ms and consumer.heartbeat.interval.ms govern a KIP-848
# consumer group (coordinator/consumer_group.py), share.* a share group
# (coordinator/share_group.py, share/manager.py; not share.isolation.level or
# share.assignment.interval.ms), each read at use (group_config_int); the
# consumer ones are bounded by the broker's configs (GROUP_CONFIG_BOUNDS), not
# by the ranges below; the rest change nothing here:
# consumer.assignment.interval.ms (Sluice assigns at once), errors.*
# (dead-letter queues), streams.* (Streams groups, KIP-1071). Kafka ignores them all for a classic group. They are
# checked, kept and described as Kafka keeps them (docs/cluster.md, section 4).
GROUP_CONFIGS: dict[str, tuple[ConfigSpec, str, str]] = {
    "consumer.session.timeout.ms": (_ms(45000, 60000), "45000", "group.consumer.session.timeout.ms"),
    "consumer.heartbeat.interval.ms": (_ms(5000, 15000), "5000", "group.consumer.heartbeat.interval.ms"),
    "consumer.assignment.interval.ms": (_ms(0, 15000, 0), "1000", "group.consumer.assignment.interval.ms"),
    "share.session.timeout.ms": (_ms(45000, 60000), "45000", "group.share.session.timeout.ms"),
    "share.heartbeat.interval.ms": (_ms(5000, 15000), "5000", "group.share.heartbeat.interval.ms"),
    "share.record.lock.duration.ms": (_ms(15000, 60000, 1000), "30000", "group.share.record.lock.duration.ms"),
    "share.delivery.count.limit": (_ms(2, 10, 2), "5", "group.share.delivery.count.limit"),
    "share.partition.max.record.locks": (_ms(100, 4000, 100), "2000", "group.share.partition.max.record.locks"),
    "share.assignment.interval.ms": (_ms(0, 15000, 0), "1000", "group.share.assignment.interval.ms"),
    "share.auto.offset.reset": (ConfigSpec(TYPE_STRING, check=_share_auto_offset_reset), "latest",
                                "share.auto.offset.reset"),
    "share.isolation.level": (ConfigSpec(TYPE_STRING, one_of=("read_committed", "read_uncommitted")),
                              "read_uncommitted", "share.isolation.level"),
    "share.renew.acknowledge.enable": (ConfigSpec(TYPE_BOOLEAN), "true", "share.renew.acknowledge.enable"),
    "streams.session.timeout.ms": (_ms(45000, 60000), "45000", "group.streams.session.timeout.ms"),
    "streams.heartbeat.interval.ms": (_ms(5000, 15000), "5000", "group.streams.heartbeat.interval.ms"),
    "streams.assignment.interval.ms": (_ms(0, 15000, 0), "1000", "group.streams.assignment.interval.ms"),
    "streams.initial.rebalance.delay.ms": (ConfigSpec(TYPE_INT, at_least=0), "3000",
                                           "group.streams.initial.rebalance.delay.ms"),
    "streams.num.standby.replicas": (ConfigSpec(TYPE_INT, at_least=0, at_most=2), "0",
                                     "group.streams.num.standby.replicas"),
    "streams.assignor.name": (ConfigSpec(TYPE_STRING, check=_streams_assignor), "sticky", "group.streams.assignors"),
    "streams.rack.aware.assignment.tags": (ConfigSpec(TYPE_LIST), "", "group.streams.rack.aware.assignment.tags"),
    "errors.deadletterqueue.topic.name": (ConfigSpec(TYPE_STRING, check=_dlq_topic), "",
                                          "errors.deadletterqueue.topic.name"),
    "errors.deadletterqueue.copy.record.enable": (ConfigSpec(TYPE_BOOLEAN), "false",
                                                  "errors.deadletterqueue.copy.record.enable"),
}


# Group configs whose bounds are broker configs Sluice has: Kafka checks a group's
# value against the broker's current bounds (GroupConfig.validate), and clamps a
# stored value into them when it is used (GroupConfig.evaluate).
GROUP_CONFIG_BOUNDS: dict[str, tuple[str, str]] = {
    "consumer.session.timeout.ms": ("group.consumer.min.session.timeout.ms", "group.consumer.max.session.timeout.ms"),
    "consumer.heartbeat.interval.ms": ("group.consumer.min.heartbeat.interval.ms",
                                       "group.consumer.max.heartbeat.interval.ms"),
}
# (session, heartbeat) pairs: a group's session must exceed its interval, either one
# the group's own or the broker's (GroupConfig.validateSessionExceedsHeartbeat)
_SESSION_OVER_HEARTBEAT = [("consumer.session.timeout.ms", "consumer.heartbeat.interval.ms"),
                           ("share.session.timeout.ms", "share.heartbeat.interval.ms"),
                           ("streams.session.timeout.ms", "streams.heartbeat.interval.ms")]


def validate_group_config(name: str, value: str, broker: Any = None) -> Any:
    """Parse a group config value as Kafka does; ValueError (Kafka's message) if unknown
    or invalid. With ``broker`` (the BrokerConfig), ranges follow its bounds."""
    if name not in GROUP_CONFIGS:
        raise ValueError(f"Unknown group config name: {name}")
    spec = GROUP_CONFIGS[name][0]
    if broker is not None and name in GROUP_CONFIG_BOUNDS:
        lo, hi = GROUP_CONFIG_BOUNDS[name]
        spec = ConfigSpec(spec.type, at_least=spec.at_least, range=(int(broker[lo]), int(broker[hi])))
    return spec.parse(name, value)


def validate_group_configs(configs: dict[str, str], broker: Any) -> None:
    """A group's whole resulting set, as Kafka's controller checks it after a
    change: every value against the broker's bounds, then each session above its
    heartbeat interval (the group's values, else the broker's defaults)."""
    parsed = {name: validate_group_config(name, value, broker) for name, value in configs.items()}
    for session, interval in _SESSION_OVER_HEARTBEAT:
        if session in parsed or interval in parsed:
            s = parsed.get(session, _group_default(session, broker))
            h = parsed.get(interval, _group_default(interval, broker))
            if s <= h:
                raise ValueError(f"{session} must be greater than {interval}")


def _group_default(name: str, broker: Any) -> int:
    """The broker config a group config defaults to, or Kafka's default if Sluice has no such broker config."""
    _, default, synonym = GROUP_CONFIGS[name]
    return int(broker[synonym]) if synonym in BROKER_DEFAULTS else int(default)


def group_config_int(configs: Mapping[str, str], name: str, broker: Any) -> int:
    """A group's int config at use: its own value clamped into the broker's current
    bounds (Kafka's GroupConfig.evaluate), else the broker config it defaults to."""
    own = configs.get(name)
    if own is None:
        return _group_default(name, broker)
    value = int(own)
    if name in GROUP_CONFIG_BOUNDS:
        lo, hi = GROUP_CONFIG_BOUNDS[name]
        value = min(max(value, int(broker[lo])), int(broker[hi]))
    return value
