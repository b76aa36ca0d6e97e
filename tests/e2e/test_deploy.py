"""The deploy/ files for a local cluster: deploy/cluster.sh starts MinIO and N
brokers that form one cluster and stops them cleanly, and deploy/compose.yaml
is a valid Compose file (checked with Debian's `docker-compose config`: there is
no Docker engine here to run it). Neither test skips: a missing tool fails."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from bench.ports import free_port, free_port_run
from tests.e2e.test_crash import wait_until

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "deploy" / "cluster.sh"
COMPOSE = ROOT / "deploy" / "compose.yaml"
INSTALL_COMPOSE = ROOT / "deploy" / "install-docker-compose.sh"


def _tail(text: str, n: int = 3000) -> str:
    return text if len(text) <= n else "..." + text[-n:]


def _gone(pid: int) -> bool:
    """The process exited (a zombie waiting for its reaper counts as exited)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return "\nState:\tZ" in status


class ClusterScript:
    """Runs deploy/cluster.sh with an isolated state dir and free ports."""

    def __init__(self, state: Path):
        self.state = state
        self.port = free_port_run(2)
        minio_port = free_port()
        for _ in range(100):                                # bounded: a port outside the brokers' two
            if minio_port not in (self.port, self.port + 1):
                break
            minio_port = free_port()
        self.env = dict(os.environ, SLUICE_CLUSTER_DIR=str(state), SLUICE_CLUSTER_PORT=str(self.port),
                        SLUICE_MINIO_PORT=str(minio_port), SLUICE_CLUSTER_BUCKET="deploy-test",
                        SLUICE_CLUSTER_TIMEOUT="60", SLUICE_PYTHON=sys.executable)
        self.env.pop("SLUICE_CLUSTER_METRICS_PORT", None)

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(CLUSTER), *args], env=self.env, cwd=ROOT, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def pids(self) -> dict[str, int]:
        return {f.stem: int(f.read_text()) for f in self.state.glob("*.pid")}

    def describe(self, res: subprocess.CompletedProcess) -> str:
        logs = "".join(f"\n--- {f.name}\n{_tail(f.read_text(errors='replace'), 2000)}"
                       for f in sorted(self.state.glob("*.log")))
        return f"exit {res.returncode}\n--- stdout\n{res.stdout}\n--- stderr\n{_tail(res.stderr)}{logs}"


@pytest.mark.timeout(240)
def test_cluster_script_starts_two_brokers_serves_and_stops(tmp_path, minio_binary):
    # minio_binary: MinIO is built (or found in the cache) before the first test, as cluster.sh wants it
    cluster = ClusterScript(tmp_path / "cluster")
    seen: dict[str, int] = {}
    try:
        started = time.monotonic()
        res = cluster.run("start", "2", "--override", "broker.heartbeat.interval.ms=200")
        assert res.returncode == 0, cluster.describe(res)
        assert time.monotonic() - started < 60, cluster.describe(res)
        bootstrap = f"127.0.0.1:{cluster.port},127.0.0.1:{cluster.port + 1}"
        assert f"bootstrap: {bootstrap}" in res.stdout, cluster.describe(res)
        seen = cluster.pids()
        assert sorted(seen) == ["broker-1", "broker-2", "minio"], cluster.describe(res)
        assert not any(_gone(pid) for pid in seen.values()), cluster.describe(res)

        # started again: says so, starts nothing
        again = cluster.run("start", "2")
        assert again.returncode == 0 and "already running" in again.stdout, cluster.describe(again)
        assert cluster.pids() == seen
        status = cluster.run("status")
        assert status.returncode == 0 and bootstrap in status.stdout, cluster.describe(status)

        # one cluster: Metadata from either broker lists both, each at its port
        admin = AdminClient({"bootstrap.servers": bootstrap})
        wait_until(lambda: len(admin.list_topics(timeout=10).brokers) == 2, 15, "both brokers in Metadata")
        md = AdminClient({"bootstrap.servers": f"127.0.0.1:{cluster.port + 1}"}).list_topics(timeout=10)
        assert {b.id: (b.host, b.port) for b in md.brokers.values()} == {
            1: ("127.0.0.1", cluster.port), 2: ("127.0.0.1", cluster.port + 1)}

        # produce and consume a few records through the cluster
        admin.create_topics([NewTopic("deployed", 2, 1)])["deployed"].result(15)
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                             "linger.ms": 5})
        acked: dict[int, list[bytes]] = {0: [], 1: []}

        def on_delivery(err, msg):
            assert err is None, err
            acked[msg.partition()].append(msg.value())
        for i in range(20):
            producer.produce("deployed", value=b"r%d" % i, partition=i % 2, on_delivery=on_delivery)
        assert producer.flush(30) == 0
        assert sum(map(len, acked.values())) == 20

        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "deploy-test",
                             "enable.auto.commit": False, "enable.partition.eof": False})
        consumer.assign([TopicPartition("deployed", p, 0) for p in (0, 1)])
        got: dict[int, list[bytes]] = {0: [], 1: []}
        deadline = time.monotonic() + 30
        while sum(map(len, got.values())) < 20 and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None or msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
            if msg.error() is None:
                got[msg.partition()].append(msg.value())
        consumer.close()
        assert got == acked

        # stop: brokers shut down cleanly, then MinIO; nothing is left running
        res = cluster.run("stop")
        assert res.returncode == 0, cluster.describe(res)
        assert "broker 1 stopped cleanly" in res.stdout and "broker 2 stopped cleanly" in res.stdout, \
            cluster.describe(res)
        assert "MinIO stopped" in res.stdout, cluster.describe(res)
        wait_until(lambda: all(_gone(pid) for pid in seen.values()), 5, "the cluster's processes to exit")
        assert cluster.pids() == {}
        status = cluster.run("status")
        assert status.returncode == 3, cluster.describe(status)
        again = cluster.run("stop")
        assert again.returncode == 0 and "not running" in again.stdout, cluster.describe(again)
    finally:
        if any(not _gone(pid) for pid in cluster.pids().values()):
            cluster.run("stop")
        for pid in {**seen, **cluster.pids()}.values():       # last resort: only what this test started
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)


