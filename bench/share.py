"""``sluice bench share``: share-group (KIP-932) consumption throughput.

One partition holds ``--records`` records (``--record-size`` bytes, produced
first with librdkafka); for each consumer count in ``--consumers`` (default
1, 3, 6) a fresh share group (``share.auto.offset.reset=earliest``) reads
all of them with Apache Kafka's own ``ShareConsumerPerformance``
(``kafka-share-consumer-perf-test``: KafkaShareConsumers in one JVM,
``--threads`` of them, implicit acknowledgement, so every fetch carries the
previous fetch's acknowledgements). Reported: records/s and MB/s as the tool
measures them (first to last record), and the wall time of the run (JVM
start included).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import time
import uuid

from .common import create_topic, machine, write_results
from .kafka_reference import TOOL, kafka_libs
from .launch import BrokerProcess


def add_parser(kinds) -> None:
    s = kinds.add_parser("share", help="share groups: records/s with 1, 3 and 6 consumers on one partition",
                         description=__doc__.split("\n\n")[1],
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("--bootstrap", metavar="HOST:PORT",
                   help="broker to load; default: start one on a temp data dir and stop it after")
    s.add_argument("--records", type=int, default=200_000)
    s.add_argument("--record-size", type=int, default=100)
    s.add_argument("--consumers", default="1,3,6", help="consumer counts, one run each")
    s.add_argument("--data-dir", metavar="DIR", default=None,
                   help="parent of a self-started broker's temp data dir")
    s.add_argument("--json", metavar="FILE", help="write the results as JSON")
    s.set_defaults(func=run_share)


def _produce(bootstrap: str, topic: str, records: int, size: int) -> None:
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "batch.size": 262144, "acks": "all"})
    value = b"x" * size
    for _ in range(records):
        while True:
            try:
                p.produce(topic, value=value)
                break
            except BufferError:
                p.poll(0.05)
    if p.flush(120) != 0:
        raise RuntimeError("produce did not finish")


def _earliest(bootstrap: str, group: str) -> None:
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
    res = ConfigResource(ResourceType.GROUP, group, incremental_configs=[
        ConfigEntry("share.auto.offset.reset", "earliest", incremental_operation=AlterConfigOpType.SET)])
    admin = AdminClient({"bootstrap.servers": bootstrap})    # kept alive until the answer
    admin.incremental_alter_configs([res])[res].result(30)


def _run(bootstrap: str, topic: str, records: int, consumers: int, libs: str) -> dict:
    group = f"sluice-bench-share-{uuid.uuid4().hex[:8]}"
    _earliest(bootstrap, group)
    cmd = [str(TOOL), "kafka-share-consumer-perf-test", "--bootstrap-server", bootstrap, "--topic", topic,
           "--group", group, "--num-records", str(records), "--threads", str(consumers), "--timeout", "30000",
           "--hide-header"]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, KAFKA_LIBS=libs, KAFKA_HEAP_OPTS="-Xmx512m"))
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"ShareConsumerPerformance failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    # start.time, end.time, data.consumed.in.MB, MB.sec, nMsg.sec, data.consumed.in.nMsg, fetch.time.ms
    line = [ln for ln in proc.stdout.splitlines() if ln.count(",") >= 5][-1]
    fields = [f.strip() for f in line.split(",")]
    return {"consumers": consumers, "records": int(float(fields[5])), "mb": float(fields[2]),
            "mb_per_s": float(fields[3]), "records_per_s": float(fields[4]), "wall_s": round(wall, 2)}


def run_share(args) -> int:
    broker = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        broker = BrokerProcess.start_temporary(args.data_dir)
        bootstrap = broker.bootstrap
    libs = kafka_libs()
    runs = []
    try:
        topic = f"sluice-bench-share-{uuid.uuid4().hex[:8]}"
        create_topic(bootstrap, topic, 1)
        _produce(bootstrap, topic, args.records, args.record_size)
        for n in [int(c) for c in args.consumers.split(",") if c]:
            runs.append(_run(bootstrap, topic, args.records, n, libs))
    finally:
        if broker is not None:
            broker.stop()
            broker.remove()
    result = {"bench": "share", "machine": machine(),
              "config": {"records": args.records, "record_size": args.record_size, "partitions": 1,
                         "self_started_broker": args.bootstrap is None},
              "runs": runs}
    print(f"{'consumers':>10}{'records':>10}{'records/s':>12}{'MB/s':>8}{'wall s':>8}")
    for r in runs:
        print(f"{r['consumers']:>10}{r['records']:>10}{r['records_per_s']:>12.0f}{r['mb_per_s']:>8.2f}"
              f"{r['wall_s']:>8.2f}")
    write_results(result, args.json)
    return 0 if all(r["records"] >= args.records for r in runs) else 1
