"""A broker's one "log directory", as DescribeLogDirs and AlterReplicaLogDirs name it.

A Sluice broker keeps a partition in two places: its uploaded segments in the
object store (shared by all brokers) and its not-yet-uploaded batches in this
broker's write-ahead log. Kafka's log directory is where one broker keeps a
replica; Sluice reports one per broker, named after both places:
``<object store URL>#wal=<WAL directory>`` (``#wal=wal/<node.id>/`` for
``wal.type=s3``, whose WAL is objects in the same store; the directory's
path for a WAL of objects in a shared directory), e.g.
``s3://bucket/prefix#wal=/var/lib/sluice/wal`` (a store URL has no fragment
of its own, so the name reads back unambiguously). Every partition the broker
owns is in it; none is ever "future" (there is no other directory to move
to), and its size is its bytes in the bucket per its manifest plus its
batches the WAL holds above the manifest's end.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from wal.log import WriteAheadLog

if TYPE_CHECKING:
    from ..broker import Broker
    from ..log.partition import Partition

UNKNOWN_VOLUME_BYTES = -1       # Kafka's DescribeLogDirsResponse.UNKNOWN_VOLUME_BYTES


def log_dir(broker: "Broker") -> str:
    wal = broker.replicas.wal
    if isinstance(wal, WriteAheadLog):
        where = os.path.abspath(wal.directory)
    else:       # objects in the bucket, or in a shared directory (whose WalObjects has a root)
        root = getattr(wal.objects, "root", None)
        where = os.path.join(root, wal.prefix) if isinstance(root, str) else wal.prefix
    return f"{broker.object_store_url}#wal={where}"


def volume_bytes(broker: "Broker") -> tuple[int, int]:
    """(total, usable) bytes of the volume under the object store, as Kafka
    reports a log directory's file store: known for a ``file://`` store, -1
    (Kafka's "unknown") for a bucket, which has no size."""
    url = urlsplit(broker.object_store_url)
    if url.scheme != "file":
        return UNKNOWN_VOLUME_BYTES, UNKNOWN_VOLUME_BYTES
    try:
        st = os.statvfs(unquote(url.path))
    except OSError:
        return UNKNOWN_VOLUME_BYTES, UNKNOWN_VOLUME_BYTES
    return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize


def partition_size(p: "Partition") -> int:
    """Bytes of the partition: its manifest's segments (in the bucket) plus the
    batches indexed above the manifest's end (in the WAL, uploaded or not)."""
    m = p.storage.manifest
    in_bucket = sum(s.length for s in m.segments) if m is not None else 0  # type: ignore[attr-defined]
    end = p.storage.uploaded_end
    return in_bucket + sum(size for base, _, _, size, _ in p.entries_from(end) if base >= end)


def hosted(broker: "Broker") -> dict[str, list["Partition"]]:
    """The partitions this broker owns and serves, by topic name, in order."""
    by_topic: dict[str, list[Partition]] = {}
    for (topic, _), p in sorted(broker.replicas.partitions.items()):
        if not p.storage.fenced:
            by_topic.setdefault(topic, []).append(p)
    return by_topic
