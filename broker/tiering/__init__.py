"""Tiering to the object store: a broker's background tasks and its partitions' storage state.

- ``tasks.py``     ``Tiering``: starts and stops the tasks below together
- ``upload.py``    ``UploadTask``: cut, gather, one data PUT, manifest updates, per-partition WAL trim
- ``merge.py``     ``MergeTask``: small segments merged into per-partition objects (paced)
- ``retention.py`` ``RetentionTask``: retention.ms / retention.bytes advance log starts
- ``gc.py``        ``GarbageCollector``: deletes this broker's objects no manifest in the bucket references
- ``periodic.py``  ``PeriodicTask``: the loop merge, retention and GC share
- ``state.py``     ``PartitionStorage`` (``partition.storage``): epoch, manifest, upload progress, WAL pins
- ``metered_store.py`` counts every object-store request and byte

Nothing is imported here: ``broker.log.partition`` imports ``state.py``, and
the tasks import ``broker.log``.
"""
