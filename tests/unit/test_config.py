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


def test_dynamic_configs_lie_over_the_static_ones_in_kafkas_order():
    """Per broker, then the cluster-wide default, then the file or --override,
    then the default; watchers hear each change of the effective value; a
    stored value this version cannot use is ignored, never fatal."""
    cfg = BrokerConfig.load(overrides=["log.retention.ms=1000", "node.id=2"])
    seen = []
    cfg.watch("message.max.bytes", seen.append)
    assert cfg.source("log.retention.ms") == "STATIC_BROKER_CONFIG"
    assert cfg.source("message.max.bytes") == "DEFAULT_CONFIG"
    changed = cfg.set_dynamic({"log.retention.ms": "2000", "message.max.bytes": "500"},
                              {"message.max.bytes": "700", "num.partitions": "9", "log.retention.bytes": "x"})
    assert changed == ["log.retention.ms", "message.max.bytes"]
    assert (cfg["log.retention.ms"], cfg["message.max.bytes"], cfg["num.partitions"]) == (2000, 700, 1)
    assert cfg["log.retention.bytes"] == -1
    assert cfg.source("log.retention.ms") == "DYNAMIC_DEFAULT_BROKER_CONFIG"
    assert cfg.source("message.max.bytes") == "DYNAMIC_BROKER_CONFIG"
    assert cfg.topic_default("retention.ms") == 2000 and cfg.topic_default("max.message.bytes") == 700
    assert cfg.values["log.retention.ms"] == 1000            # the static layer is untouched
    assert cfg.set_dynamic({"message.max.bytes": "700"}, {"message.max.bytes": "700"}) == ["log.retention.ms"]
    assert cfg.set_dynamic({}, {}) == ["message.max.bytes"]
    assert (cfg["log.retention.ms"], cfg["message.max.bytes"]) == (1000, 1048588)
    assert seen == [700, 1048588]


def test_config_specs_parse_as_kafkas_configdef():
    from broker.config import DYNAMIC_BROKER_CONFIGS, GROUP_CONFIGS, validate_group_config

    spec = DYNAMIC_BROKER_CONFIGS["message.max.bytes"]
    assert spec.parse("message.max.bytes", " 42 ") == 42
    for value, why in (("1_000", "Not a number of type INT"), ("2147483648", "Not a number of type INT"),
                       ("-1", "Value must be at least 0"), ("", "Not a number of type INT")):
        with pytest.raises(ValueError) as ei:
            spec.parse("message.max.bytes", value)
        assert str(ei.value) == f"Invalid value {value} for configuration message.max.bytes: {why}"
    assert DYNAMIC_BROKER_CONFIGS["log.retention.ms"].parse("log.retention.ms", "9223372036854775807") == 2**63 - 1
    assert len(GROUP_CONFIGS) == 21            # Kafka 4.4's, as its DescribeConfigs lists them
    for name, (spec, default, _) in GROUP_CONFIGS.items():
        validate_group_config(name, default)    # every default passes its own checks
    assert validate_group_config("share.renew.acknowledge.enable", "TRUE") is True
    for ok in ("earliest", "latest", "by_duration:PT0S", "by_duration:P1D", "by_duration:P1DT2H3M4.5S"):
        validate_group_config("share.auto.offset.reset", ok)
    for bad in ("EARLIEST", "by_duration:", "by_duration:P", "by_duration:PT", "by_duration:-PT1H", "by_duration:1H"):
        with pytest.raises(ValueError, match="The value must be either 'earliest', 'latest'"):
            validate_group_config("share.auto.offset.reset", bad)


def test_group_configs_follow_the_brokers_bounds_as_kafkas_group_config():
    """GroupConfig.validate: the consumer session and interval within the broker's
    group.consumer.{min,max}.*, each session above its interval (the group's or the
    broker's); GroupConfig.evaluate: a stored value clamped into today's bounds."""
    from broker.config import group_config_int, validate_group_config, validate_group_configs

    default = BrokerConfig.load()
    with pytest.raises(ValueError, match=r"^consumer.session.timeout.ms must be in the range 45000 to 60000 "
                                         r"inclusive.$"):
        validate_group_config("consumer.session.timeout.ms", "2000", default)
    low = BrokerConfig.load(overrides=["group.consumer.min.session.timeout.ms=1000",
                                       "group.consumer.min.heartbeat.interval.ms=500"])
    assert validate_group_config("consumer.session.timeout.ms", "2000", low) == 2000
    validate_group_configs({"consumer.session.timeout.ms": "6000", "consumer.heartbeat.interval.ms": "5000"}, low)
    for configs in ({"consumer.session.timeout.ms": "5000"},       # the broker's 5000 ms interval
                    {"consumer.session.timeout.ms": "2000", "consumer.heartbeat.interval.ms": "2000"}):
        with pytest.raises(ValueError, match="^consumer.session.timeout.ms must be greater than "
                                             "consumer.heartbeat.interval.ms$"):
            validate_group_configs(configs, low)
    own = {"consumer.session.timeout.ms": "2000"}
    assert group_config_int(own, "consumer.session.timeout.ms", low) == 2000
    assert group_config_int(own, "consumer.session.timeout.ms", default) == 45000      # clamped
    assert group_config_int({}, "share.record.lock.duration.ms", default) == 30000      # the broker's


def test_consumer_group_session_and_heartbeat_bounds_as_kafka():
    assert BrokerConfig.load()["group.consumer.min.heartbeat.interval.ms"] == 5000
    with pytest.raises(ValueError, match="group.consumer.heartbeat.interval.ms must be greater than or equal "
                                         "to group.consumer.min.heartbeat.interval.ms"):
        BrokerConfig.load(overrides=["group.consumer.heartbeat.interval.ms=500"])
    with pytest.raises(ValueError, match="group.consumer.session.timeout.ms must be less than or equal to "
                                         "group.consumer.max.session.timeout.ms"):
        BrokerConfig.load(overrides=["group.consumer.session.timeout.ms=90000"])
    ok = BrokerConfig.load(overrides=["group.consumer.heartbeat.interval.ms=500",
                                      "group.consumer.min.heartbeat.interval.ms=500"])
    assert ok["group.consumer.heartbeat.interval.ms"] == 500
