"""Helpers the benches share: topics, percentiles, machine facts, process CPU, results."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from array import array
from pathlib import Path
from typing import Callable

MB = 1_000_000
STARTUP_TIMEOUT = 30.0      # broker start, topic creation, producers ready


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """``partitions`` partitions, replication factor 1; an existing topic is fine (``--topic`` reuse)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    fut = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                              operation_timeout=STARTUP_TIMEOUT, request_timeout=STARTUP_TIMEOUT)[topic]
    try:
        fut.result(timeout=STARTUP_TIMEOUT)
    except Exception as exc:  # an existing topic is fine (--topic reuse)
        if "TOPIC_ALREADY_EXISTS" not in str(exc) and "already exists" not in str(exc):
            raise
    md = admin.list_topics(topic, timeout=STARTUP_TIMEOUT)
    got = len(md.topics[topic].partitions) if topic in md.topics else 0
    if got != partitions:
        print(f"note: topic {topic} has {got} partitions, not {partitions}", file=sys.stderr)


def percentiles(lat: array) -> dict:
    """p50, p90, p99, p99.9, max and mean (ms) of latencies in seconds."""
    if not lat:
        return {k: None for k in ("p50", "p90", "p99", "p99_9", "max", "mean")}
    try:
        import numpy as np
        a = np.frombuffer(lat, dtype=np.float64) * 1000.0
        q = np.percentile(a, [50, 90, 99, 99.9])
        out = dict(zip(("p50", "p90", "p99", "p99_9"), (float(x) for x in q)))
        out.update(max=float(a.max()), mean=float(a.mean()))
    except ImportError:
        s = sorted(lat)
        pick = lambda p: s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] * 1000.0  # noqa: E731
        out = {"p50": pick(50), "p90": pick(90), "p99": pick(99), "p99_9": pick(99.9),
               "max": s[-1] * 1000.0, "mean": sum(s) / len(s) * 1000.0}
    return {k: round(v, 3) for k, v in out.items()}


def proc_cpu(pid: int | None) -> dict | None:
    """user and system CPU seconds of a process (Linux /proc), or None."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        tick = os.sysconf("SC_CLK_TCK")
        return {"user_s": int(fields[11]) / tick, "sys_s": int(fields[12]) / tick}
    except (OSError, ValueError, IndexError):
        return None


def machine() -> dict:
    """CPUs, memory, Python and platform of this machine."""
    mem = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "memory_gib": mem, "python": platform.python_version(),
            "platform": platform.platform()}


def sluice_version() -> dict:
    """Sluice's package version, the checkout's commit and whether it has uncommitted changes, and Python's."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
        dirty: bool | None = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                                 cwd=root, capture_output=True, text=True, timeout=10).stdout.strip())
    except Exception:
        commit, dirty = None, None
    try:
        from importlib.metadata import version
        sluice_v = version("sluice")
    except Exception:
        sluice_v = None
    return {"sluice": sluice_v, "sluice_commit": commit, "sluice_worktree_dirty": dirty,
            "python": platform.python_version()}


def write_results(result: dict, json_path: str | None, plot_path: str | None = None,
                  plot: Callable[[dict, str], None] | None = None) -> None:
    """The bench commands' outputs: the result as JSON, and its plot as PNG."""
    if json_path:
        with open(json_path, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
        print(f"wrote {json_path}")
    if plot_path and plot is not None:
        plot(result, plot_path)
        print(f"wrote {plot_path}")
