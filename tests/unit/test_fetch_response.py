"""The hand-written FetchResponse encoder writes exactly kafka-python's bytes (v4-18)."""
import uuid

import pytest
from kafka.protocol.consumer import FetchResponse
from kafka.record.default_records import DefaultRecordBatchBuilder

from broker.apis.fetch_response import FetchPartition, FetchResponseParts, FetchTopic
from broker.apis.produce_response import NodeEndpoint

TopicResp = FetchResponse.FetchableTopicResponse
PartData = TopicResp.PartitionData


def batch(base: int, n: int) -> bytes:
    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                  producer_id=-1, producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    for i in range(n):
        b.append(i, timestamp=1_700_000_000_000 + i, key=b"k%d" % i, value=b"v" * (i + 1), headers=[])
    out = bytearray(b.build())
    out[0:8] = base.to_bytes(8, "big")
    return bytes(out)


TOPICS = [
    FetchTopic("clicks", uuid.uuid4(), [
        FetchPartition(0, 0, 120, 0, [batch(0, 3), batch(3, 5)]),
        FetchPartition(1, 1, 7, 2, []),                       # OFFSET_OUT_OF_RANGE, no records
        FetchPartition(2, 0, 1 << 40, 5, [batch(9, 1)]),
    ]),
    FetchTopic("carts-ü", uuid.uuid4(), [FetchPartition(5, 0, 0, 0, [])]),
    FetchTopic("empty", uuid.uuid4(), []),
]


def reference(topics, version: int, session_id: int = 0, error_code: int = 0,
              node_endpoints=()) -> bytes:
    responses = [TopicResp(topic=t.name, topic_id=t.topic_id, partitions=[
        PartData(partition_index=p.index, error_code=p.error_code, high_watermark=p.high_watermark,
                 last_stable_offset=p.high_watermark, log_start_offset=p.log_start_offset,
                 aborted_transactions=None, preferred_read_replica=-1, records=b"".join(p.records),
                 current_leader=None if p.current_leader is None else PartData.LeaderIdAndEpoch(*p.current_leader))
        for p in t.partitions]) for t in topics]
    return FetchResponse(version=version, throttle_time_ms=0, error_code=error_code,
                         session_id=session_id, responses=responses,
                         node_endpoints=[FetchResponse.NodeEndpoint(*e) for e in node_endpoints]
                         ).encode(version=version)


@pytest.mark.parametrize("version", range(4, 19))
def test_same_bytes_as_kafka_python(version):
    mine = FetchResponseParts(TOPICS, session_id=77).encode_parts(version)
    assert b"".join(mine) == reference(TOPICS, version, session_id=77)
    # the batches are passed through, not copied
    assert any(part is TOPICS[0].partitions[0].records[1] for part in mine)
    decoded = FetchResponse.decode(b"".join(mine), version=version)
    assert decoded.responses[0].partitions[0].high_watermark == 120


@pytest.mark.parametrize("version", [4, 7, 12, 13, 18])
def test_no_topics(version):
    assert FetchResponseParts([], session_id=0).encode(version) == reference([], version)


# KIP-951: current_leader (partition tag 1, v12+) and node_endpoints (tag 0, v16+)
LEADER_TOPICS = [
    FetchTopic("clicks", uuid.uuid4(), [
        FetchPartition(0, 0, 120, 0, [batch(0, 3)]),
        FetchPartition(1, 6, -1, -1, [], current_leader=(2, 7)),
        FetchPartition(2, 6, -1, -1, [], current_leader=(-1, 4)),     # leader not live: no endpoint
    ]),
    FetchTopic("carts", uuid.uuid4(), [FetchPartition(5, 74, -1, -1, [], current_leader=(3, 1))]),
]
ENDPOINTS = [NodeEndpoint(2, "broker-2.example", 9092, None), NodeEndpoint(3, "b3-ü", 19093, "r" * 200)]


@pytest.mark.parametrize("version", range(4, 19))
def test_current_leader_and_node_endpoints_same_bytes_as_kafka_python(version):
    mine = FetchResponseParts(LEADER_TOPICS, session_id=5, node_endpoints=ENDPOINTS).encode_parts(version)
    assert b"".join(mine) == reference(LEADER_TOPICS, version, session_id=5, node_endpoints=ENDPOINTS)
    assert any(part is LEADER_TOPICS[0].partitions[0].records[0] for part in mine)
    decoded = FetchResponse.decode(b"".join(mine), version=version)
    leaders = [(p.partition_index, p.current_leader and (p.current_leader.leader_id, p.current_leader.leader_epoch))
               for t in decoded.responses for p in t.partitions]
    if version >= 12:
        assert leaders == [(0, None), (1, (2, 7)), (2, (-1, 4)), (5, (3, 1))]
    if version >= 16:
        assert [(e.node_id, e.host, e.port, e.rack) for e in decoded.node_endpoints] == \
            [tuple(e) for e in ENDPOINTS]
    elif version >= 12:     # no endpoints before v16
        assert b"".join(mine) == FetchResponseParts(LEADER_TOPICS, session_id=5, node_endpoints=[]).encode(version)
    # node_endpoints None: the common path, where no partition's current_leader is read
    assert FetchResponseParts(LEADER_TOPICS, session_id=5).encode(version) == \
        reference([FetchTopic(t.name, t.topic_id, [FetchPartition(p.index, p.error_code, p.high_watermark,
                                                                  p.log_start_offset, p.records)
                                                   for p in t.partitions]) for t in LEADER_TOPICS],
                  version, session_id=5)


def test_unknown_leader_is_the_default_and_not_written():
    """(-1, -1) is LeaderIdAndEpoch's default: Kafka's generated writer leaves
    the tag out (kafka-python's default is None: compare with that)."""
    tid = uuid.uuid4()
    mine = FetchResponseParts([FetchTopic("t", tid, [FetchPartition(0, 6, -1, -1, [], current_leader=(-1, -1))])],
                              node_endpoints=[])
    plain = [FetchTopic("t", tid, [FetchPartition(0, 6, -1, -1, [])])]
    for version in (12, 13, 16, 18):
        assert mine.encode(version) == reference(plain, version)
