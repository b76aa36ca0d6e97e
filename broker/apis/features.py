"""Kafka features (KIP-584) as Sluice reports them: the one table of what it
implements, read by ApiVersions (v3+: supported and finalized features) and
UpdateFeatures.

A client reads a finalized feature as a promise: the Java producer uses
transactions v2 (KIP-890) when ``transaction.version`` >= 2, and the Java
consumer and admin client expect the KIP-848 group protocol when
``group.version`` >= 1. So a feature goes into ``FEATURES`` only once Sluice
serves what its level means; a module that makes a level true adds the entry
here (e.g. ``group.version``: ``Feature(0, 1, finalized=1)`` with
ConsumerGroupHeartbeat). The levels are fixed by the code that implements
them, not stored: UpdateFeatures validates as Kafka's controller does, and
refuses a real change.

``NOT_ADVERTISED`` says why each of Apache Kafka 4.4's features is absent.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Feature:
    min_version: int        # supported range (ApiVersions SupportedFeatures)
    max_version: int
    finalized: int          # the level in force; 0: not finalized (left out, as Kafka does)


# name -> what Sluice implements; NOT_ADVERTISED says why the others are absent.
FEATURES: dict[str, Feature] = {
    # KIP-932 share groups (level 1: ShareGroupHeartbeat, ShareFetch, ShareAcknowledge, the describe
    # and offsets APIs; Kafka answers those UNSUPPORTED_VERSION below it). Level 2 is KIP-1191's
    # dead-letter queues, which Sluice does not have.
    "share.version": Feature(0, 1, finalized=1),
    # KIP-848 consumer groups (level 1: ConsumerGroupHeartbeat, ConsumerGroupDescribe, and online
    # migration of a group between the classic and consumer protocols), as Kafka 4 finalizes it.
    "group.version": Feature(0, 1, finalized=1),
}

# Kafka 4.4's features (docs/kafka-4.4-api-versions.json) and why Sluice leaves each out.
NOT_ADVERTISED: dict[str, str] = {
    "metadata.version": "no KRaft metadata log: Sluice's cluster metadata is one object in the bucket",
    "kraft.version": "no KRaft quorum",
    "transaction.version": "no transactions (transactional producers are refused at once)",
    "streams.version": "no Streams groups (KIP-1071)",
    "eligible.leader.replicas.version": "one replica per partition: no ISR, so no eligible leader replicas",
}

# The epoch of the finalized features: Kafka's is the metadata offset of the
# last change; Sluice's levels change only with its code, so 0, or -1 (Kafka's
# "unknown") when nothing is finalized.
def finalized_epoch() -> int:
    return 0 if finalized() else -1


def finalized() -> dict[str, int]:
    """name -> finalized level, for the features in force (level >= 1)."""
    return {name: f.finalized for name, f in FEATURES.items() if f.finalized >= 1}
