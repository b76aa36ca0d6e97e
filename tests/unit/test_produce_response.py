"""The hand-written ProduceResponse encoder writes exactly kafka-python's bytes."""
import uuid

import pytest
from kafka.protocol.producer import ProduceResponse

from broker.apis.produce_response import NodeEndpoint, PartitionResult, ProduceResponseBytes, TopicResult

TopicResp = ProduceResponse.TopicProduceResponse
PartResp = TopicResp.PartitionProduceResponse
Leader = PartResp.LeaderIdAndEpoch

TOPICS = [
    ("clicks", uuid.uuid4(), [PartitionResult(0, 0, 1234, -1, 0, None),
                              PartitionResult(1, 2, -1, -1, 7, "record batch CRC mismatch")]),
    ("carts-ü", uuid.uuid4(), [PartitionResult(5, 0, 2**40, 1_700_000_000_000, 3, None)]),
    ("empty", uuid.uuid4(), []),
]


def _reference(version: int) -> bytes:
    responses = [TopicResp(name=name, topic_id=tid, partition_responses=[
        PartResp(index=p.index, error_code=p.error_code, base_offset=p.base_offset,
                 log_append_time_ms=p.log_append_time_ms, log_start_offset=p.log_start_offset,
                 record_errors=[], error_message=p.error_message) for p in parts])
        for name, tid, parts in TOPICS]
    return ProduceResponse(version=version, responses=responses, throttle_time_ms=0).encode(version=version)


@pytest.mark.parametrize("version", range(3, ProduceResponse.max_version + 1))
def test_same_bytes_as_kafka_python(version):
    mine = ProduceResponseBytes([TopicResult(n, t, ps) for n, t, ps in TOPICS]).encode(version=version)
    assert mine == _reference(version)
    decoded = ProduceResponse.decode(mine, version=version)
    assert decoded.responses[0].partition_responses[0].base_offset == 1234


def test_no_topics():
    for version in (3, 9, 13):
        assert ProduceResponseBytes([]).encode(version=version) == \
            ProduceResponse(version=version, responses=[], throttle_time_ms=0).encode(version=version)


# KIP-951 (v10+): partitions answered NOT_LEADER_OR_FOLLOWER name their current
# leader (tag 0), and the response the endpoints of the leaders named (tag 0).
LEADER_TOPICS = [
    ("clicks", uuid.uuid4(), [PartitionResult(0, 0, 1234, -1, 0, None),
                              PartitionResult(1, 6, -1, -1, -1, "NOT_LEADER_OR_FOLLOWER", (2, 7)),
                              PartitionResult(2, 6, -1, -1, -1, None, (-1, 3))]),      # leader not live
    ("carts", uuid.uuid4(), [PartitionResult(5, 6, -1, -1, -1, None, (3, 2**31 - 1))]),
]
ENDPOINTS = [NodeEndpoint(2, "broker-2.example", 9092, None),
             NodeEndpoint(3, "b3-ü", 19093, "rack-a" * 30)]   # long: a multi-byte tag size


def _reference_with_leaders(topics, endpoints, version: int) -> bytes:
    responses = [TopicResp(name=name, topic_id=tid, partition_responses=[
        PartResp(index=p.index, error_code=p.error_code, base_offset=p.base_offset,
                 log_append_time_ms=p.log_append_time_ms, log_start_offset=p.log_start_offset,
                 record_errors=[], error_message=p.error_message,
                 current_leader=None if p.current_leader is None else Leader(*p.current_leader))
        for p in parts]) for name, tid, parts in topics]
    return ProduceResponse(version=version, responses=responses, throttle_time_ms=0,
                           node_endpoints=[ProduceResponse.NodeEndpoint(*e) for e in endpoints]
                           ).encode(version=version)


@pytest.mark.parametrize("version", range(3, ProduceResponse.max_version + 1))
def test_current_leader_and_node_endpoints_same_bytes_as_kafka_python(version):
    mine = ProduceResponseBytes([TopicResult(n, t, ps) for n, t, ps in LEADER_TOPICS],
                                node_endpoints=ENDPOINTS).encode(version=version)
    # below v10 the fields do not exist: kafka-python leaves them out as well
    assert mine == _reference_with_leaders(LEADER_TOPICS, ENDPOINTS, version)
    decoded = ProduceResponse.decode(mine, version=version)
    parts = [p for t in decoded.responses for p in t.partition_responses]
    if version >= 10:
        assert [(p.index, p.current_leader and (p.current_leader.leader_id, p.current_leader.leader_epoch))
                for p in parts] == [(0, None), (1, (2, 7)), (2, (-1, 3)), (5, (3, 2**31 - 1))]
        assert [(e.node_id, e.host, e.port, e.rack) for e in decoded.node_endpoints] == \
            [tuple(e) for e in ENDPOINTS]
    else:   # the same bytes as without them
        stripped = [TopicResult(n, t, [PartitionResult(p.index, p.error_code, p.base_offset,
                                                       p.log_append_time_ms, p.log_start_offset,
                                                       p.error_message) for p in ps])
                    for n, t, ps in LEADER_TOPICS]
        assert mine == ProduceResponseBytes(stripped).encode(version=version)
    # node_endpoints None: the common path, where no partition's current_leader is read
    assert ProduceResponseBytes([TopicResult(n, t, ps) for n, t, ps in LEADER_TOPICS]).encode(version=version) == \
        _reference_with_leaders([(n, t, [PartitionResult(p.index, p.error_code, p.base_offset,
                                                         p.log_append_time_ms, p.log_start_offset,
                                                         p.error_message) for p in ps])
                                 for n, t, ps in LEADER_TOPICS], [], version)


def test_unknown_leader_is_the_default_and_not_written():
    """(-1, -1) is LeaderIdAndEpoch's default: Kafka's generated writer leaves
    the tag out (kafka-python's default is None, so compare with that)."""
    tid = uuid.uuid4()
    mine = ProduceResponseBytes([TopicResult("t", tid, [PartitionResult(0, 6, -1, -1, -1, None, (-1, -1))])],
                                node_endpoints=[])
    ref = [("t", tid, [PartitionResult(0, 6, -1, -1, -1, None)])]
    for version in (9, 10, 12, 13):
        assert mine.encode(version=version) == _reference_with_leaders(ref, [], version)
        p = ProduceResponse.decode(mine.encode(version=version), version=version).responses[0].partition_responses[0]
        assert getattr(p, "current_leader", None) is None
