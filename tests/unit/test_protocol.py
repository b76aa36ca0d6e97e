"""broker.protocol: frame decoding, request headers v1/v2, response framing."""
from __future__ import annotations

import random
import struct

import pytest
from kafka.protocol.metadata import MetadataRequest, MetadataResponse

from broker.network.protocol import (
    FrameDecoder,
    FrameTooLarge,
    ProtocolError,
    frame_response,
    parse_request_header,
    peek_api,
)

# The first bytes confluent-kafka 2.16.1 (librdkafka 2.16.0) wrote on a new
# connection, captured from a socket: ApiVersions v3, correlation id 1,
# header v2 (client_id "rdkafka-capture", no tagged fields), then the body
# (compact strings client_software_name / client_software_version, no tags).
RDKAFKA_API_VERSIONS_V3 = bytes.fromhex(
    "000000480012000300000001000f72646b61666b612d636170747572650017636f6e666c75656e742d"
    "6b61666b612d707974686f6e16322e31362e312d72646b61666b612d322e31362e3000")


def metadata_v1(correlation_id: int = 7, client_id: str | None = "cid") -> bytes:
    r = MetadataRequest(version=1, topics=[MetadataRequest.MetadataRequestTopic(name="t1")])
    r.with_header(correlation_id=correlation_id, client_id=client_id)
    return bytes(r.encode(header=True, framed=True))


def metadata_v9(correlation_id: int = 8) -> bytes:
    r = MetadataRequest(version=9, topics=None, allow_auto_topic_creation=True,
                        include_cluster_authorized_operations=False,
                        include_topic_authorized_operations=False)
    r.with_header(correlation_id=correlation_id, client_id="kafka-python")
    return bytes(r.encode(header=True, framed=True))


