"""The hand-written FetchResponse encoder writes exactly kafka-python's bytes (v4-18)."""
import uuid

import pytest
from kafka.protocol.consumer import FetchResponse
from kafka.record.default_records import DefaultRecordBatchBuilder

from broker.apis.fetch_response import FetchPartition, FetchResponseParts, FetchTopic

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


def reference(topics, version: int, session_id: int = 0, error_code: int = 0) -> bytes:
    responses = [TopicResp(topic=t.name, topic_id=t.topic_id, partitions=[
        PartData(partition_index=p.index, error_code=p.error_code, high_watermark=p.high_watermark,
                 last_stable_offset=p.high_watermark, log_start_offset=p.log_start_offset,
                 aborted_transactions=None, preferred_read_replica=-1, records=b"".join(p.records))
        for p in t.partitions]) for t in topics]
    return FetchResponse(version=version, throttle_time_ms=0, error_code=error_code,
                         session_id=session_id, responses=responses).encode(version=version)


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
