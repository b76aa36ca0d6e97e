"""Benchmarks and the test/benchmark harness: not the broker.

The broker never imports this package (tests/unit/test_layout.py checks it);
``sluice bench ...`` loads it on use (``bench.cli``). Modules:

- ``launch`` — ``BrokerProcess``: one ``sluice serve`` subprocess (tests and benches);
- ``minio`` — ``MinioServer``: one MinIO subprocess (tests and benches);
- ``kafka_reference`` — Apache Kafka KRaft brokers to compare against;
- ``ports`` — free loopback ports below the ephemeral range;
- ``cli`` — the ``sluice bench`` argument parser;
- ``common`` — helpers the benches share (topics, machine facts, results);
- ``produce``, ``fsync``, ``groups``, ``storage``, ``compare``, ``latency``, ``failover`` — one bench each;
  ``produce_wal`` is ``produce --wal`` (the WAL on disk and in the bucket).
"""
