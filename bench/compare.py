"""``sluice bench compare``: the same workloads against Sluice and Apache Kafka, alternately.

Each round starts a fresh Sluice (``sluice serve`` on a temp data dir) and runs
every workload on it, stops it, then starts a fresh Apache Kafka KRaft broker
(``bench/kafka_reference.py``) and runs the same workloads, and stops it:
A B A B ... for ``--rounds`` rounds. Every workload gets a new topic. Both
brokers are loaded by the same clients with the same settings: Kafka's own
``kafka-producer-perf-test`` (the Java producer) writes, Kafka's
``kafka-consumer-perf-test`` (the Java consumer) reads in (f), and a
librdkafka consumer (confluent-kafka, a separate process) reads in (e).
Figures are medians over rounds.

Workloads:
  (a) produce, acks=all, unthrottled;
  (b) produce, acks=all, at fixed rates (latency p50/p99/p99.9): each ``--rate`` (default
  10 and 50 MB/s) and ``--rate-max-pct`` (80) % of the LOWER of the two systems'
  unthrottled maxima. That maximum comes from a calibration before round 1: a fresh
  broker of each system runs (a) alone (same records); the rate it gives is then used
  in every round, so each (b) row is a median over rounds at one rate (rates run lowest
  first, a new topic each). The calibration figures are in the JSON (``calibration``)
  and below the table, not in the medians;
  (c) as (a), with Kafka at equal durability (topic flush.messages=1,
  an fsync per append; Sluice always fsyncs before acking, so its column repeats (a));
  (d) broker resident memory (RSS of its process tree, /proc) at idle after start
  and at peak during (a);
  (e) tail consume: a producer at ``--tail-rate`` MB/s for ``--tail-seconds`` while a
  consumer, started first, reads the same topic from offset 0 and keeps up;
  consumer MB/s and end-to-end latency (consumer receive time minus the record's
  CreateTime, which the producer sets at send(); millisecond resolution);
  (f) catch-up read: write ``--catchup-mb`` MB unthrottled, then read it all from
  offset 0 twice with kafka-consumer-perf-test. Kafka reads its local log (the
  first read comes right after writing, so the OS page cache holds the data for
  both reads). Sluice runs against a local MinIO it starts (s3://), is restarted
  with an EMPTY data dir after the upload, so its first read fetches every byte
  from MinIO (cold block cache), and its second comes from its block cache
  (cache.block.bytes sized to hold it all);
  (g) partition move: a fresh 3-node cluster of each system (Kafka: 3 combined
  controller+broker KRaft nodes, started after the round's single Kafka broker stopped;
  Sluice: a fresh MinIO and 3 ``sluice serve`` brokers on it, node ids 1-3, default
  heartbeat, balancer, merge and GC off) holds a topic of one partition, replication
  factor 1, on broker 1, written by kafka-producer-perf-test (1 MiB, then
  ``--move-mib``; Sluice's broker 1 then uploads it all: the bench waits until its WAL is
  empty); Kafka's own kafka-reassign-partitions moves it to broker 2 (--execute, then
  --verify until it reports it complete); afterwards the watermarks are 0..N and the
  first and last record read back. Timed three ways: in the cluster's metadata (polled
  every 50 ms, from the last poll before the move was first seen -- Kafka: in Metadata;
  Sluice, whose Metadata names only the owner: the target in the bucket's metadata
  document -- to the first poll that showed it only on broker 2, leader and in sync
  there), until broker 2 answers ListOffsets with the end offset (polled every 50 ms),
  and as the tool shows it (--execute started to the first --verify that reports
  completion, JVM starts included). For Sluice also the object-store requests and bytes
  of the 3 brokers from just before --execute to broker 2 serving (their metrics), and
  the split of the time between the old owner and the new one;
  (h) the same produce load from a librdkafka producer (confluent-kafka, the engine of
  ``sluice bench produce``: idempotent, acks=all, linger.ms=5, one process): unthrottled
  for ``--librdkafka-seconds`` (throughput), then at ``--librdkafka-rate`` MB/s (ack
  latency p50/p99/p99.9, per message from produce() to its delivery callback, after a
  2 s warm-up), so the figures do not rest on one client's behaviour.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from pathlib import Path

from . import common, produce, storage
from .kafka_reference import ROOT, TOOL, KafkaBroker, KafkaCluster, java_version, kafka_libs, kafka_version
from .launch import BrokerProcess, wait_for_cluster
from .minio import MinioServer

MB = 1_000_000
SECTION = "## Comparison with Apache Kafka (issue 5)"
NOTES_MARK = "<!-- notes below are kept by `sluice bench compare --write-benchmarks` -->"
WORKLOADS = "a,b,c,e,f,g,h"      # (d) comes with (a)
MOVE_SMALL_MIB = 1.0             # (g): the small partition; the large one is --move-mib
MOVE_POLL_S = 0.02               # (g): poll interval of Metadata, ListOffsets and (Sluice) the bucket
VERIFY_PAUSE_S = 1.0             # (g): pause between --verify runs (each a JVM start, on the same cores)
SLUICE_NO_MOVE = "not yet: Sluice has no partition reassignment yet"   # results from before it had one
MOVE_IDLE_S = 4.0                # (g), Sluice: idle window before each move (the heartbeats' object-store rate)
# (g), Sluice: the balancer would move a hand-moved partition back; merge and GC off so that the
# object-store requests and bytes counted during the move are the move's and the heartbeats' only
SLUICE_MOVE_OVERRIDES = ("autobalancer.controller.enable=false", "s3.merge.interval.ms=3600000",
                         "s3.gc.interval.ms=3600000")
SLUICE_MOVE_CLUSTER = ("3 `sluice serve` brokers (node ids 1-3) on one MinIO bucket, default heartbeat "
                       "(broker.heartbeat.interval.ms=2000), " + " ".join(SLUICE_MOVE_OVERRIDES))
READ_FETCH_BYTES = 8 << 20       # kafka-consumer-perf-test --fetch-size (max.partition.fetch.bytes)
LOG_PROBLEM_RE = re.compile(r"\b(ERROR|FATAL|CRITICAL)\b|Traceback")

FINAL_RE = re.compile(
    r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
    r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99.9th")
INTERIM_RE = re.compile(r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\)")


def add_parser(kinds) -> None:
    p = kinds.add_parser("compare", help="Sluice vs Apache Kafka, same workloads, alternating rounds",
                         description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=None, help="A/B rounds (default 3; --quick: 1)")
    p.add_argument("--quick", action="store_true",
                   help="small run for smoke tests: 1 round, 100k records, 5 s at the fixed rates, "
                        "64 MB catch-up, 64 MiB partition move")
    p.add_argument("--records", type=int, default=None,
                   help="records per unthrottled run (default 1,000,000; --quick 100,000)")
    p.add_argument("--durable-records", type=int, default=None,
                   help="records for (c), Kafka with flush.messages=1 (default 300,000; --quick 50,000)")
    p.add_argument("--record-size", type=int, default=1024)
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--rate", default="10,50", metavar="MB/s[,MB/s...]",
                   help="fixed rates for (b), comma-separated (default 10,50)")
    p.add_argument("--rate-max-pct", type=float, default=80.0, metavar="PCT",
                   help="also run (b) at PCT %% of the lower of the two systems' unthrottled (a) throughputs, "
                        "measured by a calibration run before round 1 (a fresh broker of each system runs (a) "
                        "alone, --records records); that one rate is used in every round. 0: off (no "
                        "calibration). Default 80")
    p.add_argument("--rate-seconds", type=float, default=None,
                   help="length of each (b) run in seconds (default 15; --quick 5)")
    p.add_argument("--tail-rate", type=float, default=20.0, metavar="MB/s", help="producer rate for (e)")
    p.add_argument("--tail-seconds", type=float, default=None,
                   help="length of (e) in seconds (default 20; --quick 5)")
    p.add_argument("--catchup-mb", type=float, default=None, metavar="MB",
                   help="MB (10^6 bytes of values) written then read back in (f) (default 2048; --quick 64)")
    p.add_argument("--catchup-block-cache-mb", type=int, default=None, metavar="MiB",
                   help="Sluice cache.block.bytes for (f) (default: 4096, or 1.25 x --catchup-mb if larger)")
    p.add_argument("--move-mib", type=float, default=None, metavar="MiB",
                   help="(g): MiB (2^20 bytes of record values) in the large partition moved (default 2048 = "
                        "2 GiB; --quick 64); the small one holds 1 MiB")
    p.add_argument("--kafka-cluster-heap", default="-Xmx512m -Xms512m",
                   help="(g): KAFKA_HEAP_OPTS of each node of the 3-node Kafka cluster")
    p.add_argument("--producer-prop", action="append", default=[], metavar="KEY=VALUE",
                   help="extra Java producer property, for both brokers")
    p.add_argument("--kafka-heap", default="-Xmx1g -Xms1g", help="KAFKA_HEAP_OPTS for the Kafka broker")
    p.add_argument("--data-dir", default=None, help="parent of both brokers' temp data dirs")
    p.add_argument("--librdkafka-seconds", type=float, default=None,
                   help="length of each (h) run (default 15; --quick 5)")
    p.add_argument("--librdkafka-rate", type=float, default=10.0, metavar="MB/s",
                   help="fixed rate of the (h) latency run")
    p.add_argument("--only", default=None,
                   help="comma-separated subset of workloads: a,b,c,e,f,g (default all; (d) comes with (a))")
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--plot", metavar="FILE.png")
    p.add_argument("--write-benchmarks", nargs="?", const=str(ROOT / "BENCHMARKS.md"), default=None,
                   metavar="FILE", help="write the table into FILE's issue-5 section (default BENCHMARKS.md)")
    p.add_argument("--note", default=None, help="a remark printed above the table (e.g. 'preliminary')")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=run_compare)


# ---------------------------------------------------------------------- helpers
def _tree_pids(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_rss_mib(pid: int) -> float | None:
    """Resident memory of a process and its descendants, MiB."""
    total, seen = 0, False
    for p in _tree_pids(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        seen = True
                        break
        except OSError:
            pass
    return round(total / 1024, 1) if seen else None


def _cpu_s(pid: int) -> float | None:
    c = common.proc_cpu(pid)
    return None if c is None else c["user_s"] + c["sys_s"]


def _machine(data_dir: str | None, quick: bool) -> dict:
    m = common.machine()
    d = tempfile.mkdtemp(prefix="sluice-cmp-fsync-", dir=data_dir)
    try:
        m["fsync_64KiB"] = fsync_latency(d, 65536, 100 if quick else 300)
        m["fsync_4KiB"] = fsync_latency(d, 4096, 100 if quick else 300)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    try:
        m["cpu_model"] = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                               if line.startswith("model name")), None)
    except OSError:
        m["cpu_model"] = None
    m["loadavg_at_start"] = os.getloadavg()[0]
    return m


def fsync_latency(directory: str, size: int, count: int) -> dict:
    """write + fdatasync of ``size``-byte blocks, ``count`` times: latency percentiles (ms)."""
    path = os.path.join(directory, f"fsync-{os.getpid()}.tmp")
    buf, lat = os.urandom(size), array("d")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for _ in range(count):
            t = time.perf_counter()
            os.write(fd, buf)
            os.fdatasync(fd)
            lat.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        os.unlink(path)
    p = common.percentiles(lat)
    return {"block_bytes": size, "count": count, "p50_ms": p["p50"], "p99_ms": p["p99"], "max_ms": p["max"]}


def _versions(libs: str) -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except Exception:
        commit, dirty = None, None
    try:
        from importlib.metadata import version
        sluice_v = version("sluice")
    except Exception:
        sluice_v = None
    return {"sluice": sluice_v, "sluice_commit": commit, "sluice_worktree_dirty": dirty,
            "kafka": kafka_version(libs), "java": java_version(), "python": platform.python_version(),
            "client": f"kafka-producer-perf-test (Java producer {kafka_version(libs)})",
            "consumer_clients": f"(e) confluent-kafka {_confluent_versions()}; (f) kafka-consumer-perf-test "
                                f"(Java consumer {kafka_version(libs)})"}


def _confluent_versions() -> str:
    try:
        import confluent_kafka
        v = confluent_kafka.version()
        return f"{v[0] if isinstance(v, tuple) else v} (librdkafka {confluent_kafka.libversion()[0]})"
    except Exception:
        return "?"


class Progress:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.t0 = time.monotonic()
        self.prefix = ""
        self.lock = threading.Lock()
        self.isatty = sys.stderr.isatty()

    def phase(self, text: str) -> None:
        self.prefix = text
        self.show("")

    def show(self, detail: str) -> None:
        if self.quiet:
            return
        el = int(time.monotonic() - self.t0)
        line = f"[{el // 60:2d}:{el % 60:02d}] {self.prefix} {detail}".rstrip()
        with self.lock:
            if self.isatty:
                sys.stderr.write("\r\x1b[K" + line[:160])
            else:
                sys.stderr.write(line + "\n")
            sys.stderr.flush()

    def done(self) -> None:
        if self.isatty and not self.quiet:
            sys.stderr.write("\n")


# ------------------------------------------------------------------ brokers
class _System:
    """One started broker: its bootstrap, pid, and how to stop it."""

    def __init__(self, name: str, args, libs: str) -> None:
        self.name = name
        self.kafka = None
        self.sluice = None
        t = time.monotonic()
        if name == "kafka":
            parent = args.data_dir or tempfile.gettempdir()
            self.kafka = KafkaBroker(tempfile.mkdtemp(prefix="sluice-cmp-kafka-", dir=parent),
                                     heap=args.kafka_heap, libs=libs)
            self.kafka.start(timeout=180)
            self.bootstrap, self.pid = self.kafka.bootstrap, self.kafka.pid
        else:
            self.sluice = BrokerProcess.start_temporary(args.data_dir, metrics=True)
            self.bootstrap, self.pid = self.sluice.bootstrap, self.sluice.proc.pid
        self.startup_s = round(time.monotonic() - t, 2)

    def alive(self) -> bool:
        proc = self.kafka.proc if self.kafka else self.sluice.proc
        return proc.poll() is None

    def log_tail(self) -> str:
        return self.kafka.log_tail() if self.kafka else self.sluice.log_tail()

    @property
    def data_dir(self) -> str:
        return str(self.kafka.workdir) if self.kafka else str(self.sluice.workdir)

    def stop(self, remove: bool = True) -> int | None:
        """Stop the broker, note error lines of its log in ``self.log_problems``, remove its dir
        (unless ``remove`` is false: freeing GBs stalls the disk's fsyncs for a while, so a
        bench that starts the next broker at once removes them at its end)."""
        if self.kafka:
            rc = self.kafka.stop(30)
            self.log_problems = log_problems(self.kafka.log_path)
            if remove:
                shutil.rmtree(self.kafka.workdir, ignore_errors=True)
            return rc
        rc = self.sluice.stop()  # first, so the log is complete before it is removed
        self.log_problems = log_problems(self.sluice.log_path)
        if remove:
            self.sluice.remove()
        return rc


class _S3System:
    """A ``storage.s3_broker`` (Sluice against MinIO) seen as a _System by ``_perf_test``."""

    def __init__(self, broker: BrokerProcess) -> None:
        self.broker = broker
        self.name = "sluice (s3)"

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    @property
    def pid(self) -> int:
        return self.broker.proc.pid

    def alive(self) -> bool:
        return self.broker.proc is not None and self.broker.proc.poll() is None

    def log_tail(self) -> str:
        return self.broker.log_tail()


def log_problems(path, limit: int = 10) -> dict:
    """Error-level lines (ERROR, FATAL, CRITICAL, Traceback) of a broker log: count and the first few."""
    lines = []
    try:
        with open(path, "rb") as f:
            for raw in f:
                line = raw.decode(errors="replace").rstrip()
                if LOG_PROBLEM_RE.search(line):
                    lines.append(line[:300])
    except OSError:
        pass
    return {"count": len(lines), "first": lines[:limit]}


def _create_topic(bootstrap: str, topic: str, partitions: int, config: dict | None = None) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    fut = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1,
                                        config=config or {})],
                              operation_timeout=60, request_timeout=60)[topic]
    fut.result(timeout=60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until every partition has a leader
        md = admin.list_topics(topic, timeout=10)
        t = md.topics.get(topic)
        if t and not t.error and len(t.partitions) == partitions and all(p.leader >= 0 for p in t.partitions.values()):
            return
        time.sleep(0.2)
    raise RuntimeError(f"topic {topic} not ready on {bootstrap}")


def _perf_test(sysm: _System, topic: str, records: int, record_size: int, throughput: float,
               props: list[str], libs: str, progress: Progress, sample_rss: bool) -> dict:
    """Run kafka-producer-perf-test against one broker; parse its summary line."""
    cmd = [str(TOOL), "kafka-producer-perf-test", "--topic", topic, "--num-records", str(records),
           "--record-size", str(record_size), "--throughput", str(int(throughput)),
           "--bootstrap-server", sysm.bootstrap, "--command-property", *props]
    expected_mb = records * record_size / MB
    timeout = 120 + expected_mb / 2.0   # never slower than 2 MB/s
    if throughput > 0:
        timeout = max(timeout, 120 + records / throughput * 2)
    errf = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errf, text=True, start_new_session=True,
                            env=dict(os.environ, KAFKA_LIBS=libs))
    rss, stop = [], threading.Event()
    cpu0, t0 = _cpu_s(sysm.pid), time.monotonic()

    def sampler():
        while not stop.wait(0.5):
            v = tree_rss_mib(sysm.pid)
            if v is not None:
                rss.append(v)

    th = threading.Thread(target=sampler, daemon=True)
    if sample_rss:
        th.start()
    killer = threading.Timer(timeout, lambda: proc.poll() is None and os.killpg(proc.pid, 9))
    killer.start()
    lines, sent = [], 0
    try:
        for line in proc.stdout:
            lines.append(line.rstrip())
            m = INTERIM_RE.search(line)
            if m and not FINAL_RE.search(line):
                sent += int(m.group(1))
                rss_now = f", broker RSS {rss[-1]:.0f} MiB" if rss else ""
                progress.show(f"{sent:,}/{records:,} records, {float(m.group(2)) * record_size / MB:.1f} MB/s{rss_now}")
        proc.wait(30)
    finally:
        killer.cancel()
        stop.set()
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait(10)
    elapsed = time.monotonic() - t0
    cpu1 = _cpu_s(sysm.pid)
    errf.seek(0)
    err = errf.read().decode(errors="replace")
    errf.close()
    final = next((FINAL_RE.search(x) for x in reversed(lines) if FINAL_RE.search(x)), None)
    if proc.returncode != 0 or final is None:
        raise RuntimeError(f"kafka-producer-perf-test failed on {sysm.name} (exit {proc.returncode}, "
                           f"broker alive: {sysm.alive()}):\n" + "\n".join(lines[-10:]) + "\n" + err[-3000:]
                           + f"\n--- broker log tail\n{sysm.log_tail()}")
    g = final.groups()
    out = {"records": int(g[0]), "records_per_s": float(g[1]),
           "mb_per_s": round(float(g[1]) * record_size / MB, 2),        # 10**6 bytes of values
           "mib_per_s_reported": float(g[2]),
           "latency_ms": {"avg": float(g[3]), "max": float(g[4]), "p50": float(g[5]), "p95": float(g[6]),
                          "p99": float(g[7]), "p99_9": float(g[8])},
           "seconds": round(elapsed, 2)}
    if cpu0 is not None and cpu1 is not None:
        # over the whole perf-test run, client JVM start included: a lower bound while loaded
        out["broker_cpu_cores"] = round((cpu1 - cpu0) / elapsed, 2)
        out["broker_cpu_s_per_gb"] = round((cpu1 - cpu0) / (records * record_size / 1e9), 2)
    if sample_rss and rss:
        out["broker_rss_mib"] = {"peak": max(rss), "median": statistics.median(rss), "samples": len(rss)}
    return out


# ------------------------------------------------------------- (e) tail consume
def tail_consumer_main(argv: list[str]) -> int:
    """The (e) consumer, run in its own process: prints "ready", then one JSON line at the end.

    Assigned to every partition from offset 0 (the topic is new and empty), it reads until
    it has ``--records`` records, or nothing came for ``--idle-seconds`` after the first
    record, or ``--max-seconds`` passed. End-to-end latency of a record is the wall-clock
    time when ``consume()`` handed it over minus its timestamp (CreateTime: the producer's
    wall clock at send(), in whole ms, so the figure carries up to +1 ms of rounding).
    """
    p = argparse.ArgumentParser(prog="tail-consumer")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--partitions", type=int, required=True)
    p.add_argument("--records", type=int, required=True)
    p.add_argument("--max-seconds", type=float, required=True)
    p.add_argument("--idle-seconds", type=float, default=15.0)
    a = p.parse_args(argv)
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": f"cmp-tail-{os.getpid()}",
                  "enable.auto.commit": False, "log_level": 3})
    deadline = time.monotonic() + a.max_seconds
    try:
        c.assign([TopicPartition(a.topic, i, 0) for i in range(a.partitions)])
        c.get_watermark_offsets(TopicPartition(a.topic, 0), timeout=15, cached=False)  # connected
        print("ready", flush=True)
        lat, n, nbytes, errors, types = array("d"), 0, 0, 0, set()
        t_first = t_last = None
        while n < a.records and time.monotonic() < deadline:
            # consume(n, timeout) waits until it has n messages or the timeout passed, which
            # would add its own delay: take what is queued, else block for the next one.
            msgs = c.consume(10000, 0)
            if not msgs:
                m = c.poll(0.2)
                msgs = [m] if m is not None else []
            now = time.time()
            mono = time.monotonic()
            if not msgs:
                if t_last is not None and mono - t_last > a.idle_seconds:
                    break
                continue
            got = 0
            for m in msgs:
                if m.error():
                    errors += 1
                    continue
                v = m.value()
                nbytes += len(v) if v else 0
                tt, ts = m.timestamp()
                types.add(tt)
                lat.append(now - ts / 1000.0)
                got += 1
            if got:
                n += got
                t_first = mono if t_first is None else t_first
                t_last = mono
    finally:
        c.close()
    span = (t_last - t_first) if t_first is not None else 0.0
    names = {1: "CreateTime", 2: "LogAppendTime"}
    print(json.dumps({
        "records": n, "bytes": nbytes, "expected_records": a.records, "complete": n >= a.records,
        "seconds": round(span, 3), "mb_per_s": round(nbytes / MB / span, 2) if span > 0 else None,
        "e2e_latency_ms": common.percentiles(lat), "timestamp_types": sorted(names.get(t, str(t)) for t in types),
        "errors": errors}), flush=True)
    return 0


def _tail_consume(sysm, topic: str, records: int, rate_records: float, seconds: float, record_size: int,
                  partitions: int, props: list[str], libs: str, progress: Progress) -> dict:
    """(e): start the consumer (own process), wait until it is ready, run the fixed-rate producer."""
    idle = 15.0
    cmd = [sys.executable, "-c", "import sys; from bench.compare import tail_consumer_main; "
           "sys.exit(tail_consumer_main(sys.argv[1:]))", "--bootstrap", sysm.bootstrap, "--topic", topic,
           "--partitions", str(partitions), "--records", str(records),
           "--max-seconds", str(round(seconds * 3 + 180)), "--idle-seconds", str(idle)]
    errf = tempfile.TemporaryFile()
    cons = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errf, stdin=subprocess.DEVNULL, text=True,
                            cwd=ROOT, start_new_session=True)
    lines: list[str] = []
    ready = threading.Event()

    def reader():
        for line in cons.stdout:
            lines.append(line.strip())
            if line.strip() == "ready":
                ready.set()

    th = threading.Thread(target=reader, daemon=True)
    th.start()

    def fail(what: str) -> RuntimeError:
        errf.seek(0)
        return RuntimeError(f"tail consumer {what} on {sysm.name} (exit {cons.poll()}, broker alive: "
                            f"{sysm.alive()}):\n" + "\n".join(lines[-5:]) + "\n"
                            + errf.read().decode(errors="replace")[-3000:]
                            + f"\n--- broker log tail\n{sysm.log_tail()}")
    try:
        t0 = time.monotonic()
        while not ready.wait(0.2):
            if cons.poll() is not None or time.monotonic() - t0 > 60:
                raise fail("did not start")
        producer = _perf_test(sysm, topic, records, record_size, rate_records, props, libs, progress,
                              sample_rss=False)
        progress.show("producer done, waiting for the consumer")
        # The consumer is done once it has every record, or after `idle` s without one.
        try:
            cons.wait(idle + 60)
        except subprocess.TimeoutExpired:
            raise fail("did not finish") from None
        th.join(10)
        if cons.returncode != 0 or not lines or not lines[-1].startswith("{"):
            raise fail("failed")
    finally:
        if cons.poll() is None:
            os.killpg(cons.pid, 9)
            cons.wait(10)
        errf.close()
    out = json.loads(lines[-1])
    if not out["records"]:
        raise RuntimeError(f"tail consumer on {sysm.name} received no records: {out}")
    out["producer"] = producer
    out["tail_rate_records_per_s"] = round(rate_records, 1)
    out["producer_held_rate"] = producer["records_per_s"] >= 0.95 * rate_records
    return out


def _run_tool(cmd: list[str], timeout: float, what: str, env: dict) -> tuple[int, str, str]:
    """Run one of Kafka's Java tools in its own process group; (exit code, stdout,
    stderr). Past ``timeout`` the whole group is killed and RuntimeError raised."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True, start_new_session=True, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, err = proc.communicate(timeout=10)
        raise RuntimeError(f"{what} timed out after {timeout:.0f} s:\n{out[-2000:]}\n{err[-3000:]}") from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait(10)
    return proc.returncode, out, err


