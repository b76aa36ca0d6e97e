"""Hostile, malformed and unusual wire traffic against a real broker process.

Every test talks raw Kafka protocol (tests/wire.py) to a ``sluice serve``
subprocess and checks two things: the broker answers exactly as Apache Kafka
does (an error code, or closing the connection when there is nothing it could
answer), and it stays up and keeps serving other connections afterwards.
"""
from __future__ import annotations

import struct

import pytest
from kafka.protocol.admin import CreatePartitionsRequest, CreateTopicsRequest, CreateTopicsResponse
from kafka.protocol.consumer import FetchRequest, ListOffsetsRequest
from kafka.protocol.metadata import ApiVersionsRequest, ApiVersionsResponse, MetadataRequest
from kafka.protocol.producer import InitProducerIdRequest, ProduceRequest
from kafka.record.memory_records import MemoryRecordsBuilder
from wire import WireClient, decode_records, encode_request, make_batch

# Kafka error codes used below
NONE = 0
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_TOPIC_EXCEPTION = 17
INVALID_PARTITIONS = 37
POLICY_VIOLATION = 44
UNSUPPORTED_VERSION = 35
UNSUPPORTED_FOR_MESSAGE_FORMAT = 43
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
INVALID_PRODUCER_EPOCH = 47
FETCH_SESSION_ID_NOT_FOUND = 70
INVALID_FETCH_SESSION_EPOCH = 71

PRODUCE_V = 9      # flexible, topics by name
FETCH_V = 12       # flexible, sessions, topics by name
LIST_OFFSETS_V = 7
METADATA_V = 12
CREATE_TOPICS_V = 7
INIT_PID_V = 4

P = ProduceRequest
F = FetchRequest
L = ListOffsetsRequest
C = CreateTopicsRequest


# ------------------------------------------------------------------ helpers
def assert_serving(broker) -> None:
    """The broker process is alive and a fresh connection gets real answers."""
    assert broker.proc.poll() is None, f"broker exited: {broker.log_text()[-3000:]}"
    with WireClient(broker.port) as c:
        av = c.request(ApiVersionsRequest(client_software_name="t", client_software_version="1"), 3)
        assert av.error_code == NONE
        assert {k.api_key for k in av.api_keys} >= {0, 1, 2, 3, 18}
        md = c.request(MetadataRequest(topics=None), METADATA_V)
        assert [b.node_id for b in md.brokers], md


def raw_header(api_key: int, version: int, correlation_id: int = 1, client_id: bytes = b"raw",
               flexible: bool = False) -> bytes:
    head = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    return head + (b"\x00" if flexible else b"")


def frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def metadata_req(names: list[str] | None, allow_auto: bool = True) -> MetadataRequest:
    topics = None if names is None else [MetadataRequest.MetadataRequestTopic(name=n) for n in names]
    return MetadataRequest(topics=topics, allow_auto_topic_creation=allow_auto)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def create_topic(c: WireClient, name: str, partitions: int = 1) -> None:
    resp = c.request(C(topics=[C.CreatableTopic(name=name, num_partitions=partitions,
                                                 replication_factor=1, assignments=[], configs=[])],
                       timeout_ms=10000, validate_only=False), CREATE_TOPICS_V)
    assert resp.topics[0].error_code == NONE, resp


def produce_req(topic: str, partition: int, records: bytes | None, acks: int = -1) -> ProduceRequest:
    return P(transactional_id=None, acks=acks, timeout_ms=10000,
             topic_data=[P.TopicProduceData(name=topic, partition_data=[
                 P.TopicProduceData.PartitionProduceData(index=partition, records=records)])])


def produce(c: WireClient, topic: str, partition: int, records: bytes | None):
    """(error code, base offset) of a single-partition produce with acks=all."""
    resp = c.request(produce_req(topic, partition, records), PRODUCE_V)
    pr = resp.responses[0].partition_responses[0]
    return pr.error_code, pr.base_offset


def latest_offset(c: WireClient, topic: str, partition: int = 0) -> int:
    resp = c.request(L(replica_id=-1, isolation_level=0, topics=[L.ListOffsetsTopic(
        name=topic, partitions=[L.ListOffsetsTopic.ListOffsetsPartition(
            partition_index=partition, current_leader_epoch=-1, timestamp=-1)])]), LIST_OFFSETS_V)
    pr = resp.topics[0].partitions[0]
    assert pr.error_code == NONE, pr
    return pr.offset


