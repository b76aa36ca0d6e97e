"""Transactions are not supported yet: a transactional client must fail at
once with a clear error, not retry until its timeout. FindCoordinator for a
transactional id answers TRANSACTIONAL_ID_AUTHORIZATION_FAILED (fatal to
librdkafka and the Java client) with Sluice's reason as the message."""
from __future__ import annotations

import pytest
from confluent_kafka import KafkaException, Producer


@pytest.mark.timeout(60)
def test_librdkafka_transactional_producer_fails_at_once(broker):
    p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "orders-tx"})
    with pytest.raises(KafkaException) as info:
        p.init_transactions(300)        # retrying would outlast the test's timeout
    err = info.value.args[0]
    assert err.name() == "TRANSACTIONAL_ID_AUTHORIZATION_FAILED"
    assert err.fatal()
    assert "does not support transactions" in err.str()


@pytest.mark.timeout(120)
def test_java_transactional_producer_fails_at_once(broker, kafka_tools):
    res = kafka_tools.run("kafka-producer-perf-test", "--topic", "tx", "--num-records", "10",
                          "--record-size", "100", "--throughput", "-1", "--transactional-id", "orders-tx",
                          "--producer-props", f"bootstrap.servers={broker.bootstrap}", "max.block.ms=300000",
                          timeout=90, check=False)
    out = res.stdout + res.stderr
    assert res.returncode != 0, res.describe()
    assert "TransactionalIdAuthorizationException" in out, res.describe()
