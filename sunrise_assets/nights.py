"""From paired raw files to registered nights (partition keys without PHI)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from dagster import DagsterInstance

from resources.bucket import BucketResource
from sunrise_assets import layout
from sunrise_assets.anonymise import Pseudonymizer, night_date, night_key
from sunrise_assets.manifest import NightSource
from sunrise_assets.pairing import NightPair, ScanResult
from sunrise_assets.partitions import nights_partitions


def night_sources(pairs: Iterable[NightPair], pseudonymizer: Pseudonymizer) -> list[NightSource]:
    """One NightSource per pair. Two nights of one subject on the same shifted date get ``_run-2``."""
    by_session: dict[tuple[str, object], list[NightPair]] = defaultdict(list)
    subjects: dict[int, str] = {}
    for pair in pairs:
        subject = pseudonymizer.subject(pair.study.site, pair.study.patient_ref)
        subjects[id(pair)] = subject
        shift = pseudonymizer.date_shift_days(subject)
        by_session[(subject, night_date(pair.study.start) - timedelta(days=shift))].append(pair)
    sources = []
    for (subject, shifted), group in sorted(by_session.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        for run, pair in enumerate(sorted(group, key=lambda p: p.study.start), start=1):
            sources.append(
                NightSource(
                    night=night_key(subject, shifted, run),
                    subject=subject,
                    date_shift_days=pseudonymizer.date_shift_days(subject),
                    recording_path=pair.recording.path,
                    recording_generation=pair.recording.generation,
                    study_edf_path=pair.study.edf_path,
                    study_generation=pair.study.generation,
                    grid_start_offset_s=pair.grid_start_offset_s,
                    overlap_s=pair.overlap_s,
                )
            )
    return sources


@dataclass(frozen=True)
class Registration:
    sources: list[NightSource]
    new_partitions: list[str]
    changed_sources: list[str]


def register_nights(
    scan: ScanResult, bucket: BucketResource, pseudonymizer: Pseudonymizer, instance: DagsterInstance
) -> Registration:
    """Write each night's raw index entry (only when it changed) and add missing partitions."""
    sources = night_sources(scan.nights, pseudonymizer)
    changed = []
    for source in sources:
        path = layout.raw_index(source.night)
        payload = source.to_json_bytes()
        if not bucket.exists(path) or bucket.read_bytes(path) != payload:
            bucket.write_bytes(path, payload)
            changed.append(source.night)
    existing = set(instance.get_dynamic_partitions(nights_partitions.name))
    new = [s.night for s in sources if s.night not in existing]
    if new:
        instance.add_dynamic_partitions(nights_partitions.name, new)
    return Registration(sources, new, changed)


def load_source(bucket: BucketResource, night: str) -> NightSource:
    return NightSource.model_validate_json(bucket.read_bytes(layout.raw_index(night)))
