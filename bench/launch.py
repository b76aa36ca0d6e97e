"""``BrokerProcess``: one ``sluice serve`` subprocess, for the tests and the benches.

``python -m broker serve`` on a free loopback port below the kernel's ephemeral
range (``bench.ports``), kept across restarts so clients configured with it
reconnect; optionally ``--metrics 127.0.0.1:0`` (the port the broker reports in
its ``metrics on HOST:PORT`` line is read at each start). ``start()`` returns
once the broker prints ``ready on HOST:PORT`` (bounded: a broker that does not
is stopped and ``RuntimeError`` raised with its log's tail); its stdout is
drained from then on, its stderr appends to ``log_path``. ``stop()`` is SIGTERM
(SIGKILL after ``stop_timeout``), ``kill()`` SIGKILL, ``wipe()`` deletes the
data dir (the broker must rebuild from the bucket), ``remove()`` deletes
everything the launcher made.

``wait_for_cluster(addresses)`` waits (bounded) until every broker lists all of
them in Metadata: brokers on one bucket see a new member on their next
heartbeat, so a cluster is formed a little after each printed ``ready on``.
``python -m bench.launch wait-cluster HOST:PORT ...`` is the same for
deploy/cluster.sh.
"""
from __future__ import annotations

import argparse
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .ports import free_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class BrokerProcess:
    """A broker subprocess; restartable on the same data dir and port (crash tests, benches)."""

    data_dir: Path
    overrides: list[str] = field(default_factory=list)      # --override KEY=VALUE each
    extra_args: list[str] = field(default_factory=list)     # more `sluice serve` arguments
    env: dict[str, str] = field(default_factory=dict)       # added to os.environ (AWS chain, crash points)
    port: int = 0                      # 0: a free one at the first start, then kept
    metrics: bool = False              # serve --metrics 127.0.0.1:0
    log_path: Path | None = None       # default: DATA_DIR-broker.log next to the data dir
    stop_timeout: float = 20.0         # SIGTERM to SIGKILL in stop()
    workdir: Path | None = None        # a temp dir made by temporary(), deleted by remove()
    metrics_port: int | None = None    # what the broker reported binding for --metrics, read at each start
    metrics_host: str | None = None
    proc: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        if self.log_path is None:
            self.log_path = self.data_dir.parent / f"{self.data_dir.name}-broker.log"
        self.log_path = Path(self.log_path)

    @classmethod
    def temporary(cls, parent_dir: str | os.PathLike | None = None, prefix: str = "sluice-bench-",
                  **kw) -> "BrokerProcess":
        """One whose data dir (``data``) and log (``broker.log``) live in a new temp dir
        under ``parent_dir`` (default: the system's), removed by ``remove()``."""
        work = Path(tempfile.mkdtemp(prefix=prefix, dir=parent_dir))
        return cls(work / "data", log_path=work / "broker.log", workdir=work, **kw)

    @classmethod
    def start_temporary(cls, parent_dir: str | os.PathLike | None = None, timeout: float = 30.0,
                        **kw) -> "BrokerProcess":
        """``temporary(parent_dir, **kw)``, started; if it does not start, its dir is
        removed and the RuntimeError raised."""
        b = cls.temporary(parent_dir, **kw)
        try:
            return b.start(timeout)
        except BaseException:
            b.stop()
            b.remove()
            raise

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_address(self) -> str | None:
        """HOST:PORT of the metrics endpoint, if the broker reported one."""
        return f"{self.metrics_host}:{self.metrics_port}" if self.metrics_port else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def args(self) -> list[str]:
        args = [sys.executable, "-m", "broker", "serve", "--listen", self.bootstrap,
                "--data-dir", str(self.data_dir)]
        if self.metrics:
            args += ["--metrics", "127.0.0.1:0"]
        for o in self.overrides:
            args += ["--override", o]
        return args + list(self.extra_args)

    def start(self, timeout: float = 30.0) -> "BrokerProcess":
        # Reuse the port across restarts so clients configured with it reconnect; chosen
        # below the ephemeral range, so no client connection takes it while we are down.
        if not self.port:
            self.port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.metrics_port = self.metrics_host = None
        env = dict(os.environ, **self.env) if self.env else None
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.args(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=log, cwd=ROOT, env=env)
        last = self._wait_ready(timeout)
        if last is None:
            threading.Thread(target=_drain, args=(self.proc.stdout,), daemon=True).start()
            return self
        self.stop()
        raise RuntimeError(f"broker did not start: {last!r}; log: {self.log_text()[-3000:]}")

    def _wait_ready(self, timeout: float) -> bytes | None:
        """Read stdout lines until ``ready on`` (None) or EOF, exit or the deadline
        (the last line read). Only whole lines count."""
        fd = self.proc.stdout.fileno()
        buf = line = b""
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                if not sel.select(timeout=min(left, 0.5)):
                    if self.proc.poll() is not None:
                        break
                    continue
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.startswith(b"metrics on "):
                        host, _, port = line[len(b"metrics on "):].decode().strip().rpartition(":")
                        self.metrics_host, self.metrics_port = host, int(port)
                    elif line.startswith(b"ready on "):
                        self.port = int(line.rpartition(b":")[2])
                        return None
        return line or buf

    def kill(self) -> None:
        """SIGKILL: no chance to flush anything."""
        if self.running:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM and wait for a clean exit (SIGKILL after ``timeout``, default
        ``stop_timeout``); returns the exit code (None if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, n: int = 3000) -> str:
        """The last ``n`` bytes of the log as text ("" if it cannot be read)."""
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def wipe(self) -> None:
        """Delete the data dir (WAL, local metadata): the broker must rebuild from the bucket."""
        assert not self.running, "stop the broker first"
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def remove(self) -> None:
        """Delete what the launcher made: ``temporary()``'s dir, else the data dir and the log."""
        assert not self.running, "stop the broker first"
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.log_path.unlink(missing_ok=True)

    def scrape(self) -> dict[tuple[str, tuple], float]:
        """Every sample of the metrics endpoint: {(name, sorted label items): value}."""
        import urllib.request

        from prometheus_client.parser import text_string_to_metric_families
        text = urllib.request.urlopen(f"http://{self.metrics_address}/metrics", timeout=10).read().decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(text) for s in f.samples}