def fetch_req(parts: list[tuple[str, int, int]], *, max_wait_ms: int = 0, min_bytes: int = 1,
              session_id: int = 0, session_epoch: int = -1) -> FetchRequest:
    by_topic: dict[str, list] = {}
    for topic, partition, offset in parts:
        by_topic.setdefault(topic, []).append(F.FetchTopic.FetchPartition(
            partition=partition, fetch_offset=offset, partition_max_bytes=1 << 20))
    return F(replica_id=-1, max_wait_ms=max_wait_ms, min_bytes=min_bytes, max_bytes=8 << 20,
             isolation_level=0, session_id=session_id, session_epoch=session_epoch,
             topics=[F.FetchTopic(topic=t, partitions=ps) for t, ps in by_topic.items()],
             forgotten_topics_data=[], rack_id="")


def fetch_values(c: WireClient, topic: str, partition: int, offset: int) -> list[tuple[int, bytes]]:
    resp = c.request(fetch_req([(topic, partition, offset)]), FETCH_V)
    assert resp.error_code == NONE
    pd = resp.responses[0].partitions[0]
    assert pd.error_code == NONE, pd
    return [(o, v) for o, _k, v in decode_records(pd.records)]


def session_partitions(resp) -> dict[tuple[str, int], object]:
    return {(t.topic, p.partition_index): p for t in resp.responses for p in t.partitions}


# ------------------------------------------------------------ framing abuse
def test_oversized_frame_closes_connection_without_allocating(broker_factory):
    """A declared size above socket.request.max.bytes closes the connection at once.

    The body is never sent: the broker must decide from the 4-byte size alone,
    and must not reserve the declared gigabyte (RSS stays flat).
    """
    broker = broker_factory("socket.request.max.bytes=1048576")
    before = rss_kib(broker.proc.pid)
    for declared in (1048577, 1 << 30, 2**31 - 1):
        with WireClient(broker.port) as c:
            c.send_raw(struct.pack(">i", declared) + raw_header(3, METADATA_V, flexible=True))
            assert c.closed_by_peer(), f"size {declared}"
    with WireClient(broker.port) as c:  # a negative size is just as impossible
        c.send_raw(struct.pack(">i", -5) + b"\x00" * 8)
        assert c.closed_by_peer()
    assert rss_kib(broker.proc.pid) - before < 64 * 1024
    # A frame just under the limit is still read and answered.
    with WireClient(broker.port) as c:
        create_topic(c, "big", 1)
        req = produce_req("big", 0, make_batch([b"x" * 1_040_000]))
        data, _ = c.encode(req, PRODUCE_V)
        assert 1_040_000 < len(data) - 4 <= 1048576
        assert produce(c, "big", 0, make_batch([b"x" * 1_040_000])) == (NONE, 0)
    assert_serving(broker)
    assert "exceeds socket.request.max.bytes" in broker.log_text()


@pytest.mark.parametrize("api_key", [9999, 57, -1, 17])
def test_unknown_api_key_closes_connection(broker, api_key):
    """An API key the broker does not implement (57 = UpdateFeatures, 17 = SaslHandshake,
    9999 and -1 = no such API) has no response schema to answer with: close."""
    with WireClient(broker.port) as c:
        c.send_raw(frame(raw_header(api_key, 0) + b"\x00" * 16))
        assert c.closed_by_peer()
    assert_serving(broker)


def test_api_versions_above_max_answers_v0_unsupported_version(broker):
    """KIP-511: ApiVersions at a version the broker does not know is answered with
    an ApiVersions v0 response carrying UNSUPPORTED_VERSION (35) and the broker's
    supported ranges, so the client can retry at a version both sides speak."""
    with WireClient(broker.port) as c:
        # v99 header is v2 (flexible); the body is whatever a future client sends.
        c.send_raw(frame(raw_header(18, 99, correlation_id=4242, flexible=True)
                         + b"\x05sluc\x021\x00"))
        payload = c.read_frame()
        assert struct.unpack_from(">i", payload)[0] == 4242
        resp = ApiVersionsResponse.decode(payload[4:], version=0)  # no header tag byte
        assert resp.error_code == UNSUPPORTED_VERSION
        ranges = {k.api_key: (k.min_version, k.max_version) for k in resp.api_keys}
        assert ranges[18][0] == 0 and 3 <= ranges[18][1] < 99
        assert 0 in ranges and 1 in ranges and 3 in ranges
        # The connection stays usable: retry at a supported version.
        v = min(ranges[18][1], ApiVersionsRequest.max_version)
        ok = c.request(ApiVersionsRequest(client_software_name="t", client_software_version="1"), v)
        assert ok.error_code == NONE and ok.api_keys
    assert_serving(broker)


