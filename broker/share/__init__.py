"""Share groups (KIP-932, "queues for Kafka"): the share-partition state
machine (``partition.py``) and its durable form (``state.py``), pure logic
with time passed in. The wire APIs and where the state lives in the broker
are designed in docs/share-groups.md and built in a later stage.
"""
