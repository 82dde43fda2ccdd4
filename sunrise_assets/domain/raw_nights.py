"""From paired raw files to registered nights: partition keys without PHI, raw data versions.

Both entry points — `sunrise ingest` and the bucket sensor — go through `reconcile`, so a night
gets the same key, the same raw index entry and the same data version whichever found it.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from sunrise_assets.domain import layout
from sunrise_assets.domain.anonymise import (
    LEGACY_SUBJECT_HEX,
    NIGHT_KEY_RE,
    Pseudonymizer,
    night_date,
    night_key,
    subject_identity,
    subject_of,
)
from sunrise_assets.domain.manifest import NightSource
from sunrise_assets.domain.pairing import NightPair, ScanResult, patient_of

if TYPE_CHECKING:
    from sunrise_assets.domain.object_store import ObjectStore

# Nights whose files are hashed, or raw-zone entries written, at once (a local bucket: CPU-bound MD5s
# and fsyncs; GCS: requests).
HASH_THREADS = WRITE_THREADS = 8


class PseudonymCollisionError(RuntimeError):
    """Two different patients would share one subject pseudonym: their nights would merge."""


def _identity(pair: NightPair) -> str:
    return subject_identity(pair.study.site, pair.study.patient_ref)


def _collision(subject: str) -> PseudonymCollisionError:
    # Names the pseudonym only (no identifier): raw-layer staff find the patients under the folder.
    return PseudonymCollisionError(
        f"subject pseudonym collision: two different patients map to {subject}; their nights are not "
        f"registered, so that neither is merged into the other (withdrawal, subject-level splits). The "
        f"raw zone's {layout.subject_holders(subject)} holds a keyed token per patient; raw-layer staff "
        f"resolve it (e.g. rotate the key for new data, or forget one patient's nights)"
    )


LEGACY_KEY_SUBJECT = "sub-" + "0" * LEGACY_SUBJECT_HEX  # the shape of an 8-hex subject pseudonym

# Above this many patients in one reconciliation, the subject registry is listed once rather than
# one folder per subject (an ingest of thousands; a sensor tick touches a few).
_LIST_REGISTRY_ABOVE = 64


def _registered(bucket: ObjectStore, subjects: set[str]) -> dict[str, set[str]]:
    """Identity tokens registered under each of ``subjects``."""
    holders: dict[str, set[str]] = defaultdict(set)
    listings = (
        [layout.SUBJECTS_PREFIX]
        if len(subjects) > _LIST_REGISTRY_ABOVE
        else [layout.subject_holders(s) for s in sorted(subjects)]
    )
    for prefix in listings:
        for obj in bucket.list(prefix):
            subject, _, token = obj.path[len(layout.SUBJECTS_PREFIX) :].partition("/")
            if subject in subjects and token:
                holders[subject].add(token)
    return holders


def _legacy_holders(bucket: ObjectStore, legacy: set[str]) -> dict[str, set[str]]:
    """Patients (identities, PHI: in memory only) whose nights the raw index holds under each of the
    ``legacy`` 8-hex subjects: only those nights' entries are read."""
    found: dict[str, set[str]] = defaultdict(set)
    any_legacy = False
    for obj in bucket.list(layout.RAW_INDEX_PREFIX):
        name = obj.path[len(layout.RAW_INDEX_PREFIX) :].removesuffix(".json")
        if "/" in name or not NIGHT_KEY_RE.fullmatch(name) or len(subject_of(name)) != len(LEGACY_KEY_SUBJECT):
            continue
        any_legacy = True
        if subject_of(name) not in legacy:
            continue
        patient = patient_of(load_source(bucket, name).recording_path)
        if patient is not None:
            found[subject_of(name)].add(subject_identity(*patient))
    if not any_legacy:  # nothing indexed under an 8-hex pseudonym: never worth looking again
        bucket.write_bytes(layout.NO_LEGACY_NIGHTS, b"")
    return found


