"""``sluice bench produce``: a load generator against a running or self-started broker.

``sluice bench produce`` drives a broker with confluent-kafka (librdkafka)
idempotent producers, one per worker process, and reports what a client sees:

* throughput (MB/s, msgs/s) over the steady-state window, i.e. acks that
  arrive between ``--warmup`` and ``--duration`` seconds after the start;
* ack latency, per message, from the ``produce()`` call to its delivery
  callback, both measured with ``time.perf_counter`` in the same process, for
  messages produced inside the steady-state window. Unthrottled, this includes
  the time a message waits in librdkafka's queue; pace with ``--rate`` to
  measure the broker's latency at a given load.

MB means 10**6 bytes of record values (keys and protocol overhead excluded).
Every wait is bounded: workers that do not report in time are killed, flushes
time out, and a self-started broker is stopped (SIGTERM, then SIGKILL).
"""
from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import queue
import re
import resource
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from array import array
from functools import partial
from pathlib import Path

from .common import MB, STARTUP_TIMEOUT, create_topic, machine, percentiles, proc_cpu, write_results
from .launch import BrokerProcess, wait_for_cluster

BUCKET = 1.0                # seconds per timeline bucket


def add_parser(kinds) -> None:
    p = kinds.add_parser("produce", help="produce throughput and ack latency (confluent-kafka)",
                         description=__doc__.split("\n\n")[1],
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--bootstrap", metavar="HOST:PORT",
                   help="broker to load; default: start one on a temp data dir and stop it after")
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--record-size", type=int, default=1024, metavar="BYTES")
    p.add_argument("--key-size", type=int, default=0, metavar="BYTES",
                   help="0: no keys (librdkafka's sticky partitioner spreads batches)")
    p.add_argument("--duration", type=float, default=20.0, metavar="SECONDS",
                   help="how long to produce (warm-up included)")
    p.add_argument("--warmup", type=float, default=2.0, metavar="SECONDS",
                   help="excluded from the figures")
    p.add_argument("--acks", default="all", choices=["0", "1", "all", "-1"])
    p.add_argument("--rate", type=float, default=None, metavar="MB/s",
                   help="total target rate, split evenly across producers (default: unthrottled)")
    p.add_argument("--producers", type=int, default=1, metavar="N", help="producer processes")
    p.add_argument("--linger-ms", type=float, default=5)
    p.add_argument("--batch-size", type=int, default=None, metavar="BYTES",
                   help="librdkafka batch.size (default: librdkafka's, 1000000)")
    p.add_argument("--queue-kbytes", type=int, default=65536, metavar="KB",
                   help="librdkafka queue.buffering.max.kbytes per producer: bounds how much "
                        "unthrottled load is queued client-side")
    p.add_argument("--compression", default="none", choices=["none", "gzip", "snappy", "lz4", "zstd"])
    p.add_argument("--topic", default=None, help="default: a new sluice-bench-<random> topic")
    p.add_argument("--flush-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="how long producers wait for outstanding acks at the end")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra librdkafka producer property")
    p.add_argument("--data-dir", metavar="DIR", default=None,
                   help="where a self-started broker keeps its temp data dir (default: the system temp dir); "
                        "put it on the disk you want to measure")
    p.add_argument("--broker-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for a self-started broker (e.g. --broker-arg=--override=k=v)")
    p.add_argument("--brokers", default=None, metavar="N[,N...]",
                   help="instead of one broker, start N brokers per run (node ids 1..N, one shared file:// "
                        "object store in the temp dir, balancer off; the topic's partitions spread over them); "
                        "several counts (e.g. 1,2) alternate within each of --rounds rounds, a fresh cluster "
                        "each run, and the summary gives per count the median and its ratio to the first")
    p.add_argument("--rounds", type=int, default=1, help="with --brokers or --wal: rounds of runs")
    p.add_argument("--wal", default=None, metavar="TYPE[,TYPE...]",
                   help="instead of one broker, the same load against fresh brokers with each WAL in turn, on a "
                        "MinIO of its own (a bucket per broker): file (wal.type=file), shared (wal.type=file in "
                        "wal.shared.dir), s3 (wal.type=s3), s3:MS (wal.type=s3, wal.s3.interval.ms=MS); e.g. "
                        "file,shared,s3,s3:5. Reports MB/s, ack latency, "
                        "WAL PUTs and other PUTs per GB; medians over --rounds, the order reversed every other "
                        "round")
    p.add_argument("--wal-loads", default="max,10", metavar="LOAD[,LOAD...]",
                   help="with --wal: one run per load on each broker, max (unthrottled) or MB/s")
    p.add_argument("--kafka", action="store_true",
                   help="with --wal: Apache Kafka 4.4 (one KRaft node, acks from the page cache) as one more "
                        "variant, the same driver")
    p.add_argument("--kafka-heap", default="-Xmx1g -Xms1g", help="with --kafka: KAFKA_HEAP_OPTS")
    p.add_argument("--metrics", metavar="HOST:PORT",
                   help="the --bootstrap broker's metrics endpoint, to report WAL fsync figures "
                        "(a self-started broker's is used automatically)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="write throughput and latency plots")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=run_produce)


def _scrape_wal(metrics: str | None) -> dict | None:
    """The broker's WAL fsync and Produce request-time counters from its
    Prometheus endpoint, or None."""
    if not metrics:
        return None
    import urllib.request
    try:
        from prometheus_client.parser import text_string_to_metric_families
        text = urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5).read().decode()
    except Exception:
        return None
    out = {}
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            if smp.name == "sluice_wal_fsync_seconds_bucket":
                out[("le", float(smp.labels["le"]))] = smp.value
            elif smp.name.startswith("sluice_request_seconds") and smp.labels.get("api") == "Produce":
                if smp.name.endswith("_bucket"):
                    out[("produce_le", float(smp.labels["le"]))] = smp.value
                elif smp.name.endswith("_count"):
                    out["produce_requests"] = smp.value
            elif smp.name in ("sluice_wal_fsync_seconds_count", "sluice_wal_fsync_seconds_sum",
                            "sluice_wal_fsync_bytes_total", "sluice_bytes_in_total"):
                out[smp.name] = smp.value
    return out


