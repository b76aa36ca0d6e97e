"""Leader discovery for clients (KIP-951): with NOT_LEADER_OR_FOLLOWER, Produce
(v10+) and Fetch (v16+) name the partition's current leader and epoch, and the
response lists the endpoints of the leaders it names, so a client re-routes
without a Metadata round trip first.

As Kafka's KafkaApis (``getCurrentLeader``): the leader and epoch from the
cluster metadata, leader -1 when its owner is not live; an endpoint only for a
live leader; (-1, -1) when the partition is not known at all (then nothing is
written: it is the field's default).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ErrorCode
from .produce_response import NodeEndpoint

if TYPE_CHECKING:
    from ..cluster import Cluster

# the errors that carry a current leader: Produce answers only the first
PRODUCE_ERRORS = frozenset({ErrorCode.NOT_LEADER_OR_FOLLOWER})
FETCH_ERRORS = frozenset({ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.FENCED_LEADER_EPOCH})


class LeaderHints:
    """Current leaders for one response, and the endpoints of those named."""

    __slots__ = ("_cluster", "_live", "endpoints")

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._live: dict[int, NodeEndpoint] | None = None
        self.endpoints: dict[int, NodeEndpoint] = {}     # node id -> endpoint, first named first

    def leader(self, topic_name: str | None, index: int) -> tuple[int, int]:
        """(leader id, leader epoch) of ``topic_name``-``index``; records the
        leader's endpoint when it is live."""
        c = self._cluster
        topic = c.metadata.topics.get(topic_name) if topic_name is not None else None
        if topic is None or not 0 <= index < topic.partitions:
            return -1, -1
        node, epoch = c.leader(topic, index)
        if node >= 0 and node not in self.endpoints:
            if self._live is None:
                self._live = {b.node_id: NodeEndpoint(b.node_id, b.host, b.port, b.rack)
                              for b in c.brokers()}
            endpoint = self._live.get(node)
            if endpoint is not None:
                self.endpoints[node] = endpoint
        return node, epoch

    def node_endpoints(self) -> list[NodeEndpoint]:
        return list(self.endpoints.values())
