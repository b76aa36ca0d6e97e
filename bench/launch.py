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
"""
from __future__ import annotations

import os
import selectors
import shutil
import signal
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