def _wal_delta(before: dict | None, after: dict | None, seconds: float) -> dict | None:
    if not before or not after:
        return None
    d = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    n = d.get("sluice_wal_fsync_seconds_count", 0)
    n_produce = d.get("produce_requests", 0)

    def upper(q: float, tag: str = "le", count: float = n):
        """The histogram bucket bound that holds the q-quantile."""
        for le, cum in sorted((k[1], v) for k, v in d.items() if isinstance(k, tuple) and k[0] == tag):
            if count and cum >= q * count:
                return None if math.isinf(le) else le * 1000
        return None

    def within(tag: str, count: float, bounds: tuple) -> dict[str, float]:
        """Share (%) of the histogram's events at or below each bound (ms)."""
        cum = {k[1]: v for k, v in d.items() if isinstance(k, tuple) and k[0] == tag}
        return {f"{le * 1000:g}": round(cum[le] / count * 100, 1) for le in bounds if count and le in cum}

    busy = d.get("sluice_wal_fsync_seconds_sum", 0)
    nbytes = d.get("sluice_wal_fsync_bytes_total", 0)
    return {
        "fsyncs": int(n),
        "fsyncs_per_s": round(n / seconds, 1),
        "mean_fsync_ms": round(busy / n * 1000, 3) if n else None,
        "mean_bytes_per_fsync": int(nbytes / n) if n else None,
        "fsync_busy_fraction": round(busy / seconds, 3),
        "fsync_p50_ms_at_most": upper(0.5),
        "fsync_p99_ms_at_most": upper(0.99),
        "fsync_max_ms_at_most": upper(1.0),
        "fsync_share_within_ms": within("le", n, (.001, .002, .005, .01, .02, .05)),
        # from the request's frame read to its response written: the broker's
        # share of the ack latency the client sees
        "produce_requests": int(n_produce),
        "produce_request_p50_ms_at_most": upper(0.5, "produce_le", n_produce),
        "produce_request_p99_ms_at_most": upper(0.99, "produce_le", n_produce),
        "produce_request_p999_ms_at_most": upper(0.999, "produce_le", n_produce),
        "produce_request_share_within_ms": within("produce_le", n_produce, (.005, .01, .02, .05, .1)),
    }


# ------------------------------------------------------------------------- worker
# Module globals: the delivery callback runs once per message, keep it cheap.
_lat: array            # seconds, for messages produced inside the steady window
_lat_at: array         # when each of those was produced, seconds since the start
_acked_per_bucket: list[int]
_errors: dict[str, int]
_w_start = 0.0
_w_lo = 0.0
_w_hi = 0.0


def _on_delivery(sent: float, err, _msg) -> None:
    now = time.perf_counter()
    if err is not None:
        name = err.name() if hasattr(err, "name") else str(err)
        _errors[name] = _errors.get(name, 0) + 1
        return
    b = int((now - _w_start) / BUCKET)
    if b < len(_acked_per_bucket):
        _acked_per_bucket[b] += 1
    if _w_lo <= sent < _w_hi:
        _lat.append(now - sent)
        _lat_at.append(sent - _w_start)


