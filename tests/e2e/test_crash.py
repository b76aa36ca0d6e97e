"""Crash safety with real clients: SIGKILL mid-stream, SIGTERM, producer state across restarts.

What an acknowledged (acks=all) produce promises: after any crash and restart
the record is readable at the offset it was acknowledged with, exactly once.
Records never sent must never appear; per partition, offsets stay contiguous.
"""
from __future__ import annotations

import collections
import socket
import struct
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka.protocol.producer import InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse
from kafka.record.default_records import DefaultRecordBatchBuilder

TOPIC = "crash"
PARTITIONS = 3


# ------------------------------------------------------------------ helpers
def create_topic(bootstrap: str, name: str = TOPIC, partitions: int = PARTITIONS) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        fut.result(15)


def wait_until(cond, timeout: float, what: str, producer: "BackgroundProducer | None" = None) -> None:
    """Poll ``cond`` until true; fail after ``timeout`` or as soon as the producer fails for good."""
    deadline = time.monotonic() + timeout
    while not cond():
        if producer is not None:
            producer.check_healthy()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


class BackgroundProducer(threading.Thread):
    """Sends unique values f"{seq}" round-robin over the partitions until stopped.

    ``acked`` maps value -> (partition, offset) for every delivery report
    without an error; ``sent`` counts values handed to the client.
    """

    def __init__(self, bootstrap: str, topic: str = TOPIC, partitions: int = PARTITIONS,
                 flush_timeout: float = 30.0) -> None:
        super().__init__(daemon=True)
        self.topic = topic
        self.partitions = partitions
        self.flush_timeout = flush_timeout
        self.conf = {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 2,
            "batch.num.messages": 500,
            "queue.buffering.max.messages": 20000,
            "message.timeout.ms": 30000,
            "reconnect.backoff.ms": 20,
            "reconnect.backoff.max.ms": 200,
            "error_cb": self._on_error,
        }
        self.lock = threading.Lock()
        self.acked: dict[str, tuple[int, int]] = {}
        self.failed: dict[str, str] = {}
        self.errors: list[KafkaError] = []
        self.sent = 0
        self.unflushed = -1
        self.stop_event = threading.Event()
        self.exc: BaseException | None = None

    def _on_error(self, err: KafkaError) -> None:
        with self.lock:
            self.errors.append(err)

    def _on_delivery(self, err, msg) -> None:
        value = msg.value().decode()
        with self.lock:
            if err is None:
                assert value not in self.acked, f"{value} acknowledged twice"
                self.acked[value] = (msg.partition(), msg.offset())
            else:
                self.failed[value] = str(err)

    def run(self) -> None:
        p = None
        try:
            p = Producer(self.conf)
            seq = 0
            while not self.stop_event.is_set():
                try:
                    p.produce(self.topic, value=f"{seq}".encode(), partition=seq % self.partitions,
                              on_delivery=self._on_delivery)
                except BufferError:
                    p.poll(0.005)
                    continue
                seq += 1
                with self.lock:
                    self.sent = seq
                p.poll(0)
            self.unflushed = p.flush(self.flush_timeout)
        except BaseException as exc:  # surfaced by finish()
            self.exc = exc
        finally:
            p = None  # the traceback keeps this frame alive; do not keep the client with it

    def check_healthy(self) -> None:
        """A fatal client error (e.g. sequence desynchronisation after lost acks) fails the test."""
        with self.lock:
            fatal = [e for e in self.errors if e.fatal()]
        assert not fatal, f"producer hit a fatal error: {fatal[0]}"
        assert self.exc is None, f"producer thread failed: {self.exc!r}"

    def n_acked(self) -> int:
        with self.lock:
            return len(self.acked)

    def snapshot(self) -> tuple[dict[str, tuple[int, int]], int]:
        with self.lock:
            return dict(self.acked), self.sent

    def finish(self, timeout: float = 60.0) -> None:
        self.stop_event.set()
        self.join(timeout)
        assert not self.is_alive(), "producer thread did not finish"
        if self.exc is not None:
            raise self.exc


