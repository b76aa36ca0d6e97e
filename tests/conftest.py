"""Shared fixtures: a real ``sluice serve`` subprocess on a free loopback port.

The launcher is ``bench.launch.BrokerProcess`` (shared with the benches)."""
from __future__ import annotations

from pathlib import Path

import pytest

from bench.launch import BrokerProcess

ROOT = Path(__file__).resolve().parent.parent

pytest_plugins = ["kafka_tools", "minio_server"]


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
