"""Authorized operations (KIP-430): what the principal may do to a resource,
as the set of Kafka's AclOperation codes (encoded as a 32-bit field).

Sluice has no authorizer, and Kafka without one answers every operation
valid for the resource type (``AclEntry.supportedOperations``); so does this.
A request that does not ask gets Kafka's "not requested" (-2147483648: None
here, which kafka-python encodes as that value).
"""
from __future__ import annotations

# Kafka's AclOperation codes
READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE = 3, 4, 5, 6, 7, 8
CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE = 9, 10, 11, 12

TOPIC_OPERATIONS = frozenset({READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS})
GROUP_OPERATIONS = frozenset({READ, DELETE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS})
CLUSTER_OPERATIONS = frozenset({CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS,
                                IDEMPOTENT_WRITE})


def operations(allowed: frozenset[int], requested: bool) -> set[int] | None:
    """The field's value: every allowed operation if requested, else "not requested"."""
    return set(allowed) if requested else None


def bitfield(allowed: frozenset[int]) -> int:
    """Kafka's ``Utils.to32BitField``, for messages whose spec types the field
    as a plain int32 (DescribeTopicPartitions), not kafka-python's bitfield."""
    return sum(1 << op for op in allowed)