def consume_all(bootstrap: str, topic: str = TOPIC, partitions: int = PARTITIONS,
                timeout: float = 60.0) -> dict[int, list[tuple[int, str]]]:
    """Every record of every partition from offset 0 up to the high watermark, by manual assign."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "crash-verify",
                  "enable.auto.commit": False, "enable.partition.eof": True,
                  "fetch.wait.max.ms": 50})
    try:
        highs = {}
        for i in range(partitions):
            low, high = c.get_watermark_offsets(TopicPartition(topic, i), timeout=15)
            assert low == 0
            highs[i] = high
        out: dict[int, list[tuple[int, str]]] = {i: [] for i in range(partitions)}
        todo = {i for i in range(partitions) if highs[i] > 0}
        c.assign([TopicPartition(topic, i, 0) for i in todo])
        deadline = time.monotonic() + timeout
        while todo:
            assert time.monotonic() < deadline, f"consuming timed out; still missing partitions {todo}"
            for m in c.consume(5000, 0.5):
                if m.error():
                    assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                    continue
                out[m.partition()].append((m.offset(), m.value().decode()))
            for i in list(todo):
                if out[i] and out[i][-1][0] >= highs[i] - 1:
                    todo.discard(i)
        return out
    finally:
        c.close()


def verify(consumed: dict[int, list[tuple[int, str]]], acked: dict[str, tuple[int, int]],
           sent: int) -> None:
    sent_values = {str(i) for i in range(sent)}
    counts = collections.Counter(v for recs in consumed.values() for _, v in recs)
    where = {}
    for part, recs in consumed.items():
        offs = [o for o, _ in recs]
        assert offs == list(range(len(recs))), f"partition {part}: offsets not contiguous from 0"
        for o, v in recs:
            assert v in sent_values, f"partition {part} offset {o}: {v!r} was never sent"
            assert int(v) % PARTITIONS == part, f"{v!r} found in partition {part}"
            where[v] = (part, o)
    missing = [v for v in acked if v not in where]
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {sorted(missing, key=int)[:10]}"
    moved = [(v, acked[v], where[v]) for v in acked if where[v] != acked[v]]
    assert not moved, f"acknowledged records not at their acknowledged offsets: {moved[:10]}"
    dup_acked = [v for v in acked if counts[v] > 1]
    assert not dup_acked, f"acknowledged records stored twice: {dup_acked[:10]}"


# --------------------------------------------------------------- SIGKILL
# Extra time after the first acknowledgements before the SIGKILL: the kill
# lands at a different point of the stream in every round.
KILL_DELAYS = [0.0, 0.05, 0.2, 0.5, 0.9, 1.5]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kill_delay", KILL_DELAYS)
def test_sigkill_mid_stream_loses_no_acknowledged_record(broker_factory, kill_delay):
    b = broker_factory()
    create_topic(b.bootstrap)
    prod = BackgroundProducer(b.bootstrap)
    prod.start()
    try:
        wait_until(lambda: prod.n_acked() >= 100, 20, "first acknowledgements", prod)
        time.sleep(kill_delay)  # choose the kill point; not an assertion
        # kill while records are in flight (on a loaded machine the producer may
        # momentarily have none: then wait for the next ones to be handed over)
        wait_until(lambda: prod.snapshot()[1] > prod.n_acked(), 10, "records in flight", prod)
        b.kill()
        acked_at_kill, sent_at_kill = prod.snapshot()
        # The kill really happened mid-stream: records were handed over but not yet acknowledged.
        assert sent_at_kill > len(acked_at_kill)
        b.start()
        # The same producer carries on against the restarted broker (its in-flight
        # batches are retried with their original sequence numbers).
        wait_until(lambda: prod.n_acked() >= len(acked_at_kill) + 1000, 30,
                   "acknowledgements after the restart", prod)
    finally:
        prod.finish()
    acked, sent = prod.snapshot()
    assert prod.unflushed == 0, f"{prod.unflushed} records never delivered; errors: {prod.errors[:5]}"
    assert not [e for e in prod.errors if e.fatal()], prod.errors
    assert acked_at_kill.items() <= acked.items()
    consumed = consume_all(b.bootstrap)
    verify(consumed, acked, sent)
    # Everything was eventually delivered, so nothing appears twice at all.
    assert sum(len(r) for r in consumed.values()) == len(acked) == sent


@pytest.mark.timeout(180)
def test_repeated_sigkills_on_one_data_dir(broker_factory):
    """Five kills in a row on the same log: recovery after recovery keeps every ack."""
    b = broker_factory()
    create_topic(b.bootstrap)
    prod = BackgroundProducer(b.bootstrap)
    prod.start()
    acked_before_kills = []
    try:
        for i, delay in enumerate([0.1, 0.4, 0.0, 0.7, 0.25]):
            target = prod.n_acked() + 500
            wait_until(lambda: prod.n_acked() >= target, 30, f"acknowledgements in round {i}", prod)
            time.sleep(delay)
            b.kill()
            acked_before_kills.append(prod.snapshot()[0])
            b.start()
        target = prod.n_acked() + 500
        wait_until(lambda: prod.n_acked() >= target, 30, "acknowledgements after the last restart", prod)
    finally:
        prod.finish()
    acked, sent = prod.snapshot()
    assert prod.unflushed == 0
    for snap in acked_before_kills:
        assert snap.items() <= acked.items()
    consumed = consume_all(b.bootstrap)
    verify(consumed, acked, sent)
    assert sum(len(r) for r in consumed.values()) == len(acked) == sent


@pytest.mark.timeout(120)
def test_sigkill_then_fresh_producer(broker_factory):
    """The producer dies with the broker: only what was acknowledged may be relied on."""
    b = broker_factory()
    create_topic(b.bootstrap)
    prod = BackgroundProducer(b.bootstrap, flush_timeout=0)
    prod.start()
    try:
        wait_until(lambda: prod.n_acked() >= 3000, 20, "acknowledgements", prod)
        b.kill()
    finally:
        prod.finish()
    acked, sent = prod.snapshot()
    assert sent > len(acked)
    b.start()
    consumed = consume_all(b.bootstrap)
    verify(consumed, acked, sent)
    # Unacknowledged records may or may not have survived, but never twice.
    counts = collections.Counter(v for recs in consumed.values() for _, v in recs)
    assert max(counts.values()) == 1
    # And the restarted broker appends after the recovered end.
    before = {i: len(consumed[i]) for i in range(PARTITIONS)}
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "enable.idempotence": True})
    offsets = {}

    def cb(err, msg):
        assert err is None, err
        offsets[msg.partition()] = msg.offset()

    for i in range(PARTITIONS):
        p.produce(TOPIC, value=b"after", partition=i, on_delivery=cb)
    assert p.flush(20) == 0
    assert offsets == before


# ---------------------------------------------------------------- SIGTERM
@pytest.mark.timeout(120)
def test_sigterm_while_producing_exits_cleanly_and_keeps_acks(broker_factory):
    b = broker_factory()
    create_topic(b.bootstrap)
    prod = BackgroundProducer(b.bootstrap)
    prod.start()
    try:
        wait_until(lambda: prod.n_acked() >= 2000, 20, "acknowledgements", prod)
        code = b.stop(timeout=20)
        assert code == 0, b.log_text()[-3000:]
        assert "stopped cleanly" in b.log_text()
        acked_at_stop, sent_at_stop = prod.snapshot()
        assert sent_at_stop > len(acked_at_stop)  # it was stopped mid-stream
        b.start()
        wait_until(lambda: prod.n_acked() >= len(acked_at_stop) + 1000, 30,
                   "acknowledgements after the restart", prod)
    finally:
        prod.finish()
    acked, sent = prod.snapshot()
    assert prod.unflushed == 0
    assert acked_at_stop.items() <= acked.items()
    consumed = consume_all(b.bootstrap)
    verify(consumed, acked, sent)
    assert sum(len(r) for r in consumed.values()) == len(acked) == sent
    # A clean shutdown syncs everything: recovery finds no torn tail to cut.
    assert "torn entry" not in b.log_text()


# ----------------------------------------------- producer state over restart
class RawClient:
    """Just enough of a Kafka client: one request at a time over one socket."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.correlation_id = 0

    def request(self, req, response_cls, version: int):
        self.correlation_id += 1
        req.API_VERSION = version
        req.with_header(correlation_id=self.correlation_id, client_id="crash-test")
        self.sock.sendall(bytes(req.encode(version=version, header=True, framed=True)))
        size = struct.unpack(">i", self._recv(4))[0]
        frame = self._recv(size)
        resp = response_cls.decode(frame, version=version, header=True)
        assert resp.header.correlation_id == self.correlation_id
        return resp

    def _recv(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            assert chunk, "broker closed the connection"
            buf += chunk
        return bytes(buf)

    def close(self) -> None:
        self.sock.close()

    def init_producer_id(self, pid: int = -1, epoch: int = -1) -> tuple[int, int]:
        req = InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60000,
                                    producer_id=pid, producer_epoch=epoch)
        resp = self.request(req, InitProducerIdResponse, 4)
        assert resp.error_code == 0
        return resp.producer_id, resp.producer_epoch

    def produce(self, topic: str, records: bytes, *, partition: int = 0) -> tuple[int, int]:
        """Returns (error_code, base_offset)."""
        PD = ProduceRequest.TopicProduceData
        req = ProduceRequest(transactional_id=None, acks=-1, timeout_ms=10000, topic_data=[
            PD(name=topic, partition_data=[PD.PartitionProduceData(index=partition, records=records)])])
        resp = self.request(req, ProduceResponse, 9)
        [tr] = resp.responses
        [pr] = tr.partition_responses
        return pr.error_code, pr.base_offset