def _drain(pipe) -> None:
    """Read a broker's stdout to its end, so it can never block on a full pipe."""
    try:
        while pipe.read1(65536):
            pass
    except (OSError, ValueError):
        pass


def listed_brokers(host: str, port: int, timeout: float = 5.0) -> set[tuple[str, int]]:
    """The brokers (advertised host, port) that the broker at ``host:port`` lists
    in a Metadata (v1, no topics) answer."""
    from kafka.protocol.metadata import MetadataRequest, MetadataResponse
    req = MetadataRequest(topics=[])
    req.API_VERSION = 1
    req.with_header(correlation_id=1, client_id="sluice-wait-cluster")
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(bytes(req.encode(header=True, framed=True)))
        buf = b""
        while len(buf) < 4 or len(buf) < 4 + struct.unpack_from(">i", buf)[0]:
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError(f"{host}:{port} closed the connection")
            buf += chunk
    size = struct.unpack_from(">i", buf)[0]
    resp = MetadataResponse[1].decode(buf[8:4 + size])        # after the size and the correlation id
    return {(b.host, b.port) for b in resp.brokers}


def wait_for_cluster(addresses: list[tuple[str, int]], timeout: float = 60.0) -> dict[tuple[str, int], set]:
    """Poll each broker's Metadata until every one lists every address (at most
    ``timeout`` s). Returns what each listed last: complete if it is formed."""
    want = set(addresses)
    seen: dict[tuple[str, int], set] = {a: set() for a in addresses}
    deadline = time.monotonic() + timeout
    while True:
        for a in addresses:
            if not want <= seen[a]:
                try:
                    seen[a] = listed_brokers(*a, timeout=min(5.0, max(0.5, deadline - time.monotonic())))
                except OSError:
                    seen[a] = set()
        if all(want <= v for v in seen.values()) or time.monotonic() >= deadline:
            return seen
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.launch")
    sub = parser.add_subparsers(dest="command", required=True)
    wc = sub.add_parser("wait-cluster", help="wait until every broker lists all of them in Metadata")
    wc.add_argument("addresses", nargs="+", metavar="HOST:PORT")
    wc.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    args = parser.parse_args(argv)
    addresses = []
    for text in args.addresses:
        host, _, port = text.rpartition(":")
        addresses.append((host, int(port)))
    started = time.monotonic()
    seen = wait_for_cluster(addresses, args.timeout)
    missing = {f"{h}:{p}": sorted(f"{a}:{b}" for a, b in set(addresses) - v)
               for (h, p), v in seen.items() if not set(addresses) <= v}
    if missing:
        print(f"not formed after {args.timeout:.0f}s; brokers missing from each one's Metadata: {missing}",
              file=sys.stderr)
        return 1
    print(f"{len(addresses)} broker(s) list each other ({time.monotonic() - started:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