@pytest.mark.parametrize("api_key,version", [(0, 2), (3, 99), (1, 3), (19, 1000)])
def test_other_api_at_unsupported_version_closes_connection(broker, api_key, version):
    """Any API other than ApiVersions at an unsupported version closes the connection.

    This is Apache Kafka's behaviour: SocketServer cannot parse the request (it
    has no schema for that version, so not even the response header format is
    known) and closes the connection with an InvalidRequestException in its log;
    only ApiVersions gets the KIP-511 v0 answer. Produce v0-v2 and Fetch v0-v3
    were removed in Kafka 4.0 and are unsupported here too.
    """
    with WireClient(broker.port) as c:
        c.send_raw(frame(raw_header(api_key, version) + b"\x00" * 32))
        assert c.closed_by_peer()
    assert_serving(broker)


def test_truncated_requests_close_connection(broker):
    """Frames too short for their header, or whose body is cut, are unparseable: close."""
    cases: list[tuple[str, bytes]] = []
    cases.append(("shorter than api key/version/correlation id", frame(b"\x00\x03\x00")))
    cases.append(("empty frame", frame(b"")))
    cases.append(("client id length past the end",
                  frame(struct.pack(">hhih", 3, METADATA_V, 1, 100) + b"abc")))
    cases.append(("header without tagged-field byte", frame(raw_header(3, METADATA_V))))
    md_payload = encode_request(metadata_req(["a", "b", "c"]), METADATA_V, 1)[4:]
    pr_payload = encode_request(produce_req("t", 0, make_batch([b"x" * 100])), PRODUCE_V, 2)[4:]
    cases.append(("metadata body cut", frame(md_payload[:-4])))
    cases.append(("produce body cut inside records", frame(pr_payload[:len(pr_payload) - 60])))
    cases.append(("produce body cut before records", frame(pr_payload[:30])))
    for name, data in cases:
        with WireClient(broker.port) as c:
            c.send_raw(data)
            assert c.closed_by_peer(), name
    assert_serving(broker)


def test_garbled_bodies_close_connection(broker):
    """Bodies that decode to impossible values (huge array counts, string lengths
    beyond the frame, a nonsense varint) close the connection, quickly."""
    flex = lambda k, v: raw_header(k, v, flexible=True)  # noqa: E731
    cases = {
        # compact array length 2^32-2 elements, with nothing behind it
        "metadata huge topic count": flex(3, METADATA_V) + b"\xff\xff\xff\xff\x0f",
        # varint that never ends
        "metadata endless varint": flex(3, METADATA_V) + b"\xff" * 40,
        # classic (non-flexible) Metadata v4: int32 array count of 2^31-1
        "metadata v4 huge count": raw_header(3, 4) + b"\x7f\xff\xff\xff",
        # Produce v9: transactional id null, acks, timeout, then topic name longer than the frame
        "produce topic name too long": flex(0, PRODUCE_V) + b"\x00" + b"\xff\xff" + b"\x00\x00\x27\x10"
                                      + b"\x02" + b"\xe8\x07" + b"ab",
        "produce all 0xff": flex(0, PRODUCE_V) + b"\xff" * 200,
        "fetch all 0xff": flex(1, FETCH_V) + b"\xff" * 200,
        "create topics garbage": flex(19, CREATE_TOPICS_V) + b"\x80" * 64,
    }
    for name, payload in cases.items():
        with WireClient(broker.port) as c:
            c.send_raw(frame(payload))
            assert c.closed_by_peer(), name
    assert_serving(broker)


