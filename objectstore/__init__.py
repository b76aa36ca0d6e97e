"""Object storage (S3 and filesystem backends, data objects, manifests).

Not built yet: until it is, a partition's only copy is the broker's WAL.
See ARCHITECTURE.md, "Roadmap".
"""