# ------------------------------------------------------------- (f) catch-up read
def _consumer_perf_test(bootstrap: str, topic: str, records: int, record_size: int, libs: str, name: str) -> dict:
    """Read ``records`` from offset 0 with kafka-consumer-perf-test; MB/s over its fetch time."""
    cmd = [str(TOOL), "kafka-consumer-perf-test", "--bootstrap-server", bootstrap, "--topic", topic,
           "--num-records", str(records), "--fetch-size", str(READ_FETCH_BYTES), "--timeout", "30000",
           "--group", f"cmp-read-{os.urandom(4).hex()}"]
    timeout = 180 + records * record_size / MB / 2.0   # never slower than 2 MB/s
    t0 = time.monotonic()
    returncode, out, err = _run_tool(cmd, timeout, f"kafka-consumer-perf-test on {name}",
                                     dict(os.environ, KAFKA_LIBS=libs, KAFKA_HEAP_OPTS="-Xmx512m"))
    wall = time.monotonic() - t0
    # start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec,
    # rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec   (its "MB" is MiB)
    row = None
    for line in out.splitlines():
        f = [x.strip() for x in line.split(",")]
        if len(f) == 10 and not line.startswith("start.time"):
            row = f
    if returncode != 0 or row is None:
        raise RuntimeError(f"kafka-consumer-perf-test failed on {name} (exit {returncode}):\n"
                           f"{out[-2000:]}\n{err[-3000:]}")
    n, mib, rebalance_ms, fetch_ms = int(row[4]), float(row[2]), float(row[6]), float(row[7])
    if n < records:
        raise RuntimeError(f"kafka-consumer-perf-test on {name} read {n:,} of {records:,} records:\n"
                           f"{out[-2000:]}\n{err[-3000:]}")
    nbytes = n * record_size  # values of record_size bytes, no keys (its MiB figure has 4 decimals)
    return {"records": n, "bytes": nbytes, "mib_reported": mib, "fetch_s": round(fetch_ms / 1000, 3),
            "mb_per_s": round(nbytes / MB / (fetch_ms / 1000), 1) if fetch_ms > 0 else None,
            "rebalance_ms": rebalance_ms, "wall_s": round(wall, 2)}


def _catchup_kafka(sysm: _System, topic: str, records: int, record_size: int, partitions: int,
                   props: list[str], libs: str, progress: Progress) -> dict:
    _create_topic(sysm.bootstrap, topic, partitions)
    progress.show(f"writing {records * record_size / MB:,.0f} MB")
    prod = _perf_test(sysm, topic, records, record_size, -1, props, libs, progress, sample_rss=False)
    progress.show("reading from offset 0 (1st: right after writing)")
    cold = _consumer_perf_test(sysm.bootstrap, topic, prod["records"], record_size, libs, sysm.name)
    progress.show("reading from offset 0 (2nd)")
    warm = _consumer_perf_test(sysm.bootstrap, topic, prod["records"], record_size, libs, sysm.name)
    return {"produce": prod, "records": prod["records"], "cold": cold, "warm": warm,
            "source": "local log; OS page cache holds the data (just written) for both reads"}


