"""The bucket: where raw files land and where every layer's files are written.

One resource, one place that knows the storage system, two backends chosen by the url:

- a local directory (the embedded default): ``/data/bucket`` or ``./.sunrise/bucket``;
- Google Cloud Storage: ``gs://bucket-name/optional/prefix``, through dagster-gcp's ``GCSResource``
  (google-cloud-storage). With ``STORAGE_EMULATOR_HOST`` set, the client talks to that emulator
  (fake-gcs-server in the tests) with anonymous credentials.

Paths are bucket-relative and '/'-separated. Writes are atomic on both: a reader sees the old object
or the new one, never half of one (temp file + rename locally; a GCS upload is atomic by itself).
A local temp file left by a killed writer (``.tmp-<name>~<host>~<pid>~<random>``) is never listed or
read; the next write of the same object removes it once its writer is gone, and
``remove_leftovers`` (run by every ingest) sweeps the whole bucket.

The raw zone (``raw/`` and ``raw_index/``, PHI) can live elsewhere: with ``raw_url`` set, every path
under those two prefixes goes to that location (a second directory or gs:// bucket, with its own
IAM), everything else to ``url``. Callers keep using one resource and the same relative paths.
On GCS every write carries a generation precondition (``if_generation_match``: 0 to create, the
generation it replaces otherwise), so a concurrent or retried writer never clobbers silently: an
identical re-write is a no-op, a different object written meanwhile raises ``ConcurrentWriteError``.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import os
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from dagster import ConfigurableResource
from pydantic import Field

if TYPE_CHECKING:  # google-cloud-storage is imported only when a gs:// bucket is used
    from google.cloud.storage import Blob, Bucket, Client

GCS_SCHEME = "gs://"
# The PHI zone: raw files as sites deliver them, and the index of which raw files make each night.
RAW_ZONE_PREFIXES = ("raw", "raw_index")
TEMP_PREFIX = ".tmp-"
# A temp file whose writer cannot be checked (another host) is removed once this old: a write of
# one object takes seconds, so an hour-old temp file belongs to a writer that died.
TEMP_GRACE_S = 3600.0


@dataclass(frozen=True)
class ObjectInfo:
    path: str  # bucket-relative, '/'-separated
    size: int
    # Changes whenever the content may have changed: mtime_ns+size locally, the generation on GCS.
    generation: str
    updated: float  # seconds since the epoch
    # Hex MD5 of the content: always on GCS (the object's md5Hash); locally only for what was just
    # written (a local listing does not read every file to hash it).
    md5: str | None = None


class ConcurrentWriteError(RuntimeError):
    """Another writer changed the object between our read of its generation and our write."""


def content_hash(data: bytes) -> str:
    """Stable content identity used for data versions (sha256, hex)."""
    return hashlib.sha256(data).hexdigest()


def split_gcs_url(url: str) -> tuple[str, str]:
    """``gs://bucket/a/b/`` -> ("bucket", "a/b")."""
    if not url.startswith(GCS_SCHEME):
        raise ValueError(f"{url!r} is not a gs:// url")
    bucket, _, prefix = url[len(GCS_SCHEME) :].partition("/")
    if not bucket:
        raise ValueError(f"{url!r} names no bucket (expected gs://bucket[/prefix])")
    return bucket, prefix.strip("/")


def _check_relative(path: str) -> str:
    rel = path.strip("/")
    if not rel or rel.startswith("..") or "/../" in f"/{rel}/" or "/./" in f"/{rel}/" or "//" in rel:
        raise ValueError(f"invalid bucket path {path!r}")
    if any(part.startswith(TEMP_PREFIX) for part in rel.split("/")):
        raise ValueError(f"invalid bucket path {path!r}: a writer's temp file is never data")
    return rel


def in_raw_zone(path: str) -> bool:
    """Whether ``path`` (or the folder ``path``) is under raw/ or raw_index/."""
    return path.strip("/").split("/", 1)[0] in RAW_ZONE_PREFIXES


# -- local temp files: named after their target and their writer, so leftovers can be told apart --
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _temp_name(target: str) -> str:
    return f"{TEMP_PREFIX}{target}~{_HOST}~{os.getpid()}~{secrets.token_hex(4)}"


def _writer_gone(name: str, now: float, mtime: float) -> bool:
    """A temp file is a leftover when its writer (this host, that pid) is dead, or, when the writer
    cannot be checked (another host, an older naming), when it is older than TEMP_GRACE_S."""
    parts = name[len(TEMP_PREFIX) :].rsplit("~", 3)
    if len(parts) == 4 and parts[1] == _HOST and parts[2].isdigit():
        pid = int(parts[2])
        if pid == os.getpid():
            return False  # this process's own write in progress (another thread)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # alive, someone else's
        return False
    return now - mtime > TEMP_GRACE_S


