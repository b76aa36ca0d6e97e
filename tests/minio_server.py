"""A real MinIO server for tests (a pytest plugin: register it in tests/conftest.py
with ``pytest_plugins = ["minio_server"]``, next to any other plugins listed there).

Fixtures:

- ``minio_binary`` (session): path of the pinned MinIO binary, built by
  deploy/install-minio.sh after collection and before the first test when any
  selected test needs it (minutes on a cold Go cache, instant once cached).
- ``minio`` (session): one shared running ``MinioServer``. A test that stops
  it must start it again before returning (``try/finally``); tests that want
  outages should prefer ``minio_factory``.
- ``minio_bucket`` (function): a fresh, empty bucket on the shared server.
- ``minio_factory`` (function): ``minio_factory()`` starts a private server
  (own data dir and port), stopped at the end of the test.

``MinioServer`` keeps its data dir and port across ``stop()``/``kill()`` and
``start()``, so clients configured with its endpoint reconnect after an outage.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from broker.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
INSTALL_SCRIPT = ROOT / "deploy" / "install-minio.sh"


@dataclass
class MinioServer:
    binary: Path
    data_dir: Path
    port: int = 0
    access_key: str = "sluice-test"
    secret_key: str = "sluice-test-secret"
    region: str = "us-east-1"
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def env(self) -> dict[str, str]:
        """The AWS-chain variables that point a client (or `sluice serve`) here."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
        }

    def start(self, timeout: float = 60.0) -> "MinioServer":
        if self.running:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()   # below the ephemeral range: restarts find it free
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-minio.log"
        env = dict(os.environ,
                   MINIO_ROOT_USER=self.access_key, MINIO_ROOT_PASSWORD=self.secret_key,
                   MINIO_BROWSER="off", MINIO_UPDATE="off")
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [str(self.binary), "server", str(self.data_dir),
                 "--address", f"127.0.0.1:{self.port}", "--quiet"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self._healthy("live") and self._healthy("ready"):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"MinIO did not become ready on {self.endpoint}; "
                           f"log: {self.log_text()[-3000:]}")

    def _healthy(self, what: str) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/minio/health/{what}", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM and wait (MinIO shuts down cleanly)."""
        if self.running:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def kill(self) -> None:
        """SIGKILL: an abrupt outage."""
        if self.running:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> "MinioServer":
        self.stop()
        return self.start()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def client(self):
        """A synchronous boto3 S3 client with root credentials."""
        import boto3
        from botocore.config import Config
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=self.region,
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}))

    def create_bucket(self, name: str | None = None) -> str:
        name = name or f"test-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name


def install_minio() -> Path:
    """Run deploy/install-minio.sh (reuses the cached build) and return the binary."""
    res = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True,
                         timeout=3600)
    if res.returncode != 0:
        raise RuntimeError(f"deploy/install-minio.sh failed:\n{res.stderr[-3000:]}")
    return Path(res.stdout.strip().splitlines()[-1])


_installed: dict[str, Path | Exception] = {}


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "minio: the test needs MinIO (built before any test runs, see below)")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    """Build MinIO once, before the first test, if a selected test needs it: a cold
    build takes minutes and must not count against one test's timeout. A test
    needs it if it uses one of the fixtures above or carries the ``minio`` marker
    (for fixtures requested dynamically, e.g. ``pytest.param(..., marks=pytest.mark.minio)``)."""
    if config.option.collectonly or "binary" in _installed:
        return
    if any("minio_binary" in item.fixturenames or item.get_closest_marker("minio")
           for item in items):
        try:
            _installed["binary"] = install_minio()
        except Exception as e:              # reported by the fixture, in the tests that need it
            _installed["binary"] = e


@pytest.fixture(scope="session")
def minio_binary() -> Path:
    found = _installed.get("binary")
    if found is None:
        found = _installed["binary"] = install_minio()
    if isinstance(found, Exception):
        raise found
    return found


@pytest.fixture(scope="session")
def minio(minio_binary, tmp_path_factory):
    server = MinioServer(minio_binary, tmp_path_factory.mktemp("minio") / "data")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def minio_bucket(minio) -> str:
    if not minio.running:      # a previous test stopped it and did not restart it
        minio.start()
    return minio.create_bucket()


@pytest.fixture
def minio_factory(minio_binary, tmp_path):
    started: list[MinioServer] = []

    def make(name: str = "minio") -> MinioServer:
        server = MinioServer(minio_binary, tmp_path / name / "data")
        started.append(server)
        return server.start()

    yield make
    for s in started:
        s.stop()


def open_test_store(request, tmp_path, **s3_options):
    """The store a parametrized test asked for: "filesystem" on tmp_path, or
    "s3" on a fresh bucket of the session's real MinIO (never a mock)."""
    from objectstore import FilesystemObjectStore
    from objectstore.s3 import S3ObjectStore

    if request.param == "filesystem":
        return FilesystemObjectStore(tmp_path / "objects")
    minio = request.getfixturevalue("minio")
    bucket = request.getfixturevalue("minio_bucket")
    return S3ObjectStore(bucket, "cluster-1", endpoint_url=minio.endpoint,
                         aws_access_key_id=minio.access_key,
                         aws_secret_access_key=minio.secret_key, **s3_options)
