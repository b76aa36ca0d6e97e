"""Read caches: the tail cache (recent appends) and the block cache (object-store ranges)."""
from .block import BlockCache, ShortRead
from .tail import TailCache

__all__ = ["BlockCache", "ShortRead", "TailCache"]