def _remove_leftover(path: Path, now: float) -> bool:
    try:
        if _writer_gone(path.name, now, path.stat().st_mtime):
            path.unlink()
            return True
    except FileNotFoundError:  # its writer finished (renamed it) or another sweep removed it
        pass
    return False


def _gcs_client(project: str | None) -> Client:
    """One client per process (a forked child makes its own) and per emulator endpoint."""
    return _cached_gcs_client(project, os.environ.get("STORAGE_EMULATOR_HOST"), os.getpid())


@cache
def _cached_gcs_client(project: str | None, emulator: str | None, pid: int) -> Client:
    from dagster_gcp.gcs import GCSResource

    del emulator, pid  # cache key only: google-cloud-storage reads STORAGE_EMULATOR_HOST itself
    return GCSResource(project=project).get_client()


def _md5_hex(b64: str | None) -> str | None:
    return base64.b64decode(b64).hex() if b64 else None


@lru_cache(maxsize=256)
def _resolved_root(url: str, cwd: str) -> Path:
    """A local bucket's directory, resolved once per URL and working directory: resolving it at every
    object (an lstat per path component) was half of `sunrise ingest`'s plan over a local archive."""
    return Path(url).expanduser().resolve()


class BucketResource(ConfigurableResource):
    """A bucket of objects addressed by relative paths; a local directory or ``gs://bucket/prefix``."""

    url: str = Field(description="The bucket: a local directory (e.g. ./work/bucket) or gs://bucket-name[/prefix]")
    raw_url: str | None = Field(
        default=None,
        description=(
            "Where raw/ and raw_index/ (PHI) live, when not in `url`: a local directory or gs://bucket[/prefix] "
            "with its own IAM. None: one bucket for every layer (the embedded default)."
        ),
    )
    project: str | None = Field(default=None, description="GCP project of the GCS client (default: the environment's)")
    list_page_size: int = Field(default=1000, description="Objects per page when listing a GCS prefix")

    # -- backend ----------------------------------------------------------------------------
    def _zone(self, path: str) -> BucketResource:
        """The backend holding ``path``: the raw zone's for raw/ and raw_index/ when it is separate."""
        if self.raw_url and in_raw_zone(path):
            return _raw_zone(self.raw_url, self.project, self.list_page_size)
        return self

    @property
    def is_gcs(self) -> bool:
        return self.url.startswith(GCS_SCHEME)

    def is_available(self) -> bool:
        """The local directory exists, or the GCS bucket can be reached (the raw zone's too, when separate)."""
        if self.raw_url and not self._zone("raw").is_available():
            return False
        if self.is_gcs:
            return self._gcs_bucket().exists()
        return self.root.is_dir()

    @property
    def root(self) -> Path:
        """The local directory of the bucket (local backend only)."""
        if self.is_gcs:
            raise ValueError(f"{self.url} is a GCS bucket: it has no local root directory")
        return _resolved_root(self.url, os.getcwd())

    def _local(self, path: str) -> Path:
        return self.root / _check_relative(path)

    def _gcs_bucket(self) -> Bucket:
        name, _ = split_gcs_url(self.url)
        return _gcs_client(self.project).bucket(name)

    def _gcs_name(self, path: str) -> str:
        _, prefix = split_gcs_url(self.url)
        rel = _check_relative(path)
        return f"{prefix}/{rel}" if prefix else rel

    def _gcs_info(self, blob: Blob) -> ObjectInfo:
        _, prefix = split_gcs_url(self.url)
        rel = blob.name[len(prefix) + 1 :] if prefix else blob.name
        return ObjectInfo(
            path=rel,
            size=int(blob.size or 0),
            generation=str(blob.generation),
            updated=blob.updated.timestamp() if blob.updated else 0.0,
            md5=_md5_hex(blob.md5_hash),
        )

    def describe(self, path: str) -> str:
        """Where ``path`` lives, for messages (``gs://bucket/prefix/path`` or the local file)."""
        zone = self._zone(path)
        if zone is not self:
            return zone.describe(path)
        return f"{self.url.rstrip('/')}/{path.strip('/')}" if self.is_gcs else str(self._local(path))

    # -- listing ----------------------------------------------------------------------------
    def list(self, prefix: str = "", *, start_after: str = "") -> Iterator[ObjectInfo]:
        """Objects under the folder ``prefix`` in lexicographic path order (writers' temp files excluded),
        only those after ``start_after`` when given: the same order on both backends, so a cursor works.

        On GCS the listing is paginated (``list_page_size`` objects per request) and lazy. With a
        separate raw zone, a listing of raw/ or raw_index/ reads that zone; of the whole bucket, both.
        """
        if self.raw_url and not prefix.strip("/"):
            yield from heapq.merge(
                self._zone("raw")._list_own("", start_after),
                (o for o in self._list_own("", start_after) if not in_raw_zone(o.path)),
                key=lambda o: o.path,
            )
            return
        zone = self._zone(prefix) if prefix.strip("/") else self
        if zone is not self:
            yield from zone.list(prefix, start_after=start_after)
            return
        yield from self._list_own(prefix, start_after)

    def _list_own(self, prefix: str, start_after: str) -> Iterator[ObjectInfo]:
        if self.is_gcs:
            yield from self._gcs_list(prefix, start_after)
            return
        root = self.root
        base = root / prefix.strip("/") if prefix.strip("/") else root
        if not base.exists():
            return
        paths = []
        for dirpath, _dirnames, filenames in os.walk(base):
            paths += [
                (Path(dirpath) / n).relative_to(root).as_posix() for n in filenames if not n.startswith(TEMP_PREFIX)
            ]
        for rel in sorted(paths):
            if rel <= start_after:
                continue
            try:
                st = (root / rel).stat()
            except FileNotFoundError:  # deleted while listing
                continue
            yield ObjectInfo(
                path=rel,
                size=st.st_size,
                generation=f"{st.st_mtime_ns}-{st.st_size}",
                # ctime too: a copy that keeps the mtime (cp -p, rsync -t) is still news to a sensor.
                updated=max(st.st_mtime, st.st_ctime),
            )

    def _gcs_list(self, prefix: str, start_after: str = "") -> Iterator[ObjectInfo]:
        name, base = split_gcs_url(self.url)
        rel = prefix.strip("/")
        full = "/".join(p for p in (base, rel) if p)
        full = f"{full}/" if full else ""
        client = _gcs_client(self.project)
        # start_offset is inclusive; the object equal to start_after is skipped below.
        offset = self._gcs_name(start_after) if start_after else None
        blobs = client.list_blobs(name, prefix=full, page_size=self.list_page_size, start_offset=offset)
        for page in blobs.pages:
            for blob in page:
                if blob.name.endswith("/") or (
                    offset and blob.name == offset
                ):  # folder placeholders; the cursor itself
                    continue
                yield self._gcs_info(blob)

    # -- reading ----------------------------------------------------------------------------
    def exists(self, path: str) -> bool:
        zone = self._zone(path)
        if zone is not self:
            return zone.exists(path)
        if self.is_gcs:
            return self._gcs_bucket().blob(self._gcs_name(path)).exists()
        return self._local(path).is_file()

    def info(self, path: str) -> ObjectInfo | None:
        """The object's generation / md5 / updated time, or None when it does not exist."""
        zone = self._zone(path)
        if zone is not self:
            return zone.info(path)
        if self.is_gcs:
            blob = self._gcs_bucket().get_blob(self._gcs_name(path))
            return None if blob is None else self._gcs_info(blob)
        target = self._local(path)
        if not target.is_file():
            return None
        st = target.stat()
        return ObjectInfo(
            path.strip("/"),
            st.st_size,
            f"{st.st_mtime_ns}-{st.st_size}",
            st.st_mtime,
            hashlib.md5(target.read_bytes()).hexdigest(),
        )

    def read_bytes(self, path: str) -> bytes:
        zone = self._zone(path)
        if zone is not self:
            return zone.read_bytes(path)
        if self.is_gcs:
            from google.api_core.exceptions import NotFound

            try:
                return self._gcs_bucket().blob(self._gcs_name(path)).download_as_bytes()
            except NotFound as exc:
                raise FileNotFoundError(f"{self.describe(path)}: no such object") from exc
        return self._local(path).read_bytes()

    # -- writing ----------------------------------------------------------------------------
    def write_bytes(self, path: str, data: bytes) -> ObjectInfo:
        """Write atomically. Locally: temp file in the same directory, fsync, rename over the target.

        On GCS: with a generation precondition; rewriting identical content is a no-op (the object
        and its generation stay), a conflicting concurrent write raises ``ConcurrentWriteError``.
        """
        zone = self._zone(path)
        if zone is not self:
            return zone.write_bytes(path, data)
        if self.is_gcs:
            return self._gcs_write(path, data)
        target = self._local(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        now = time.time()
        for leftover in target.parent.glob(f"{TEMP_PREFIX}{target.name}~*"):  # a killed earlier write's
            _remove_leftover(leftover, now)
        tmp = target.parent / _temp_name(target.name)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
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
        return ObjectInfo(
            path=path.strip("/"),
            size=st.st_size,
            generation=f"{st.st_mtime_ns}-{st.st_size}",
            updated=st.st_mtime,
            md5=hashlib.md5(data).hexdigest(),
        )

    def _gcs_write(self, path: str, data: bytes, *, expected_generation: int | None = None) -> ObjectInfo:
        from google.api_core.exceptions import PreconditionFailed

        bucket = self._gcs_bucket()
        name = self._gcs_name(path)
        md5 = hashlib.md5(data).hexdigest()
        if expected_generation is None:
            current = bucket.get_blob(name)
            if current is not None and _md5_hex(current.md5_hash) == md5:
                return self._gcs_info(current)  # identical content already there: nothing to do
            expected_generation = 0 if current is None else int(current.generation)
        blob = bucket.blob(name)
        try:
            blob.upload_from_string(data, content_type=_content_type(path), if_generation_match=expected_generation)
        except PreconditionFailed as exc:
            now = bucket.get_blob(name)
            if now is not None and _md5_hex(now.md5_hash) == md5:
                return self._gcs_info(now)  # a retried or concurrent writer wrote the same bytes
            found = "no object" if now is None else f"generation {now.generation}"
            wanted = "no object" if expected_generation == 0 else f"generation {expected_generation}"
            raise ConcurrentWriteError(
                f"{self.describe(path)}: expected {wanted} but found {found}: another writer changed it "
                f"with different content; not overwritten"
            ) from exc
        return self._gcs_info(blob)

    def replace_bytes(self, path: str, data: bytes, expected_generation: str | int | None) -> ObjectInfo:
        """Compare-and-swap: write only if the object is still at ``expected_generation``
        (None: it must not exist). GCS only; raises ``ConcurrentWriteError`` otherwise."""
        zone = self._zone(path)
        if zone is not self:
            return zone.replace_bytes(path, data, expected_generation)
        if not self.is_gcs:
            raise ValueError("replace_bytes with a generation precondition is for the GCS backend")
        return self._gcs_write(
            path, data, expected_generation=0 if expected_generation is None else int(expected_generation)
        )

    def delete(self, path: str) -> bool:
        """Delete one object; False when it did not exist."""
        zone = self._zone(path)
        if zone is not self:
            return zone.delete(path)
        if self.is_gcs:
            from google.api_core.exceptions import NotFound

            try:
                self._gcs_bucket().blob(self._gcs_name(path)).delete()
                return True
            except NotFound:
                return False
        try:
            self._local(path).unlink()
            return True
        except FileNotFoundError:
            return False

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix``; returns how many."""
        zone = self._zone(prefix)
        if zone is not self:
            return zone.delete_prefix(prefix)
        count = 0
        if self.is_gcs:
            from google.api_core.exceptions import NotFound

            bucket = self._gcs_bucket()
            for info in list(self.list(prefix)):
                try:
                    bucket.blob(self._gcs_name(info.path)).delete()
                    count += 1
                except NotFound:
                    pass
            return count
        for info in list(self.list(prefix)):
            self._local(info.path).unlink(missing_ok=True)
            count += 1
        return count

    def remove_leftovers(self) -> int:
        """Remove the temp files of interrupted writes in the whole bucket (both zones); how many.

        Only the local backend has any: a GCS upload creates its object whole or not at all.
        """
        count = self._zone("raw").remove_leftovers() if self.raw_url else 0
        if self.is_gcs or not self.root.is_dir():
            return count
        now = time.time()
        for dirpath, _dirnames, filenames in os.walk(self.root):
            for name in filenames:
                if name.startswith(TEMP_PREFIX):
                    count += _remove_leftover(Path(dirpath) / name, now)
        return count

    def local_path(self, path: str) -> Path:
        """The file behind ``path`` (local backend only): for readers that want a path."""
        zone = self._zone(path)
        if zone is not self:
            return zone.local_path(path)
        return self._local(path)


@cache
def _raw_zone(url: str, project: str | None, list_page_size: int) -> BucketResource:
    """The raw zone's own backend (built once per process and location)."""
    return BucketResource(url=url, project=project, list_page_size=list_page_size)


def _content_type(path: str) -> str:
    suffix = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    return {"json": "application/json", "parquet": "application/vnd.apache.parquet"}.get(
        suffix, "application/octet-stream"
    )