def _tiers(m: dict) -> dict:
    out = {}
    for (name, labels), v in m.items():
        if name == "sluice_fetch_read_bytes_total":
            out[dict(labels).get("tier", "?")] = v
        elif name == "sluice_objectstore_bytes_total" and dict(labels).get("direction") == "get":
            out["objectstore_get_bytes"] = v
        elif name == "sluice_objectstore_requests_total" and dict(labels).get("op") in ("get", "get_range"):
            out["objectstore_gets"] = out.get("objectstore_gets", 0) + v
    return out


def _delta(after: dict, before: dict) -> dict:
    return {k: int(v - before.get(k, 0)) for k, v in sorted(after.items()) if v - before.get(k, 0)}


def _catchup_sluice(args, tag: str, records: int, props: list[str], libs: str, progress: Progress) -> dict:
    """(f) for Sluice: its own MinIO and a broker against it; write, restart with an empty data dir, read twice."""
    work = tempfile.mkdtemp(prefix="sluice-cmp-catchup-", dir=args.data_dir)
    minio = broker = None
    out: dict = {}
    try:
        progress.show("starting MinIO")
        minio = storage.start_minio(work)
        broker = storage.s3_broker(work, minio)
        overrides = ("s3.merge.interval.ms=3600000",            # read the data as uploaded
                     f"cache.block.bytes={args.catchup_block_cache_mb << 20}",
                     "group.initial.rebalance.delay.ms=0")          # as the Kafka reference broker
        out["overrides"] = list(overrides)
        storage.restart(broker, *overrides)
        sysm = _S3System(broker)
        topic = f"cmp-f-{tag}"
        _create_topic(broker.bootstrap, topic, args.partitions)
        progress.show(f"writing {records * args.record_size / MB:,.0f} MB")
        prod = _perf_test(sysm, topic, records, args.record_size, -1, props, libs, progress, sample_rss=False)
        progress.show("waiting for the upload to MinIO")
        t0 = time.monotonic()
        limit = 180 + records * args.record_size / MB / 5   # never slower than 5 MB/s
        while broker.scrape().get(("sluice_wal_size_bytes", ()), 1) > 0:
            if time.monotonic() - t0 > limit:
                raise RuntimeError(f"Sluice did not upload its WAL within {limit:.0f} s:\n{broker.log_tail()}")
            time.sleep(0.2)
        out["upload_wait_s"] = round(time.monotonic() - t0, 1)
        out["exit_code_after_write"] = broker.stop()
        objs = minio.objects(storage.BUCKET, "data/")
        out["data_objects"] = len(objs)
        out["data_object_bytes"] = sum(o["Size"] for o in objs)
        progress.show("restarting Sluice with an empty data dir")
        storage.restart(broker, *overrides, wipe=True)
        m0 = _tiers(broker.scrape())
        progress.show("reading from offset 0 (cold block cache: from MinIO)")
        cold = _consumer_perf_test(broker.bootstrap, topic, prod["records"], args.record_size, libs, sysm.name)
        m1 = _tiers(broker.scrape())
        progress.show("reading from offset 0 again (warm block cache)")
        warm = _consumer_perf_test(broker.bootstrap, topic, prod["records"], args.record_size, libs, sysm.name)
        m2 = _tiers(broker.scrape())
        cold["read_bytes_by_tier"], warm["read_bytes_by_tier"] = _delta(m1, m0), _delta(m2, m1)
        out.update({"produce": prod, "records": prod["records"], "cold": cold, "warm": warm,
                    "source": "MinIO on loopback (s3://), block cache empty after a restart with an "
                              "empty data dir; then the block cache"})
    finally:
        if broker is not None:
            out["exit_code"] = broker.stop()
            out["broker_log_problems"] = log_problems(broker.log_path)
        if minio is not None:
            minio.stop()
            out["minio_log_problems"] = log_problems(os.path.join(work, "minio.log"))
        shutil.rmtree(work, ignore_errors=True)
    return out


# ------------------------------------------------------------- (g) partition move
class _ClusterSystem:
    """A ``KafkaCluster`` seen as a _System by ``_perf_test`` (pid: node 1, the partitions' source)."""

    def __init__(self, cluster: KafkaCluster) -> None:
        self.cluster = cluster
        self.name = f"kafka ({cluster.n}-node cluster)"

    @property
    def bootstrap(self) -> str:
        return self.cluster.bootstrap

    @property
    def pid(self) -> int | None:
        return self.cluster.nodes[0].pid

    def alive(self) -> bool:
        return self.cluster.alive()

    def log_tail(self) -> str:
        return self.cluster.log_tail()


class _SluiceCluster:
    """``n`` ``sluice serve`` brokers, node ids 1..n, on one MinIO bucket, with metrics; a _System
    for ``_perf_test`` (pid: node 1, the partitions' source). The heartbeat is left at its default."""

    def __init__(self, workdir: str, minio: MinioServer, n: int = 3, overrides: tuple[str, ...] = ()) -> None:
        self.workdir = Path(workdir)
        self.minio = minio
        self.n = n
        self.brokers = [BrokerProcess(self.workdir / f"node{i}", overrides=[f"node.id={i}", *overrides],
                                      extra_args=["--object-store", f"s3://{storage.BUCKET}"], env=minio.env(),
                                      metrics=True, log_path=self.workdir / f"node{i}.log", stop_timeout=60.0)
                        for i in range(1, n + 1)]
        self.name = f"sluice ({n} brokers on MinIO)"

    def start(self, timeout: float = 120.0) -> "_SluiceCluster":
        """Start node 1, 2, ... in turn, then wait until each lists all of them in Metadata."""
        deadline = time.monotonic() + timeout
        for b in self.brokers:
            b.start(max(5.0, deadline - time.monotonic()))
        addresses = [("127.0.0.1", b.port) for b in self.brokers]
        seen = wait_for_cluster(addresses, max(5.0, deadline - time.monotonic()))
        if not all(set(addresses) <= v for v in seen.values()):
            raise RuntimeError(f"the {self.n} Sluice brokers did not form a cluster: {seen}\n{self.log_tail()}")
        return self

    def node(self, node_id: int) -> BrokerProcess:
        return self.brokers[node_id - 1]

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers)

    @property
    def pid(self) -> int | None:
        p = self.brokers[0].proc
        return p.pid if p is not None else None

    def alive(self) -> bool:
        return all(b.running for b in self.brokers)

    def log_tail(self) -> str:
        return "\n".join(f"--- node {i + 1}\n{b.log_tail(1500)}" for i, b in enumerate(self.brokers))

    def store_counters(self) -> dict[int, dict]:
        """Each broker's object-store counters (``_store_counters``), by node id."""
        return {i + 1: _store_counters(b.scrape()) for i, b in enumerate(self.brokers)}

    def stop(self) -> list[int | None]:
        return [b.stop() for b in self.brokers]


def _store_counters(samples: dict) -> dict[str, float]:
    """A broker's object-store counters from its metrics (``BrokerProcess.scrape()``): requests by
    operation (``requests.<op>``, failed ones as ``requests.<op>_error``), bytes read and written,
    data objects uploaded and the record bytes in them."""
    out: dict[str, float] = {}
    for (name, labels), v in samples.items():
        lab = dict(labels)
        if name == "sluice_objectstore_requests_total":
            key = "requests." + lab.get("op", "?") + ("" if lab.get("outcome") == "ok" else "_error")
            out[key] = out.get(key, 0) + v
        elif name == "sluice_objectstore_bytes_total":
            out[f"{lab.get('direction', '?')}_bytes"] = v
        elif name == "sluice_uploads_total":
            out["uploads"] = v
        elif name == "sluice_upload_batch_bytes_total":
            out["upload_batch_bytes"] = v
    return out


def store_window(before: dict[int, dict], after: dict[int, dict], seconds: float,
                 idle: dict | None = None) -> dict:
    """What the brokers asked of the object store between two ``store_counters()``, summed over
    them (and per node): requests by operation, bytes read (GET) and written (PUT). With ``idle``
    (an earlier window with nothing happening: the heartbeats), also the requests and bytes
    beyond what the idle rate predicts for a window this long."""
    by_node, total = {}, {}
    for node, a in after.items():
        b = before.get(node, {})
        d = {k: v - b.get(k, 0) for k, v in a.items() if v - b.get(k, 0)}
        by_node[str(node)] = {"requests": int(sum(v for k, v in d.items() if k.startswith("requests."))),
                              "get_bytes": int(d.get("get_bytes", 0)), "put_bytes": int(d.get("put_bytes", 0))}
        for k, v in d.items():
            total[k] = total.get(k, 0) + v
    requests = {k.split(".", 1)[1]: int(v) for k, v in sorted(total.items()) if k.startswith("requests.")}
    out = {"seconds": round(seconds, 3), "requests": requests, "requests_total": sum(requests.values()),
           "get_bytes": int(total.get("get_bytes", 0)), "put_bytes": int(total.get("put_bytes", 0)),
           "uploads": int(total.get("uploads", 0)), "upload_batch_bytes": int(total.get("upload_batch_bytes", 0)),
           "by_node": by_node}
    out["get_kib"] = round(out["get_bytes"] / 1024, 1)
    out["put_kib"] = round(out["put_bytes"] / 1024, 1)
    if idle and idle.get("seconds"):
        f = seconds / idle["seconds"]
        out["beyond_idle_rate"] = {k: round(out[k] - idle[k] * f, 1)
                                   for k in ("requests_total", "get_bytes", "put_bytes")}
    return out


def _log_bytes(path) -> int:
    """Bytes in a Kafka partition directory's segment files (``*.log``; the indexes are preallocated)."""
    total = 0
    try:
        for entry in os.scandir(path):
            if entry.name.endswith(".log") and entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
    except OSError:
        pass
    return total