def test_requests_before_a_bad_frame_are_answered_before_the_close(broker):
    """Kafka handles a connection's requests one at a time, so requests that came
    before a malformed one are still answered; only then is the connection closed
    (a produce that was appended is acknowledged, not silently dropped)."""
    bad_tails = {
        "garbage frame": frame(b"\x00\x03"),
        "unknown api key": frame(raw_header(9999, 0)),
        "oversized frame": struct.pack(">i", 2**31 - 1),
    }
    with WireClient(broker.port) as c:
        create_topic(c, "before-bad", 1)
    for i, (name, tail) in enumerate(bad_tails.items()):
        with WireClient(broker.port) as c:
            cids = c.pipeline([(metadata_req(["before-bad"]), METADATA_V),
                               (produce_req("before-bad", 0, make_batch([name.encode()])), PRODUCE_V)],
                              trailing=tail)
            (c1, md), (c2, pr) = c.receive(), c.receive()
            assert [c1, c2] == cids, name
            assert md.topics[0].error_code == NONE
            assert (pr.responses[0].partition_responses[0].error_code,
                    pr.responses[0].partition_responses[0].base_offset) == (NONE, i), name
            assert c.closed_by_peer(), name
    with WireClient(broker.port) as c:
        assert [v for _o, v in fetch_values(c, "before-bad", 0, 0)] == [n.encode() for n in bad_tails]
    assert_serving(broker)


def test_null_where_the_schema_forbids_it_closes_connection(broker):
    """Arrays and strings sent as null (length -1, compact 0) where the schema
    does not allow null make the request unparseable, as in Kafka ("non-nullable
    field ... was serialized as null"): the connection closes and no handler
    runs (none crashes)."""
    flex = lambda k, v: raw_header(k, v, flexible=True)  # noqa: E731
    cases = {
        # replica id, isolation level, topics = null
        "list offsets null topics": flex(2, LIST_OFFSETS_V) + b"\xff\xff\xff\xff\x00" + b"\x00" + b"\x00",
        # null transactional id (allowed), acks, timeout, one topic with a null name, no partitions
        "produce null topic name": flex(0, PRODUCE_V) + b"\x00" + b"\xff\xff" + b"\x00\x00\x27\x10"
                                   + b"\x02" + b"\x00" + b"\x01" + b"\x00" + b"\x00",
        # classic Produce v3: null transactional id, acks, timeout, topics = null (int32 -1)
        "produce v3 null topics": raw_header(0, 3) + b"\xff\xff" + b"\xff\xff" + b"\x00\x00\x27\x10"
                                  + b"\xff\xff\xff\xff",
    }
    for name, payload in cases.items():
        with WireClient(broker.port) as c:
            c.send_raw(frame(payload))
            assert c.closed_by_peer(), name
    assert_serving(broker)
    log = broker.log_text()
    assert log.count("was serialized as null") == len(cases)
    assert "Traceback" not in log and "handler failed" not in log


def test_half_frame_then_hang_up_leaves_broker_serving(broker):
    """A client that declares a frame, sends part of it and disconnects."""
    for _ in range(5):
        with WireClient(broker.port) as c:
            c.send_raw(struct.pack(">i", 1000) + raw_header(3, METADATA_V, flexible=True))
    assert_serving(broker)