def _worker(idx: int, cfg: dict, conf: dict, ready, start_at, progress, results) -> None:
    """One producer process: produce until the deadline, flush, report."""
    global _lat, _lat_at, _acked_per_bucket, _errors, _w_start, _w_lo, _w_hi
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    from confluent_kafka import KafkaException, Producer

    out = {"idx": idx, "error": None}
    try:
        producer = Producer(conf)
        producer.list_topics(cfg["topic"], timeout=STARTUP_TIMEOUT)
        rnd = os.urandom(cfg["record_size"] + 4096)
        values = [rnd[i * 61 % 4096: i * 61 % 4096 + cfg["record_size"]] for i in range(64)]
        keys = [os.urandom(cfg["key_size"]) for _ in range(64)] if cfg["key_size"] else [None] * 64
        topic = cfg["topic"]
        duration, warmup = cfg["duration"], cfg["warmup"]
        n_buckets = int(math.ceil((duration + cfg["flush_timeout"]) / BUCKET)) + 2
        _lat = array("d")
        _lat_at = array("f")
        _acked_per_bucket = [0] * n_buckets
        _errors = {}
        ready.put(idx)
        # Wait for the common start time (perf_counter is CLOCK_MONOTONIC: shared by processes).
        deadline = time.perf_counter() + STARTUP_TIMEOUT
        while start_at.value == 0.0:
            if time.perf_counter() > deadline:
                raise RuntimeError("no start signal")
            time.sleep(0.005)
        _w_start = start_at.value
        _w_lo, _w_hi = _w_start + warmup, _w_start + duration
        end = _w_start + duration
        while time.perf_counter() < _w_start:
            time.sleep(0.001)
        ru0 = resource.getrusage(resource.RUSAGE_SELF)

        rate = cfg["rate_msgs"]  # per second for this worker, or None
        min_burst = max(1, int(rate / 1000)) if rate else 1
        record_size = cfg["record_size"]
        produce, poll, now_fn = producer.produce, producer.poll, time.perf_counter
        sent = 0
        queue_full = 0
        i = 0
        now = now_fn()
        while now < end:
            if rate is not None:
                due = int((now - _w_start) * rate) - sent
                if due < min_burst:
                    # Not yet ~1 ms worth of messages due: block in poll() for up to
                    # 1 ms (librdkafka's granularity; it returns early to serve a
                    # delivery report, so callbacks stay timely and we do not spin).
                    poll(0.001)
                    now = now_fn()
                    continue
                burst = min(due, 256)
            else:
                burst = 256
            for _ in range(burst):
                k = i & 63
                try:
                    produce(topic, values[k], keys[k], on_delivery=partial(_on_delivery, now))
                except BufferError:  # librdkafka's queue is full: wait for acks
                    queue_full += 1
                    poll(0.001)
                    break
                except KafkaException as exc:
                    _errors[str(exc)] = _errors.get(str(exc), 0) + 1
                    break
                i += 1
                sent += 1
                now = now_fn()
            poll(0)
            now = now_fn()
            progress[idx] = sum(_acked_per_bucket) * record_size

        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = {"user_s": round(ru1.ru_utime - ru0.ru_utime, 2), "sys_s": round(ru1.ru_stime - ru0.ru_stime, 2)}
        # Wait for the remaining acks, bounded; publish progress while waiting.
        flush_deadline = now_fn() + cfg["flush_timeout"]
        remaining = len(producer)
        while remaining and now_fn() < flush_deadline:
            remaining = producer.flush(min(0.5, max(flush_deadline - now_fn(), 0.0)))
            progress[idx] = sum(_acked_per_bucket) * record_size
        if remaining:
            producer.purge()
            producer.flush(1.0)
        out.update(sent=sent, unacked=remaining, cpu=cpu, queue_full=queue_full, errors=_errors,
                   acked_per_bucket=_acked_per_bucket, latencies=_lat.tobytes(),
                   latency_at=_lat_at.tobytes())
    except BaseException as exc:  # report instead of dying silently
        out["error"] = repr(exc)
    results.put(out)


# ---------------------------------------------------------------------- produce run
def run_produce(args) -> int:
    if args.duration <= args.warmup:
        print("sluice bench produce: --duration must exceed --warmup", file=sys.stderr)
        return 2
    if args.brokers:
        if args.bootstrap:
            print("sluice bench produce: --brokers starts brokers of its own; not with --bootstrap", file=sys.stderr)
            return 2
        return run_brokers(args)
    broker = None
    result = None
    try:
        if args.bootstrap:
            bootstrap = args.bootstrap
        else:
            broker = BrokerProcess.start_temporary(args.data_dir, extra_args=args.broker_arg, metrics=True)
            bootstrap = broker.bootstrap
            print(f"started broker pid {broker.proc.pid} on {bootstrap} (data {broker.workdir})", flush=True)
        topic = args.topic or f"sluice-bench-{uuid.uuid4().hex[:8]}"
        try:
            create_topic(bootstrap, topic, args.partitions)
        except Exception as exc:
            print(f"sluice bench produce: cannot create topic {topic} on {bootstrap}: {exc}", file=sys.stderr)
            return 1
        metrics = broker.metrics_address if broker else args.metrics
        result = drive(args, bootstrap, topic, broker.proc.pid if broker else None, metrics)
    finally:
        if broker is not None:
            code = broker.stop()
            tail = broker.log_tail()
            broker.remove()
            if result is not None:
                result["broker_exit_code"] = code
            if code != 0:
                print(f"sluice bench produce: the broker exited with {code}; log tail:\n{tail}",
                      file=sys.stderr)
    if result is None:
        return 1
    _print_table(result)
    write_results(result, args.json, args.plot, _plot)
    t = result["totals"]
    ok = (result["steady"]["msgs"] > 0 and not result["worker_errors"] and not result.get("broker_exit_code")
          and not t["unacked_at_end"] and not t["delivery_errors"])
    if not ok:
        print("sluice bench produce: the run had errors (see above); its figures are suspect", file=sys.stderr)
    return 0 if ok else 1


def _producer_conf(args, bootstrap: str) -> dict:
    conf = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all" if args.acks in ("all", "-1") else args.acks,
        "linger.ms": args.linger_ms,
        "compression.type": args.compression,
        "queue.buffering.max.kbytes": args.queue_kbytes,
        "queue.buffering.max.messages": 1_000_000,
        "message.timeout.ms": int((args.duration + args.flush_timeout) * 1000),
        "socket.nagle.disable": True,
    }
    if args.acks in ("0", "1"):
        conf["enable.idempotence"] = False  # librdkafka requires acks=all with idempotence
    if args.batch_size:
        conf["batch.size"] = args.batch_size
    for item in args.set:
        k, sep, v = item.partition("=")
        if not sep:
            raise SystemExit(f"--set needs KEY=VALUE, got {item!r}")
        conf[k] = v
    return conf