def idempotent_batch(pid: int, epoch: int, seq: int, values: list[bytes]) -> bytes:
    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                  producer_id=pid, producer_epoch=epoch, base_sequence=seq,
                                  batch_size=1 << 20)
    for i, v in enumerate(values):
        b.append(i, timestamp=int(time.time() * 1000), key=None, value=v, headers=[])
    return bytes(b.build())


NONE, OUT_OF_ORDER_SEQUENCE_NUMBER, INVALID_PRODUCER_EPOCH = 0, 45, 47


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["sigkill", "sigterm",
                                 pytest.param("sigterm-empty-data-dir", marks=pytest.mark.minio)])
def test_idempotent_producer_state_survives_restart(broker_factory, how, request):
    if how == "sigterm-empty-data-dir":  # the state must come back from the bucket alone
        minio, bucket = request.getfixturevalue("minio"), request.getfixturevalue("minio_bucket")
        b = broker_factory(extra_args=["--object-store", f"s3://{bucket}"], env=minio.env())
    else:
        b = broker_factory()
    create_topic(b.bootstrap, "pstate", 1)
    c = RawClient(b.port)
    pid, epoch0 = c.init_producer_id()
    pid_, epoch = c.init_producer_id(pid, epoch0)  # bump the epoch (KIP-360), so an older one exists
    assert (pid_, epoch) == (pid, epoch0 + 1)
    batches = [
        idempotent_batch(pid, epoch, 0, [b"a0", b"a1", b"a2"]),
        idempotent_batch(pid, epoch, 3, [b"b3", b"b4"]),
        idempotent_batch(pid, epoch, 5, [b"c5"]),
    ]
    assert [c.produce("pstate", x) for x in batches] == [(NONE, 0), (NONE, 3), (NONE, 5)]
    c.close()
    if how == "sigkill":
        b.kill()
    else:
        assert b.stop() == 0
    if how == "sigterm-empty-data-dir":
        b.wipe()
    b.start()

    c = RawClient(b.port)
    try:
        # Retrying the last batch (same pid, epoch, sequences) is answered with its
        # original offset and not stored again; so is an older one still in the window.
        assert c.produce("pstate", batches[2]) == (NONE, 5)
        assert c.produce("pstate", batches[0]) == (NONE, 0)
        # A gap is refused: the broker still knows the last sequence was 5 (a
        # producer it had forgotten would be accepted at any sequence).
        assert c.produce("pstate", idempotent_batch(pid, epoch, 7, [b"gap"]))[0] == \
            OUT_OF_ORDER_SEQUENCE_NUMBER
        # The older epoch stays fenced.
        assert c.produce("pstate", idempotent_batch(pid, epoch0, 6, [b"old"]))[0] == \
            INVALID_PRODUCER_EPOCH
        # The next sequence continues right after the recovered end.
        assert c.produce("pstate", idempotent_batch(pid, epoch, 6, [b"d6", b"d7"])) == (NONE, 6)
        assert c.produce("pstate", idempotent_batch(pid, epoch, 6, [b"d6", b"d7"])) == (NONE, 6)
        # Producer ids handed out before the restart are never handed out again.
        pid2, _ = c.init_producer_id()
        assert pid2 != pid
    finally:
        c.close()

    consumed = consume_all(b.bootstrap, "pstate", 1)
    assert consumed[0] == list(enumerate(["a0", "a1", "a2", "b3", "b4", "c5", "d6", "d7"]))