# ------------------------------------------------------------ record batches
def test_corrupt_batch_is_refused_and_nothing_appended(broker):
    """A batch whose CRC32C does not match gets CORRUPT_MESSAGE (2) for that
    partition; a legacy magic-1 message set gets UNSUPPORTED_FOR_MESSAGE_FORMAT
    (43). Neither moves the log end, and a fetch still returns only the good
    records written before."""
    with WireClient(broker.port) as c:
        create_topic(c, "corrupt", 2)
        good = make_batch([b"good-0", b"good-1", b"good-2"])
        assert produce(c, "corrupt", 0, good) == (NONE, 0)
        assert latest_offset(c, "corrupt") == 3

        bad = make_batch([b"bad-0", b"bad-1"])
        corrupted = []
        for pos in (len(bad) - 1, 21, 17, 40):  # a value byte, attributes, the CRC, a timestamp
            b = bytearray(bad)
            b[pos] ^= 0x5A
            corrupted.append(bytes(b))
        corrupted.append(good + corrupted[0])  # a good batch followed by a bad one: all refused
        for records in corrupted:
            err, base = produce(c, "corrupt", 0, records)
            assert err == CORRUPT_MESSAGE and base == -1

        legacy = MemoryRecordsBuilder(magic=1, compression_type=0, batch_size=1 << 20)
        legacy.append(timestamp=1_700_000_000_000, key=None, value=b"legacy")
        legacy.close()
        assert produce(c, "corrupt", 0, bytes(legacy.buffer())) == (UNSUPPORTED_FOR_MESSAGE_FORMAT, -1)

        # One request, two partitions: the corrupt one fails alone.
        resp = c.request(P(transactional_id=None, acks=-1, timeout_ms=10000, topic_data=[
            P.TopicProduceData(name="corrupt", partition_data=[
                P.TopicProduceData.PartitionProduceData(index=0, records=corrupted[0]),
                P.TopicProduceData.PartitionProduceData(index=1, records=make_batch([b"p1"]))])]),
            PRODUCE_V)
        errs = {p.index: p.error_code for p in resp.responses[0].partition_responses}
        assert errs == {0: CORRUPT_MESSAGE, 1: NONE}

        assert latest_offset(c, "corrupt") == 3
        assert fetch_values(c, "corrupt", 0, 0) == [(0, b"good-0"), (1, b"good-1"), (2, b"good-2")]
        assert fetch_values(c, "corrupt", 0, 3) == []
        assert fetch_values(c, "corrupt", 1, 0) == [(0, b"p1")]
    assert_serving(broker)


# --------------------------------------------------------------- topic names
def test_unknown_topic_without_auto_create(broker_factory):
    """auto.create.topics.enable=false: Metadata and Produce answer
    UNKNOWN_TOPIC_OR_PARTITION (3) and no topic appears; an invalid name is
    still INVALID_TOPIC_EXCEPTION (17), as Kafka validates it before answering."""
    broker = broker_factory("auto.create.topics.enable=false")
    with WireClient(broker.port) as c:
        md = c.request(metadata_req(["nope"]), METADATA_V)
        assert [(t.name, t.error_code) for t in md.topics] == [("nope", UNKNOWN_TOPIC_OR_PARTITION)]
        assert produce(c, "nope", 0, make_batch([b"x"])) == (UNKNOWN_TOPIC_OR_PARTITION, -1)
        md = c.request(metadata_req(["bad name!"]), METADATA_V)
        assert md.topics[0].error_code == INVALID_TOPIC_EXCEPTION
        all_topics = c.request(MetadataRequest(topics=None), METADATA_V)
        assert all_topics.topics == []
        # An existing topic's missing partition is unknown as well.
        create_topic(c, "known", 1)
        assert produce(c, "known", 5, make_batch([b"x"])) == (UNKNOWN_TOPIC_OR_PARTITION, -1)
    assert_serving(broker)


INVALID_NAMES = ["bad name!", "a" * 250, "..", ".", "", "tab\there", "ünicode"]


def test_invalid_topic_names(broker):
    """INVALID_TOPIC_EXCEPTION (17) from Metadata auto-create and from CreateTopics."""
    with WireClient(broker.port) as c:
        md = c.request(metadata_req(INVALID_NAMES),
                       METADATA_V)
        assert {t.name: t.error_code for t in md.topics} == {n: INVALID_TOPIC_EXCEPTION
                                                             for n in INVALID_NAMES}
        # Without auto-creation too: Kafka validates the name before saying "unknown".
        md = c.request(metadata_req(INVALID_NAMES, allow_auto=False), METADATA_V)
        assert {t.name: t.error_code for t in md.topics} == {n: INVALID_TOPIC_EXCEPTION
                                                             for n in INVALID_NAMES}
        resp = c.request(C(topics=[C.CreatableTopic(name=n, num_partitions=1, replication_factor=1,
                                                     assignments=[], configs=[])
                                   for n in INVALID_NAMES], timeout_ms=10000, validate_only=False),
                         CREATE_TOPICS_V)
        assert isinstance(resp, CreateTopicsResponse)
        assert {t.name: t.error_code for t in resp.topics} == {n: INVALID_TOPIC_EXCEPTION
                                                               for n in INVALID_NAMES}
        # The longest legal name (249) works, and nothing invalid was created.
        ok = "a" * 249
        md = c.request(metadata_req([ok]), METADATA_V)
        assert md.topics[0].error_code == NONE
        names = {t.name for t in c.request(MetadataRequest(topics=None), METADATA_V).topics}
        assert names == {ok}
    assert_serving(broker)


