"""Apache Kafka to compare Sluice against (issue 5): one broker, or a 3-node cluster.

``KafkaBroker(workdir)`` runs one KRaft node with ``process.roles=broker,controller``
(static quorum of one voter, ``node.id=1``) from the jars that
``deploy/install-kafka.sh`` caches, via ``deploy/kafka-tool``:

* both listeners (PLAINTEXT and CONTROLLER) on free loopback ports;
* ``log.dirs`` under ``workdir``, formatted with ``kafka-storage format`` and a
  random cluster id;
* the broker's log (log4j on stdout, plus JVM warnings on stderr) goes to
  ``workdir/kafka.log``;
* ``start()`` returns once a Kafka Metadata request (confluent-kafka) names the
  broker; ``stop()`` sends SIGTERM, waits, then SIGKILLs. Every wait is bounded.

``KafkaCluster(workdir, nodes=3)`` runs ``nodes`` such combined controller+broker
nodes (``node.id`` 1..n, a static quorum of all n voters, one cluster id), each a
``KafkaBroker`` in ``workdir/nodeN`` with its own ports, log dirs and
``kafka.log``; ``start()`` returns once Metadata names every broker, ``stop()``
stops them all (SIGTERM to all at once, then SIGKILL after the timeout). Used for
the partition move of ``sluice bench compare`` (g).

Used by ``sluice bench compare`` and by the e2e tests. Also runnable:

    python -m bench.kafka_reference [--workdir DIR] [--nodes 3]   # start, print the bootstrap, stop on Ctrl-C
"""
from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from .ports import free_ports

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "deploy" / "kafka-tool"
INSTALL = ROOT / "deploy" / "install-kafka.sh"


def kafka_libs() -> str:
    """The jar directory (installs Kafka on first use; cached afterwards)."""
    env = os.environ.get("KAFKA_LIBS")
    if env:
        return env
    proc = subprocess.run([str(INSTALL)], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"deploy/install-kafka.sh failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout.strip().splitlines()[-1]


def kafka_version(libs: str | None = None) -> str:
    libs = libs or kafka_libs()
    for name in os.listdir(libs):
        if name.startswith("kafka-clients-") and name.endswith(".jar"):
            return name[len("kafka-clients-"):-len(".jar")]
    return "unknown"


def java_version() -> str:
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30).stderr
        return out.splitlines()[0].strip() if out else "unknown"
    except Exception:
        return "unknown"