def drive_args(*, record_size: int, partitions: int, duration: float, rate: float | None,
               linger_ms: float = 5, warmup: float = 2.0, quiet: bool = True,
               bootstrap: str | None = None) -> argparse.Namespace:
    """``bench produce``'s options for ``drive`` as the other benches use it:
    one idempotent acks=all producer, no keys, no compression, default queue."""
    return argparse.Namespace(
        producers=1, record_size=record_size, key_size=0, duration=duration, warmup=warmup, rate=rate,
        flush_timeout=60.0, acks="all", linger_ms=linger_ms, batch_size=None, queue_kbytes=65536,
        compression="none", set=[], quiet=quiet, partitions=partitions, bootstrap=bootstrap)


def drive(args, bootstrap: str, topic: str, broker_pid: int | None,
          metrics: str | None) -> dict | None:
    """``bench produce``'s driver: ``args.producers`` librdkafka producer processes on
    ``topic`` (which must exist); the result ``sluice bench produce`` reports, or None
    if the producers did not start. ``broker_pid`` (CPU) and ``metrics`` (HOST:PORT:
    WAL and Produce-time histograms) are optional."""
    ctx = mp.get_context("spawn")  # no librdkafka threads inherited through fork
    n = args.producers
    rate_msgs = None
    if args.rate:
        rate_msgs = args.rate * MB / args.record_size / n
    cfg = dict(topic=topic, record_size=args.record_size, key_size=args.key_size,
               duration=args.duration, warmup=args.warmup, rate_msgs=rate_msgs,
               flush_timeout=args.flush_timeout)
    conf = _producer_conf(args, bootstrap)
    ready, results = ctx.Queue(), ctx.Queue()
    start_at = ctx.RawValue("d", 0.0)
    progress = ctx.RawArray("q", n)
    procs = [ctx.Process(target=_worker, args=(i, cfg, conf, ready, start_at, progress, results),
                         daemon=True, name=f"bench-producer-{i}") for i in range(n)]
    for p in procs:
        p.start()
    outs: dict[int, dict] = {}
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT + 30  # spawn + imports + metadata
        ready_count = 0
        while ready_count < n and time.monotonic() < deadline:
            try:
                ready.get(timeout=0.2)
                ready_count += 1
            except queue.Empty:
                pass
            # a worker that failed early reports on `results` without becoming ready
            while True:
                try:
                    o = results.get_nowait()
                except queue.Empty:
                    break
                outs[o["idx"]] = o
            if outs or any(not p.is_alive() for p in procs):
                break
        if ready_count < n:
            errs = [o.get("error") for o in outs.values() if o.get("error")]
            print(f"sluice bench produce: only {ready_count}/{n} producers ready {errs}", file=sys.stderr)
            return None
        load_before = os.getloadavg()
        t0 = time.perf_counter() + 0.2
        start_at.value = t0
        wall_start = time.time() + 0.2
        while (wait := t0 - time.perf_counter()) > 0:
            time.sleep(wait)
        cpu0 = proc_cpu(broker_pid)
        warm = _progress(args, t0, progress, lambda: (proc_cpu(broker_pid), _scrape_wal(metrics)))
        cpu1 = proc_cpu(broker_pid)
        wal1 = _scrape_wal(metrics)
        hard_deadline = time.monotonic() + args.flush_timeout + 30
        while len(outs) < n:
            try:
                o = results.get(timeout=max(hard_deadline - time.monotonic(), 0.01))
            except queue.Empty:
                break
            outs[o["idx"]] = o
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join(5)
    missing = [i for i in range(n) if i not in outs]
    result = _aggregate(args, topic, bootstrap, wall_start, outs, missing)
    result["machine"]["loadavg_1m_before"] = round(load_before[0], 2)
    result["machine"]["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
    if cpu0 and cpu1:
        result["cpu_during_produce"]["broker"] = {k: round(cpu1[k] - cpu0[k], 2) for k in cpu0}
    bcpu_warm, wal0 = warm
    window = args.duration - args.warmup
    if bcpu_warm and cpu1:
        result["steady"]["broker_cpu_fraction"] = {
            k.replace("_s", ""): round((cpu1[k] - bcpu_warm[k]) / window, 3) for k in cpu1}
    result["steady"]["wal"] = _wal_delta(wal0, wal1, window)
    return result


def _progress(args, t0: float, progress, at_warmup):
    """One line, rewritten each second, until the produce window ends.

    Returns what ``at_warmup()`` returned when called at the end of the warm-up
    (the broker's CPU and WAL counters at the start of the steady window).
    """
    tty = sys.stdout.isatty() and not args.quiet
    end = t0 + args.duration
    warm_at = t0 + args.warmup
    ticks = sorted({t0 + k * BUCKET for k in range(1, int(args.duration / BUCKET) + 1)} | {end})
    events = sorted([(t, "tick") for t in ticks if t <= end] + [(warm_at, "warm")])
    warm = (None, None)
    last_bytes, last_t = 0, t0
    for at, what in events:
        while (wait := at - time.perf_counter()) > 0:
            time.sleep(wait)
        if what == "warm":
            warm = at_warmup()
            continue
        now = time.perf_counter()
        total = sum(progress)
        inst = (total - last_bytes) / max(now - last_t, 1e-9) / MB
        avg = total / max(now - t0, 1e-9) / MB
        last_bytes, last_t = total, now
        if args.quiet:
            continue
        line = (f"[{now - t0:5.1f}s] {inst:8.1f} MB/s now  {avg:8.1f} MB/s avg  "
                f"{total / MB:9.1f} MB acked")
        print("\r" + line if tty else line, end="" if tty else "\n", flush=True)
    if tty:
        print()
    if not args.quiet:
        print("producing done; waiting for outstanding acks", flush=True)
    return warm


def _aggregate(args, topic, bootstrap, wall_start, outs: dict, missing: list[int]) -> dict:
    record = args.record_size
    n_buckets = max((len(o.get("acked_per_bucket", [])) for o in outs.values()), default=0)
    per_bucket = [0] * n_buckets
    lat = array("d")
    lat_at = array("f")
    errors: dict[str, int] = {}
    worker_errors = [f"producer {i}: no result (killed)" for i in missing]
    sent = unacked = queue_full = 0
    cpu = {"user_s": 0.0, "sys_s": 0.0}
    for o in outs.values():
        if o.get("error"):
            worker_errors.append(f"producer {o['idx']}: {o['error']}")
            continue
        for b, c in enumerate(o["acked_per_bucket"]):
            per_bucket[b] += c
        lat.frombytes(o["latencies"])
        lat_at.frombytes(o["latency_at"])
        for k, v in o["errors"].items():
            errors[k] = errors.get(k, 0) + v
        sent += o["sent"]
        unacked += o["unacked"]
        queue_full += o["queue_full"]
        for k in cpu:
            cpu[k] = round(cpu[k] + o["cpu"][k], 2)
    lo = int(args.warmup / BUCKET)
    hi = int(args.duration / BUCKET)
    window = (hi - lo) * BUCKET
    steady_msgs = sum(per_bucket[lo:hi])
    while per_bucket and per_bucket[-1] == 0:
        per_bucket.pop()
    timeline = [{"t": round(b * BUCKET, 3), "mb_per_s": round(c * record / MB / BUCKET, 3),
                 "msgs_per_s": round(c / BUCKET, 1)} for b, c in enumerate(per_bucket)]
    for b, pct in _latency_by_second(lat, lat_at).items():
        if b < len(timeline):
            timeline[b]["latency_ms_of_sends"] = pct
    return {
        "bench": "produce",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(wall_start)),
        "command": " ".join(["sluice"] + sys.argv[1:]) if sys.argv and "sluice" in sys.argv[0]
                   else " ".join(sys.argv),
        "config": {
            "bootstrap": bootstrap if args.bootstrap else "self-started",
            "topic": topic, "partitions": args.partitions, "record_size": record,
            "key_size": args.key_size, "duration_s": args.duration, "warmup_s": args.warmup,
            "acks": args.acks, "rate_mb_per_s": args.rate, "producers": args.producers,
            "linger_ms": args.linger_ms, "batch_size": args.batch_size,
            "queue_kbytes": args.queue_kbytes, "compression": args.compression,
            "extra": args.set,
        },
        "machine": machine(),
        "units": {"mb": "10^6 bytes of record values", "latency": "ms, produce() to delivery callback",
                  "timeline": "t = start of a 1 s bucket of acks, seconds since the common start"},
        "steady": {
            "window_s": [lo * BUCKET, hi * BUCKET],
            "msgs": steady_msgs,
            "msgs_per_s": round(steady_msgs / window, 1),
            "mb_per_s": round(steady_msgs * record / MB / window, 3),
            "latency_ms": percentiles(lat),
            "latency_samples": len(lat),
        },
        "totals": {"sent": sent, "acked": sum(per_bucket), "unacked_at_end": unacked,
                   "queue_full_events": queue_full, "delivery_errors": errors},
        "cpu_during_produce": {"producers": cpu},
        "worker_errors": worker_errors,
        "timeline": timeline,
    }


