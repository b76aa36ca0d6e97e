"""Write-ahead log: append, group-commit fsync, recovery (see wal/log.py)."""
from .log import Entry, Location, WalError, WriteAheadLog

__all__ = ["Entry", "Location", "WalError", "WriteAheadLog"]
