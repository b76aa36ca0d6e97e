"""Kafka wire protocol, request handlers, partitions and the ``sluice`` CLI."""
