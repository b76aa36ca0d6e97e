"""Share groups (KIP-932, "queues for Kafka"): the share-partition state
machine (``partition.py``) and its durable form (``state.py``), pure logic
with time passed in; share sessions (``sessions.py``, pure) and the partition
owner's ``SharePartitionManager`` (``manager.py``: timers, waiters). The wire
APIs are ``broker/apis/share_*.py``; docs/share-groups.md is the design.
"""