def _latency_by_second(lat: array, lat_at: array) -> dict[int, dict]:
    """p50/p99/max ack latency of the messages produced in each 1 s bucket (needs numpy)."""
    try:
        import numpy as np
    except ImportError:
        return {}
    if not lat:
        return {}
    a = np.frombuffer(lat, dtype=np.float64) * 1000.0
    b = (np.frombuffer(lat_at, dtype=np.float32) / BUCKET).astype(np.int64)
    out = {}
    for k in np.unique(b):
        v = a[b == k]
        p50, p99 = np.percentile(v, [50, 99])
        out[int(k)] = {"p50": round(float(p50), 3), "p99": round(float(p99), 3), "max": round(float(v.max()), 3)}
    return out


def _print_table(r: dict) -> None:
    c, s, t = r["config"], r["steady"], r["totals"]
    lat = s["latency_ms"]
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    rate = "unthrottled" if c["rate_mb_per_s"] is None else f"{c['rate_mb_per_s']:g} MB/s"
    rows = [
        ("config", f"{c['producers']} producer(s), {c['partitions']} partitions, {c['record_size']} B "
                   f"records, acks={c['acks']}, linger.ms={c['linger_ms']:g}, {rate}"),
        ("window", f"{s['window_s'][0]:g}-{s['window_s'][1]:g} s"),
        ("throughput", f"{s['mb_per_s']:.1f} MB/s   {s['msgs_per_s']:,.0f} msgs/s"),
        ("ack latency", f"p50 {fmt(lat['p50'])}  p99 {fmt(lat['p99'])}  p99.9 {fmt(lat['p99_9'])}  "
                        f"max {fmt(lat['max'])} ms   ({s['latency_samples']:,} samples)"),
        ("messages", f"sent {t['sent']:,}  acked {t['acked']:,}  unacked at end {t['unacked_at_end']:,}"),
        ("cpu", ", ".join(f"{who} {v['user_s']:.1f} s user + {v['sys_s']:.1f} s sys"
                          for who, v in r["cpu_during_produce"].items())
                + f" (of {c['duration_s']:g} s x {r['machine']['cpus']} cpus)"),
        ("broker (steady)", _broker_row(s)),
        ("machine", f"{r['machine']['cpus']} cpus, load average {r['machine'].get('loadavg_1m_before')} "
                    f"before, {r['machine'].get('loadavg_1m_after')} after"),
    ]
    if t["delivery_errors"]:
        rows.append(("errors", ", ".join(f"{k}: {v}" for k, v in t["delivery_errors"].items())))
    for e in r["worker_errors"]:
        rows.append(("worker error", e))
    width = max(len(k) for k, _ in rows)
    print()
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    print()


