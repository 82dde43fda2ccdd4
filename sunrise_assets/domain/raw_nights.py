"""From paired raw files to registered nights: partition keys without PHI, raw data versions.

Both entry points — `sunrise ingest` and the bucket sensor — go through `reconcile`, so a night
gets the same key, the same raw index entry and the same data version whichever found it.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from sunrise_assets.domain import layout
from sunrise_assets.domain.anonymise import Pseudonymizer, night_date, night_key
from sunrise_assets.domain.manifest import NightSource
from sunrise_assets.domain.pairing import NightPair, ScanResult

if TYPE_CHECKING:
    from sunrise_assets.domain.object_store import ObjectStore


def _subject_sessions(pairs: Iterable[NightPair], pseudonymizer: Pseudonymizer):
    """Pairs grouped by (subject, shifted night date), each group sorted by start time."""
    by_session: dict[tuple[str, str], list[NightPair]] = defaultdict(list)
    for pair in pairs:
        subject = pseudonymizer.subject(pair.study.site, pair.study.patient_ref)
        shifted = night_date(pair.study.start) - timedelta(days=pseudonymizer.date_shift_days(subject))
        by_session[(subject, shifted.isoformat())].append(pair)
    for (subject, shifted), group in sorted(by_session.items()):
        yield subject, shifted, sorted(group, key=lambda p: p.study.start)


def object_md5(bucket: ObjectStore, info) -> str:
    """The object's MD5 (GCS gives it for free; locally it is computed from the bytes)."""
    md5 = getattr(info, "md5", None)
    return md5 or hashlib.md5(bucket.read_bytes(info.path)).hexdigest()


def content_version(bucket: ObjectStore, pair: NightPair) -> str:
    """Raw data version of a night: a hash of its files' contents, so an identical re-upload
    (new generation, same bytes) changes nothing, and any real change changes it."""
    h = hashlib.sha256()
    folder = pair.recording.path.rsplit("/", 1)[0] + "/"
    rec = next((o for o in bucket.list(folder) if o.path == pair.recording.path), None)
    if rec is None:
        raise FileNotFoundError(pair.recording.path)
    h.update(b"recording\x00" + object_md5(bucket, rec).encode())
    for obj in sorted(bucket.list(pair.study.dir + "/"), key=lambda o: o.path):
        name = obj.path[len(pair.study.dir) + 1 :]
        h.update(f"\n{name}\x00{object_md5(bucket, obj)}".encode())
    return h.hexdigest()[:32]


def load_source(bucket: ObjectStore, night: str) -> NightSource:
    return NightSource.model_validate_json(bucket.read_bytes(layout.raw_index(night)))


def _previous(bucket: ObjectStore, night: str) -> NightSource | None:
    path = layout.raw_index(night)
    if not bucket.exists(path):
        return None
    try:
        return NightSource.model_validate_json(bucket.read_bytes(path))
    except ValueError:
        return None  # an index entry from an older schema is simply rewritten


@dataclass
class Reconciliation:
    sources: list[NightSource] = field(default_factory=list)
    new: list[str] = field(default_factory=list)  # never indexed before
    changed: list[str] = field(default_factory=list)  # raw content changed since last indexed
    reuploaded: list[str] = field(default_factory=list)  # new generation, identical content

    @property
    def to_run(self) -> list[str]:
        return [*self.new, *self.changed]


def reconcile(scan: ScanResult, bucket: ObjectStore, pseudonymizer: Pseudonymizer) -> Reconciliation:
    """Index the scan's nights in the raw layer; say which are new, changed or merely re-uploaded."""
    result = Reconciliation()
    for subject, shifted, group in _subject_sessions(scan.nights, pseudonymizer):
        for run, pair in enumerate(group, start=1):
            night = night_key(subject, shifted_date(shifted), run)
            previous = _previous(bucket, night)
            same_files = (
                previous is not None
                and previous.recording_path == pair.recording.path
                and previous.study_edf_path == pair.study.edf_path
            )
            if (
                same_files
                and previous.recording_generation == pair.recording.generation
                and previous.study_generation == pair.study.generation
            ):
                version = previous.content_version  # untouched: no need to read anything
            else:
                version = content_version(bucket, pair)
            source = NightSource(
                night=night,
                subject=subject,
                date_shift_days=pseudonymizer.date_shift_days(subject),
                recording_path=pair.recording.path,
                recording_generation=pair.recording.generation,
                study_edf_path=pair.study.edf_path,
                study_labels_path=pair.study.labels_path or pair.study.edf_path,
                study_coding_path=pair.study.coding_path,
                study_generation=pair.study.generation,
                grid_start_offset_s=pair.grid_start_offset_s,
                overlap_s=pair.overlap_s,
                content_version=version,
            )
            result.sources.append(source)
            if previous is None:
                result.new.append(night)
            elif previous.content_version != version or not same_files:
                result.changed.append(night)
            elif previous != source:
                result.reuploaded.append(night)
            if previous != source:
                bucket.write_bytes(layout.raw_index(night), source.to_json_bytes())
    return result


def shifted_date(iso: str):
    from datetime import date

    return date.fromisoformat(iso)


def night_sources(pairs: Iterable[NightPair], pseudonymizer: Pseudonymizer) -> list[tuple[str, NightPair]]:
    """(night key, pair) for each pair, without touching any storage (for listings and tests)."""
    return [
        (night_key(subject, shifted_date(shifted), run), pair)
        for subject, shifted, group in _subject_sessions(pairs, pseudonymizer)
        for run, pair in enumerate(group, start=1)
    ]


def contiguous_batches(ordered_keys: Sequence[str], wanted: set[str], batch_size: int) -> list[list[str]]:
    """Runs cover contiguous ranges of the partition order: split the wanted keys accordingly."""
    batches: list[list[str]] = []
    current: list[str] = []
    for key in ordered_keys:
        if key in wanted and len(current) < batch_size:
            current.append(key)
            continue
        if current:
            batches.append(current)
        current = [key] if key in wanted else []
    if current:
        batches.append(current)
    return batches
