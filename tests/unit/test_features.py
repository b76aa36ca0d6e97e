"""The feature table (broker/apis/features.py), UpdateFeatures' validation as
Kafka's controller, and the Kafka 4.4 features it must account for."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from broker.apis import features
from broker.apis.features import FEATURES, NOT_ADVERTISED, Feature
from broker.apis.update_features import check_update

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "kafka-4.4-api-versions.json"


def test_every_kafka_feature_is_implemented_or_has_a_reason():
    kafka = json.loads(REFERENCE.read_text())["supported_features"]
    for name in kafka:
        assert (name in FEATURES) != (name in NOT_ADVERTISED), name
    for name, f in FEATURES.items():
        lo, hi = kafka[name]
        assert lo <= f.min_version <= f.finalized <= f.max_version <= hi, name


@pytest.fixture
def group_version(monkeypatch):
    """group.version 0-1, finalized at 1 (KIP-848 groups), whatever FEATURES says."""
    monkeypatch.setitem(features.FEATURES, "group.version", Feature(0, 1, finalized=1))
    yield


def test_update_checks_as_kafka(group_version):
    msg = "Invalid update version {} for feature {}. "
    assert check_update("group.version", 1, 1, 1) is None                  # no change
    assert check_update("group.version", 0, 2, 1) is None                  # a safe downgrade
    assert check_update("group.version", 0, 1, 1) == msg.format(0, "group.version") + (
        "Can't downgrade the version of this feature without setting the upgrade type to either safe or "
        "unsafe downgrade.")
    assert check_update("group.version", 2, 1, 1) == msg.format(2, "group.version") + \
        "Local controller 1 only supports versions 0-1"
    assert check_update("x", 1, 1, 3) == msg.format(1, "x") + "Local controller 3 does not support this feature."
    assert check_update("x", 0, 3, 1) == msg.format(0, "x") + "Feature x not found."
    assert check_update("x", -1, 1, 1) == msg.format(-1, "x") + "A feature version cannot be less than 0."
    assert check_update("x", 1, 4, 1) == msg.format(1, "x") + "The controller does not support the given upgrade type."
    assert features.finalized() == {"group.version": 1, "share.version": 1} and features.finalized_epoch() == 0


def test_share_groups_are_share_version_1():
    """KIP-932 is served (ShareGroupHeartbeat and the rest); level 2, dead-letter queues, is not."""
    assert FEATURES["share.version"] == Feature(0, 1, finalized=1)
    assert check_update("share.version", 1, 1, 1) is None
    assert check_update("share.version", 2, 1, 1) == ("Invalid update version 2 for feature share.version. "
                                                       "Local controller 1 only supports versions 0-1")