def test_absurd_partition_counts_are_refused_not_attempted(broker):
    """One CreateTopics asking for more than 10,000 partitions in total fails as
    a whole with POLICY_VIOLATION (44), as Kafka's controller does (KAFKA-17870),
    instead of building millions of partitions on the event loop; CreatePartitions
    growing a topic by more than that is refused the same way."""
    CP = CreatePartitionsRequest
    with WireClient(broker.port, timeout=20) as c:
        def create(topics):
            return c.request(C(topics=[C.CreatableTopic(name=n, num_partitions=k, replication_factor=1,
                                                         assignments=[], configs=[])
                                       for n, k in topics], timeout_ms=10000, validate_only=False),
                             CREATE_TOPICS_V)

        resp = create([("huge", 2**31 - 1)])
        assert [(t.name, t.error_code) for t in resp.topics] == [("huge", POLICY_VIOLATION)]
        resp = create([("p-a", 5000), ("p-b", 5000), ("p-c", 1)])
        assert {t.name: t.error_code for t in resp.topics} == dict.fromkeys(["p-a", "p-b", "p-c"],
                                                                             POLICY_VIOLATION)
        names = {t.name for t in c.request(MetadataRequest(topics=None), METADATA_V).topics}
        assert names == set()

        create_topic(c, "grow", 1)
        resp = c.request(CP(topics=[CP.CreatePartitionsTopic(name="grow", count=2**31 - 1, assignments=None)],
                            timeout_ms=10000, validate_only=False), 3)
        assert resp.results[0].error_code == POLICY_VIOLATION
        resp = c.request(CP(topics=[CP.CreatePartitionsTopic(name="grow", count=0, assignments=None)],
                            timeout_ms=10000, validate_only=False), 3)
        assert resp.results[0].error_code == INVALID_PARTITIONS
        resp = c.request(CP(topics=[CP.CreatePartitionsTopic(name="grow", count=3, assignments=None)],
                            timeout_ms=10000, validate_only=False), 3)
        assert resp.results[0].error_code == NONE
        md = c.request(metadata_req(["grow"]), METADATA_V)
        assert len(md.topics[0].partitions) == 3
    assert_serving(broker)


# -------------------------------------------------------- idempotent produce
def test_idempotent_producer_wire_semantics(broker):
    """Idempotent produce at the wire level, as Kafka's ProducerStateManager:
    a retried batch (same producer id, epoch, sequences) returns the original
    base offset and is not appended twice; a sequence gap is
    OUT_OF_ORDER_SEQUENCE_NUMBER (45); an older epoch after a newer one has
    written is INVALID_PRODUCER_EPOCH (47)."""
    with WireClient(broker.port) as c:
        create_topic(c, "idem", 1)
        init = c.request(InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=-1,
                                               producer_id=-1, producer_epoch=-1), INIT_PID_V)
        assert init.error_code == NONE and init.producer_id >= 0 and init.producer_epoch == 0
        pid = init.producer_id
        other = c.request(InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=-1,
                                                producer_id=-1, producer_epoch=-1), INIT_PID_V)
        assert other.producer_id != pid

        first = make_batch([b"a", b"b", b"c"], producer_id=pid, producer_epoch=0, base_sequence=0)
        assert produce(c, "idem", 0, first) == (NONE, 0)
        assert produce(c, "idem", 0, first) == (NONE, 0)  # retry: same offset, no copy
        second = make_batch([b"d"], producer_id=pid, producer_epoch=0, base_sequence=3)
        assert produce(c, "idem", 0, second) == (NONE, 3)
        assert produce(c, "idem", 0, first) == (NONE, 0)  # an older retry within the window
        assert latest_offset(c, "idem") == 4

        gap = make_batch([b"gap"], producer_id=pid, producer_epoch=0, base_sequence=10)
        assert produce(c, "idem", 0, gap)[0] == OUT_OF_ORDER_SEQUENCE_NUMBER

        bumped = c.request(InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=-1,
                                                 producer_id=pid, producer_epoch=0), INIT_PID_V)
        assert (bumped.error_code, bumped.producer_id, bumped.producer_epoch) == (NONE, pid, 1)
        new_epoch = make_batch([b"e"], producer_id=pid, producer_epoch=1, base_sequence=0)
        assert produce(c, "idem", 0, new_epoch) == (NONE, 4)
        stale = make_batch([b"stale"], producer_id=pid, producer_epoch=0, base_sequence=4)
        assert produce(c, "idem", 0, stale)[0] == INVALID_PRODUCER_EPOCH

        assert latest_offset(c, "idem") == 5
        assert fetch_values(c, "idem", 0, 0) == [(0, b"a"), (1, b"b"), (2, b"c"), (3, b"d"), (4, b"e")]
    assert_serving(broker)