def _compose_config(*args: str, cwd: Path, compose: Path = COMPOSE) -> subprocess.CompletedProcess:
    res = subprocess.run(["bash", str(INSTALL_COMPOSE)], capture_output=True, text=True, timeout=600,
                         stdin=subprocess.DEVNULL)
    assert res.returncode == 0, f"deploy/install-docker-compose.sh failed:\n{_tail(res.stdout + res.stderr)}"
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose is not on PATH after deploy/install-docker-compose.sh"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLUICE_MINIO_", "COMPOSE_", "DOCKER_"))}    # the file's defaults
    return subprocess.run([tool, "-f", str(compose), "config", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


def _services(normalized: str) -> dict[str, str]:
    """Each service's block of `docker-compose config`'s normalized YAML, by name."""
    body = re.split(r"^services:\n", normalized, maxsplit=1, flags=re.M)[-1]
    out: dict[str, str] = {}
    name = None
    for line in body.splitlines():
        if line and not line.startswith(" "):
            break                                      # the next top-level key
        m = re.fullmatch(r"  (\S+):", line)
        if m:
            name = m.group(1)
            out[name] = ""
        elif name is not None:
            out[name] += line + "\n"
    return out


@pytest.mark.timeout(600)
def test_compose_file_is_valid(tmp_path):
    res = _compose_config(cwd=tmp_path)
    assert res.returncode == 0, f"docker-compose config:\n{res.stderr}"
    services = _services(res.stdout)
    assert sorted(services) == ["broker1", "broker2", "broker3", "create-bucket", "minio"], res.stdout
    for n in (1, 2, 3):
        block = services[f"broker{n}"]
        port = 9091 + n
        assert f"- --node-id\n    - '{n}'\n" in block, block
        assert f"advertised.listeners=PLAINTEXT://localhost:{port}" in block, block
        assert f"0.0.0.0:{port}" in block and f"- 127.0.0.1:{port}:{port}/tcp" in block, block
        assert "s3://sluice" in block and "AWS_ENDPOINT_URL_S3: http://minio:9000" in block, block
        assert "dockerfile: deploy/Dockerfile" in block and f"context: {ROOT}" in block, block
        assert "condition: service_completed_successfully" in block, block
    assert "ensure-bucket" in services["create-bucket"]
    assert (ROOT / "deploy" / "Dockerfile").is_file()
    # every published port is on the host's loopback only
    published = re.findall(r"^    - (\S+/tcp)$", res.stdout, re.M)
    assert published and all(p.startswith("127.0.0.1:") for p in published), published

    # the check is real: docker-compose rejects a broken file
    bad = tmp_path / "bad.yaml"
    bad.write_text(COMPOSE.read_text().replace("    ports:\n", "    portz:\n", 1))
    res = _compose_config(cwd=tmp_path, compose=bad)
    assert res.returncode != 0 and "portz" in res.stderr, res.stdout + res.stderr
