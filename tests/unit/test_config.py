"""broker.config: renamed broker configs keep working as deprecated aliases;
cleanup.policy=compact is refused until log compaction exists."""
from __future__ import annotations

import logging

import pytest

from broker import config as config_module
from broker.config import (
    BROKER_DEFAULTS,
    COMPACT_REFUSED,
    DEPRECATED_BROKER_CONFIGS,
    BrokerConfig,
    validate_topic_config,
)


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(config_module, "_warned_deprecated", set())


def deprecations(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]


def test_old_merge_config_names_apply_to_the_new_ones_with_one_warning(caplog):
    assert set(DEPRECATED_BROKER_CONFIGS.values()) <= set(BROKER_DEFAULTS)
    assert not set(DEPRECATED_BROKER_CONFIGS) & set(BROKER_DEFAULTS)
    with caplog.at_level(logging.WARNING, logger="broker.config"):
        cfg = BrokerConfig.load(file_text="s3.compaction.interval.ms=1234\n",
                                overrides=["s3.compaction.max.segments=7",
                                           "s3.compaction.io.max.bytes.per.second=0"])
        assert cfg["s3.merge.interval.ms"] == 1234
        assert cfg["s3.merge.max.segments"] == 7
        assert cfg["s3.merge.io.max.bytes.per.second"] == 0
        assert cfg["s3.merge.target.bytes"] == 64 << 20            # untouched: the default
        assert "s3.compaction.interval.ms" not in cfg.values
        BrokerConfig.load(overrides=["s3.compaction.interval.ms=5"])  # again: no second warning
    got = deprecations(caplog)
    assert len(got) == 3
    assert any("s3.compaction.interval.ms" in m and "s3.merge.interval.ms" in m for m in got)


def test_the_new_name_wins_over_its_deprecated_alias(caplog):
    with caplog.at_level(logging.WARNING, logger="broker.config"):
        for file_text, overrides in (("s3.merge.target.bytes=100\n", ["s3.compaction.target.bytes=200"]),
                                     ("s3.compaction.target.bytes=200\n", ["s3.merge.target.bytes=100"]),
                                     ("", ["s3.merge.target.bytes=100", "s3.compaction.target.bytes=200"]),
                                     ("", ["s3.compaction.target.bytes=200", "s3.merge.target.bytes=100"])):
            assert BrokerConfig.load(file_text=file_text, overrides=overrides)["s3.merge.target.bytes"] == 100
    assert len(deprecations(caplog)) == 1
    cfg = BrokerConfig()
    cfg.set("s3.compaction.max.bytes.per.run", "42")               # set() takes the old name too
    assert cfg["s3.merge.max.bytes.per.run"] == 42
    with pytest.raises(ValueError, match="unknown broker config"):
        BrokerConfig.load(overrides=["s3.compaction.nope=1"])


def test_cleanup_policy_compact_is_refused_with_a_clear_message():
    assert validate_topic_config("cleanup.policy", "delete") == "delete"
    for value in ("compact", "delete,compact", "compact,delete"):
        with pytest.raises(ValueError) as ei:
            validate_topic_config("cleanup.policy", value)
        assert str(ei.value) == COMPACT_REFUSED
    assert "cleanup.policy=compact is not supported yet" in COMPACT_REFUSED and "use delete" in COMPACT_REFUSED
    with pytest.raises(ValueError, match="must be delete"):
        validate_topic_config("cleanup.policy", "shred")