def random_cluster_id() -> str:
    """What ``kafka-storage random-uuid`` prints (Kafka's Uuid: url-safe base64, no padding).

    Like Kafka, never one that starts with "-": a command line would take it for an option.
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


class KafkaBroker:
    """One combined controller+broker KRaft node on loopback. Use as a context manager or start()/stop().

    Alone (the default) it is a one-voter cluster, ``node.id=1``. ``KafkaCluster`` passes
    ``node_id``, both ports, the quorum's ``voters`` and a shared ``cluster_id``.
    """

    def __init__(self, workdir: str | os.PathLike | None = None, heap: str = "-Xmx1g -Xms1g",
                 overrides: dict[str, str] | None = None, libs: str | None = None, *, node_id: int = 1,
                 port: int = 0, controller_port: int = 0, voters: str | None = None,
                 cluster_id: str | None = None) -> None:
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="sluice-kafka-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.heap = heap
        self.overrides = dict(overrides or {})
        self.libs = libs
        self.node_id = node_id
        self.port = port
        self.controller_port = controller_port
        self._fixed_ports = bool(port and controller_port)   # else new free ports at every start
        self.voters = voters
        self.cluster_id = cluster_id
        self.log_path = self.workdir / "kafka.log"
        self.config_path = self.workdir / "server.properties"
        self.log_dir = self.workdir / "kraft-logs"
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def _env(self) -> dict:
        return dict(os.environ, KAFKA_LIBS=self.libs, KAFKA_HEAP_OPTS=self.heap)

    def write_config(self) -> None:
        if not self._fixed_ports:
            self.port, self.controller_port = free_ports(2)
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.voters or f"{self.node_id}@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.log_dir),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
        }
        props.update(self.overrides)
        self.config_path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))

    def start(self, timeout: float = 120.0) -> "KafkaBroker":
        deadline = time.monotonic() + timeout
        self.libs = self.libs or kafka_libs()
        self.write_config()
        self.format(deadline)
        self.launch()
        try:
            self._wait_ready(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def format(self, deadline: float) -> None:
        """``kafka-storage format`` of this node's log dir (the cluster id: given, else a new one)."""
        self.cluster_id = self.cluster_id or random_cluster_id()
        fmt = subprocess.run(
            [str(TOOL), "kafka-storage", "format", f"--cluster-id={self.cluster_id}",
             f"--config={self.config_path}"],
            capture_output=True, text=True, env=dict(self._env(), KAFKA_HEAP_OPTS="-Xmx256m"),
            timeout=max(5.0, deadline - time.monotonic()))
        if fmt.returncode != 0:
            raise RuntimeError(f"kafka-storage format failed ({fmt.returncode}):\n{fmt.stdout}\n{fmt.stderr}")

    def launch(self) -> None:
        """Start the node's JVM (returns at once; ``_wait_ready`` waits for it)."""
        self._log = open(self.log_path, "ab")
        # kafka-tool execs java: self.proc.pid is the broker JVM itself. Own session, so
        # a kill never reaches the caller's process group.
        self.proc = subprocess.Popen([str(TOOL), "kafka-server-start", str(self.config_path)],
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=self._env(), start_new_session=True)

    def _wait_ready(self, deadline: float, brokers: int = 1, others: "list[KafkaBroker] | None" = None) -> None:
        """Until a Metadata request to this node names ``brokers`` brokers and a controller.

        ``others``: nodes of the same cluster whose exit also ends the wait (with their log).
        """
        from confluent_kafka.admin import AdminClient

        admin = None
        last = None
        while time.monotonic() < deadline:
            for node in [self, *(others or [])]:
                if node.proc.poll() is not None:
                    raise RuntimeError(f"Kafka node {node.node_id} exited with {node.proc.returncode}; "
                                       f"log tail:\n{node.log_tail()}")
            # Don't let librdkafka spam connection-refused errors while the JVM starts.
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
            except OSError as exc:
                last = exc
                time.sleep(0.5)
                continue
            if admin is None:
                admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
            try:
                md = admin.list_topics(timeout=min(5.0, max(0.5, deadline - time.monotonic())))
                if len(md.brokers) >= brokers and md.controller_id >= 0:
                    return
                last = f"Metadata names brokers {sorted(md.brokers)}, controller {md.controller_id}"
            except Exception as exc:  # noqa: BLE001 - keep polling until the deadline
                last = exc
            time.sleep(0.5)
        raise TimeoutError(f"Kafka did not answer Metadata at {self.bootstrap} ({last}); log tail:\n{self.log_tail()}")

    def log_tail(self, n: int = 4000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - n))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def terminate(self) -> None:
        """SIGTERM without waiting (``KafkaCluster.stop`` signals every node, then waits)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` s (a KRaft node shuts down in a few seconds), then SIGKILL."""
        rc = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.terminate()
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(self.proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    self.proc.wait(10)
            rc = self.proc.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return rc

    def cleanup(self) -> None:
        """Remove the log dirs (and the whole workdir if this object made it)."""
        shutil.rmtree(self.workdir if self._own_dir else self.log_dir, ignore_errors=True)

    def __enter__(self) -> "KafkaBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class KafkaCluster:
    """``nodes`` combined controller+broker KRaft nodes on loopback, one static quorum of all of them.

    Node ``i`` (1..n) is ``self.nodes[i - 1]``, a ``KafkaBroker`` in ``workdir/node<i>``: its
    own free PLAINTEXT and CONTROLLER ports, log dirs and ``kafka.log``. The internal topics
    keep replication factor 1 (what the benchmark moves is a topic of its own).
    """

    def __init__(self, workdir: str | os.PathLike | None = None, nodes: int = 3, heap: str = "-Xmx512m -Xms512m",
                 overrides: dict[str, str] | None = None, libs: str | None = None) -> None:
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="sluice-kafka-cluster-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.n = nodes
        self.heap = heap
        self.overrides = dict(overrides or {})
        self.libs = libs
        self.cluster_id: str | None = None
        self.nodes: list[KafkaBroker] = []

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    def node(self, node_id: int) -> KafkaBroker:
        return self.nodes[node_id - 1]

    def start(self, timeout: float = 180.0) -> "KafkaCluster":
        """Format and start every node; return once Metadata names all of them. Bounded by ``timeout``."""
        deadline = time.monotonic() + timeout
        self.libs = self.libs or kafka_libs()
        self.cluster_id = random_cluster_id()
        ports = free_ports(2 * self.n)
        voters = ",".join(f"{i + 1}@127.0.0.1:{ports[2 * i + 1]}" for i in range(self.n))
        self.nodes = [KafkaBroker(self.workdir / f"node{i + 1}", heap=self.heap, overrides=self.overrides,
                                  libs=self.libs, node_id=i + 1, port=ports[2 * i],
                                  controller_port=ports[2 * i + 1], voters=voters, cluster_id=self.cluster_id)
                      for i in range(self.n)]
        try:
            for node in self.nodes:
                node.write_config()
            # The formats are independent JVM runs: overlap them.
            errors: list[BaseException] = []

            def fmt(node: KafkaBroker) -> None:
                try:
                    node.format(deadline)
                except BaseException as exc:  # noqa: BLE001 - re-raised below
                    errors.append(exc)

            threads = [threading.Thread(target=fmt, args=(node,)) for node in self.nodes]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            if errors:
                raise errors[0]
            for node in self.nodes:
                node.launch()
            self.nodes[0]._wait_ready(deadline, brokers=self.n, others=self.nodes[1:])
        except BaseException:
            self.stop()
            raise
        return self

    def alive(self) -> bool:
        return bool(self.nodes) and all(node.proc is not None and node.proc.poll() is None for node in self.nodes)

    def log_tail(self, n: int = 2000) -> str:
        return "\n".join(f"--- node {node.node_id} ({node.log_path})\n{node.log_tail(n)}" for node in self.nodes)

    def stop(self, timeout: float = 30.0) -> list[int | None]:
        """SIGTERM every node at once, wait up to ``timeout`` s in all, SIGKILL what is left; exit codes."""
        for node in self.nodes:
            node.terminate()
        deadline = time.monotonic() + timeout
        return [node.stop(max(0.1, deadline - time.monotonic())) for node in self.nodes]

    def cleanup(self) -> None:
        """Remove the nodes' log dirs (and the whole workdir if this object made it)."""
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            for node in self.nodes:
                node.cleanup()

    def __enter__(self) -> "KafkaCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="Run Apache Kafka KRaft on loopback (one node, or a cluster of "
                                            "--nodes combined controller+broker nodes) until Ctrl-C.")
    p.add_argument("--workdir", default=None, help="default: a new temp dir, removed at the end")
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--heap", default=None, help="default: -Xmx1g -Xms1g for one node, -Xmx512m -Xms512m each "
                                                "for a cluster")
    a = p.parse_args(argv)
    if a.nodes > 1:
        kb = KafkaCluster(a.workdir, nodes=a.nodes, heap=a.heap or "-Xmx512m -Xms512m")
    else:
        kb = KafkaBroker(a.workdir, heap=a.heap or "-Xmx1g -Xms1g")
    t = time.monotonic()
    try:
        kb.start()
    except BaseException:
        kb.cleanup()
        raise
    where = (f"pid {kb.pid}, log {kb.log_path}" if isinstance(kb, KafkaBroker) else
             ", ".join(f"node {n.node_id}: pid {n.pid}, log {n.log_path}" for n in kb.nodes))
    print(f"Kafka {kafka_version(kb.libs)} ready on {kb.bootstrap} after {time.monotonic() - t:.1f}s "
          f"({where})", flush=True)
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    except KeyboardInterrupt:
        pass
    finally:
        print(f"stopped: exit {kb.stop()}", flush=True)
        kb.cleanup()
    return 0


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    sys.exit(main())