def frame(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


def header_v2_with_tags(api_key=3, version=12, correlation_id=99, client_id=b"c",
                        tags=((0, b"abc"), (5, b""), (300, b"x" * 200)), body=b"BODY") -> bytes:
    """A request header v2 with tagged fields, built by hand (uvarint encoded)."""

    def uvarint(n: int) -> bytes:
        out = bytearray()
        while True:
            b = n & 0x7F
            n >>= 7
            if n:
                out.append(b | 0x80)
            else:
                out.append(b)
                return bytes(out)

    head = struct.pack(">hhi", api_key, version, correlation_id)
    head += struct.pack(">h", len(client_id)) + client_id
    head += uvarint(len(tags))
    for tag, data in tags:
        head += uvarint(tag) + uvarint(len(data)) + data
    return head + body


STREAM = [RDKAFKA_API_VERSIONS_V3, metadata_v1(), metadata_v9(), frame(b""), metadata_v1(9, None)]
BODIES = [f[4:] for f in STREAM]


# ----------------------------------------------------------------- decoding
def test_decoder_whole_stream_at_once():
    d = FrameDecoder(1 << 20)
    assert d.feed(b"".join(STREAM)) == BODIES
    assert d.buffered == 0


def test_decoder_one_byte_at_a_time():
    d = FrameDecoder(1 << 20)
    data = b"".join(STREAM)
    out: list[bytes] = []
    ends = set()
    pos = 0
    for f in STREAM:
        pos += len(f)
        ends.add(pos)
    for i in range(len(data)):
        got = d.feed(data[i:i + 1])
        # A frame comes out exactly when its last byte arrives (or, for the
        # empty frame, its size prefix), never earlier.
        if got:
            assert i + 1 in ends
        out.extend(got)
    assert out == BODIES
    assert d.buffered == 0


@pytest.mark.parametrize("seed", range(5))
def test_decoder_random_chunks(seed):
    rng = random.Random(seed)
    data = b"".join(STREAM) * 3
    d = FrameDecoder(1 << 20)
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        n = rng.randint(1, 40)
        out.extend(d.feed(memoryview(data)[pos:pos + n]))
        pos += n
    assert out == BODIES * 3


@pytest.mark.parametrize("partial", [1, 3, 4, 5, 20])
def test_decoder_trailing_partial_frame_is_kept(partial):
    d = FrameDecoder(1 << 20)
    tail = metadata_v9(42)
    got = d.feed(STREAM[0] + STREAM[1] + tail[:partial])
    assert got == BODIES[:2]
    assert d.buffered == (partial if partial < 4 else partial - 4)
    assert d.feed(b"") == []
    assert d.feed(tail[partial:]) == [tail[4:]]
    assert d.buffered == 0


def test_decoder_frame_exactly_at_limit_is_accepted():
    d = FrameDecoder(10)
    assert d.feed(frame(b"0123456789")) == [b"0123456789"]


def test_oversized_frame_raises_before_body_arrives():
    d = FrameDecoder(1000)
    with pytest.raises(FrameTooLarge):
        d.feed(struct.pack(">i", 1001))  # only the size prefix: nothing of the body yet
    assert d.buffered <= 4  # the body was never buffered


def test_oversized_frame_after_good_frames_raises():
    d = FrameDecoder(1000)
    assert d.feed(STREAM[1]) == [BODIES[1]]
    with pytest.raises(FrameTooLarge) as ei:
        d.feed(STREAM[2] + struct.pack(">i", 2**31 - 1) + b"\x00" * 10)
    # The complete frame that arrived before the bad size is handed back with the error.
    assert ei.value.frames == [BODIES[2]]


def test_oversized_size_prefix_split_across_feeds():
    d = FrameDecoder(1000)
    prefix = struct.pack(">i", 5000)
    assert d.feed(prefix[:2]) == []
    with pytest.raises(FrameTooLarge):
        d.feed(prefix[2:])


def test_negative_frame_size_is_protocol_error():
    d = FrameDecoder(1000)
    with pytest.raises(ProtocolError) as ei:
        d.feed(struct.pack(">i", -5))
    assert not isinstance(ei.value, FrameTooLarge)
    assert ei.value.frames == []


# ------------------------------------------------------------------ headers
def test_parse_request_header_v1_from_kafka_python():
    body = metadata_v1(correlation_id=1234, client_id="my-client")[4:]
    h = parse_request_header(body, flexible=False)
    assert (h.api_key, h.api_version, h.correlation_id) == (3, 1, 1234)
    assert h.client_id == "my-client"
    req = MetadataRequest.decode(body[h.body_offset:], version=1)
    assert [t.name for t in req.topics] == ["t1"]


def test_parse_request_header_v1_null_client_id():
    body = metadata_v1(correlation_id=5, client_id=None)[4:]
    h = parse_request_header(body, flexible=False)
    assert h.client_id is None
    assert h.correlation_id == 5
    assert h.body_offset == 10  # api_key, api_version, correlation_id, int16 -1


def test_parse_request_header_v2_captured_librdkafka():
    body = RDKAFKA_API_VERSIONS_V3[4:]
    h = parse_request_header(body, flexible=True)
    assert (h.api_key, h.api_version, h.correlation_id) == (18, 3, 1)
    assert h.client_id == "rdkafka-capture"
    rest = body[h.body_offset:]
    assert rest[0] == len("confluent-kafka-python") + 1  # compact string length
    assert rest[1:23] == b"confluent-kafka-python"


def test_parse_request_header_v2_from_kafka_python():
    body = metadata_v9(correlation_id=77)[4:]
    h = parse_request_header(body, flexible=True)
    assert (h.api_key, h.api_version, h.correlation_id, h.client_id) == (3, 9, 77, "kafka-python")
    req = MetadataRequest.decode(body[h.body_offset:], version=9)
    assert req.topics is None and req.allow_auto_topic_creation is True


def test_parse_request_header_v2_skips_tagged_fields():
    body = header_v2_with_tags()
    h = parse_request_header(body, flexible=True)
    assert (h.api_key, h.api_version, h.correlation_id, h.client_id) == (3, 12, 99, "c")
    assert body[h.body_offset:] == b"BODY"


def test_parse_request_header_v2_truncated_tagged_field():
    body = header_v2_with_tags(body=b"")[:-10]
    with pytest.raises(ProtocolError):
        parse_request_header(body, flexible=True)


def test_parse_request_header_v2_missing_tag_count():
    body = struct.pack(">hhih", 3, 12, 1, -1)
    with pytest.raises(ProtocolError):
        parse_request_header(body, flexible=True)


@pytest.mark.parametrize("frame_bytes", [b"", b"\x00\x03\x00", struct.pack(">hhi", 3, 1, 1),
                                         struct.pack(">hhih", 3, 1, 1, 20) + b"short",
                                         struct.pack(">hhih", 3, 1, 1, -7)])
def test_truncated_or_bad_header_is_protocol_error(frame_bytes):
    with pytest.raises(ProtocolError):
        parse_request_header(frame_bytes, flexible=False)


def test_peek_api_reads_any_header_version():
    assert peek_api(RDKAFKA_API_VERSIONS_V3[4:]) == (18, 3, 1)
    assert peek_api(metadata_v1(3)[4:]) == (3, 1, 3)
    with pytest.raises(ProtocolError):
        peek_api(b"\x00\x01")


# ----------------------------------------------------------------- response
def _metadata_response(version: int) -> bytes:
    resp = MetadataResponse(version=version, throttle_time_ms=0, brokers=[], cluster_id="c",
                            controller_id=1, topics=[])
    return bytes(resp.encode())


def test_frame_response_v0_header():
    body = _metadata_response(1)
    parts = frame_response(31, body, flexible_header=False)
    wire = b"".join(parts)
    assert parts[-1] is body  # the body is not copied
    assert struct.unpack_from(">i", wire)[0] == len(wire) - 4
    assert struct.unpack_from(">i", wire, 4)[0] == 31
    decoded = MetadataResponse.decode(wire, version=1, header=True, framed=True)
    assert decoded.header.correlation_id == 31
    assert decoded.controller_id == 1


def test_frame_response_v1_header_has_empty_tagged_fields():
    body = _metadata_response(9)
    wire = b"".join(frame_response(2**31 - 1, body, flexible_header=True))
    assert struct.unpack_from(">i", wire)[0] == 4 + 1 + len(body)
    assert wire[8] == 0  # zero tagged fields
    assert wire[9:] == body
    decoded = MetadataResponse.decode(wire, version=9, header=True, framed=True)
    assert decoded.header.correlation_id == 2**31 - 1
    assert decoded.cluster_id == "c"


def test_framed_response_round_trips_through_frame_decoder():
    wire = b"".join(frame_response(5, b"abc", flexible_header=False)) + \
        b"".join(frame_response(6, b"", flexible_header=True))
    frames = FrameDecoder(100).feed(wire)
    assert frames == [struct.pack(">i", 5) + b"abc", struct.pack(">i", 6) + b"\x00"]
