"""``sluice bench compare``: the same workloads against Sluice and Apache Kafka, alternately.

Each round starts a fresh Sluice (``sluice serve`` on a temp data dir) and runs
every workload on it, stops it, then starts a fresh Apache Kafka KRaft broker
(``broker/kafka_reference.py``) and runs the same workloads, and stops it:
A B A B ... for ``--rounds`` rounds. Every workload gets a new topic. Both
brokers are loaded by the same client, Kafka's own ``kafka-producer-perf-test``
(the Java producer), with the same settings. Figures are medians over rounds.

Workloads:
  (a) produce, acks=all, unthrottled;  (b) produce, acks=all, at a fixed rate
  (latency);  (c) as (a), with Kafka at equal durability (topic flush.messages=1,
  an fsync per append; Sluice always fsyncs before acking, so its column repeats (a));
  (d) broker resident memory (RSS of its process tree, /proc) at idle after start
  and at peak during (a).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from pathlib import Path

from broker import bench
from broker.kafka_reference import ROOT, TOOL, KafkaBroker, java_version, kafka_libs, kafka_version

MB = 1_000_000
SECTION = "## Comparison with Apache Kafka (issue 5)"
NOTES_MARK = "<!-- notes below are kept by `sluice bench compare --write-benchmarks` -->"
NOT_YET = ["tail consume latency", "catch-up read throughput", "partition move"]

FINAL_RE = re.compile(
    r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
    r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99.9th")
INTERIM_RE = re.compile(r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\)")


def add_parser(kinds) -> None:
    p = kinds.add_parser("compare", help="Sluice vs Apache Kafka, same workloads, alternating rounds",
                         description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=None, help="A/B rounds (default 3; --quick: 1)")
    p.add_argument("--quick", action="store_true",
                   help="small run for smoke tests: 1 round, 100k records, 5 s at the fixed rate")
    p.add_argument("--records", type=int, default=None,
                   help="records per unthrottled run (default 1,000,000; --quick 100,000)")
    p.add_argument("--durable-records", type=int, default=None,
                   help="records for (c), Kafka with flush.messages=1 (default 300,000; --quick 50,000)")
    p.add_argument("--record-size", type=int, default=1024)
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--rate", type=float, default=10.0, metavar="MB/s", help="fixed rate for (b)")
    p.add_argument("--rate-seconds", type=float, default=None,
                   help="length of (b) in seconds (default 20; --quick 5)")
    p.add_argument("--producer-prop", action="append", default=[], metavar="KEY=VALUE",
                   help="extra Java producer property, for both brokers")
    p.add_argument("--kafka-heap", default="-Xmx1g -Xms1g", help="KAFKA_HEAP_OPTS for the Kafka broker")
    p.add_argument("--data-dir", default=None, help="parent of both brokers' temp data dirs")
    p.add_argument("--only", default=None, help="comma-separated subset of workloads: a,b,c")
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
    c = bench._proc_cpu(pid)
    return None if c is None else c["user_s"] + c["sys_s"]


def _machine(data_dir: str | None, quick: bool) -> dict:
    m = bench._machine()
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
    p = bench._percentiles(lat)
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
            "client": f"kafka-producer-perf-test (Java producer {kafka_version(libs)})"}


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
            self.sluice = bench._Broker([], args.data_dir)
            self.bootstrap, self.pid = self.sluice.bootstrap, self.sluice.proc.pid
        self.startup_s = round(time.monotonic() - t, 2)

    def alive(self) -> bool:
        proc = self.kafka.proc if self.kafka else self.sluice.proc
        return proc.poll() is None

    def log_tail(self) -> str:
        return self.kafka.log_tail() if self.kafka else self.sluice.log_tail()

    def stop(self) -> int | None:
        if self.kafka:
            rc = self.kafka.stop(30)
            shutil.rmtree(self.kafka.workdir, ignore_errors=True)
            return rc
        return self.sluice.stop()


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


# ---------------------------------------------------------------------- run
def run_compare(args) -> int:
    if args.quick:
        args.rounds = args.rounds or 1
        args.records = args.records or 100_000
        args.rate_seconds = args.rate_seconds or 5.0
        args.durable_records = args.durable_records or 50_000
    args.rounds = args.rounds or 3
    args.records = args.records or 1_000_000
    args.rate_seconds = args.rate_seconds or 20.0
    args.durable_records = args.durable_records or 300_000
    workloads = set((args.only or "a,b,c").split(","))
    progress = Progress(args.quiet)
    command = "sluice " + " ".join(shlex.quote(a) for a in sys.argv[1:])

    progress.phase("measuring fsync latency")
    machine = _machine(args.data_dir, args.quick)
    progress.phase("installing/locating Kafka")
    libs = kafka_libs()
    versions = _versions(libs)
    props = ["acks=all", "linger.ms=5", *args.producer_prop]
    rate_records = args.rate * MB / args.record_size
    rate_n = max(1000, int(rate_records * args.rate_seconds))

    rounds: list[dict] = []
    t_start = time.monotonic()
    for r in range(1, args.rounds + 1):
        for name in ("sluice", "kafka"):
            label = f"round {r}/{args.rounds} {name:6s}"
            progress.phase(f"{label} starting broker")
            sysm = _System(name, args, libs)
            res = {"round": r, "system": name, "startup_s": sysm.startup_s, "workloads": {}}
            try:
                time.sleep(2.0)
                res["rss_idle_mib"] = tree_rss_mib(sysm.pid)
                tag = f"{r}-{os.urandom(3).hex()}"
                if "a" in workloads:
                    progress.phase(f"{label} (a) unthrottled:")
                    _create_topic(sysm.bootstrap, f"cmp-a-{tag}", args.partitions)
                    res["workloads"]["a"] = _perf_test(sysm, f"cmp-a-{tag}", args.records, args.record_size,
                                                       -1, props, libs, progress, sample_rss=True)
                if "b" in workloads:
                    progress.phase(f"{label} (b) {args.rate:g} MB/s:")
                    _create_topic(sysm.bootstrap, f"cmp-b-{tag}", args.partitions)
                    res["workloads"]["b"] = _perf_test(sysm, f"cmp-b-{tag}", rate_n, args.record_size,
                                                       rate_records, props, libs, progress, sample_rss=False)
                if "c" in workloads and name == "kafka":
                    progress.phase(f"{label} (c) flush.messages=1:")
                    _create_topic(sysm.bootstrap, f"cmp-c-{tag}", args.partitions, {"flush.messages": "1"})
                    res["workloads"]["c"] = _perf_test(sysm, f"cmp-c-{tag}", args.durable_records, args.record_size,
                                                       -1, props, libs, progress, sample_rss=False)
            finally:
                progress.phase(f"{label} stopping broker")
                res["exit_code"] = sysm.stop()
            rounds.append(res)
    progress.done()

    result = {
        "bench": "compare",
        "command": command,
        "note": args.note,
        "config": {"rounds": args.rounds, "quick": args.quick, "records": args.records,
                   "durable_records": args.durable_records,
                   "record_size": args.record_size, "partitions": args.partitions,
                   "rate_mb_per_s": args.rate, "rate_records": rate_n, "producer_props": props,
                   "kafka_heap": args.kafka_heap, "order": "per round: Sluice then Kafka, each a fresh "
                   "broker on a fresh temp dir; a new topic per workload",
                   "workloads": sorted(workloads)},
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
    ("b_p50_ms", "(b) produce acks=all at {rate} MB/s: p50 latency", "b", ("latency_ms", "p50"), "ms", False),
    ("b_p99_ms", "(b) produce acks=all at {rate} MB/s: p99 latency", "b", ("latency_ms", "p99"), "ms", False),
    ("b_p99_9_ms", "(b) produce acks=all at {rate} MB/s: p99.9 latency", "b", ("latency_ms", "p99_9"), "ms", False),
    ("c_mb_per_s", "(c) as (a), Kafka flush.messages=1: throughput", "c", ("mb_per_s",), "MB/s", True),
    ("c_p99_ms", "(c) as (a), Kafka flush.messages=1: p99 latency", "c", ("latency_ms", "p99"), "ms", False),
    ("d_rss_idle_mib", "(d) broker RSS, idle after start", None, ("rss_idle_mib",), "MiB", False),
    ("d_rss_peak_mib", "(d) broker RSS, peak during (a)", "a", ("broker_rss_mib", "peak"), "MiB", False),
    ("a_cpu_s_per_gb", "(d) broker CPU time per GB produced in (a)", "a", ("broker_cpu_s_per_gb",), "CPU s/GB", False),
]


def _get(d, path):
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def summarize(result: dict) -> list[dict]:
    rate = result["config"]["rate_mb_per_s"]
    rows = []
    for key, label, wl, path, unit, higher in METRICS:
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
        ratio = (round(med["sluice"] / med["kafka"], 2)
                 if med["sluice"] is not None and med["kafka"] not in (None, 0) else None)
        rows.append({"key": key, "label": label.format(rate=f"{rate:g}"), "unit": unit,
                     "higher_is_better": higher, "kafka": med["kafka"], "sluice": med["sluice"],
                     "ratio_sluice_over_kafka": ratio, "kafka_rounds": vals["kafka"],
                     "sluice_rounds": vals["sluice"], "status": "measured"})
    for name in NOT_YET:
        rows.append({"key": name.replace(" ", "_"), "label": name, "unit": None, "higher_is_better": None,
                     "kafka": None, "sluice": None, "ratio_sluice_over_kafka": None,
                     "kafka_rounds": [], "sluice_rounds": [], "status": "not yet"})
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
    for row in result["summary"]:
        if row["status"] == "not yet":
            out.append(f"| {row['label']} | not yet | not yet | - | - |")
            continue
        unit = row["unit"]
        better = "higher is better" if row["higher_is_better"] else "lower is better"
        ratio = "-" if row["ratio_sluice_over_kafka"] is None else f"{row['ratio_sluice_over_kafka']:.2f}"
        rr = (", ".join(_fmt(v) for v in row["kafka_rounds"]) + "; "
              + ", ".join(_fmt(v) for v in row["sluice_rounds"]))
        out.append(f"| {row['label']} ({unit}, {better}) | {_fmt(row['kafka'])} | {_fmt(row['sluice'])} "
                   f"| {ratio} | {rr} |")
    out.append("")
    c = result["config"]
    out.append(f"Medians over {n} round(s); (a) {c['records']:,} records, (b) {c['rate_records']:,} records at "
               f"{c['rate_mb_per_s']:g} MB/s, (c) {c['durable_records']:,} records. (c): Sluice's column repeats "
               "its (a) figures, since Sluice fsyncs before every ack anyway.")
    return "\n".join(out)


def _section(result: dict, table: str, plot_path: str | None) -> str:
    m, v, c = result["machine"], result["versions"], result["config"]
    f64, f4 = m["fsync_64KiB"], m["fsync_4KiB"]
    lines = [SECTION, ""]
    if result.get("note"):
        lines += [f"**{result['note']}**", ""]
    lines += [
        "`sluice bench compare` (in `broker/bench_compare.py`) runs the same workloads against",
        "Sluice and a single Apache Kafka KRaft broker (combined controller+broker,",
        "`broker/kafka_reference.py`), alternately: per round a fresh Sluice, then a fresh",
        "Kafka, each on a temp data dir, a new topic per workload. The load comes from",
        "Kafka's own `kafka-producer-perf-test` (Java producer) with the same settings for",
        f"both (`{' '.join(c['producer_props'])}`, other settings at their defaults),",
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
        f"| write + fdatasync at start, 64 KiB | p50 {f64['p50_ms']:.2f} ms, p99 {f64['p99_ms']:.2f} ms ({f64['count']} writes) |",
        f"| write + fdatasync at start, 4 KiB | p50 {f4['p50_ms']:.2f} ms, p99 {f4['p99_ms']:.2f} ms |",
        f"| load average at start | {m['loadavg_at_start']:.2f} |",
        f"| platform | {m['platform']} |",
        f"| versions | Sluice {v['sluice']} at `{v['sluice_commit']}`{' (+ uncommitted changes)' if v['sluice_worktree_dirty'] else ''}, "
        f"Apache Kafka {v['kafka']} ({c['kafka_heap']}), {v['java']}, CPython {v['python']} |",
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
    start = next((i for i, l in enumerate(lines) if l.rstrip() == SECTION), None)
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
def plot(result: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"kafka": "#4c72b0", "sluice": "#dd8452"}
    rows = {r["key"]: r for r in result["summary"]}
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))

    def bars(ax, keys, labels, title, unit):
        x = range(len(keys))
        for j, system in enumerate(("kafka", "sluice")):
            xs = [i + (j - 0.5) * 0.38 for i in x]
            ax.bar(xs, [rows[k][system] or 0 for k in keys], 0.38, color=colors[system],
                   label="Kafka" if system == "kafka" else "Sluice")
            for xi, k in zip(xs, keys):  # every round as a dot
                vals = rows[k][f"{system}_rounds"]
                ax.plot([xi] * len(vals), vals, "k.", ms=4)
        ax.set_xticks(list(x))
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_ylabel(unit)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)

    bars(axes[0][0], ["a_mb_per_s", "c_mb_per_s"], ["(a) acks=all", "(c) Kafka flush.messages=1"],
         "produce throughput, unthrottled (median; dots: rounds)", "MB/s")
    rate = result["config"]["rate_mb_per_s"]
    for ax, wl, title in ((axes[0][1], "b", f"(b) ack latency at {rate:g} MB/s"),
                          (axes[1][0], "a", "(a) ack latency, unthrottled")):
        pcts = ["p50", "p95", "p99", "p99_9"]
        for j, system in enumerate(("kafka", "sluice")):
            vals = []
            for p in pcts:
                rs = [rd["workloads"][wl]["latency_ms"][p] for rd in result["rounds"]
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
    import textwrap
    title = f"Sluice vs Apache Kafka {result['versions']['kafka']}, {result['config']['rounds']} round(s)"
    if result.get("note"):
        title += " — " + result["note"]
    fig.suptitle(textwrap.fill(title, 140), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
