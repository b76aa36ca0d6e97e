"""A partition's object-storage state: ``PartitionStorage``, reached as ``partition.storage``.

``Partition`` (broker/log/partition.py) keeps the Kafka semantics (offsets,
high watermark, producers, batch index); what the bucket knows of the
partition and how far the upload got lives here, in one object whose fields
change only through its methods, called by its writers:

======================  =========================================================  ==========================
field                   meaning                                                    written by
======================  =========================================================  ==========================
``epoch``               manifest epoch this broker owns the partition at           ``ReplicaManager``
                        (None: not claimed yet)                                    (``claimed``: at start, and
                                                                                   for a partition gained later)
``manifest``            the last manifest read or written (objectstore.Manifest)   start (``loaded``), upload
                                                                                   task (``recorded``),
                                                                                   ``ReplicaManager`` (claim:
                                                                                   ``set_manifest``), merge
                                                                                   task (``set_manifest``)
``uploaded_end``        the manifest's next_offset: recorded in the bucket         start, upload task
``upload_from``         first offset not yet in an uploaded data object            start, upload task
                                                                                   (``uploaded``)
``manifest_log_start``  log start the manifest holds                               start, upload task
``unconfirmed``         uploaded (SegmentRef, index entries, producer state)       upload task (``uploaded``,
                        whose manifest update has not landed yet                   ``recorded``)
``offline``             KAFKA_STORAGE_ERROR: storage broke an invariant, or the    start (``storage_failed``),
                        partition was fenced                                       upload task (``fence``)
``fenced``              a newer owner claimed it (the manifest raised Fenced):     upload task (``fence``)
                        no longer ours
``log_start_pins``      (offset, WAL segment) of log-start entries (kind 2) not    ``ReplicaManager``
                        yet in the manifest                                        (``log_start_written``:
                                                                                   DeleteRecords, retention,
                                                                                   WAL replay), upload task
                                                                                   (``recorded``)
``share_pins``          (sequence number, WAL segment) of share-state entries     ``ReplicaManager``
                        (kind 5) not yet in the manifest's ``share_state``          (``share_written``), upload
                                                                                   task (``share_recorded``)
``storage_error_pin``   WAL segment of the entry that took the partition           start (``storage_failed``)
                        offline at recovery
======================  =========================================================  ==========================

Everyone else (API handlers, retention, GC, ``Partition`` itself) only reads.
Nothing here is touched per produced batch.

``wal_pin(partition)`` is the partition's share of the WAL trim rule: the
oldest WAL segment it still needs (None: none), see ``broker/tiering/upload.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from wal.log import is_location


@dataclass(slots=True, eq=False)
class PartitionStorage:
    epoch: int | None = None
    manifest: object | None = None
    uploaded_end: int = 0
    upload_from: int = 0
    manifest_log_start: int = 0
    unconfirmed: list = field(default_factory=list)
    offline: bool = False
    fenced: bool = False
    log_start_pins: list = field(default_factory=list)
    storage_error_pin: int | None = None
    share_pins: list = field(default_factory=list)
    share_seq: int = 0

    # -- start (ReplicaManager) and claims ----------------------------------------
    def claimed(self, epoch: int) -> None:
        """This broker owns the partition at ``epoch`` (its claim landed)."""
        self.epoch = epoch

    def loaded(self, m) -> None:
        """Adopt a manifest read at start: everything below its next_offset is
        uploaded and recorded."""
        self.manifest = m
        self.manifest_log_start = m.log_start_offset
        self.uploaded_end = self.upload_from = m.next_offset

    def storage_failed(self, wal_segment: int) -> None:
        """Recovery found acknowledged data missing: serve KAFKA_STORAGE_ERROR.
        The partition's WAL entries from ``wal_segment`` on stay (data safety)."""
        self.offline = True
        if self.storage_error_pin is None or wal_segment < self.storage_error_pin:
            self.storage_error_pin = wal_segment

    def log_start_written(self, offset: int, wal_segment: int) -> None:
        """A log-start entry (DeleteRecords, retention, or one replayed at
        start) sits in ``wal_segment``; the WAL keeps it until the manifest
        holds that log start."""
        if offset > self.manifest_log_start:
            self.log_start_pins.append((offset, wal_segment))

    def share_written(self, wal_segment: int) -> None:
        """A share-state entry (kind 5) sits in ``wal_segment``; the WAL keeps
        it until a manifest update carries the snapshots taken after it."""
        self.share_seq += 1
        self.share_pins.append((self.share_seq, wal_segment))

    def share_recorded(self, upto: int) -> None:
        """A manifest holding the share snapshots taken at sequence ``upto`` landed."""
        self.share_pins = [(n, s) for n, s in self.share_pins if n > upto]

    # -- the upload task ---------------------------------------------------------
    def uploaded(self, ref, entries: list, producer_state: dict | None) -> None:
        """``entries`` (index entries, WAL locations) are in the data object
        of ``ref``; the manifest does not say so yet."""
        self.unconfirmed.append((ref, entries, producer_state))
        self.upload_from = ref.last_offset + 1

    def recorded(self, m) -> None:
        """The manifest update holding every unconfirmed segment landed."""
        self.manifest = m
        self.uploaded_end = m.next_offset
        self.manifest_log_start = m.log_start_offset
        self.unconfirmed.clear()
        if self.log_start_pins:
            self.log_start_pins = [(o, s) for o, s in self.log_start_pins if o > m.log_start_offset]

    def fence(self) -> None:
        """A newer owner claimed the partition: stop serving it. Its WAL
        entries are no longer this broker's to keep."""
        self.fenced = True
        self.offline = True

    # -- the merge task, and the claim of a new partition ---------------------------
    def set_manifest(self, m) -> None:
        """The manifest as just read (claim) or written by a merge's swap
        (same offsets, other objects): upload positions do not move."""
        self.manifest = m

    # -- readers -------------------------------------------------------------------
    def all_recorded(self, partition) -> bool:
        """Everything the partition holds is in its manifest (data, producer
        state, log start): a hand-off may flip it (docs/cluster.md section 7)."""
        return (self.epoch is not None and not self.offline and not self.unconfirmed
                and self.upload_from >= partition.log_end_offset
                and partition.log_start_offset <= self.manifest_log_start and not self.share_pins)

    def wal_pin(self, partition) -> int | None:
        """The oldest WAL segment this partition still needs, or None.

        - Its oldest batch at or above the manifest's uploaded end: the first
          unconfirmed one (uploaded, manifest update not landed), else the
          first indexed batch from ``upload_from`` on still in the WAL.
        - Its oldest log-start entry the manifest does not hold yet, and its
          oldest share-state entry no stored share snapshot covers.
        - If recovery took it offline, the entry where that happened.
        A fenced partition (no longer ours) pins nothing.
        """
        if self.fenced:
            return None
        pins = [s for _, s in self.log_start_pins] + [s for _, s in self.share_pins]
        if self.storage_error_pin is not None:
            pins.append(self.storage_error_pin)
        if self.unconfirmed:
            oldest = self.unconfirmed[0][1][0]
        else:
            oldest = next(partition.entries_from(self.upload_from), None)
        if oldest is not None and is_location(oldest[4]):
            pins.append(oldest[4][0])       # a WAL Location: (segment id, position, length)
        return min(pins) if pins else None
