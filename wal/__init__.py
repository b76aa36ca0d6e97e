"""Write-ahead log: append, group-commit fsync, recovery (see wal/log.py)."""
from .log import Entry, Location, WalError, WriteAheadLog, is_location, read_entries

__all__ = ["Entry", "Location", "WalError", "WriteAheadLog", "is_location", "read_entries"]