def assign_subjects(pairs: Iterable[NightPair], bucket: ObjectStore, pseudonymizer: Pseudonymizer) -> dict[str, str]:
    """The subject pseudonym of each patient of ``pairs`` (by identity), registered in the raw zone.

    A patient already registered keeps its pseudonym. A patient seen for the first time gets the
    64-bit pseudonym, unless the raw index already holds its nights under its 8-hex pseudonym of
    before (compatibility: those nights keep their keys, objects and rows). Either way the
    pseudonym is claimed with the patient's identity token; a pseudonym held by another patient's
    token, or claimed by two patients at once, raises ``PseudonymCollisionError``.
    """
    identities: dict[str, tuple[str, str]] = {}
    for pair in pairs:
        identities.setdefault(_identity(pair), (pair.study.site, pair.study.patient_ref))
    tokens = {i: pseudonymizer.identity_token(*p) for i, p in identities.items()}
    current = {i: pseudonymizer.subject(*p) for i, p in identities.items()}
    legacy = {i: pseudonymizer.legacy_subject(*p) for i, p in identities.items()}
    holders = _registered(bucket, set(current.values()) | set(legacy.values()))

    assigned: dict[str, str] = {}
    for i in identities:
        for subject in (current[i], legacy[i]):
            if tokens[i] in holders.get(subject, set()):
                assigned[i] = subject
    first_seen = [i for i in identities if i not in assigned]
    if first_seen:
        # Subjects indexed before the registry existed (8-hex pseudonyms): found from the index.
        wanted = {legacy[i] for i in first_seen if not holders.get(legacy[i])}
        look = wanted and not bucket.exists(layout.NO_LEGACY_NIGHTS)
        by_legacy = _legacy_holders(bucket, wanted) if look else {}
        for i in first_seen:
            subject = legacy[i] if i in by_legacy.get(legacy[i], set()) else current[i]
            if len(by_legacy.get(subject, set())) > 1:
                raise _collision(subject)  # two patients' nights already share this old pseudonym
            assigned[i] = subject
    seen: dict[str, str] = {}
    for i, subject in assigned.items():
        others = holders.get(subject, set()) - {tokens[i]}
        if others or seen.setdefault(subject, i) != i:
            raise _collision(subject)
    with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:  # each one fsynced: the waits overlap
        list(pool.map(lambda i: bucket.write_bytes(layout.subject_holder(assigned[i], tokens[i]), b""), first_seen))
    return assigned


def _subject_sessions(pairs: Iterable[NightPair], pseudonymizer: Pseudonymizer, subjects: dict[str, str] | None = None):
    """Pairs grouped by (subject, shifted night date), each group sorted by start time.

    ``subjects`` (identity -> pseudonym, from ``assign_subjects``); without it, the 64-bit pseudonym."""
    by_session: dict[tuple[str, str], list[NightPair]] = defaultdict(list)
    for pair in pairs:
        subject = (
            subjects[_identity(pair)]
            if subjects is not None
            else pseudonymizer.subject(pair.study.site, pair.study.patient_ref)
        )
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
    """Index the scan's nights in the raw layer; say which are new, changed or merely re-uploaded.

    Raises ``PseudonymCollisionError`` (naming no identifier) before indexing anything when two
    patients would share a subject pseudonym."""
    result = Reconciliation()
    subjects = assign_subjects(scan.nights, bucket, pseudonymizer)  # refuses a pseudonym collision
    nights = []  # (night, subject, pair, previous index entry, whether its files are the ones indexed)
    for subject, shifted, group in _subject_sessions(scan.nights, pseudonymizer, subjects):
        for run, pair in enumerate(group, start=1):
            night = night_key(subject, shifted_date(shifted), run)
            previous = _previous(bucket, night)
            same_files = (
                previous is not None
                and previous.recording_path == pair.recording.path
                and previous.study_edf_path == pair.study.edf_path
            )
            nights.append((night, subject, pair, previous, same_files))
    untouched = [
        same_files
        and previous.recording_generation == pair.recording.generation
        and previous.study_generation == pair.study.generation
        for _, _, pair, previous, same_files in nights
    ]
    # Untouched nights keep their version (nothing read); the others' files are hashed, in threads:
    # a local bucket's MD5s are computed from the bytes (hashlib and file reads release the GIL).
    to_hash = [pair for (_, _, pair, _, _), keep in zip(nights, untouched, strict=True) if not keep]
    with ThreadPoolExecutor(max_workers=HASH_THREADS) as pool:
        hashed = iter(list(pool.map(lambda pair: content_version(bucket, pair), to_hash)))
    to_write: list[NightSource] = []
    for (night, subject, pair, previous, same_files), keep in zip(nights, untouched, strict=True):
        version = previous.content_version if keep else next(hashed)
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
            to_write.append(source)
    # Each index entry is written atomically and durably (fsync): in threads, the waits overlap.
    with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:
        list(pool.map(lambda s: bucket.write_bytes(layout.raw_index(s.night), s.to_json_bytes()), to_write))
    return result


def shifted_date(iso: str):
    from datetime import date

    return date.fromisoformat(iso)


def night_sources(pairs: Iterable[NightPair], pseudonymizer: Pseudonymizer) -> list[tuple[str, NightPair]]:
    """(night key, pair) for each pair, without touching any storage (for listings and tests): the
    64-bit pseudonyms, as registration gives them to every subject not registered before them."""
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
