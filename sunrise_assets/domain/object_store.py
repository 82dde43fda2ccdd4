"""What the domain code needs of a bucket: ``resources.bucket.BucketResource`` is one (a local
directory or GCS); tests may pass anything with these methods."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol


class StoredObject(Protocol):
    path: str  # bucket-relative
    generation: str
    md5: str | None


class ObjectStore(Protocol):
    def list(self, prefix: str = "", *, start_after: str = "") -> Iterator[StoredObject]: ...

    def exists(self, path: str) -> bool: ...

    def read_bytes(self, path: str) -> bytes: ...

    def write_bytes(self, path: str, data: bytes) -> StoredObject: ...

    def describe(self, path: str) -> str: ...