# ------------------------------------------ disconnects during the fsync wait
def plain_batch(values: list[bytes]) -> bytes:
    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                  producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                  batch_size=1 << 22)
    for i, v in enumerate(values):
        b.append(i, timestamp=int(time.time() * 1000), key=None, value=v, headers=[])
    return bytes(b.build())


@pytest.mark.timeout(120)
def test_clients_vanishing_mid_produce_do_not_break_other_acks(broker_factory):
    """Produce requests of many connections share one WAL group commit. A client
    that resets its connection while its request waits for the fsync must not
    fail (or close) the other clients' requests in that group commit."""
    b = broker_factory()
    create_topic(b.bootstrap, "vanish", 1)
    PD = ProduceRequest.TopicProduceData
    rude_req = ProduceRequest(transactional_id=None, acks=-1, timeout_ms=10000, topic_data=[
        PD(name="vanish", partition_data=[
            PD.PartitionProduceData(index=0, records=plain_batch([b"rude"] * 200))])])
    rude_req.with_header(correlation_id=1, client_id="rude")
    rude_wire = bytes(rude_req.encode(version=9, header=True, framed=True))
    stop = threading.Event()
    resets = [0]

    def rude() -> None:
        while not stop.is_set():
            s = socket.create_connection(("127.0.0.1", b.port), timeout=5)
            s.sendall(rude_wire)
            # RST right away: the broker sees the connection drop while the request
            # is waiting for its fsync, and cancels the request's task.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
            resets[0] += 1

    threads = [threading.Thread(target=rude, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    c = RawClient(b.port)
    acked = {}
    try:
        for i in range(300):
            values = [f"good-{i}-{j}".encode() for j in range(3)]
            code, base = c.produce("vanish", plain_batch(values))  # fails if the broker hangs up
            assert code == NONE
            for j, v in enumerate(values):
                acked[v.decode()] = base + j
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        c.close()
    assert resets[0] > 50  # the disruption really happened alongside
    consumed = consume_all(b.bootstrap, "vanish", 1, timeout=60)[0]
    assert [o for o, _ in consumed] == list(range(len(consumed)))
    good = {v: o for o, v in consumed if v.startswith("good-")}
    assert good == acked
    assert all(v == "rude" for _, v in consumed if not v.startswith("good-"))