# ------------------------------------------------------- acks=0, pipelining
def test_acks_zero_gets_no_response_but_appends(broker):
    """acks=0 produce is never answered, yet appended: the next answer on the
    socket belongs to the acks=all produce sent after it, at the following offset."""
    with WireClient(broker.port) as c:
        create_topic(c, "fire", 1)
        c.send(produce_req("fire", 0, make_batch([b"f0", b"f1"]), acks=0), PRODUCE_V)
        c.send(produce_req("fire", 0, make_batch([b"f2"]), acks=0), PRODUCE_V)
        cid = c.send(produce_req("fire", 0, make_batch([b"f3"]), acks=-1), PRODUCE_V)
        got, resp = c.receive()
        assert got == cid
        pr = resp.responses[0].partition_responses[0]
        assert (pr.error_code, pr.base_offset) == (NONE, 3)
        assert fetch_values(c, "fire", 0, 0) == [(0, b"f0"), (1, b"f1"), (2, b"f2"), (3, b"f3")]
    assert_serving(broker)


def test_failed_acks_zero_produce_closes_connection(broker):
    """With acks=0 there is no response to carry an error, so Kafka closes the
    connection instead (the client notices and refreshes its metadata). Answers
    to requests sent before it still arrive first."""
    with WireClient(broker.port) as c:
        create_topic(c, "fire0", 1)
        cid = c.pipeline([(metadata_req(["fire0"]), METADATA_V),
                          (produce_req("fire0", 7, make_batch([b"lost"]), acks=0), PRODUCE_V)])[0]
        got, md = c.receive()
        assert got == cid and md.topics[0].error_code == NONE
        assert c.closed_by_peer()
    with WireClient(broker.port) as c:
        bad = bytearray(make_batch([b"corrupt"]))
        bad[-1] ^= 1
        c.send(produce_req("fire0", 0, bytes(bad), acks=0), PRODUCE_V)
        assert c.closed_by_peer()
    with WireClient(broker.port) as c:
        assert latest_offset(c, "fire0") == 0
    assert_serving(broker)


def test_pipelined_requests_answered_in_order(broker):
    """Kafka answers the requests of one connection in the order they were sent,
    even when a later request could be answered first (here a long-poll fetch
    waiting 300 ms is followed by cheap requests)."""
    with WireClient(broker.port) as c:
        create_topic(c, "pipe", 1)
        reqs = [
            (fetch_req([("pipe", 0, 0)], max_wait_ms=300, min_bytes=1 << 20), FETCH_V),
            (ApiVersionsRequest(client_software_name="t", client_software_version="1"), 3),
        ]
        for i in range(8):
            reqs.append((produce_req("pipe", 0, make_batch([f"m{i}".encode()])), PRODUCE_V))
            reqs.append((metadata_req(["pipe"]), METADATA_V))
        reqs.append((L(replica_id=-1, isolation_level=0, topics=[L.ListOffsetsTopic(
            name="pipe", partitions=[L.ListOffsetsTopic.ListOffsetsPartition(
                partition_index=0, current_leader_epoch=-1, timestamp=-1)])]), LIST_OFFSETS_V))
        cids = c.pipeline(reqs)
        got = [c.receive() for _ in reqs]
        assert [cid for cid, _ in got] == cids
        offsets = [r.responses[0].partition_responses[0].base_offset
                   for (_, r), (req, _) in zip(got, reqs) if isinstance(req, ProduceRequest)]
        assert offsets == list(range(8))
        assert got[-1][1].topics[0].partitions[0].offset == 8

        # Processed in order too: a topic created, written and read in one pipeline.
        cids = c.pipeline([
            (C(topics=[C.CreatableTopic(name="pipe2", num_partitions=1, replication_factor=1,
                                        assignments=[], configs=[])],
               timeout_ms=10000, validate_only=False), CREATE_TOPICS_V),
            (produce_req("pipe2", 0, make_batch([b"p2"])), PRODUCE_V),
            (fetch_req([("pipe2", 0, 0)]), FETCH_V),
        ])
        (c1, created), (c2, produced), (c3, fetched) = [c.receive() for _ in cids]
        assert [c1, c2, c3] == cids
        assert created.topics[0].error_code == NONE
        assert produced.responses[0].partition_responses[0].error_code == NONE
        assert [v for _o, _k, v in decode_records(fetched.responses[0].partitions[0].records)] == [b"p2"]
    assert_serving(broker)


