"""A real MinIO server for tests (a pytest plugin: register it in tests/conftest.py
with ``pytest_plugins = ["minio_server"]``, next to any other plugins listed there).
The server itself is ``bench.minio.MinioServer`` (shared with the benches).

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

from pathlib import Path

import pytest

from bench.minio import MinioServer, install_minio

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
