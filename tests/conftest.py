"""Shared fixtures: a real ``sluice serve`` subprocess on a free loopback port."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from broker.ports import free_port

ROOT = Path(__file__).resolve().parent.parent

pytest_plugins = ["kafka_tools", "minio_server"]


@dataclass
class BrokerProcess:
    """A broker subprocess; restartable on the same data dir (for crash tests)."""

    data_dir: Path
    overrides: list[str] = field(default_factory=list)
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)   # added to os.environ (AWS chain, crash points)
    port: int = 0
    metrics_port: int | None = None    # what ``--metrics 127.0.0.1:0`` bound, read at each start
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> "BrokerProcess":
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-broker.log"
        # Reuse the port across restarts so clients configured with it reconnect; chosen
        # below the ephemeral range, so no client connection takes it while we are down.
        if not self.port:
            self.port = free_port()
        listen = f"127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "broker", "serve", "--listen", listen,
                "--data-dir", str(self.data_dir)]
        for o in self.overrides:
            args += ["--override", o]
        args += self.extra_args
        log = open(self.log_path, "ab")
        env = dict(os.environ, **self.env) if self.env else None
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, cwd=ROOT, env=env)
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith(b"metrics on "):
                self.metrics_port = int(line.split(b":")[-1])
            if line.startswith(b"ready on "):
                self.port = int(line.split(b":")[-1])
                return self
            if not line and self.proc.poll() is not None:
                break
        raise RuntimeError(f"broker did not start: {line!r}; log: {self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no chance to flush anything."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait for a clean exit; returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def log_text(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def wipe(self) -> None:
        """Delete the data dir (WAL, local metadata): the broker must rebuild from the bucket."""
        assert self.proc is None or self.proc.poll() is not None, "stop the broker first"
        shutil.rmtree(self.data_dir, ignore_errors=True)


@pytest.fixture
def broker_factory(tmp_path):
    started: list[BrokerProcess] = []

    def make(*overrides: str, name: str = "broker", extra_args: list[str] = (),
             env: dict[str, str] | None = None) -> BrokerProcess:
        b = BrokerProcess(tmp_path / name, list(overrides), list(extra_args), dict(env or {}))
        started.append(b)
        return b.start()

    yield make
    for b in started:
        b.stop()


@pytest.fixture
def broker(broker_factory) -> BrokerProcess:
    return broker_factory()