# ----------------------------------------------------------- fetch sessions
def test_fetch_sessions_incremental_and_errors(broker):
    """KIP-227 fetch sessions at Fetch v12."""
    with WireClient(broker.port) as c, WireClient(broker.port) as prod:
        create_topic(c, "sess", 2)
        parts = [("sess", 0, 0), ("sess", 1, 0)]
        full = c.request(fetch_req(parts, max_wait_ms=0, session_id=0, session_epoch=0), FETCH_V)
        assert full.error_code == NONE and full.session_id != 0
        sid = full.session_id
        assert set(session_partitions(full)) == {("sess", 0), ("sess", 1)}

        assert produce(prod, "sess", 1, make_batch([b"s1-a", b"s1-b"])) == (NONE, 0)
        inc = c.request(fetch_req([], max_wait_ms=5000, session_id=sid, session_epoch=1), FETCH_V)
        assert inc.error_code == NONE and inc.session_id == sid
        got = session_partitions(inc)
        assert set(got) == {("sess", 1)}
        assert got[("sess", 1)].high_watermark == 2
        assert [v for _o, _k, v in decode_records(got[("sess", 1)].records)] == [b"s1-a", b"s1-b"]

        # Nothing changed since (client moves partition 1 on to offset 2): empty response.
        inc2 = c.request(fetch_req([("sess", 1, 2)], max_wait_ms=50, session_id=sid, session_epoch=2),
                         FETCH_V)
        assert inc2.error_code == NONE and session_partitions(inc2) == {}

        # Epoch 2 was used; 2 again (or 7) is wrong.
        for bad_epoch in (2, 7):
            wrong = c.request(fetch_req([], session_id=sid, session_epoch=bad_epoch), FETCH_V)
            assert wrong.error_code == INVALID_FETCH_SESSION_EPOCH and wrong.responses == []
        unknown = c.request(fetch_req([], session_id=sid + 987654, session_epoch=1), FETCH_V)
        assert unknown.error_code == FETCH_SESSION_ID_NOT_FOUND
        # The session survived the bad requests: epoch 3 is still the next one.
        assert produce(prod, "sess", 0, make_batch([b"s0"])) == (NONE, 0)
        inc3 = c.request(fetch_req([], max_wait_ms=5000, session_id=sid, session_epoch=3), FETCH_V)
        assert inc3.error_code == NONE
        got = session_partitions(inc3)
        assert set(got) == {("sess", 0)}
        assert [v for _o, _k, v in decode_records(got[("sess", 0)].records)] == [b"s0"]
    assert_serving(broker)


def test_long_poll_fetch_returns_when_another_connection_produces(broker):
    with WireClient(broker.port) as setup:
        create_topic(setup, "poll", 1)
        assert produce(setup, "poll", 0, make_batch([b"old"])) == (NONE, 0)
    with WireClient(broker.port, timeout=30) as consumer, WireClient(broker.port) as producer:
        cid = consumer.send(fetch_req([("poll", 0, 1)], max_wait_ms=10000, min_bytes=1), FETCH_V)
        assert produce(producer, "poll", 0, make_batch([b"new-1", b"new-2"])) == (NONE, 1)
        got, resp = consumer.receive()
        assert got == cid and resp.error_code == NONE
        pd = resp.responses[0].partitions[0]
        assert pd.error_code == NONE and pd.high_watermark == 3
        assert [(o, v) for o, _k, v in decode_records(pd.records)] == [(1, b"new-1"), (2, b"new-2")]
    assert_serving(broker)