class Poller:
    """Polls ``poll()`` every ``interval`` s in a thread and keeps each change of its answer.

    A transition holds the time the new answer was first seen and the time of the last poll that
    still showed the one before, both relative to ``t0`` (``mark()``), so a change is bracketed
    to within one poll interval; plus what ``describe()`` makes of the answer.
    """

    def __init__(self, interval: float = MOVE_POLL_S) -> None:
        self.interval = interval
        self.t0 = time.monotonic()
        self.state = None
        self.polls = 0
        self.transitions: list[dict] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def poll(self):
        raise NotImplementedError

    def describe(self, st) -> dict:
        raise NotImplementedError

    def changed(self, st) -> None:
        """Called (in the polling thread) after each change."""

    def start(self):
        self.state = self.poll()
        self._last_t = time.monotonic()
        self._thread.start()
        return self

    def mark(self) -> None:
        """Times from now on are relative to this instant (the reassignment's start)."""
        self.t0 = time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            st = self.poll()
            now = time.monotonic()
            with self._lock:
                self.polls += 1
                changed = st != self.state
                if changed:
                    self.transitions.append({"seen_s": round(now - self.t0, 3),
                                             "previous_last_seen_s": round(self._last_t - self.t0, 3),
                                             **self.describe(st)})
                    self.state = st
                self._last_t = now
            if changed:
                self.changed(st)

    def wait_for(self, pred, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if pred(self.state):
                    return True
            time.sleep(self.interval)
        return False

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def seen(self) -> list[dict]:
        with self._lock:
            return list(self.transitions)


class ReplicaWatcher(Poller):
    """Polls one partition's replicas, ISR and leader in Metadata every ``interval`` s (a thread);
    a transition is a change of (replicas, isr, leader, error)."""

    def __init__(self, bootstrap: str, topic: str, partition: int = 0, interval: float = MOVE_POLL_S) -> None:
        from confluent_kafka.admin import AdminClient

        super().__init__(interval)
        self.admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
        self.topic, self.partition = topic, partition

    def poll(self):
        try:
            md = self.admin.list_topics(self.topic, timeout=5)
            t = md.topics.get(self.topic)
            p = t.partitions.get(self.partition) if t is not None and not t.error else None
            if p is None:
                return ("error", str(t.error if t is not None else "no topic"))
            return (tuple(p.replicas), tuple(sorted(p.isrs)), p.leader, str(p.error) if p.error else None)
        except Exception as exc:  # noqa: BLE001 - a failed poll is a state of its own
            return ("error", type(exc).__name__)

    def describe(self, st) -> dict:
        ok = st[0] != "error"
        return {"replicas": list(st[0]) if ok else None, "isr": list(st[1]) if ok else None,
                "leader": st[2] if ok else None, "error": st[3] if ok else st[1]}

    @staticmethod
    def is_moved(st, target: int) -> bool:
        return st is not None and st[0] == (target,) and st[1] == (target,) and st[2] == target and st[3] is None

    def wait_moved(self, target: int, timeout: float) -> bool:
        return self.wait_for(lambda st: self.is_moved(st, target), timeout)

    def timing(self, target: int) -> dict:
        return {"polls": self.polls, "poll_interval_s": self.interval, **self.move_timing(self.seen(), target)}

    @staticmethod
    def moved(x: dict, target: int) -> bool:
        return x["replicas"] == [target] and x["isr"] == [target] and x["leader"] == target and x["error"] is None

    @staticmethod
    def move_timing(tr: list[dict], target: int) -> dict:
        """move_s: last poll showing the original state (or t0) to the first poll showing the move done."""
        done = next((x for x in tr if ReplicaWatcher.moved(x, target)), None)
        out: dict = {"transitions": tr}
        if tr and done is not None:
            first = tr[0]
            out["started_seen_s"] = first["seen_s"]
            out["done_seen_s"] = done["seen_s"]
            # the move cannot start before --execute was launched (t0): clamp the start there
            out["move_s"] = round(done["seen_s"] - max(0.0, first["previous_last_seen_s"]), 3)  # upper bound
            out["move_s_lower_bound"] = round(max(0.0, done["previous_last_seen_s"] - first["seen_s"]), 3)
        return out


class ServingProbe(Poller):
    """Asks one broker, on a connection of its own, for a partition's end offset (ListOffsets v2,
    latest) every ``interval`` s: the answer is ("offset", N) or ("error", Kafka error code, or
    the exception's name). ``on_serving`` runs once, in the polling thread, when it first answers
    ``expect``."""

    def __init__(self, address: str, topic: str, expect: int, partition: int = 0,
                 interval: float = MOVE_POLL_S, on_serving=None) -> None:
        super().__init__(interval)
        host, _, port = address.rpartition(":")
        self.address = (host, int(port))
        self.topic, self.partition, self.expect = topic, partition, expect
        self.on_serving = on_serving
        self._sock: socket.socket | None = None
        self._cid = 0
        self._fired = False

    def _ask(self):
        from kafka.protocol.consumer import ListOffsetsRequest, ListOffsetsResponse

        if self._sock is None:
            self._sock = socket.create_connection(self.address, timeout=2.0)
        self._cid += 1
        T = ListOffsetsRequest.ListOffsetsTopic
        req = ListOffsetsRequest(replica_id=-1, isolation_level=0, topics=[
            T(name=self.topic, partitions=[T.ListOffsetsPartition(partition_index=self.partition, timestamp=-1)])])
        req.API_VERSION = 2
        req.with_header(correlation_id=self._cid, client_id="sluice-bench-move")
        self._sock.sendall(bytes(req.encode(header=True, framed=True)))
        size = struct.unpack(">i", self._recv(4))[0]
        frame = self._recv(size)
        if struct.unpack_from(">i", frame)[0] != self._cid:
            raise ConnectionError("correlation id mismatch")
        part = ListOffsetsResponse[2].decode(frame[4:]).topics[0].partitions[0]
        return ("offset", part.offset) if part.error_code == 0 else ("error", part.error_code)

    def _recv(self, n: int) -> bytes:
        assert self._sock is not None
        buf = bytearray()
        while len(buf) < n:
            chunk = self._sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return bytes(buf)

    def poll(self):
        try:
            return self._ask()
        except Exception as exc:  # noqa: BLE001 - a failed poll is a state of its own; reconnect next time
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            return ("error", type(exc).__name__)

    def describe(self, st) -> dict:
        return {"offset": st[1] if st[0] == "offset" else None, "error": st[1] if st[0] == "error" else None}

    def changed(self, st) -> None:
        if st == ("offset", self.expect) and not self._fired:
            self._fired = True
            if self.on_serving is not None:
                self.on_serving()

    def serving(self) -> bool:
        return self.state == ("offset", self.expect)

    def stop(self) -> None:
        super().stop()
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class BucketWatcher(Poller):
    """Sluice: polls the bucket's cluster metadata document (HEAD; GET when its etag changed) for
    one partition's owner, epoch and move target (-1: none)."""

    KEY = "cluster/metadata.json"

    def __init__(self, minio: MinioServer, topic: str, partition: int = 0, interval: float = MOVE_POLL_S) -> None:
        super().__init__(interval)
        self.client = minio.client()
        self.topic, self.partition = topic, partition
        self.etag = None
        self.generation = None
        self.topic_id: str | None = None
        self._doc_state = None

    def poll(self):
        try:
            etag = self.client.head_object(Bucket=storage.BUCKET, Key=self.KEY)["ETag"]
            if etag != self.etag:
                got = self.client.get_object(Bucket=storage.BUCKET, Key=self.KEY)
                doc = json.loads(got["Body"].read())
                self.etag, self.generation = got["ETag"], doc.get("generation")
                t = next((t for t in doc.get("topics", []) if t.get("name") == self.topic), None)
                if t is None:
                    self._doc_state = ("no topic",)
                else:
                    p = self.partition
                    self.topic_id = t["id"]
                    targets = t.get("targets") or []
                    self._doc_state = (t["owners"][p], t["epochs"][p], targets[p] if p < len(targets) else -1)
            return self._doc_state
        except Exception as exc:  # noqa: BLE001 - a failed poll is a state of its own
            self.etag = None
            return ("error", type(exc).__name__)

    def describe(self, st) -> dict:
        if st is None or len(st) != 3:
            return {"owner": None, "epoch": None, "target": None, "error": st[-1] if st else None}
        return {"owner": st[0], "epoch": st[1], "target": st[2], "generation": self.generation}


def _clamp(t: dict) -> float:
    return max(0.0, t["previous_last_seen_s"])


def serving_timing(start_s: float | None, serving_tr: list[dict], records: int) -> dict:
    """serving_s: from ``start_s`` to the first poll in which the new owner answered ListOffsets with
    the partition's end offset (upper bound; the lower bound from its last poll that did not)."""
    serve = next((x for x in serving_tr if x.get("offset") == records), None)
    if start_s is None or serve is None:
        return {}
    return {"serving_seen_s": serve["seen_s"], "serving_s": round(serve["seen_s"] - start_s, 3),
            "serving_s_lower_bound": round(max(0.0, serve["previous_last_seen_s"] - start_s), 3)}


def sluice_move_timing(bucket_tr: list[dict], metadata_tr: list[dict], serving_tr: list[dict], src: int,
                       dst: int, records: int) -> dict:
    """(g) for Sluice. Its Metadata names only the owner (a pending move shows no "adding" replica),
    so the move starts, as for Kafka's first Metadata change, when the metadata document in the
    bucket names the target: from the last bucket poll that did not (or --execute's start) to the
    first poll of Metadata that names broker ``dst`` alone (move_s) and of ``dst`` answering
    ListOffsets with the end offset (serving_s). If one bucket poll saw the target set and the flip
    at once, the move started after that poll's predecessor. ``phases_s`` splits the time between
    the first sightings: request (--execute's start to the target: the tool's JVM and
    AlterPartitionReassignments), old_owner (target to the flip: the old owner learns of the target,
    seals, uploads its tail and flips), new_owner (flip to serving: the new owner learns of the
    flip, claims and loads the manifest)."""
    target = next((x for x in bucket_tr if x.get("owner") == src and x.get("target") == dst), None)
    flip = next((x for x in bucket_tr if x.get("owner") == dst), None)
    md = next((x for x in metadata_tr if ReplicaWatcher.moved(x, dst)), None)
    serve = next((x for x in serving_tr if x.get("offset") == records), None)
    events = {"target_set": target, "flipped": flip, "metadata_names_target": md, "target_serves": serve}
    out: dict = {"events_s": {k: [_clamp(v), v["seen_s"]] for k, v in events.items() if v is not None}}
    first = target or flip
    if first is None:
        return out
    start = _clamp(first)
    out["started_seen_s"] = first["seen_s"]
    if md is not None:
        out["done_seen_s"] = md["seen_s"]
        out["move_s"] = round(md["seen_s"] - start, 3)
        out["move_s_lower_bound"] = round(max(0.0, md["previous_last_seen_s"] - first["seen_s"]), 3)
    out.update(serving_timing(start, serving_tr, records))
    if flip is not None and serve is not None:
        t_target = target["seen_s"] if target is not None else start
        out["phases_s"] = {"request": round(t_target, 3), "old_owner": round(flip["seen_s"] - t_target, 3),
                           "new_owner": round(serve["seen_s"] - flip["seen_s"], 3)}
    return out


def _reassign_tool(libs: str, bootstrap: str, plan: str, action: str, timeout: float) -> dict:
    """One run of kafka-reassign-partitions (``--execute`` or ``--verify``); killed after ``timeout``."""
    cmd = [str(TOOL), "kafka-reassign-partitions", "--bootstrap-server", bootstrap,
           "--reassignment-json-file", plan, action]
    t0 = time.monotonic()
    returncode, out, err = _run_tool(cmd, timeout, f"kafka-reassign-partitions {action}",
                                     dict(os.environ, KAFKA_LIBS=libs))
    if returncode != 0:
        raise RuntimeError(f"kafka-reassign-partitions {action} failed (exit {returncode}):\n"
                           f"{out[-2000:]}\n{err[-2000:]}")
    return {"stdout": out, "stderr": err, "seconds": round(time.monotonic() - t0, 2)}


def _write_plan(directory, topic: str, dst: int) -> str:
    plan = os.path.join(directory, f"{topic}.reassign.json")
    with open(plan, "w") as f:
        json.dump({"version": 1, "partitions": [{"topic": topic, "partition": 0, "replicas": [dst]}]}, f)
    return plan


def _execute_and_verify(libs: str, bootstrap: str, plan: str, topic: str, mib: float, src: int, dst: int,
                        progress: Progress, on_start, detail=lambda: "") -> dict:
    """kafka-reassign-partitions --execute, then --verify every VERIFY_PAUSE_S until it reports the
    move complete; ``on_start()`` runs just before --execute. Tool times in seconds."""
    limit = 120 + mib / 5                # never slower than 5 MiB/s
    verify_runs: list[float] = []
    out: dict = {}
    progress.show(f"moving {mib:,g} MiB from broker {src} to {dst}: --execute")
    on_start()
    t0 = time.monotonic()
    execute = _reassign_tool(libs, bootstrap, plan, "--execute", timeout=120)
    if "Successfully started partition reassignment" not in execute["stdout"]:
        raise RuntimeError(f"kafka-reassign-partitions --execute did not start the move:\n{execute['stdout']}")
    out["execute_tool_s"] = execute["seconds"]
    while True:
        el = time.monotonic() - t0
        progress.show(f"moving {mib:,g} MiB from broker {src} to {dst}: {el:.0f}s, --verify "
                      f"#{len(verify_runs) + 1}{detail()}")
        v = _reassign_tool(libs, bootstrap, plan, "--verify", timeout=120)
        verify_runs.append(v["seconds"])
        text = v["stdout"]
        if "is completed" in text and "still in progress" not in text:
            out["tool_s"] = round(time.monotonic() - t0, 2)
            break
        # "There is no active reassignment of partition X, but replica set is 2,1 rather than
        # 2": the tool read the finished reassignment before the metadata that drops the old
        # replica (Kafka: seen once in 18 moves; Sluice: a broker that has not yet heard of the
        # flip names the old owner): poll again, as for in progress.
        settling = "no active reassignment" in text and "rather than" in text
        if "failed" in text.lower() or ("still in progress" not in text and not settling):
            raise RuntimeError(f"kafka-reassign-partitions --verify: unexpected output:\n{text}")
        if time.monotonic() - t0 > limit:
            raise RuntimeError(f"moving {topic} ({mib:g} MiB) did not complete within {limit:.0f} s:\n{text}")
        time.sleep(VERIFY_PAUSE_S)
    out["verify_runs"] = len(verify_runs)
    out["verify_tool_s"] = verify_runs
    return out


def _check_moved(bootstrap: str, topic: str, records: int) -> dict:
    """Every offset is still there after the move: watermarks 0..records, and the first and the
    last record read back."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"cmp-move-{os.getpid()}", "log_level": 0,
                  "enable.auto.commit": False})
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=30, cached=False)
        if (low, high) != (0, records):
            raise RuntimeError(f"{topic} after the move: offsets {low}..{high}, expected 0..{records}")
        read = []
        for offset in (0, records - 1):
            c.assign([TopicPartition(topic, 0, offset)])
            deadline = time.monotonic() + 30
            m = None
            while time.monotonic() < deadline:
                m = c.poll(1.0)
                if m is not None and not m.error():
                    break
            if m is None or m.error() or m.offset() != offset:
                raise RuntimeError(f"{topic} after the move: could not read offset {offset}: {m and m.error()}")
            read.append(m.offset())
    finally:
        c.close()
    return {"offsets_after_move": [low, high], "read_back_offsets": read}


def _move_partition(cluster: KafkaCluster, sysm: _ClusterSystem, topic: str, mib: float, record_size: int,
                    props: list[str], libs: str, progress: Progress, src: int = 1, dst: int = 2) -> dict:
    """Write ``mib`` MiB into a new one-partition topic on broker ``src``; move it to ``dst``; time it."""
    records = max(1, int(mib * (1 << 20)) // record_size)
    _create_assigned_topic(cluster.bootstrap, topic, [src])
    progress.show(f"writing {mib:,g} MiB to broker {src}")
    prod = _perf_test(sysm, topic, records, record_size, -1, props, libs, progress, sample_rss=False)
    src_dir = cluster.node(src).log_dir / f"{topic}-0"
    dst_dir = cluster.node(dst).log_dir / f"{topic}-0"
    out = {"records": records, "record_bytes": records * record_size, "from_broker": src, "to_broker": dst,
           "produce": prod, "source_log_bytes": _log_bytes(src_dir)}
    plan = _write_plan(cluster.workdir, topic, dst)
    watcher = ReplicaWatcher(cluster.bootstrap, topic).start()
    probe = ServingProbe(cluster.node(dst).bootstrap, topic, prod["records"])
    try:
        if watcher.state[:1] != ((src,),):
            raise RuntimeError(f"{topic} is not on broker {src} alone before the move: {watcher.state}")
        probe.start()

        def start() -> None:
            watcher.mark()
            probe.mark()

        out.update(_execute_and_verify(
            libs, cluster.bootstrap, plan, topic, mib, src, dst, progress, start,
            lambda: f", broker {dst} holds {_log_bytes(dst_dir) / (1 << 20):,.0f} MiB"))
        # --verify said done: the metadata shows it too (at once, or within a few polls)
        if not watcher.wait_moved(dst, 30):
            raise RuntimeError(f"--verify reports {topic} moved but Metadata shows {watcher.state}")
        if not probe.wait_for(lambda st: st == ("offset", prod["records"]), 30):
            raise RuntimeError(f"--verify reports {topic} moved but broker {dst} answers {probe.state}")
    finally:
        watcher.stop()
        probe.stop()
    out.update(watcher.timing(dst))
    tr = out["transitions"]
    out["serving_transitions"] = probe.seen()
    out.update(serving_timing(_clamp(tr[0]) if tr else None, out["serving_transitions"], prod["records"]))
    out["target_log_bytes"] = _log_bytes(dst_dir)
    out.update(_check_moved(cluster.bootstrap, topic, prod["records"]))
    if "move_s" not in out:
        raise RuntimeError(f"{topic}: the move was not seen in Metadata: {out.get('transitions')}")
    return out


def _create_assigned_topic(bootstrap: str, topic: str, replicas: list[int]) -> None:
    """One partition with exactly these replicas (RF = len(replicas)); waits for its leader."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    admin.create_topics([NewTopic(topic, num_partitions=1, replica_assignment=[replicas])],
                        operation_timeout=60, request_timeout=60)[topic].result(timeout=60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        t = admin.list_topics(topic, timeout=10).topics.get(topic)
        if t and not t.error and 0 in t.partitions and t.partitions[0].leader == replicas[0]:
            return
        time.sleep(0.2)
    raise RuntimeError(f"topic {topic} has no leader on broker {replicas[0]} at {bootstrap}")


def _partition_move(args, tag: str, props: list[str], libs: str, progress: Progress) -> dict:
    """(g): a fresh 3-node Kafka cluster; move a 1 MiB and a ``--move-mib`` MiB partition, broker 1 -> 2."""
    work = tempfile.mkdtemp(prefix="sluice-cmp-move-", dir=args.data_dir)
    cluster = KafkaCluster(work, nodes=3, heap=args.kafka_cluster_heap, libs=libs)
    out: dict = {"cluster": f"3 combined controller+broker KRaft nodes ({args.kafka_cluster_heap} each)",
                 "moves": {}}
    try:
        progress.show("starting a 3-node Kafka cluster")
        t = time.monotonic()
        cluster.start(timeout=240)
        out["startup_s"] = round(time.monotonic() - t, 2)
        sysm = _ClusterSystem(cluster)
        for i, mib in enumerate((MOVE_SMALL_MIB, args.move_mib)):
            key = f"{mib:g}MiB"
            progress.show(f"{key}:")
            out["moves"][key] = _move_partition(cluster, sysm, f"cmp-g{i}-{tag}", mib, args.record_size,
                                                props, libs, progress)
    finally:
        progress.show("stopping the 3-node cluster")
        out["exit_codes"] = cluster.stop(30)
        problems = [log_problems(node.log_path) for node in cluster.nodes]
        out["broker_log_problems"] = {"count": sum(p["count"] for p in problems),
                                      "first": [f"node {i + 1}: {line}" for i, p in enumerate(problems)
                                                for line in p["first"]][:10]}
        shutil.rmtree(work, ignore_errors=True)
    return out


def _leader(bootstrap: str, topic: str) -> int:
    from confluent_kafka.admin import AdminClient

    t = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(topic, timeout=10).topics[topic]
    return t.partitions[0].leader


def _topic_id(minio: MinioServer, topic: str) -> str | None:
    """The topic's id in the bucket's cluster metadata document."""
    doc = json.loads(minio.client().get_object(Bucket=storage.BUCKET, Key=BucketWatcher.KEY)["Body"].read())
    return next((t["id"] for t in doc.get("topics", []) if t.get("name") == topic), None)


def _manifest_info(minio: MinioServer, topic_id: str | None) -> dict:
    """Size, segment count and next offset of partition 0's manifest in the bucket."""
    if topic_id is None:
        return {}
    import uuid

    key = f"manifests/{uuid.UUID(topic_id).hex}/0.json"
    try:
        body = minio.client().get_object(Bucket=storage.BUCKET, Key=key)["Body"].read()
    except Exception as exc:  # noqa: BLE001 - informative only
        return {"key": key, "error": type(exc).__name__}
    m = json.loads(body)
    return {"key": key, "bytes": len(body), "segments": len(m.get("segments", [])),
            "next_offset": m.get("next_offset")}


def _move_partition_sluice(cl: _SluiceCluster, topic: str, mib: float, record_size: int, props: list[str],
                           libs: str, progress: Progress, src: int = 1, dst: int = 2) -> dict:
    """(g) for Sluice: as ``_move_partition``, on ``cl``; waits until broker ``src`` has uploaded
    everything (its WAL is empty) before the move, and counts the brokers' object-store requests."""
    records = max(1, int(mib * (1 << 20)) // record_size)
    _create_topic(cl.bootstrap, topic, 1)
    out: dict = {"records": records, "record_bytes": records * record_size, "from_broker": src,
                 "to_broker": dst}
    placed = _leader(cl.bootstrap, topic)
    if placed != src:   # new partitions go to the broker with the fewest: put it on src first
        out["placed_on"] = placed
        progress.show(f"moving the new topic from broker {placed} to {src} before writing")
        res = subprocess.run([sys.executable, "-m", "broker", "reassign", "--bootstrap-server", cl.bootstrap,
                              "--topic", topic, "--partition", "0", "--to", str(src), "--timeout", "60"],
                             cwd=ROOT, capture_output=True, text=True, timeout=90)
        if res.returncode != 0:
            raise RuntimeError(f"sluice reassign {topic} to {src} failed:\n{res.stdout}\n{res.stderr}")
    progress.show(f"writing {mib:,g} MiB to broker {src}")
    out["produce"] = prod = _perf_test(cl, topic, records, record_size, -1, props, libs, progress, sample_rss=False)
    progress.show(f"waiting until broker {src} has uploaded it all (WAL empty, manifest up to date)")
    t = time.monotonic()
    limit = 120 + mib / 5               # never slower than 5 MiB/s
    topic_id = _topic_id(cl.minio, topic)
    while True:
        wal = cl.node(src).scrape().get(("sluice_wal_size_bytes", ()), 1)
        manifest = _manifest_info(cl.minio, topic_id)
        if wal == 0 and manifest.get("next_offset") == prod["records"]:
            break
        if time.monotonic() - t > limit:
            raise RuntimeError(f"broker {src} did not upload everything within {limit:.0f} s (WAL {wal:,.0f} "
                               f"bytes, manifest {manifest}):\n{cl.log_tail()}")
        time.sleep(0.2)
    out["upload_wait_s"] = round(time.monotonic() - t, 2)
    out["manifest_before_move"] = manifest
    out["wal_bytes_before_move"] = {str(i + 1): int(b.scrape().get(("sluice_wal_size_bytes", ()), -1))
                                    for i, b in enumerate(cl.brokers)}
    plan = _write_plan(cl.workdir, topic, dst)
    watcher = ReplicaWatcher(cl.bootstrap, topic).start()
    bucket = BucketWatcher(cl.minio, topic)
    marks: dict = {}

    def served() -> None:                # in the probe's thread, at once
        marks["serving"] = (time.monotonic(), cl.store_counters())

    probe = ServingProbe(cl.node(dst).bootstrap, topic, prod["records"], on_serving=served)
    try:
        if watcher.state[:1] != ((src,),):
            raise RuntimeError(f"{topic} is not on broker {src} alone before the move: {watcher.state}")
        bucket.start()
        if bucket.state[:1] != (src,) or bucket.state[2] != -1:
            raise RuntimeError(f"{topic}: the bucket's metadata says {bucket.state} before the move")
        probe.start()
        progress.show(f"idle {MOVE_IDLE_S:g} s before the move (the heartbeats' object-store requests)")
        c0, t_idle = cl.store_counters(), time.monotonic()
        time.sleep(MOVE_IDLE_S)

        def start() -> None:
            marks["start"] = (time.monotonic(), cl.store_counters())
            for w in (watcher, bucket, probe):
                w.mark()

        out.update(_execute_and_verify(libs, cl.bootstrap, plan, topic, mib, src, dst, progress, start))
        t_verified, c_verified = time.monotonic(), cl.store_counters()
        if not watcher.wait_moved(dst, 30):
            raise RuntimeError(f"--verify reports {topic} moved but Metadata shows {watcher.state}")
        if not probe.wait_for(lambda st: st == ("offset", prod["records"]), 30):
            raise RuntimeError(f"--verify reports {topic} moved but broker {dst} answers {probe.state}")
    finally:
        for w in (watcher, bucket, probe):
            w.stop()
    t_start, c_start = marks["start"]
    t_served, c_served = marks["serving"]
    idle = store_window(c0, c_start, t_start - t_idle)
    out["object_store"] = {
        "idle": idle,
        "move": store_window(c_start, c_served, t_served - t_start, idle),
        "tool_flow": store_window(c_start, c_verified, t_verified - t_start, idle)}
    out["transitions"] = watcher.seen()
    out["bucket_transitions"] = bucket.seen()
    out["serving_transitions"] = probe.seen()
    out["polls"], out["poll_interval_s"] = watcher.polls, watcher.interval
    out.update(sluice_move_timing(out["bucket_transitions"], out["transitions"], out["serving_transitions"],
                                  src, dst, prod["records"]))
    out["manifest_after_move"] = _manifest_info(cl.minio, bucket.topic_id)
    out.update(_check_moved(cl.bootstrap, topic, prod["records"]))
    if "move_s" not in out or "serving_s" not in out:
        raise RuntimeError(f"{topic}: the move was not seen: {out.get('bucket_transitions')} "
                           f"{out.get('transitions')} {out.get('serving_transitions')}")
    return out


def _partition_move_sluice(args, tag: str, props: list[str], libs: str, progress: Progress) -> dict:
    """(g) for Sluice: a fresh MinIO and 3 brokers on it; move a 1 MiB and a ``--move-mib`` MiB
    partition from broker 1 to 2."""
    work = tempfile.mkdtemp(prefix="sluice-cmp-move-", dir=args.data_dir)
    minio = cl = None
    out: dict = {"cluster": SLUICE_MOVE_CLUSTER, "overrides": list(SLUICE_MOVE_OVERRIDES), "moves": {}}
    try:
        progress.show("starting MinIO")
        minio = storage.start_minio(work)
        progress.show("starting 3 Sluice brokers on it")
        t = time.monotonic()
        cl = _SluiceCluster(work, minio, 3, SLUICE_MOVE_OVERRIDES)
        cl.start(timeout=120)
        out["startup_s"] = round(time.monotonic() - t, 2)
        for i, mib in enumerate((MOVE_SMALL_MIB, args.move_mib)):
            key = f"{mib:g}MiB"
            progress.show(f"{key}:")
            out["moves"][key] = _move_partition_sluice(cl, f"cmp-g{i}-{tag}", mib, args.record_size, props, libs,
                                                       progress)
    finally:
        progress.show("stopping the 3 Sluice brokers")
        if cl is not None:
            out["exit_codes"] = cl.stop()
            problems = [log_problems(b.log_path) for b in cl.brokers]
            out["broker_log_problems"] = {"count": sum(p["count"] for p in problems),
                                          "first": [f"node {i + 1}: {line}" for i, p in enumerate(problems)
                                                    for line in p["first"]][:10]}
        if minio is not None:
            minio.stop()
            out["minio_log_problems"] = log_problems(os.path.join(work, "minio.log"))
        shutil.rmtree(work, ignore_errors=True)
    return out


def _calibrate(args, libs: str, props: list[str], progress: Progress) -> dict:
    """Before round 1: (a) alone on a fresh broker of each system; the lower maximum sets (b)'s last rate."""
    out: dict = {"records": args.records, "pct": args.rate_max_pct}
    for name in ("sluice", "kafka"):
        progress.phase(f"calibration {name:6s} (a) unthrottled, for the {args.rate_max_pct:g}% rate:")
        sysm = _System(name, args, libs)
        try:
            time.sleep(2.0)
            topic = f"cmp-cal-{os.urandom(3).hex()}"
            _create_topic(sysm.bootstrap, topic, args.partitions)
            out[name] = _perf_test(sysm, topic, args.records, args.record_size, -1, props, libs, progress,
                                   sample_rss=False)
        finally:
            progress.phase(f"calibration {name:6s} stopping broker")
            out[f"{name}_exit_code"] = sysm.stop()
    out["lower_max_mb_per_s"] = min(out["sluice"]["mb_per_s"], out["kafka"]["mb_per_s"])
    out["rate_mb_per_s"] = round(out["lower_max_mb_per_s"] * args.rate_max_pct / 100, 1)
    return out


def _librdkafka(sysm, topic: str, args, progress: Progress, label: str) -> dict:
    """(h): ``sluice bench produce``'s librdkafka driver, unthrottled then at a fixed rate."""
    out = {}
    for kind, rate in (("unthrottled", None), ("paced", args.librdkafka_rate)):
        progress.phase(f"{label} (h) librdkafka producer, "
                       f"{'unthrottled' if rate is None else f'{rate:g} MB/s'}: {args.librdkafka_seconds:g} s")
        t = f"{topic}-{kind}"
        _create_topic(sysm.bootstrap, t, args.partitions)
        drive_args = produce.drive_args(record_size=args.record_size, partitions=args.partitions,
                                        duration=args.librdkafka_seconds, rate=rate, bootstrap=sysm.bootstrap)
        r = produce.drive(drive_args, sysm.bootstrap, t, None, None)
        steady = (r or {}).get("steady") or {}
        out[kind] = {"mb_per_s": steady.get("mb_per_s"), "latency_ms": steady.get("latency_ms"),
                     "target_mb_per_s": rate}
    return out


# ---------------------------------------------------------------------- run
def _round_on_broker(name: str, label: str, tag: str, args, workloads: set, rate_runs: list[dict], tail_n: int,
                     tail_records: float, catchup_n: int, props: list[str], libs: str, progress: Progress) -> dict:
    """One system's part of a round on a fresh broker: (a)/(d), every (b) rate, (c), (e), Kafka's (f)."""
    progress.phase(f"{label} starting broker")
    sysm = _System(name, args, libs)
    res: dict = {"startup_s": sysm.startup_s, "workloads": {}}
    try:
        time.sleep(2.0)
        res["rss_idle_mib"] = tree_rss_mib(sysm.pid)
        if "a" in workloads:
            progress.phase(f"{label} (a) unthrottled:")
            _create_topic(sysm.bootstrap, f"cmp-a-{tag}", args.partitions)
            res["workloads"]["a"] = _perf_test(sysm, f"cmp-a-{tag}", args.records, args.record_size,
                                               -1, props, libs, progress, sample_rss=True)
        if "b" in workloads:
            for i, run in enumerate(rate_runs):
                progress.phase(f"{label} ({run['key']}) {run['mb_per_s']:g} MB/s:")
                topic = f"cmp-b{i}-{tag}"
                _create_topic(sysm.bootstrap, topic, args.partitions)
                w = _perf_test(sysm, topic, run["records"], args.record_size, run["records_per_s"], props,
                               libs, progress, sample_rss=False)
                w["target_mb_per_s"] = run["mb_per_s"]
                # the perf test throttles to the target; below it, latency includes the client's backlog
                w["held_rate"] = w["records_per_s"] >= 0.95 * run["records_per_s"]
                res["workloads"][run["key"]] = w
        if "c" in workloads and name == "kafka":
            progress.phase(f"{label} (c) flush.messages=1:")
            _create_topic(sysm.bootstrap, f"cmp-c-{tag}", args.partitions, {"flush.messages": "1"})
            res["workloads"]["c"] = _perf_test(sysm, f"cmp-c-{tag}", args.durable_records, args.record_size,
                                               -1, props, libs, progress, sample_rss=False)
        if "e" in workloads:
            progress.phase(f"{label} (e) tail consume at {args.tail_rate:g} MB/s:")
            _create_topic(sysm.bootstrap, f"cmp-e-{tag}", args.partitions)
            res["workloads"]["e"] = _tail_consume(sysm, f"cmp-e-{tag}", tail_n, tail_records,
                                                  args.tail_seconds, args.record_size, args.partitions,
                                                  props, libs, progress)
        if "h" in workloads:
            res["workloads"]["h"] = _librdkafka(sysm, f"cmp-h-{tag}", args, progress, label)
        if "f" in workloads and name == "kafka":
            progress.phase(f"{label} (f) catch-up read:")
            res["workloads"]["f"] = _catchup_kafka(sysm, f"cmp-f-{tag}", catchup_n, args.record_size,
                                                   args.partitions, props, libs, progress)
    finally:
        progress.phase(f"{label} stopping broker")
        res["exit_code"] = sysm.stop()
        res["broker_log_problems"] = getattr(sysm, "log_problems", None)
    return res


def run_compare(args) -> int:
    if args.quick:
        args.rounds = args.rounds or 1
        args.records = args.records or 100_000
        args.rate_seconds = args.rate_seconds or 5.0
        args.durable_records = args.durable_records or 50_000
        args.tail_seconds = args.tail_seconds or 5.0
        args.catchup_mb = args.catchup_mb or 64.0
        args.move_mib = args.move_mib or 64.0
        args.librdkafka_seconds = args.librdkafka_seconds or 5.0
    args.rounds = args.rounds or 3
    args.records = args.records or 1_000_000
    args.rate_seconds = args.rate_seconds or 15.0    # 20 s runs took the whole run to 29.3 min
    args.durable_records = args.durable_records or 300_000
    args.tail_seconds = args.tail_seconds or 20.0
    args.catchup_mb = args.catchup_mb or 2048.0
    args.move_mib = args.move_mib or 2048.0
    args.librdkafka_seconds = args.librdkafka_seconds or 15.0
    args.catchup_block_cache_mb = args.catchup_block_cache_mb or max(4096, int(args.catchup_mb * 1.25 * MB) >> 20)
    workloads = set((args.only or WORKLOADS).split(","))
    unknown = workloads - set(WORKLOADS.split(","))
    if unknown:
        raise SystemExit(f"--only: unknown workload(s) {','.join(sorted(unknown))} (choose from {WORKLOADS})")
    try:
        fixed_rates = [float(x) for x in str(args.rate).split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"--rate: expected MB/s values separated by commas, not {args.rate!r}") from None
    if any(r <= 0 for r in fixed_rates) or args.rate_max_pct < 0:
        raise SystemExit("--rate values and --rate-max-pct must be positive")
    if "b" in workloads and not fixed_rates and not args.rate_max_pct:
        raise SystemExit("(b) needs a --rate or a --rate-max-pct")
    progress = Progress(args.quiet)
    command = "sluice " + " ".join(shlex.quote(a) for a in sys.argv[1:])

    progress.phase("measuring fsync latency")
    machine = _machine(args.data_dir, args.quick)
    progress.phase("installing/locating Kafka")
    libs = kafka_libs()
    versions = _versions(libs)
    props = ["acks=all", "linger.ms=5", *args.producer_prop]

    def rate_run(key: str, mb_per_s: float, basis: str) -> dict:
        return {"key": key, "mb_per_s": mb_per_s, "records_per_s": mb_per_s * MB / args.record_size,
                "records": max(1000, int(mb_per_s * MB / args.record_size * args.rate_seconds)), "basis": basis}

    rate_runs = [rate_run(f"b@{r:g}", r, "fixed") for r in dict.fromkeys(fixed_rates)]
    t_start = time.monotonic()
    calibration = None
    if "b" in workloads and args.rate_max_pct:
        calibration = _calibrate(args, libs, props, progress)
        rate_runs.append(rate_run(f"b@{args.rate_max_pct:g}pct", calibration["rate_mb_per_s"],
                                  f"{args.rate_max_pct:g}% of the lower of the two systems' unthrottled (a) "
                                  f"throughputs in the calibration before round 1 (Sluice "
                                  f"{calibration['sluice']['mb_per_s']:g}, Kafka "
                                  f"{calibration['kafka']['mb_per_s']:g} MB/s)"))
    rate_runs.sort(key=lambda run: run["mb_per_s"])   # lowest rate first, in every round
    tail_records = args.tail_rate * MB / args.record_size
    tail_n = max(1000, int(tail_records * args.tail_seconds))
    catchup_n = max(1000, int(args.catchup_mb * MB / args.record_size))

    # what each system's own round broker is needed for ((f) on Sluice and (g) use brokers of their own)
    on_broker = {"sluice": workloads & {"a", "b", "e", "h"}, "kafka": workloads & {"a", "b", "c", "e", "f", "h"}}
    rounds: list[dict] = []
    for r in range(1, args.rounds + 1):
        for name in ("sluice", "kafka"):
            label = f"round {r}/{args.rounds} {name:6s}"
            res = {"round": r, "system": name, "workloads": {}}
            tag = f"{r}-{os.urandom(3).hex()}"
            if on_broker[name]:
                res.update(_round_on_broker(name, label, tag, args, workloads, rate_runs, tail_n, tail_records,
                                            catchup_n, props, libs, progress))
            if "f" in workloads and name == "sluice":
                # its own broker against MinIO, after the round's broker has stopped
                progress.phase(f"{label} (f) catch-up read via MinIO:")
                res["workloads"]["f"] = _catchup_sluice(args, tag, catchup_n, props, libs, progress)
            if "g" in workloads:
                # a 3-node cluster of its own, after the round's single broker has stopped
                if name == "kafka":
                    progress.phase(f"{label} (g) partition move, 3-node cluster:")
                    res["workloads"]["g"] = _partition_move(args, tag, props, libs, progress)
                else:
                    progress.phase(f"{label} (g) partition move, 3 brokers on MinIO:")
                    res["workloads"]["g"] = _partition_move_sluice(args, tag, props, libs, progress)
            rounds.append(res)
    progress.done()

    result = {
        "bench": "compare",
        "command": command,
        "note": args.note,
        "config": {"rounds": args.rounds, "quick": args.quick, "records": args.records,
                   "durable_records": args.durable_records,
                   "record_size": args.record_size, "partitions": args.partitions,
                   # (b): one run per rate; rate_mb_per_s/rate_records: the first one (older readers)
                   "rate_runs": rate_runs, "rate_seconds": args.rate_seconds,
                   "rates_mb_per_s": fixed_rates, "rate_max_pct": args.rate_max_pct,
                   "rate_max_basis": "calibration before round 1: a fresh broker of each system runs (a) "
                                     "alone; the rate is that percentage of the lower of the two "
                                     "throughputs, the same in every round" if args.rate_max_pct else None,
                   "rate_mb_per_s": rate_runs[0]["mb_per_s"] if rate_runs else None,
                   "rate_records": rate_runs[0]["records"] if rate_runs else None,
                   "producer_props": props,
                   "tail_rate_mb_per_s": args.tail_rate, "librdkafka_seconds": args.librdkafka_seconds,
                   "librdkafka_rate_mb_per_s": args.librdkafka_rate, "tail_seconds": args.tail_seconds,
                   "tail_records": tail_n,
                   "catchup_mb": args.catchup_mb, "catchup_records": catchup_n,
                   "catchup_fetch_size": READ_FETCH_BYTES,
                   "catchup_sluice_block_cache_mib": args.catchup_block_cache_mb,
                   "move_mib": [MOVE_SMALL_MIB, args.move_mib], "move_from_broker": 1, "move_to_broker": 2,
                   "move_cluster": f"3 combined controller+broker KRaft nodes ({args.kafka_cluster_heap} each)",
                   "move_sluice_cluster": SLUICE_MOVE_CLUSTER, "move_idle_s": MOVE_IDLE_S,
                   "move_poll_interval_s": MOVE_POLL_S, "move_verify_pause_s": VERIFY_PAUSE_S,
                   "kafka_heap": args.kafka_heap, "order": "per round: Sluice then Kafka, each a fresh "
                   "broker on a fresh temp dir; a new topic per workload; Sluice's (f) on a broker of its "
                   "own after Sluice's round broker stopped, then Sluice's (g) on 3 fresh brokers on a "
                   "fresh MinIO; Kafka's (g) on a fresh 3-node Kafka cluster after Kafka's round broker "
                   "stopped",
                   "workloads": sorted(workloads)},
        "calibration": calibration,
        "machine": machine,
        "versions": versions,
        "rounds": rounds,
        "elapsed_s": round(time.monotonic() - t_start, 1),
    }
    result["summary"] = summarize(result)
    table = markdown_table(result)
    print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    if args.plot:
        plot(result, args.plot)
    if args.write_benchmarks:
        write_benchmarks(args.write_benchmarks, result, table, args.plot)
    return 0


# ------------------------------------------------------------------- summary
# (row key, label, workload, path in a perf-test result, unit, higher is better)
METRICS = [
    ("a_mb_per_s", "(a) produce acks=all, unthrottled: throughput", "a", ("mb_per_s",), "MB/s", True),
    ("a_p99_ms", "(a) produce acks=all, unthrottled: p99 latency", "a", ("latency_ms", "p99"), "ms", False),
    "b",   # (b): three rows per rate (B_METRICS), one rate after the other
    ("c_mb_per_s", "(c) as (a), Kafka flush.messages=1: throughput", "c", ("mb_per_s",), "MB/s", True),
    ("c_p99_ms", "(c) as (a), Kafka flush.messages=1: p99 latency", "c", ("latency_ms", "p99"), "ms", False),
    ("d_rss_idle_mib", "(d) broker RSS, idle after start", None, ("rss_idle_mib",), "MiB", False),
    ("d_rss_peak_mib", "(d) broker RSS, peak during (a)", "a", ("broker_rss_mib", "peak"), "MiB", False),
    ("a_cpu_s_per_gb", "(d) broker CPU time per GB produced in (a)", "a", ("broker_cpu_s_per_gb",), "CPU s/GB", False),
    ("e_mb_per_s", "(e) tail consume while producing at {tail_rate} MB/s: consumer throughput", "e",
     ("mb_per_s",), "MB/s", True),
    ("e_p50_ms", "(e) tail consume at {tail_rate} MB/s: end-to-end p50 latency (record timestamp to consumer)",
     "e", ("e2e_latency_ms", "p50"), "ms", False),
    ("e_p99_ms", "(e) tail consume at {tail_rate} MB/s: end-to-end p99 latency (record timestamp to consumer)",
     "e", ("e2e_latency_ms", "p99"), "ms", False),
    ("f_cold_mb_per_s", "(f) catch-up read of {catchup_mb} MB from offset 0, 1st read (Kafka: local log just "
     "written, page cache warm; Sluice: from MinIO, empty block cache)", "f", ("cold", "mb_per_s"), "MB/s", True),
    ("f_warm_mb_per_s", "(f) catch-up read of {catchup_mb} MB from offset 0, 2nd read (Kafka: page cache; "
     "Sluice: block cache)", "f", ("warm", "mb_per_s"), "MB/s", True),
    "g",   # (g): rows per partition size (G_METRICS)
]
METRICS += [
    ("h_mb_per_s", "(h) librdkafka producer, acks=all, idempotent, unthrottled: throughput", "h",
     ("unthrottled", "mb_per_s"), "MB/s", True),
    ("h_p50_ms", "(h) librdkafka producer at {h_rate} MB/s: p50 ack latency", "h", ("paced", "latency_ms", "p50"),
     "ms", False),
    ("h_p99_ms", "(h) librdkafka producer at {h_rate} MB/s: p99 ack latency", "h", ("paced", "latency_ms", "p99"),
     "ms", False),
    ("h_p99_9_ms", "(h) librdkafka producer at {h_rate} MB/s: p99.9 ack latency", "h",
     ("paced", "latency_ms", "p99_9"), "ms", False),
]
B_METRICS = [("p50", "p50"), ("p99", "p99"), ("p99_9", "p99.9")]
# (key suffix, label, path in a move's result, unit); the object-store rows are Sluice's only
G_METRICS = [
    ("s", "time until moved, seen in cluster metadata (polled every {poll:g} s)", ("move_s",), "s"),
    ("serving_s", "time until broker 2 answers ListOffsets with the end offset (polled every {poll:g} s)",
     ("serving_s",), "s"),
    ("tool_s", "time with kafka-reassign-partitions (--execute start to --verify complete, JVM starts "
               "included)", ("tool_s",), "s"),
    ("store_requests", "object-store requests, 3 brokers, --execute start to broker 2 serving (heartbeats "
                       "included)", ("object_store", "move", "requests_total"), "requests"),
    ("store_get_kib", "object-store bytes read (GET), same window", ("object_store", "move", "get_kib"), "KiB"),
    ("store_put_kib", "object-store bytes written (PUT), same window", ("object_store", "move", "put_kib"),
     "KiB"),
]


def config_rate_runs(c: dict) -> list[dict]:
    """(b)'s runs from a result's config (an older result had one rate, under the key "b")."""
    if "rate_runs" in c:
        return c["rate_runs"]
    if c.get("rate_mb_per_s") is None:
        return []
    return [{"key": "b", "mb_per_s": c["rate_mb_per_s"], "records": c.get("rate_records"), "basis": "fixed"}]


def _rate_label(run: dict, c: dict) -> str:
    if run["basis"] == "fixed":
        return f"{run['mb_per_s']:g} MB/s"
    return f"{run['mb_per_s']:g} MB/s ({c.get('rate_max_pct', 80):g}% of the lower unthrottled max)"


def _metrics(c: dict) -> list[tuple]:
    """METRICS with (b) expanded per rate and (g) per partition size."""
    out = []
    for m in METRICS:
        if m == "b":
            for run in config_rate_runs(c):
                bk = run["key"]
                for suffix, pname in B_METRICS:
                    out.append((f"{bk}_{suffix}_ms", f"(b) produce acks=all at {_rate_label(run, c)}: {pname} latency",
                                bk, ("latency_ms", suffix), "ms", False))
        elif m == "g":
            for mib in c.get("move_mib") or []:
                size = f"{mib:g}MiB"
                for suffix, label, path, unit in G_METRICS:
                    out.append((f"g@{size}_{suffix}", f"(g) partition move, {mib:,g} MiB, RF=1, broker 1 to 2: "
                                + label.format(poll=c.get("move_poll_interval_s", MOVE_POLL_S)),
                                "g", ("moves", size, *path), unit, False))
        else:
            out.append(m)
    return out


def _get(d, path):
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def summarize(result: dict) -> list[dict]:
    c = result["config"]
    fmt = {"tail_rate": f"{c.get('tail_rate_mb_per_s', 0):g}", "catchup_mb": f"{c.get('catchup_mb', 0):,.0f}",
           "h_rate": f"{c.get('librdkafka_rate_mb_per_s', 0):g}"}
    ran = set(c.get("workloads") or WORKLOADS.split(","))
    rows = []
    for key, label, wl, path, unit, higher in _metrics(c):
        # only what ran (an --only run): (d) idle RSS comes with any round broker
        if (wl is None and not ran & {"a", "b", "c", "e", "f", "h"}) or (wl is not None and wl[0] not in ran):
            continue
        vals = {}
        for system in ("kafka", "sluice"):
            per_round = []
            for rd in result["rounds"]:
                if rd["system"] != system:
                    continue
                src = rd
                w = wl
                if wl == "c" and system == "sluice":
                    w = "a"  # Sluice always fsyncs before acking: (c) is (a)
                if w is not None:
                    src = rd["workloads"].get(w)
                v = _get(src, path)
                if v is not None:
                    per_round.append(v)
            vals[system] = per_round
        med = {s: (round(statistics.median(v), 2) if v else None) for s, v in vals.items()}
        # three significant figures, not two decimals: a ratio like 5.5/1456 ms
        # (a busy machine's Kafka tail) must not read as 0
        ratio = (float(f"{med['sluice'] / med['kafka']:.3g}")
                 if med["sluice"] is not None and med["kafka"] not in (None, 0) else None)
        row = {"key": key, "label": label.format(**fmt), "unit": unit,
               "higher_is_better": higher, "kafka": med["kafka"], "sluice": med["sluice"],
               "ratio_sluice_over_kafka": ratio, "kafka_rounds": vals["kafka"],
               "sluice_rounds": vals["sluice"], "status": "measured"}
        if wl == "g":
            if not vals["kafka"] and not vals["sluice"]:
                continue                      # the object-store rows of a result from before Sluice's (g)
            if not vals["sluice"]:            # a result from before Sluice had partition reassignment
                row["status"] = "kafka only"
                row["sluice_status"] = SLUICE_NO_MOVE
            elif not vals["kafka"]:           # the object-store rows: Kafka keeps its log on local disks
                row["status"] = "sluice only"
        if wl and wl.startswith("b"):
            # rounds in which the producer fell below 95 % of the target rate (latency then includes its backlog)
            row["rate_not_held"] = {s: [rd["round"] for rd in result["rounds"] if rd["system"] == s
                                        and (rd["workloads"].get(wl) or {}).get("held_rate") is False]
                                    for s in ("kafka", "sluice")}
        rows.append(row)
    return rows


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:g}"


def markdown_table(result: dict) -> str:
    n = result["config"]["rounds"]
    out = ["| workload | Kafka | Sluice | Sluice/Kafka | per round (Kafka; Sluice) |",
           "|---|---|---|---|---|"]
    not_held = []
    for row in result["summary"]:
        if row["status"] == "not yet":   # an older result's placeholder row
            out.append(f"| {row['label']} | not yet | not yet | - | - |")
            continue
        unit = row["unit"]
        better = "higher is better" if row["higher_is_better"] else "lower is better"
        r = row["ratio_sluice_over_kafka"]
        ratio = "-" if r is None else f"{r:.2f}" if r >= 0.1 else f"{r:.2g}"
        rr = ((", ".join(_fmt(v) for v in row["kafka_rounds"]) if row["status"] != "sluice only" else "-") + "; "
              + (", ".join(_fmt(v) for v in row["sluice_rounds"]) if row["status"] != "kafka only" else "-"))
        sluice = _fmt(row["sluice"]) if row["status"] != "kafka only" else "not yet (no partition reassignment)"
        kafka = _fmt(row["kafka"]) if row["status"] != "sluice only" else "n/a (no object store)"
        out.append(f"| {row['label']} ({unit}, {better}) | {kafka} | {sluice} | {ratio} | {rr} |")
        for system, rds in (row.get("rate_not_held") or {}).items():
            if rds and row["key"].endswith("_p50_ms"):
                where = row["label"].split(": ")[0].split(" at ", 1)[-1]
                who = "Kafka" if system == "kafka" else "Sluice"
                not_held.append(f"{who} at {where} in round(s) {', '.join(map(str, rds))}")
    out.append("")
    c = result["config"]
    runs = config_rate_runs(c)
    ran = set(c.get("workloads") or WORKLOADS.split(","))
    b_text = ", ".join(f"{run['records']:,} records at {run['mb_per_s']:g} MB/s" for run in runs)
    parts = [f"(a) {c['records']:,} records" if "a" in ran else None,
             f"(b) {b_text}" if "b" in ran and b_text else None,
             f"(c) {c['durable_records']:,} records" if "c" in ran else None]
    parts = [x for x in parts if x]
    out.append(f"Medians over {n} round(s)" + ("; " + ", ".join(parts) if parts else "") + "."
               + (" (c): Sluice's column repeats its (a) figures, since Sluice fsyncs before every ack anyway."
                  if "c" in ran else ""))
    cal = result.get("calibration")
    if cal:
        out.append("")
        out.append(
            f"(b) at {cal['rate_mb_per_s']:g} MB/s = {cal['pct']:g}% of the lower of the two systems' unthrottled "
            f"throughputs, measured once before round 1 by a calibration run of (a) ({cal['records']:,} records) "
            f"on a fresh broker of each: Sluice {cal['sluice']['mb_per_s']:g} MB/s, Kafka "
            f"{cal['kafka']['mb_per_s']:g} MB/s. The same rate is used in every round; the calibration runs are "
            "not in the medians.")
    if not_held:
        out.append("")
        out.append("(b) rate not held (the producer sent below 95% of the target, so its latency includes the "
                   "client's own backlog): " + "; ".join(not_held) + ".")
    if "tail_records" in c and "e" in ran:
        out.append("")
        out.append(
            f"(e) {c['tail_records']:,} records at {c['tail_rate_mb_per_s']:g} MB/s from the same producer, while "
            "a librdkafka consumer (confluent-kafka, its own process, default fetch settings), started first, "
            "reads every partition from offset 0. Throughput is what it received over the time from its first "
            "to its last record (it keeps up, so about the produce rate). End-to-end latency = the consumer's "
            "receive time minus the record's CreateTime, which the producer sets at send(): it includes the "
            "producer's batching (linger.ms), the produce round trip to durability (Sluice: WAL fsync; Kafka: "
            "page cache) and the fetch; timestamps are whole ms. A consumer MB/s well below the target rate "
            "means the producer could not hold it: both latencies are then mostly the producer's own backlog "
            "(its ack latency is in the JSON, `workloads.e.producer`).")
    if "catchup_records" in c and "f" in ran:
        out.append("")
        out.append(
            f"(f) {c['catchup_records']:,} records written unthrottled, then read from offset 0 twice by "
            f"`kafka-consumer-perf-test` (`--fetch-size {c['catchup_fetch_size']}`, a new group each time); MB/s "
            "over its fetch time, so JVM start and group join are not counted. Kafka: the round's broker, "
            "reading its local log right after writing: the data is in the OS page cache for both reads, "
            "so neither is a cold disk read. Sluice: a separate broker against a MinIO on loopback (s3://, "
            "merge off so it reads the objects as uploaded), stopped once its WAL was uploaded and "
            "restarted with an empty data dir, so the 1st read fetches every byte from MinIO (whose files "
            "are in the OS page cache too) into an empty block cache; the 2nd read comes from the block "
            f"cache (`cache.block.bytes` = {c['catchup_sluice_block_cache_mib']} MiB).")
    if "g" in ran and c.get("move_mib"):
        sizes = " MiB, then ".join(f"{m:,g}" for m in c["move_mib"])
        poll = c["move_poll_interval_s"]
        sluice_g = [rd["workloads"]["g"] for rd in result["rounds"]
                    if rd["system"] == "sluice" and "g" in rd["workloads"]]
        out.append("")
        if not sluice_g:        # a result from before Sluice's (g)
            out.append(
                f"(g) per round, after that round's single Kafka broker stopped: a fresh Kafka cluster of "
                f"{c['move_cluster']}. A topic of one partition (replication factor 1) on broker 1 gets "
                f"{sizes} MiB from `kafka-producer-perf-test` (same producer settings); Kafka's "
                "`kafka-reassign-partitions` moves it to broker 2 (`--execute` without a throttle, then `--verify` "
                f"every {c.get('move_verify_pause_s', VERIFY_PAUSE_S):g} s plus its run time until it reports the "
                "reassignment complete); afterwards every offset is still readable on broker 2. Metadata time: "
                f"confluent-kafka Metadata every {poll:g} s, from the last poll that still showed the partition "
                "only on broker 1 (or the `--execute` start, if later) to the first that showed it only on "
                "broker 2, leader and in sync there: an upper bound, accurate to about one poll. Tool time: from "
                "starting `--execute` to the end of the first `--verify` that says complete, so it includes two "
                "or more JVM starts (about 1–3 s each here). Sluice: " + SLUICE_NO_MOVE + ".")
        else:
            out.append(
                f"(g) per round, Sluice first: a fresh MinIO and {c.get('move_sluice_cluster')}; then, after the "
                f"round's single Kafka broker stopped, a fresh Kafka cluster of {c['move_cluster']}. On each, a "
                f"topic of one partition (replication factor 1) on broker 1 gets {sizes} MiB from "
                "`kafka-producer-perf-test` (same producer settings); Sluice's broker 1 then uploads it all (the "
                "bench waits until its WAL is empty, so the hand-off has only a small tail left, as in steady "
                "state). Kafka's `kafka-reassign-partitions` moves it to broker 2 (`--execute` without a "
                f"throttle, then `--verify` every {c.get('move_verify_pause_s', VERIFY_PAUSE_S):g} s plus its run "
                "time until it reports the reassignment complete); afterwards the watermarks are 0..N on the new "
                "owner and its first and last record read back. Kafka copies the log (just written, so from the "
                "page cache); Sluice copies nothing: the old owner seals the partition, uploads its tail and "
                "flips the owner in the bucket's metadata document, the new owner claims the manifest "
                "(docs/cluster.md, section 7). **Metadata time**: from the move's start to the first "
                f"confluent-kafka Metadata poll (every {poll:g} s) that shows the partition only on broker 2, "
                "leader and in sync: an upper bound, accurate to about one poll. The start is the last poll "
                "before the move was first seen (or the `--execute` start, if later): for Kafka in Metadata "
                "(broker 2 adding); Sluice's Metadata names only the owner, so for Sluice in the bucket (the "
                f"bench reads `cluster/metadata.json`, HEAD every {poll:g} s, GET on a change) when the target "
                "is set. **Serving time**: from the same start to the first ListOffsets (every "
                f"{poll:g} s, on a connection of its own to broker 2) that answers the end offset; Sluice's "
                "Metadata can name the new owner before it has loaded the manifest, so this is when the move "
                "is done for a client. **Tool time**: from starting `--execute` to the end of the first "
                "`--verify` that says complete, two or more JVM starts included. "
                "**Object store** (Sluice only): the brokers' `sluice_objectstore_requests_total` and "
                "`sluice_objectstore_bytes_total`, summed over the 3 brokers, from just before `--execute` to "
                "the first ListOffsets answer of broker 2 with the end offset, so the 3 brokers' heartbeats in "
                "that window are included (the JSON has each move's idle rate, measured over "
                f"{c.get('move_idle_s', MOVE_IDLE_S):g} s before it, and the counts beyond it).")
            for size in (f"{m:g}MiB" for m in c["move_mib"]):
                moves = [g["moves"][size] for g in sluice_g if size in g.get("moves", {})]
                ph = [m["phases_s"] for m in moves if m.get("phases_s")]
                if not ph:
                    continue
                med = {k: statistics.median(p[k] for p in ph) for k in ("request", "old_owner", "new_owner")}
                beyond = [m["object_store"]["move"].get("beyond_idle_rate", {}).get("requests_total")
                          for m in moves if m.get("object_store")]
                beyond = [b for b in beyond if b is not None]
                mf = [m.get("manifest_before_move", {}) for m in moves]
                mf = [x for x in mf if "bytes" in x]
                out.append("")
                out.append(
                    f"(g) Sluice, {size.replace('MiB', ' MiB')}, where the time goes (median over {len(ph)} "
                    "round(s), between first sightings, each to within a poll): "
                    f"`--execute` start to the target in the bucket (the tool's JVM and "
                    f"AlterPartitionReassignments) {med['request']:.2f} s; **old owner** {med['old_owner']:.2f} s "
                    "(target to flip: it learns of the target, by notice or at its next heartbeat, seals, "
                    f"uploads its tail and flips); **new owner** {med['new_owner']:.2f} s (flip to serving: it "
                    "learns of the flip, claims and loads the manifest)."
                    + (f" Requests beyond the idle (heartbeat) rate: median {statistics.median(beyond):g}."
                       if beyond else "")
                    + (f" The manifest before the move: {statistics.median(x['bytes'] for x in mf):,.0f} "
                       f"bytes, {statistics.median(x['segments'] for x in mf):g} segments." if mf else ""))
    if "h" in ran and c.get("librdkafka_seconds"):
        out.append("")
        out.append(
            f"(h) `sluice bench produce`'s driver: one confluent-kafka (librdkafka) producer process, "
            f"idempotent, acks=all, linger.ms=5, {c.get('partitions', 6)} partitions, 1 KiB values, no keys; "
            f"{c['librdkafka_seconds']:g} s unthrottled, then {c['librdkafka_seconds']:g} s at "
            f"{c.get('librdkafka_rate_mb_per_s', 0):g} MB/s; figures over the steady window after a 2 s "
            "warm-up; latency per message from produce() to its delivery callback.")
    return "\n".join(out)


def _section(result: dict, table: str, plot_path: str | None) -> str:
    m, v, c = result["machine"], result["versions"], result["config"]
    f64, f4 = m["fsync_64KiB"], m["fsync_4KiB"]
    lines = [SECTION, ""]
    if result.get("note"):
        lines += [f"**{result['note']}**", ""]
    lines += [
        "`sluice bench compare` (in `bench/compare.py`) runs the same workloads against",
        "Sluice and a single Apache Kafka KRaft broker (combined controller+broker,",
        "`bench/kafka_reference.py`), alternately: per round a fresh Sluice, then a fresh",
        "Kafka, each on a temp data dir, a new topic per workload (the partition move, (g),",
        "on 3-node clusters of their own: Sluice's on MinIO). The load comes from",
        "Kafka's own `kafka-producer-perf-test` (Java producer) with the same settings for",
        f"both (`{' '.join(c['producer_props'])}`, other settings at their defaults),",
        "read back in (e) by a librdkafka consumer and in (f) by Kafka's `kafka-consumer-perf-test`",
        "(details below the table),",
        f"{c['partitions']} partitions, {c['record_size']} B records. MB = 10^6 bytes of record values.",
        "Latency is what the perf test reports (send to ack, per record); unthrottled, it",
        "includes time in the client's buffer. RSS is the broker process tree's resident memory",
        "(`/proc`), idle 2 s after start and peak over 0.5 s samples during (a); broker CPU is its",
        "user+sys time during the (a) perf-test run divided by the data produced.",
        "",
        "Command (from the repo root):",
        "",
        "```sh",
        result["command"],
        "```",
        "",
        "| machine | |",
        "|---|---|",
        f"| CPU | {m['cpus']} cores ({m.get('cpu_model') or '?'}) |",
        f"| memory | {m['memory_gib']} GiB |",
        f"| write + fdatasync at start, 64 KiB | p50 {f64['p50_ms']:.2f} ms, p99 {f64['p99_ms']:.2f} ms "
        f"({f64['count']} writes) |",
        f"| write + fdatasync at start, 4 KiB | p50 {f4['p50_ms']:.2f} ms, p99 {f4['p99_ms']:.2f} ms |",
        f"| load average at start | {m['loadavg_at_start']:.2f} |",
        f"| platform | {m['platform']} |",
        f"| versions | Sluice {v['sluice']} at `{v['sluice_commit']}`"
        f"{' (+ uncommitted changes)' if v['sluice_worktree_dirty'] else ''}, "
        f"Apache Kafka {v['kafka']} ({c['kafka_heap']}), {v['java']}, CPython {v['python']} |",
        *([f"| consumers | {v['consumer_clients']} |"] if v.get("consumer_clients") else []),
        f"| run time | {result['elapsed_s']:.0f} s |",
        "",
        table,
        "",
    ]
    if plot_path:
        rel = os.path.relpath(plot_path, ROOT)
        lines += [f"Plot: [{rel}]({rel}).", ""]
    return "\n".join(lines)


def write_benchmarks(path: str, result: dict, table: str, plot_path: str | None) -> None:
    text = Path(path).read_text() if os.path.exists(path) else "# Benchmarks\n"
    section = _section(result, table, plot_path)
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == SECTION), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        old = "".join(lines[start:end])
        if NOTES_MARK in old:  # hand-written notes below the marker survive a rewrite
            section = section.rstrip("\n") + "\n\n" + old[old.index(NOTES_MARK):].rstrip("\n") + "\n"
        new = "".join(lines[:start]) + section + ("\n" if end < len(lines) else "") + "".join(lines[end:])
    tmp = path + ".tmp"
    Path(tmp).write_text(new.rstrip("\n") + "\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------- plot
def _plot_rates(ax, result: dict, colors: dict) -> None:
    """(b): p50/p99/p99.9 against the target rate, one line per system and percentile (log scale)."""
    c = result["config"]
    runs = sorted(config_rate_runs(c), key=lambda run: run["mb_per_s"])
    styles = {"p50": ("o", "-"), "p99": ("s", "--"), "p99_9": ("^", ":")}
    drawn = False
    for system in ("kafka", "sluice"):
        for p, (marker, ls) in styles.items():
            xs, ys = [], []
            for run in runs:
                vs = [rd["workloads"][run["key"]]["latency_ms"][p] for rd in result["rounds"]
                      if rd["system"] == system and run["key"] in rd["workloads"]]
                if vs:
                    xs.append(run["mb_per_s"])
                    ys.append(max(statistics.median(vs), 0.5))   # log axis: 0 ms (sub-ms) drawn at 0.5
            if xs:
                drawn = True
                ax.plot(xs, ys, marker=marker, ls=ls, color=colors[system],
                        label=f"{'Kafka' if system == 'kafka' else 'Sluice'} {p.replace('_', '.')}")
    ax.set_xticks([run["mb_per_s"] for run in runs])
    ax.set_xticklabels([f"{run['mb_per_s']:g}" + ("" if run["basis"] == "fixed" else
                                                   f"\n({c.get('rate_max_pct', 80):g}% of\nlower max)")
                        for run in runs], fontsize=8)
    if drawn:
        ax.set_yscale("log")
        ax.legend(fontsize=7, ncol=2)
    else:
        ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("target rate (MB/s)", fontsize=8)
    ax.set_ylabel("ms")
    ax.set_title("(b) produce ack latency at fixed rates (median of rounds)", fontsize=10)


def _plot_moves(ax, result: dict, colors: dict) -> None:
    """(g): partition move times per size, both systems (log scale); Sluice's object-store requests."""
    c = result["config"]
    sizes = [f"{m:g}MiB" for m in c.get("move_mib") or []]
    serving = any("serving_s" in m for rd in result["rounds"] if rd["system"] == "kafka"
                  for m in rd["workloads"].get("g", {}).get("moves", {}).values())
    kinds = [("kafka", "serving_s", "Kafka, broker 2 serving", "#4c72b0") if serving else
             ("kafka", "move_s", "Kafka, Metadata", "#4c72b0"),
             ("kafka", "tool_s", "Kafka, kafka-reassign-partitions", "#8da0cb"),
             ("sluice", "serving_s", "Sluice, broker 2 serving", "#dd8452"),
             ("sluice", "tool_s", "Sluice, kafka-reassign-partitions", "#f4b183")]
    w = 0.2
    drawn = False
    for j, (system, field, name, color) in enumerate(kinds):
        xs = [i + (j - 1.5) * w for i in range(len(sizes))]
        meds = []
        for xi, size in zip(xs, sizes):
            vs = [rd["workloads"]["g"]["moves"][size][field] for rd in result["rounds"]
                  if rd["system"] == system and "g" in rd["workloads"] and size in rd["workloads"]["g"]["moves"]
                  and field in rd["workloads"]["g"]["moves"][size]]
            meds.append(statistics.median(vs) if vs else 0)
            ax.plot([xi] * len(vs), vs, "k.", ms=4)
            if vs:
                drawn = True
                ax.annotate(f"{statistics.median(vs):.2g}", (xi, statistics.median(vs)), ha="center",
                            va="bottom", fontsize=7)
            if system == "sluice" and field == "serving_s":
                req = [rd["workloads"]["g"]["moves"][size]["object_store"]["move"]["requests_total"]
                       for rd in result["rounds"] if rd["system"] == "sluice" and "g" in rd["workloads"]
                       and size in rd["workloads"]["g"]["moves"]]
                if req:
                    ax.annotate(f"{statistics.median(req):g} obj.\nrequests", (xi, 0.012), ha="center",
                                va="bottom", fontsize=6)
        ax.bar(xs, [m or float("nan") for m in meds], w, color=color, label=name)
    if not drawn:
        ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.set_yscale("log")
        ax.set_ylim(bottom=0.01)
    ax.set_xticks(range(len(sizes)))
    ax.set_xticklabels([s.replace("MiB", " MiB") for s in sizes], fontsize=8)
    ax.set_ylabel("s (log scale)")
    ax.set_title("(g) partition move (RF=1, broker 1 to 2), 3-node clusters (median; dots: rounds)", fontsize=10)
    ax.legend(fontsize=7)


def _plot_sluice_move_split(ax, result: dict) -> None:
    """(g), Sluice: the move's time between the old and the new owner (median over rounds), with the
    object-store requests and bytes of the move and the manifest's size."""
    c = result["config"]
    sizes = [f"{m:g}MiB" for m in c.get("move_mib") or []]
    moves = {size: [rd["workloads"]["g"]["moves"][size] for rd in result["rounds"]
                    if rd["system"] == "sluice" and "g" in rd["workloads"] and size in rd["workloads"]["g"]["moves"]]
             for size in sizes}
    bottom = [0.0] * len(sizes)
    for phase, name, color in (("old_owner", "old owner: target to flip", "#dd8452"),
                               ("new_owner", "new owner: flip to serving", "#f4b183")):
        vals = []
        for size in sizes:
            ph = [m["phases_s"][phase] * 1000 for m in moves[size] if m.get("phases_s")]
            vals.append(statistics.median(ph) if ph else 0)
        ax.bar(range(len(sizes)), vals, 0.5, bottom=bottom, color=color, label=name)
        bottom = [b + v for b, v in zip(bottom, vals)]
    for i, size in enumerate(sizes):
        st = [m["object_store"]["move"] for m in moves[size] if m.get("object_store")]
        mf = [m["manifest_before_move"]["bytes"] for m in moves[size] if m.get("manifest_before_move", {}).get("bytes")]
        if st:
            ax.annotate(f"{statistics.median(x['requests_total'] for x in st):g} requests\n"
                        f"{statistics.median(x['get_kib'] for x in st):g} KiB read\n"
                        f"{statistics.median(x['put_kib'] for x in st):g} KiB written"
                        + (f"\nmanifest {statistics.median(mf) / 1024:.1f} KiB" if mf else ""),
                        (i, bottom[i]), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(sizes)))
    ax.set_xticklabels([s.replace("MiB", " MiB") for s in sizes], fontsize=8)
    ax.set_ylim(top=max(bottom + [1.0]) * 1.8)
    ax.set_ylabel("ms (median of rounds, between first sightings)")
    ax.set_title("(g) Sluice: where the move's time goes; object store, 3 brokers, --execute to serving",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper left")


def plot(result: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"kafka": "#4c72b0", "sluice": "#dd8452"}
    if set(result["config"].get("workloads") or []) == {"g"}:      # --only g: the move alone
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
        _plot_moves(ax1, result, colors)
        _plot_sluice_move_split(ax2, result)
        fig.suptitle(f"Partition move: Sluice vs Apache Kafka {result['versions']['kafka']}, "
                     f"{result['config']['rounds']} round(s)" + (f" — {result['note']}" if result.get("note") else ""),
                     fontsize=10)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return
    rows = {r["key"]: r for r in result["summary"]}
    fig, axes = plt.subplots(4, 2, figsize=(12, 16))

    def bars(ax, keys, labels, title, unit):
        x = range(len(keys))
        for j, system in enumerate(("kafka", "sluice")):
            xs = [i + (j - 0.5) * 0.38 for i in x]
            ax.bar(xs, [rows.get(k, {}).get(system) or 0 for k in keys], 0.38, color=colors[system],
                   label="Kafka" if system == "kafka" else "Sluice")
            for xi, k in zip(xs, keys):  # every round as a dot
                vals = rows.get(k, {}).get(f"{system}_rounds", [])
                ax.plot([xi] * len(vals), vals, "k.", ms=4)
        ax.set_xticks(list(x))
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_ylabel(unit)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)

    bars(axes[0][0], ["a_mb_per_s", "c_mb_per_s", "h_mb_per_s"],
         ["(a) acks=all", "(c) Kafka flush.messages=1", "(h) librdkafka"],
         "produce throughput, unthrottled (median; dots: rounds)", "MB/s")
    c = result["config"]
    _plot_rates(axes[0][1], result, colors)
    for ax, wl, key, pcts, title in (
            (axes[1][0], "a", "latency_ms", ["p50", "p95", "p99", "p99_9"], "(a) ack latency, unthrottled"),
            (axes[2][0], "e", "e2e_latency_ms", ["p50", "p90", "p99", "p99_9"],
             f"(e) end-to-end latency (record timestamp to consumer), tail consume at "
             f"{c.get('tail_rate_mb_per_s', 0):g} MB/s")):
        for j, system in enumerate(("kafka", "sluice")):
            vals = []
            for p in pcts:
                rs = [rd["workloads"][wl][key][p] for rd in result["rounds"]
                      if rd["system"] == system and wl in rd["workloads"]]
                vals.append(statistics.median(rs) if rs else 0)
            ax.bar([i + (j - 0.5) * 0.38 for i in range(len(pcts))], vals, 0.38, color=colors[system],
                   label="Kafka" if system == "kafka" else "Sluice")
        ax.set_xticks(range(len(pcts)))
        ax.set_xticklabels([p.replace("_", ".") for p in pcts])
        ax.set_ylabel("ms")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    bars(axes[1][1], ["d_rss_idle_mib", "d_rss_peak_mib"], ["idle", "peak during (a)"],
         "(d) broker resident memory", "MiB")
    bars(axes[2][1], ["f_cold_mb_per_s", "f_warm_mb_per_s", "e_mb_per_s"],
         ["(f) 1st read\nKafka: page cache\nSluice: MinIO, cold cache", "(f) 2nd read\nKafka: page cache\n"
          "Sluice: block cache", f"(e) tail consumer\nat {c.get('tail_rate_mb_per_s', 0):g} MB/s"],
         f"(f) catch-up read of {c.get('catchup_mb', 0):,.0f} MB from offset 0; (e) tail consumer", "MB/s")
    _plot_moves(axes[3][0], result, colors)
    bars(axes[3][1], ["a_cpu_s_per_gb"], ["(a) unthrottled"], "(d) broker CPU time per GB produced", "CPU s/GB")
    import textwrap
    title = f"Sluice vs Apache Kafka {result['versions']['kafka']}, {result['config']['rounds']} round(s)"
    if result.get("note"):
        title += " — " + result["note"]
    fig.suptitle(textwrap.fill(title, 140), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
