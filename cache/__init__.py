"""Read caches: the tail cache (recent appends). The block cache arrives with object storage."""
from .tail import TailCache

__all__ = ["TailCache"]
