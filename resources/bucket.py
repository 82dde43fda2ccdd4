"""The bucket: where raw files land and where every layer's files are written.

One resource, one place that knows the storage system. The embedded default is a local directory;
GCS plugs in behind the same methods. Paths are bucket-relative, '/'-separated.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field


@dataclass(frozen=True)
class ObjectInfo:
    path: str  # bucket-relative, '/'-separated
    size: int
    # Changes whenever the content may have changed: mtime_ns+size locally, the generation on GCS.
    generation: str
    updated: float  # seconds since the epoch


class BucketResource(ConfigurableResource):
    """A bucket of objects addressed by relative paths.

    ``url`` is a local directory (the embedded default). Writes are atomic: a reader sees the old
    object or the new one, never half of one.
    """

    url: str = Field(description="Local directory of the bucket, e.g. ./work/bucket")

    @property
    def root(self) -> Path:
        return Path(self.url).expanduser().resolve()

    def _local(self, path: str) -> Path:
        rel = path.strip("/")
        if not rel or rel.startswith("..") or "/../" in f"/{rel}/":
            raise ValueError(f"invalid bucket path {path!r}")
        return self.root / rel

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects under ``prefix`` in lexicographic path order (temp files of writers excluded)."""
        base = self.root / prefix.strip("/") if prefix.strip("/") else self.root
        if not base.exists():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in sorted(filenames):
                if name.startswith(".tmp-"):
                    continue
                full = Path(dirpath) / name
                st = full.stat()
                yield ObjectInfo(
                    path=full.relative_to(self.root).as_posix(),
                    size=st.st_size,
                    generation=f"{st.st_mtime_ns}-{st.st_size}",
                    updated=st.st_mtime,
                )

    def exists(self, path: str) -> bool:
        return self._local(path).is_file()

    def read_bytes(self, path: str) -> bytes:
        return self._local(path).read_bytes()

    def write_bytes(self, path: str, data: bytes) -> ObjectInfo:
        """Write atomically: temp file in the same directory, fsync, rename over the target."""
        target = self._local(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        st = target.stat()
        return ObjectInfo(path=path.strip("/"), size=st.st_size, generation=f"{st.st_mtime_ns}-{st.st_size}", updated=st.st_mtime)

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix``; returns how many."""
        count = 0
        for info in list(self.list(prefix)):
            self._local(info.path).unlink(missing_ok=True)
            count += 1
        return count

    def local_path(self, path: str) -> Path:
        """The file behind ``path`` (local backend only): for readers that want a path."""
        return self._local(path)


def content_hash(data: bytes) -> str:
    """Stable content identity used for data versions (sha256, hex)."""
    return hashlib.sha256(data).hexdigest()
