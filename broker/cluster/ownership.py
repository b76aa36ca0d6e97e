"""Who owns what, as a change: the delta between two metadata images for one broker.

A broker never decides alone what it hosts. Every new metadata image it reads
or writes is compared with the previous one, and what changed for this broker
reaches the ReplicaManager as one ``OwnershipDelta`` (Kafka's
``ReplicaManager.applyDelta``): partitions gained (or re-claimed at a higher
epoch), partitions lost, topics deleted. The ReplicaManager applies it in one
place, which starts or stops serving each partition; nothing else opens or
claims a partition.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .metadata import NO_OWNER, ClusterImage, Topic

# the dead owners a taken-over partition is recovered from, oldest first: (node, epoch, generation)
Sources = tuple[tuple[int, int, int], ...]


@dataclass(frozen=True, slots=True)
class PartitionGain:
    """This broker owns ``topic``'s partition ``index`` at ``epoch`` (its leader epoch)."""

    topic: Topic
    index: int
    epoch: int


@dataclass(frozen=True, slots=True)
class PartitionLoss:
    topic: Topic
    index: int


@dataclass(frozen=True, slots=True)
class HandOff:
    """A partition this broker owns at ``epoch`` should move to ``target``
    (docs/cluster.md section 7); ``target`` NO_OWNER: the move was cancelled.
    ``coordinator``: a group coordinator partition, not a topic's."""

    topic: Topic
    index: int
    epoch: int
    target: int
    coordinator: bool = False


@dataclass
class OwnershipDelta:
    gained: list[PartitionGain] = field(default_factory=list)
    lost: list[PartitionLoss] = field(default_factory=list)
    deleted_topics: list[Topic] = field(default_factory=list)   # of which we owned a partition
    changed_topics: list[Topic] = field(default_factory=list)   # configs changed (same id)
    # the group coordinator's partitions (shard, epoch) gained and (shard) lost
    coordinators_gained: list[tuple[int, int]] = field(default_factory=list)
    coordinators_lost: list[int] = field(default_factory=list)
    # moves of partitions we own whose target was set, changed or cleared
    handoffs: list[HandOff] = field(default_factory=list)
    # of the gains (topics' and coordinator partitions'), those taken over from a
    # dead broker: (topic id bytes, index) -> (dead node, its epoch, generation)
    recovering: dict[tuple[bytes, int], Sources] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.gained or self.lost or self.deleted_topics or self.changed_topics
                    or self.coordinators_gained or self.coordinators_lost or self.handoffs)


def _owned(image: ClusterImage | None, node_id: int) -> dict[tuple[bytes, int], tuple[Topic, int]]:
    out: dict[tuple[bytes, int], tuple[Topic, int]] = {}
    if image is None:
        return out
    for t in image.owned_topics():
        for i in range(t.partitions):
            if t.owners[i] == node_id and node_id != NO_OWNER:
                out[(t.topic_id.bytes, i)] = (t, t.epochs[i])
    return out


def _targets(image: ClusterImage | None, node_id: int) -> dict[tuple[bytes, int], int]:
    if image is None:
        return {}
    return {(t.topic_id.bytes, i): t.targets[i] for t in image.owned_topics() for i in range(t.partitions)
            if t.owners[i] == node_id and t.targets[i] != NO_OWNER}


def ownership_delta(old: ClusterImage | None, new: ClusterImage, node_id: int) -> OwnershipDelta:
    """What ``node_id`` must start and stop serving to go from ``old`` to ``new``."""
    before, after = _owned(old, node_id), _owned(new, node_id)
    delta = OwnershipDelta()
    for key, (topic, epoch) in after.items():
        prev = before.get(key)
        if prev is None or prev[1] != epoch:
            delta.gained.append(PartitionGain(topic, key[1], epoch))
            rec = topic.recover[key[1]]
            if rec:
                delta.recovering[key] = tuple((src[0], src[1], src[2]) for src in rec)
    new_ids = {t.topic_id for t in new.owned_topics()}
    for key, (topic, _) in before.items():
        if key not in after:
            delta.lost.append(PartitionLoss(topic, key[1]))
    old_targets, new_targets = _targets(old, node_id), _targets(new, node_id)
    for key, (topic, epoch) in after.items():
        target = new_targets.get(key, NO_OWNER)
        prev = before.get(key)
        if target != old_targets.get(key, NO_OWNER) or (prev is not None and prev[1] != epoch and target != NO_OWNER):
            delta.handoffs.append(HandOff(topic, key[1], epoch, target,
                                          new.offsets is not None and topic.topic_id == new.offsets.topic_id))
    offsets_ids = {i.offsets.topic_id for i in (old, new) if i is not None and i.offsets is not None}
    delta.coordinators_gained = [(g.index, g.epoch) for g in delta.gained if g.topic.topic_id in offsets_ids]
    delta.coordinators_lost = [x.index for x in delta.lost if x.topic.topic_id in offsets_ids]
    delta.gained = [g for g in delta.gained if g.topic.topic_id not in offsets_ids]
    delta.lost = [x for x in delta.lost if x.topic.topic_id not in offsets_ids]
    if old is not None:
        old_by_id = {t.topic_id: t for t in old.owned_topics()}
        owned_ids = {t.topic_id for t, _ in before.values()}
        delta.deleted_topics = [t for tid, t in old_by_id.items()
                                if tid not in new_ids and tid in owned_ids]
        delta.changed_topics = [t for t in new.owned_topics()
                                if t.topic_id in old_by_id and t.configs != old_by_id[t.topic_id].configs]
    return delta
