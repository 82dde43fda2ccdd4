"""Subject pseudonyms: 64 bits, a registration that refuses a collision without naming anyone, and
the compatibility rule that keeps every night, object and row of a work directory made with the
8-hex pseudonyms of before."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest

from resources.bucket import BucketResource
from sunrise_assets.domain import layout
from sunrise_assets.domain.anonymise import Pseudonymizer
from sunrise_assets.domain.pairing import scan_bucket
from sunrise_assets.domain.raw_nights import PseudonymCollisionError, reconcile
from sunrise_assets.synthetic.generate import GenerationReport, generate_bucket, write_paired_night
from tests.conftest import TEST_KEY, use_embedded_workdir

FORCED = "sub-0123456789abcdef"


def _raw_strings(generation: GenerationReport) -> set[str]:
    """Every identifier the generated raw files hold, and their raw paths (none may reach a message)."""
    found = set(generation.identifiers)
    for night in generation.nights:
        found |= {night.site, night.patient_ref, night.name, night.recording_path, night.study_dir}
    return {s for s in found if len(s) >= 3}


def _index_entries(bucket: BucketResource) -> list[str]:
    return [o.path for o in bucket.list(layout.RAW_INDEX_PREFIX) if o.path.endswith(".json")]


def test_a_forced_collision_in_one_scan_is_refused_without_identifiers(tmp_path, monkeypatch):
    generation = generate_bucket(tmp_path / "bucket", 3, seed=5)
    assert len({(n.site, n.patient_ref) for n in generation.nights}) >= 2  # at least two patients
    bucket = BucketResource(url=str(tmp_path / "bucket"))
    scan = scan_bucket(bucket)
    monkeypatch.setattr(Pseudonymizer, "subject", lambda self, site, ref: FORCED)
    with pytest.raises(PseudonymCollisionError) as caught:
        reconcile(scan, bucket, Pseudonymizer(TEST_KEY.encode()))
    message = str(caught.value)
    assert FORCED in message and "collision" in message
    assert not [s for s in _raw_strings(generation) if s in message]
    assert _index_entries(bucket) == []  # refused before indexing anything


def test_a_collision_with_an_already_registered_subject_is_refused(tmp_path, monkeypatch):
    bucket = BucketResource(url=str(tmp_path / "bucket"))
    first = GenerationReport(tmp_path / "bucket", [], [], [], set())
    night_a = write_paired_night(bucket, 7, 0, first)
    pseudonymizer = Pseudonymizer(TEST_KEY.encode())
    registered = reconcile(scan_bucket(bucket), bucket, pseudonymizer)
    subject_a = registered.sources[0].subject
    # The registry holds the patient's identity token (the whole HMAC, computed here independently).
    token = hmac.new(
        TEST_KEY.encode(), f"subject-identity\x00{night_a.site.lower()}/{night_a.patient_ref}".encode(), hashlib.sha256
    ).hexdigest()
    assert [o.path for o in bucket.list(layout.subject_holders(subject_a))] == [
        f"raw_index/subjects/{subject_a}/{token}"
    ]

    # Another patient arrives whose pseudonym (patched) is the one patient A holds.
    second = GenerationReport(tmp_path / "bucket", [], [], [], set())
    night_b = next(
        n for k in range(1, 6) if (n := write_paired_night(bucket, 7, k, second)).patient_ref != night_a.patient_ref
    )
    real_subject = Pseudonymizer.subject
    monkeypatch.setattr(
        Pseudonymizer,
        "subject",
        lambda self, site, ref: subject_a if ref == night_b.patient_ref else real_subject(self, site, ref),
    )
    before = _index_entries(bucket)
    with pytest.raises(PseudonymCollisionError) as caught:
        reconcile(scan_bucket(bucket), bucket, pseudonymizer)
    assert subject_a in str(caught.value)
    assert not [s for s in _raw_strings(first) | _raw_strings(second) if s in str(caught.value)]
    assert _index_entries(bucket) == before


def _legacy_subject(self: Pseudonymizer, site: str, patient_ref: str) -> str:
    """How pseudonyms were made before they grew: 8 hex digits of the same HMAC."""
    value = f"{site.strip().lower()}/{patient_ref.strip()}"
    return "sub-" + hmac.new(self.key, f"subject\x00{value}".encode(), hashlib.sha256).hexdigest()[:8]


def _objects(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.relative_to(root).as_posix().startswith("raw_index/subjects/")
    }


def _rows(work: Path) -> dict[str, list[dict]]:
    from resources.sql_warehouse import WarehouseResource

    wh = WarehouseResource(url=f"sqlite:///{work / 'warehouse.sqlite'}")
    try:
        return {
            table: wh.query(f"SELECT * FROM {table} ORDER BY night_id")  # noqa: S608 (constant names)
            for table in ("night_scores", "psg_epoch_labels", "training_epochs", "epoch_features_long")
        }
    finally:
        wh.engine.dispose()


def test_a_work_directory_of_8_hex_keys_keeps_every_night_object_and_row(tmp_path, monkeypatch):
    from dagster import DagsterInstance

    from sunrise_assets.lib.ingest import ingest

    work = use_embedded_workdir(tmp_path / "work", monkeypatch)
    generation = generate_bucket(work / "bucket", 3, seed=13)
    bucket = BucketResource(url=str(work / "bucket"))
    with monkeypatch.context() as old_code:  # the platform as it was: 8-hex pseudonyms, no registry
        old_code.setattr(Pseudonymizer, "subject", _legacy_subject)
        with DagsterInstance.get() as instance:
            old = ingest(bucket, instance)
        for path in [o.path for o in bucket.list(layout.SUBJECTS_PREFIX)]:
            bucket.delete(path)
    legacy_keys = sorted(old.materialized)
    assert len(legacy_keys) == 3 and not old.failed
    assert all(len(k.split("_ses-")[0]) == len("sub-") + 8 for k in legacy_keys)
    objects, rows = _objects(work / "bucket"), _rows(work)
    assert all(rows[t] for t in rows)

    # A new patient's night arrives; the upgraded platform ingests the bucket again.
    extra = GenerationReport(work / "bucket", [], [], [], set())
    new_night = write_paired_night(bucket, 13, 3, extra)
    assert new_night.patient_ref not in {n.patient_ref for n in generation.nights}
    with DagsterInstance.get() as instance:
        report = ingest(bucket, instance)
        partitions = instance.get_dynamic_partitions("nights")
    assert not report.failed, report.failed
    assert sorted(report.up_to_date) == legacy_keys  # nothing re-keyed, nothing re-run
    assert len(report.materialized) == 1 and report.new_nights == report.materialized
    new_key = report.materialized[0]
    assert new_key.split("_ses-")[0] == Pseudonymizer(TEST_KEY.encode()).subject(new_night.site, new_night.patient_ref)
    assert sorted(partitions) == sorted([*legacy_keys, new_key])

    after, rows_after = _objects(work / "bucket"), _rows(work)
    changed = [p for p, data in objects.items() if after.get(p) != data and p != "gold/validation_summary.json"]
    assert changed == []  # every object of before, byte for byte
    for table, old_rows in rows.items():
        assert [r for r in rows_after[table] if r["night_id"] in legacy_keys] == old_rows
        assert any(r["night_id"] == new_key for r in rows_after[table])
    # Each patient is now registered once, under the pseudonym its nights have.
    subjects = {o.path.split("/")[2] for o in bucket.list(layout.SUBJECTS_PREFIX) if o.path.count("/") == 3}
    assert subjects == {k.split("_ses-")[0] for k in [*legacy_keys, new_key]}
