"""Pairing raw recordings with PSG studies: the tricky cases."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import edfio
import numpy as np
import pytest

from resources.bucket import BucketResource
from sunalgo.recording import PatientInfo, encode_recording
from sunrise_assets.domain.pairing import (
    MIN_OVERLAP_S,
    NightPair,
    RecordingRef,
    StudyRef,
    is_night,
    overlap_s,
    read_recording_start_and_duration,
    scan_bucket,
)
from sunrise_assets.synthetic.generate import generate_bucket

CET, CEST, WET = timezone(timedelta(hours=1)), timezone(timedelta(hours=2)), timezone(timedelta(hours=0))
# A very low sample rate keeps hours of recording in a few kB (duration = bytes / 6 / rate).
RATE = 0.1


def put_recording(
    bucket: BucketResource, site: str, ref: str, start: datetime, hours: float, name: str | None = None
) -> str:
    n = int(round(hours * 3600 * RATE))
    counts = np.zeros((n, 3), dtype=np.int16)
    data = encode_recording(
        recording_id="r",
        device_serial="SRB-1",
        firmware="2.5.0",
        start_time=start,
        acc_counts=counts,
        gyro_counts=counts,
        sample_rate_hz=RATE,
        acc_scale=1 / 4096,
        gyro_scale=1 / 64,
        patient=PatientInfo("Jan Peeters", "1950-01-01", ref, site, ""),
    )
    path = name or f"raw/sunrise/{site}/{ref}/{ref}_{start:%Y%m%d}.pb"
    bucket.write_bytes(path, data)
    return path


def put_study(bucket: BucketResource, site: str, ref: str, start: datetime, hours: float, details: bool = True) -> str:
    study = f"{ref}_PEETERS_{start:%Y%m%d%H%M}"
    seconds = int(hours * 3600) // 32 * 32
    edf = edfio.Edf(
        [edfio.EdfSignal(np.full(seconds, 95.0), 1.0, label="SpO2", physical_range=(0, 100))],
        patient=edfio.Patient(code=ref),
        recording=edfio.Recording(startdate=start.date()),
        starttime=start.time(),
        data_record_duration=32,
        annotations=[edfio.EdfAnnotation(0, 30, "Sleep stage W")],
    )
    folder = f"raw/psg/{site}/{ref}/{study}"
    bucket.write_bytes(f"{folder}/{study}.edf", edf.to_bytes())
    if details:
        bucket.write_bytes(f"{folder}/patient.json", b'{"name": "Jan Peeters"}')
    return folder


@pytest.fixture
def bucket(tmp_path) -> BucketResource:
    return BucketResource(url=str(tmp_path / "bucket"))


def _pairs(result) -> dict[tuple[str, str], NightPair]:
    return {(p.recording.path, p.study.dir): p for p in result.nights}


def test_clock_offsets_before_and_after(bucket):
    psg = datetime(2024, 11, 5, 22, 30, 0)
    # Sensor switched on 200 s before the PSG, device clock 13.25 s fast.
    r1 = put_recording(
        bucket, "brussels-uh", "P-000001", (psg + timedelta(seconds=-200 + 13.25)).replace(tzinfo=CET), 8.2
    )
    s1 = put_study(bucket, "brussels-uh", "P-000001", psg, 8.0)
    # Sensor switched on 90 s after the PSG start, clock 7.5 s slow; summer time (+02:00).
    psg2 = datetime(2024, 7, 5, 21, 10, 0)
    r2 = put_recording(bucket, "liege-chr", "P-000002", (psg2 + timedelta(seconds=90 - 7.5)).replace(tzinfo=CEST), 7.5)
    s2 = put_study(bucket, "liege-chr", "P-000002", psg2, 8.0)
    result = scan_bucket(bucket)
    assert result.problems == [] and result.unpaired_recordings == [] and result.unpaired_studies == []
    pairs = _pairs(result)
    assert set(pairs) == {(r1, s1), (r2, s2)}
    assert pairs[(r1, s1)].grid_start_offset_s == pytest.approx(186.75)
    assert pairs[(r2, s2)].grid_start_offset_s == pytest.approx(-82.5)
    p = pairs[(r1, s1)]
    assert p.overlap_s == pytest.approx(p.study.duration_s)  # the recording covers the whole study
    assert p.study.details_path == f"{s1}/patient.json" and p.study.edf_path.endswith(".edf")
    assert p.recording.start.utcoffset() == timedelta(hours=1) and p.study.start == psg


def test_unpaired_recording_and_study(bucket):
    psg = datetime(2025, 2, 1, 23, 0, 0)
    put_recording(bucket, "brussels-uh", "P-000010", psg.replace(tzinfo=CET), 8)  # no study for this patient
    put_study(bucket, "brussels-uh", "P-000011", psg, 8)  # no recording for this one
    # Same patient, but the recording is of another night: no overlap.
    put_recording(bucket, "brussels-uh", "P-000012", (psg + timedelta(days=1)).replace(tzinfo=CET), 8)
    put_study(bucket, "brussels-uh", "P-000012", psg, 8)
    result = scan_bucket(bucket)
    assert result.nights == []
    assert [r.patient_ref for r in result.unpaired_recordings] == ["P-000010", "P-000012"]
    assert [s.patient_ref for s in result.unpaired_studies] == ["P-000011", "P-000012"]


def test_two_nights_of_one_patient(bucket):
    first, second = datetime(2024, 3, 1, 22, 0), datetime(2024, 3, 15, 21, 45)
    ra = put_recording(bucket, "brussels-uh", "P-000020", (first - timedelta(minutes=3)).replace(tzinfo=CET), 9)
    rb = put_recording(bucket, "brussels-uh", "P-000020", (second - timedelta(minutes=2)).replace(tzinfo=CET), 9)
    sa = put_study(bucket, "brussels-uh", "P-000020", first, 8.5)
    sb = put_study(bucket, "brussels-uh", "P-000020", second, 8.5)
    result = scan_bucket(bucket)
    assert set(_pairs(result)) == {(ra, sa), (rb, sb)}


def test_two_patients_same_site_same_night_never_cross_pair(bucket):
    psg_a, psg_b = datetime(2024, 10, 10, 22, 0), datetime(2024, 10, 10, 22, 5)
    ra = put_recording(bucket, "brussels-uh", "P-000031", (psg_a - timedelta(minutes=4)).replace(tzinfo=CEST), 9)
    rb = put_recording(bucket, "brussels-uh", "P-000032", (psg_b - timedelta(minutes=1)).replace(tzinfo=CEST), 9)
    sa = put_study(bucket, "brussels-uh", "P-000031", psg_a, 8)
    sb = put_study(bucket, "brussels-uh", "P-000032", psg_b, 8)
    # And the same patient ref at another site is another patient.
    rc = put_recording(bucket, "liege-chr", "P-000031", psg_a.replace(tzinfo=CEST), 9)
    result = scan_bucket(bucket)
    assert set(_pairs(result)) == {(ra, sa), (rb, sb)}
    assert [r.path for r in result.unpaired_recordings] == [rc]


def test_one_recording_one_study_largest_overlap_wins(bucket):
    psg = datetime(2024, 12, 1, 22, 0)
    # The sensor was restarted: a 20-min false start, then the real recording.
    short = put_recording(
        bucket,
        "brussels-uh",
        "P-000040",
        (psg - timedelta(minutes=25)).replace(tzinfo=CET),
        1 / 3,
        name="raw/sunrise/brussels-uh/P-000040/a.pb",
    )
    real = put_recording(
        bucket,
        "brussels-uh",
        "P-000040",
        (psg - timedelta(minutes=2)).replace(tzinfo=CET),
        8.5,
        name="raw/sunrise/brussels-uh/P-000040/b.pb",
    )
    study = put_study(bucket, "brussels-uh", "P-000040", psg, 8)
    result = scan_bucket(bucket)
    assert set(_pairs(result)) == {(real, study)}
    assert [r.path for r in result.unpaired_recordings] == [short]


def test_overlap_threshold():
    study = StudyRef("d", "d/d.edf", None, "s", "p", datetime(2024, 1, 1, 22), 8 * 3600.0, "g")

    def rec(minutes_after: float, hours: float) -> RecordingRef:
        start = (study.start + timedelta(minutes=minutes_after)).replace(tzinfo=CET)
        return RecordingRef("r.pb", "s", "p", start, hours * 3600.0, "g")

    cases = [
        (rec(-5, 8.5), True),  # covers the night
        (rec(7 * 60 + 30, 2), False),  # starts 30 min before the PSG ends: 30 min overlap only
        (rec(6 * 60, 3), True),  # 2 h of overlap
        (rec(60, 1.5), True),  # short, wholly inside: more than half of the shorter one
        (rec(-80, 1.5), False),  # 10 min overlap
        (rec(8 * 60 + 1, 8), False),  # after the study
    ]
    for r, expected in cases:
        assert is_night(r, study, overlap_s(r, study)) is expected, (r.start, r.duration_s)
    assert MIN_OVERLAP_S == 3600


def test_corrupt_files_are_problems_and_the_rest_pairs(bucket):
    psg = datetime(2024, 4, 4, 22, 0)
    r = put_recording(bucket, "brussels-uh", "P-000050", psg.replace(tzinfo=CEST), 8)
    s = put_study(bucket, "brussels-uh", "P-000050", psg, 8)
    bucket.write_bytes("raw/sunrise/brussels-uh/P-000051/P-000051_20240404.pb", b"\xff\x00garbage" * 10)
    bucket.write_bytes("raw/sunrise/brussels-uh/P-000052/P-000052_20240404.pb", b"")
    bucket.write_bytes("raw/psg/brussels-uh/P-000051/P-000051_X_20240404/P-000051_X_20240404.edf", b"garbage" * 50)
    bucket.write_bytes("raw/psg/brussels-uh/P-000053/P-000053_X_20240404/patient.json", b"{}")  # no EDF
    bucket.write_bytes("raw/sunrise/stray.pb", b"")  # outside the layout
    result = scan_bucket(bucket)
    assert set(_pairs(result)) == {(r, s)}
    problems = "\n".join(result.problems)
    assert len(result.problems) == 5, problems
    for name in (
        "raw/sunrise/brussels-uh/P-000051/P-000051_20240404.pb",
        "raw/sunrise/brussels-uh/P-000052/P-000052_20240404.pb: unreadable Sunrise recording: empty file",
        "P-000051_X_20240404.edf: not an EDF file",
        "raw/psg/brussels-uh/P-000053/P-000053_X_20240404: no .edf file",
        "raw/sunrise/stray.pb: not a recording",
    ):
        assert name in problems


def test_generations(bucket):
    psg = datetime(2024, 4, 4, 22, 0)
    put_recording(bucket, "brussels-uh", "P-000060", psg.replace(tzinfo=CEST), 8)
    folder = put_study(bucket, "brussels-uh", "P-000060", psg, 8)
    before = scan_bucket(bucket).nights[0]
    bucket.write_bytes(f"{folder}/patient.json", b'{"name": "Jan Peeters", "sex": "M"}')
    after = scan_bucket(bucket).nights[0]
    assert after.study.generation != before.study.generation
    assert after.recording.generation == before.recording.generation
    assert scan_bucket(bucket).nights[0].study.generation == after.study.generation


def test_recording_header_reader_does_not_need_samples():
    counts = np.zeros((36000, 3), dtype=np.int16)
    data = encode_recording(
        recording_id="r",
        device_serial="s",
        firmware="f",
        start_time=datetime(2024, 1, 1, 22, tzinfo=WET),
        acc_counts=counts,
        gyro_counts=counts[:18000],
        sample_rate_hz=10.0,
        acc_scale=1.0,
        gyro_scale=1.0,
        patient=None,
    )
    start, duration = read_recording_start_and_duration(data)
    assert start == datetime(2024, 1, 1, 22, tzinfo=WET) and duration == 1800.0  # the shorter sensor


def test_generated_bucket_pairs_exactly_as_generated(tmp_path):
    report = generate_bucket(tmp_path / "gen", 7, seed=3)
    result = scan_bucket(BucketResource(url=str(report.root)))
    assert result.problems == []
    got = {(p.recording.path, p.study.dir): p for p in result.nights}
    assert set(got) == {(n.recording_path, n.study_dir) for n in report.nights}
    for n in report.nights:
        p = got[(n.recording_path, n.study_dir)]
        assert p.grid_start_offset_s == pytest.approx(n.grid_start_offset_s, abs=1e-3)
        assert p.study.start == n.psg_start and p.recording.start == n.recording_start
        assert (p.study.site, p.study.patient_ref) == (n.site, n.patient_ref)
        assert p.overlap_s > 5 * 3600
    assert sorted(r.path for r in result.unpaired_recordings) == sorted(report.unpaired_recordings)
    assert sorted(s.dir for s in result.unpaired_studies) == sorted(report.unpaired_studies)
