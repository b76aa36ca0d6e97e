"""The hand-written ProduceResponse encoder writes exactly kafka-python's bytes."""
import uuid

import pytest
from kafka.protocol.producer import ProduceResponse

from broker.apis.produce_response import PartitionResult, ProduceResponseBytes, TopicResult

TopicResp = ProduceResponse.TopicProduceResponse
PartResp = TopicResp.PartitionProduceResponse

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