def _broker_row(s: dict) -> str:
    parts = []
    if s.get("broker_cpu_fraction"):
        c = s["broker_cpu_fraction"]
        parts.append(f"cpu {c['user'] * 100:.0f}% user + {c['sys'] * 100:.0f}% sys of one core")
    w = s.get("wal")
    if w and w["fsyncs"]:
        parts.append(f"{w['fsyncs_per_s']:.0f} fsyncs/s, mean {w['mean_fsync_ms']:.2f} ms, "
                     f"p99 <= {w['fsync_p99_ms_at_most']} ms, "
                     f"{w['mean_bytes_per_fsync'] / 1024:.0f} KiB each, fsync busy "
                     f"{w['fsync_busy_fraction'] * 100:.0f}% of the time")
    if w and w.get("produce_requests"):
        parts.append(f"{w['produce_requests']} produce requests, in broker p50 <= "
                     f"{w['produce_request_p50_ms_at_most']} p99 <= {w['produce_request_p99_ms_at_most']} "
                     f"p99.9 <= {w['produce_request_p999_ms_at_most']} ms")
    return "; ".join(parts) or "-"


def _plot(r: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    c, s = r["config"], r["steady"]
    fig = plt.figure(figsize=(13, 7))
    grid = fig.add_gridspec(2, 2, width_ratios=[2, 1])
    ax1 = fig.add_subplot(grid[0, 0])
    ax3 = fig.add_subplot(grid[1, 0], sharex=ax1)
    ax2 = fig.add_subplot(grid[:, 1])
    mbs = [p["mb_per_s"] for p in r["timeline"]]
    edges = [p["t"] for p in r["timeline"]] + [len(mbs) * BUCKET]
    if mbs:
        ax1.stairs(mbs, edges, color="tab:blue", lw=1.5, label="acked per second")
    lo, hi = s["window_s"]
    ax1.axvspan(0, lo, color="0.9", zorder=0, label="warm-up (excluded)")
    ax1.axvline(hi, color="0.5", ls=":", label="produce stops")
    ax1.axhline(s["mb_per_s"], color="tab:red", ls="--", label=f"steady mean {s['mb_per_s']:.1f} MB/s")
    ax1.set_xlabel("seconds since start (acks in each 1 s bucket; after the stop: draining)")
    ax1.set_ylabel("MB/s acked")
    ax1.set_ylim(bottom=0)
    ax1.legend(loc="lower right", fontsize=8)
    rate = "unthrottled" if c["rate_mb_per_s"] is None else f"target {c['rate_mb_per_s']:g} MB/s"
    ax1.set_title(f"produce throughput: {c['producers']} producer(s), {c['partitions']} partitions, "
                  f"{c['record_size']} B, acks={c['acks']}, {rate}", fontsize=9)
    pts = [(p["t"], p["latency_ms_of_sends"]) for p in r["timeline"] if "latency_ms_of_sends" in p]
    if pts:
        xs = [t for t, _ in pts] + [pts[-1][0] + BUCKET]
        for key, color in (("p50", "tab:green"), ("p99", "tab:orange"), ("max", "tab:purple")):
            ax3.stairs([v[key] for _, v in pts], xs, color=color, lw=1.5, label=key)
        ax3.set_yscale("log")
        ax3.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax3.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax3.legend(loc="upper right", fontsize=8)
    ax3.axvspan(0, lo, color="0.9", zorder=0)
    ax3.set_xlabel("seconds since start (by the second each message was produced)")
    ax3.set_ylabel("ack latency, ms")
    ax3.set_title("ack latency of the messages produced in each second", fontsize=9)
    ax1.set_xlabel("")
    lat = s["latency_ms"]
    names = ["p50", "p90", "p99", "p99.9", "max"]
    vals = [lat[k] or 0 for k in ("p50", "p90", "p99", "p99_9", "max")]
    bars = ax2.bar(names, vals, color=["tab:green", "tab:olive", "tab:orange", "tab:red", "tab:purple"])
    ax2.bar_label(bars, labels=[f"{v:.1f}" for v in vals], fontsize=8)
    ax2.set_yscale("log" if vals[-1] > 20 * max(vals[0], 1e-3) else "linear")
    ax2.set_ylabel("ms")
    ax2.set_title("ack latency (produce() to delivery callback)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------ --brokers: 1 vs N brokers
LOG_PROBLEM_RE = re.compile(r"\b(ERROR|FATAL|CRITICAL)\b|Traceback")


def _cluster(args, n: int, work: Path) -> list[BrokerProcess]:
    """``n`` started brokers, node ids 1..n, on one shared file:// store in ``work``."""
    store = f"file://{work / 'objects'}"
    brokers = [BrokerProcess(work / f"node{i}", overrides=[f"node.id={i}", "autobalancer.controller.enable=false"],
                             extra_args=["--object-store", store, *args.broker_arg], log_path=work / f"node{i}.log")
               for i in range(1, n + 1)]
    try:
        for b in brokers:
            b.start(STARTUP_TIMEOUT)
        addresses = [("127.0.0.1", b.port) for b in brokers]
        seen = wait_for_cluster(addresses, STARTUP_TIMEOUT)
        if not all(set(addresses) <= v for v in seen.values()):
            raise RuntimeError(f"the {n} brokers did not form a cluster: {seen}")
    except BaseException:
        for b in brokers:
            b.stop()
        raise
    return brokers


def _leaders(bootstrap: str, topic: str, partitions: int, timeout: float = STARTUP_TIMEOUT) -> dict[int, int]:
    """Partitions led per node once every partition has a leader (bounded wait)."""
    from confluent_kafka.admin import AdminClient
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    deadline = time.monotonic() + timeout
    while True:
        t = admin.list_topics(topic, timeout=10).topics.get(topic)
        leaders = [p.leader for p in t.partitions.values()] if t is not None and not t.error else []
        if (len(leaders) == partitions and min(leaders) >= 0) or time.monotonic() > deadline:
            return {n: leaders.count(n) for n in sorted(set(leaders))}
        time.sleep(0.2)


def _problems(path: Path) -> int:
    try:
        return sum(1 for line in path.read_text(errors="replace").splitlines() if LOG_PROBLEM_RE.search(line))
    except OSError:
        return 0


def _brokers_run(args, n: int) -> dict:
    """One run of ``drive`` against a fresh cluster of ``n`` brokers."""
    work = Path(tempfile.mkdtemp(prefix="sluice-bench-brokers-", dir=args.data_dir))
    brokers: list[BrokerProcess] = []
    try:
        brokers = _cluster(args, n, work)
        bootstrap = ",".join(b.bootstrap for b in brokers)
        topic = f"sluice-bench-{uuid.uuid4().hex[:8]}"
        create_topic(bootstrap, topic, args.partitions)
        leaders = _leaders(bootstrap, topic, args.partitions)
        pids = [b.proc.pid for b in brokers if b.proc is not None]
        cpu0, t0 = [proc_cpu(p) for p in pids], time.monotonic()
        r = drive(args, bootstrap, topic, None, None)
        cpu1, elapsed = [proc_cpu(p) for p in pids], time.monotonic() - t0
    finally:
        codes = [b.stop() for b in brokers]
        problems = sum(_problems(b.log_path) for b in brokers if b.log_path is not None)
        shutil.rmtree(work, ignore_errors=True)
    if r is None:
        raise RuntimeError(f"the producers did not start against {n} broker(s)")
    cpu = [sum(c1[k] - c0[k] for k in ("user_s", "sys_s")) for c0, c1 in zip(cpu0, cpu1) if c0 and c1]
    s = r["steady"]
    acked_gb = r["totals"]["acked"] * args.record_size / 1e9
    return {"brokers": n, "mb_per_s": s["mb_per_s"], "latency_ms": s["latency_ms"],
            "partitions_led": {str(k): v for k, v in leaders.items()},
            # over the whole drive() call (producers' start and final flush included), per broker
            "broker_cpu_s": [round(c, 2) for c in cpu], "drive_s": round(elapsed, 2),
            "broker_cpu_s_per_gb": round(sum(cpu) / acked_gb, 2) if acked_gb else None,
            "producer_cpu_s": r["cpu_during_produce"]["producers"],
            "unacked_at_end": r["totals"]["unacked_at_end"], "delivery_errors": r["totals"]["delivery_errors"],
            "worker_errors": r["worker_errors"], "exit_codes": codes, "broker_log_problems": problems,
            "loadavg_1m_before": r["machine"].get("loadavg_1m_before"), "timeline": r["timeline"]}


def brokers_summary(runs: list[dict], counts: list[int]) -> list[dict]:
    """Per broker count: the runs' throughputs, medians, and the ratio of the median to the first count's."""
    out = []
    for n in counts:
        rs = [r for r in runs if r["brokers"] == n]
        mbs = [r["mb_per_s"] for r in rs]
        row = {"brokers": n, "runs": len(rs), "mb_per_s_rounds": mbs,
               "mb_per_s": round(statistics.median(mbs), 2) if mbs else None,
               "p50_ms": round(statistics.median(r["latency_ms"]["p50"] for r in rs), 2) if rs else None,
               "p99_ms": round(statistics.median(r["latency_ms"]["p99"] for r in rs), 2) if rs else None,
               "broker_cpu_s_per_gb": (round(statistics.median(r["broker_cpu_s_per_gb"] for r in rs), 2)
                                       if rs and all(r["broker_cpu_s_per_gb"] for r in rs) else None)}
        out.append(row)
    base = out[0]["mb_per_s"] if out else None
    for row in out:
        row["ratio_to_first"] = round(row["mb_per_s"] / base, 3) if base and row["mb_per_s"] is not None else None
    return out


def run_brokers(args) -> int:
    try:
        counts = [int(x) for x in str(args.brokers).split(",") if x.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1 or args.rounds < 1:
        print("sluice bench produce: --brokers wants broker counts >= 1 (e.g. 1,2) and --rounds >= 1",
              file=sys.stderr)
        return 2
    runs: list[dict] = []
    t_start = time.monotonic()
    for r in range(1, args.rounds + 1):
        for n in counts:
            if not args.quiet:
                print(f"round {r}/{args.rounds}: {n} broker(s), {args.producers} producer(s), "
                      f"{args.partitions} partitions, {args.duration:g} s", flush=True)
            run = _brokers_run(args, n)
            run["round"] = r
            runs.append(run)
            if not args.quiet:
                print(f"round {r}/{args.rounds}: {n} broker(s): {run['mb_per_s']:.1f} MB/s, p99 "
                      f"{run['latency_ms']['p99']} ms, partitions led {run['partitions_led']}, broker CPU "
                      f"{run['broker_cpu_s_per_gb']} s/GB", flush=True)
    summary = brokers_summary(runs, counts)
    result = {
        "bench": "produce-brokers",
        "command": "sluice " + " ".join(sys.argv[1:]) if sys.argv else "",
        "config": {"brokers": counts, "rounds": args.rounds, "producers": args.producers,
                   "partitions": args.partitions, "record_size": args.record_size, "duration_s": args.duration,
                   "warmup_s": args.warmup, "rate_mb_per_s": args.rate, "acks": args.acks,
                   "linger_ms": args.linger_ms, "extra": args.set, "broker_args": args.broker_arg,
                   "cluster": "node ids 1..N, one shared file:// object store (a temp dir on the data dir's "
                              "disk), autobalancer.controller.enable=false, a fresh cluster per run; the "
                              "topic's partitions are placed on the brokers with the fewest",
                   "order": "per round, the counts in the order given"},
        "machine": machine(),
        "runs": runs,
        "summary": summary,
        "elapsed_s": round(time.monotonic() - t_start, 1),
    }
    print()
    print(brokers_table(result))
    write_results(result, args.json, args.plot, _plot_brokers)
    bad = [r for r in runs if r["worker_errors"] or r["unacked_at_end"] or r["delivery_errors"]
           or any(c != 0 for c in r["exit_codes"])]
    if bad:
        print(f"sluice bench produce: {len(bad)} run(s) had errors; see the JSON", file=sys.stderr)
    return 1 if bad else 0


def brokers_table(result: dict) -> str:
    c = result["config"]
    first = c["brokers"][0]
    lines = [f"| brokers | MB/s (median) | ratio to {first} | per round (MB/s) | ack p50 / p99 ms (median) | "
             "broker CPU s per GB acked (median, all brokers) |",
             "|---|---|---|---|---|---|"]
    for row in result["summary"]:
        lines.append(f"| {row['brokers']} | {row['mb_per_s']:g} | {row['ratio_to_first']:.2f} | "
                     f"{', '.join(f'{v:g}' for v in row['mb_per_s_rounds'])} | {row['p50_ms']:g} / "
                     f"{row['p99_ms']:g} | {row['broker_cpu_s_per_gb']} |")
    rate = "unthrottled" if c["rate_mb_per_s"] is None else f"at {c['rate_mb_per_s']:g} MB/s"
    lines += ["", f"{c['rounds']} round(s); {c['producers']} librdkafka producer process(es), {rate}, "
                  f"{c['partitions']} partitions, {c['record_size']} B values, acks={c['acks']}, "
                  f"{c['duration_s']:g} s per run ({c['warmup_s']:g} s warm-up excluded); {c['cluster']}."]
    return "\n".join(lines)


def _plot_brokers(r: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    rows = r["summary"]
    xs = list(range(len(rows)))
    labels = [f"{row['brokers']} broker(s)" for row in rows]
    ax1.bar(xs, [row["mb_per_s"] for row in rows], 0.6, color="tab:blue")
    for x, row in zip(xs, rows):
        ax1.plot([x] * len(row["mb_per_s_rounds"]), row["mb_per_s_rounds"], "k.", ms=5)
        ax1.annotate(f"{row['mb_per_s']:.1f}\n(x{row['ratio_to_first']:.2f})", (x, row["mb_per_s"]), ha="center",
                     va="bottom", fontsize=8)
    ax1.set_ylim(top=max([row["mb_per_s"] or 0 for row in rows] + [1]) * 1.2)
    ax1.set_xticks(xs)
    ax1.set_xticklabels(labels)
    ax1.set_ylabel("MB/s acked (steady window)")
    ax1.set_title("produce throughput (median; dots: rounds)", fontsize=10)
    for key, color, off in (("p50_ms", "tab:green", -0.2), ("p99_ms", "tab:orange", 0.2)):
        ax2.bar([x + off for x in xs], [row[key] for row in rows], 0.4, color=color, label=key.replace("_ms", ""))
    ax2.set_xticks(xs)
    ax2.set_xticklabels(labels)
    ax2.set_ylabel("ms")
    ax2.set_title("ack latency (median of rounds)", fontsize=10)
    ax2.legend(fontsize=8)
    c = r["config"]
    fig.suptitle(f"{c['producers']} producer(s), {c['partitions']} partitions, same client load; "
                 f"{c['rounds']} round(s), counts alternating", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
