"""The synthetic raw bucket: layout, determinism, identifiers, truth."""

from __future__ import annotations

import json
import re
import time
from datetime import date, timedelta
from datetime import time as dtime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyedflib
import pytest

from sunalgo.recording import parse_recording
from sunrise_assets.domain.psg_readers import FORMATS, PsgFormatError, read_labels
from sunrise_assets.domain.psg_readers.edf_plus import read_edf_start_and_duration
from sunrise_assets.synthetic.generate import SITES, GenerationReport, generate_bucket, n_unpaired

N_NIGHTS = 6
SEED = 11
ZONES = {code: tz for code, tz, _ in SITES}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> GenerationReport:
    calls = []
    began = time.perf_counter()
    report = generate_bucket(tmp_path_factory.mktemp("bucket"), N_NIGHTS, SEED, on_night=calls.append)
    seconds = time.perf_counter() - began
    total = N_NIGHTS + 2 * n_unpaired(N_NIGHTS)
    sizes = [(report.root / f).stat().st_size for f in report.files]
    print(
        f"\ngenerate_bucket: {seconds:.2f} s for {total} night files sets, {1000 * seconds / total:.0f} ms per night;"
        f" {sum(sizes) / 1e6:.1f} MB in total"
    )
    assert calls == list(range(N_NIGHTS))
    return report


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout(generated):
    r = generated
    files = set(_files(r.root))
    assert files == set(r.files)
    pb = re.compile(r"^raw/sunrise/([a-z-]+)/(P-\d{6})/\2_(\d{8})\.pb$")
    study = re.compile(r"^raw/psg/([a-z-]+)/(P-\d{6})/(\2_[A-Z]+_\d{8})$")
    assert {f for f in files if f.startswith("raw/sunrise/")} == {n.recording_path for n in r.nights} | set(
        r.unpaired_recordings
    )
    for path in [n.recording_path for n in r.nights] + r.unpaired_recordings:
        assert pb.match(path), path
    for d in [n.study_dir for n in r.nights] + r.unpaired_studies:
        m = study.match(d)
        assert m, d
        assert f"{d}/{m.group(3)}.edf" in files and f"{d}/patient.json" in files
    assert len(r.nights) == N_NIGHTS
    assert len(r.unpaired_recordings) == len(r.unpaired_studies) == n_unpaired(N_NIGHTS) >= 1
    assert all(n.site in ZONES for n in r.nights)


def test_unpaired_counts():
    assert [n_unpaired(n) for n in (1, 2, 3, 10, 14, 15, 100)] == [0, 0, 1, 1, 1, 2, 10]


def test_two_nights_of_one_patient_and_two_patients_one_evening(generated):
    nights = generated.nights
    a, b = nights[3], nights[4]
    assert (a.site, a.patient_ref, a.name) == (b.site, b.patient_ref, b.name)
    assert 1 <= (b.psg_start.date() - a.psg_start.date()).days <= 30
    c, d = nights[1], nights[2]
    assert c.site == d.site and c.psg_start.date() == d.psg_start.date() and c.patient_ref != d.patient_ref
    refs = {(n.site, n.patient_ref) for n in nights}
    assert len(refs) == N_NIGHTS - 1


def test_dates_and_clocks(generated):
    for n in generated.nights:
        assert date(2024, 1, 1) <= n.psg_start.date() <= date(2025, 12, 31)
        assert dtime(21) <= n.psg_start.time() <= dtime(23, 59, 59)
        assert n.psg_start.microsecond == 0  # EDF start has whole seconds
        zone = ZoneInfo(ZONES[n.site])
        assert n.recording_start.utcoffset() == n.psg_start.replace(tzinfo=zone).utcoffset()
        assert n.recording_start.utcoffset() in {timedelta(hours=h) for h in (0, 1, 2)}
        assert -20 <= n.clock_error_s <= 20
        # Device clock = true sensor start + clock error, in the site's local wall clock.
        local = n.recording_start.replace(tzinfo=None)
        assert (local - n.psg_start).total_seconds() == pytest.approx(n.sensor_offset_s + n.clock_error_s, abs=1e-3)


def test_recording_files(generated):
    for n in generated.nights:
        rec = parse_recording((generated.root / n.recording_path).read_bytes())
        assert rec.start_time == n.recording_start
        assert rec.accelerometer.sample_rate_hz == 10.0 and rec.gyroscope.unit == "deg/s"
        assert rec.patient.name == n.name and rec.patient.patient_ref == n.patient_ref
        assert rec.patient.birth_date == n.birth_date and rec.patient.site == n.site
        assert n.name in rec.patient.note
        assert rec.device_serial and rec.firmware and rec.recording_id
        psg_end = n.stages.size * 30.0
        sensor_end = n.sensor_offset_s + rec.duration_s
        assert psg_end - 1200 <= sensor_end <= psg_end + 600


def test_edf_and_details(generated, tmp_path):
    for n in generated.nights:
        with pyedflib.EdfReader(str(generated.root / n.edf_path)) as f:
            assert f.getPatientCode() == n.patient_ref
            assert f.getPatientName().replace(" ", "_") in (f"{n.name.split()[1]}_{n.name.split()[0]}",)
            assert f.getAdmincode() == n.site
            assert f.getStartdatetime() == n.psg_start  # local wall clock, no zone
            assert 0 <= f.getFileDuration() - n.stages.size * 30 < 32
            assert f.getSignalLabels() == ["SpO2", "Body position"]
            spo2 = f.readSignal(0)
            assert 80 <= np.median(spo2) <= 100
            _, _, texts = f.readAnnotations()
        assert "Lights off" in texts and "Lights on" in texts
        assert any(n.name in t for t in texts), "a technician note naming the patient"
        details = json.loads((generated.root / n.details_path).read_text())
        assert details["name"] == n.name and details["patient_ref"] == n.patient_ref
        assert details["birth_date"] == n.birth_date and details["site"] == n.site
        assert details["sex"] in {"F", "M"} and details["referring_physician"]


def test_identifiers_are_in_the_raw_files(generated):
    ids = generated.identifiers
    for n in generated.nights:
        last, first = n.name.split()[1], n.name.split()[0]
        assert {n.name, n.patient_ref, n.birth_date, last.upper()} <= ids
        pb = (generated.root / n.recording_path).read_bytes()
        edf = (generated.root / n.edf_path).read_bytes()
        details = (generated.root / n.details_path).read_bytes()
        for blob in (pb, edf, details):
            assert n.patient_ref.encode() in blob
        assert n.name.encode() in pb and n.birth_date.encode() in pb
        assert f"{last}_{first}".encode() in edf[:256] and n.name.encode() in edf  # header name + free-text note
        assert n.name.encode() in details
        assert last.upper() in n.study_dir and n.patient_ref in n.recording_path
    # Every identifier the report lists was written somewhere.
    blob = b"\n".join(_files(generated.root).values()) + "\n".join(generated.files).encode()
    assert all(i.encode() in blob for i in ids)


def test_truth_events(generated):
    for n in generated.nights:
        assert list(n.events.columns) == ["onset_s", "duration_s", "type"]
        assert n.stages.dtype == np.int8 and 720 <= n.stages.size <= 1200


def test_deterministic_and_night_k_independent_of_n(generated, tmp_path):
    again = generate_bucket(tmp_path / "again", N_NIGHTS, SEED)
    assert _files(again.root) == _files(generated.root), "same seed: byte-identical files"
    fewer = generate_bucket(tmp_path / "fewer", 3, SEED)
    fewer_files, all_files = _files(fewer.root), _files(generated.root)
    for k, n in enumerate(fewer.nights):
        ref = generated.nights[k]
        for path in (n.recording_path, n.edf_path, n.details_path):
            assert fewer_files[path] == all_files[path]
        assert np.array_equal(n.stages, ref.stages) and n.events.equals(ref.events)
    # Unpaired file j does not depend on N either.
    assert fewer.unpaired_recordings[0] == generated.unpaired_recordings[0]
    assert fewer.unpaired_studies[0] == generated.unpaired_studies[0]
    other = generate_bucket(tmp_path / "other", 1, SEED + 1)
    assert other.nights[0].recording_path != generated.nights[0].recording_path


# ----------------------------------------------------------------------- mixed scoring formats

SCORING_FILES = {  # format -> the study folder's files, besides <study>.edf and patient.json
    "edf+": set(),
    "nsrr-xml": {"{study}.xml"},
    "profusion-xml": {"{study}.xml"},
    "noxturnal-csv": {"{study}.csv"},
    "hypnogram-text": {"{study}_hypnogram.txt", "stage_coding.txt"},
}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> GenerationReport:
    return generate_bucket(tmp_path_factory.mktemp("mixed"), N_NIGHTS, SEED, psg_formats=FORMATS)


def test_mixed_bucket_cycles_formats_and_lays_out_study_folders(mixed):
    files = set(_files(mixed.root))
    assert files == set(mixed.files)
    assert [n.psg_format for n in mixed.nights] == [FORMATS[k % len(FORMATS)] for k in range(N_NIGHTS)]
    for n in mixed.nights:
        study = n.study_dir.rsplit("/", 1)[1]
        in_folder = {f.rsplit("/", 1)[1] for f in files if f.startswith(n.study_dir + "/")}
        assert in_folder == {f"{study}.edf", "patient.json"} | {
            f.format(study=study) for f in SCORING_FILES[n.psg_format]
        }
        assert n.edf_path == f"{n.study_dir}/{study}.edf" and n.labels_path in files
        scoring = {
            "nsrr-xml": ".xml",
            "profusion-xml": ".xml",
            "noxturnal-csv": ".csv",
            "hypnogram-text": "_hypnogram.txt",
        }
        assert n.labels_path == (
            n.edf_path if n.psg_format == "edf+" else f"{n.study_dir}/{study}{scoring[n.psg_format]}"
        )
        if n.psg_format == "hypnogram-text":
            assert (mixed.root / n.study_dir / "stage_coding.txt").read_text() == f"{n.stage_coding}\n"
        else:
            assert n.stage_coding is None
    # Unpaired studies stay EDF+ (with annotations).
    for d in mixed.unpaired_studies:
        assert {f.rsplit("/", 1)[1] for f in files if f.startswith(d + "/")} == {
            f"{d.rsplit('/', 1)[1]}.edf",
            "patient.json",
        }


def test_mixed_bucket_scoring_reads_back_as_the_truth_on_the_edf_clock(mixed):
    for n in mixed.nights:
        edf = (mixed.root / n.edf_path).read_bytes()
        start, duration = read_edf_start_and_duration(edf, source=n.edf_path)
        assert start == n.psg_start and 0 <= duration - n.stages.size * 30 < 32
        coding = None
        if n.psg_format == "hypnogram-text":
            coding = (mixed.root / n.study_dir / "stage_coding.txt").read_text().strip()
        labels = read_labels((mixed.root / n.labels_path).read_bytes(), source=n.labels_path, stage_coding=coding)
        assert labels.format == n.psg_format
        assert np.array_equal(labels.stages, n.stages), n.labels_path
        # The clock of a scoring file that has one agrees with the EDF's; the others have none.
        assert labels.start == (start if n.psg_format in ("edf+", "nsrr-xml", "noxturnal-csv") else None)
        scored = labels.events[labels.events["type"] != "other"].reset_index(drop=True)
        if n.psg_format == "hypnogram-text":
            assert scored.empty, "a bare hypnogram scores no events"
            continue
        assert scored["type"].tolist() == n.events["type"].tolist()
        assert np.array_equal(scored["duration_s"], n.events["duration_s"])
        tolerance = 0.5 if n.psg_format == "noxturnal-csv" else 0.0  # Noxturnal clock times: whole seconds
        assert np.abs(scored["onset_s"] - n.events["onset_s"]).max() <= tolerance
        if n.psg_format != "edf+":
            with pytest.raises(PsgFormatError, match="no sleep stage annotations and no scored events"):
                read_labels(edf, source=n.edf_path)  # signals only: the scoring is in its own file
            with pyedflib.EdfReader(str(mixed.root / n.edf_path)) as f:
                assert f.getSignalLabels() == ["SpO2", "Body position"] and f.getPatientCode() == n.patient_ref


def test_mixed_bucket_scoring_files_hold_no_identifiers_and_the_rest_is_unchanged(mixed, generated):
    for n in mixed.nights:
        if n.psg_format == "edf+":
            continue
        data = (mixed.root / n.labels_path).read_bytes()
        text = data.decode("utf-16") if data[:2] == b"\xff\xfe" else data.decode("latin-1")
        assert not [i for i in mixed.identifiers if i in text], n.labels_path  # as in the real exports
    assert mixed.identifiers == generated.identifiers
    mixed_files, default_files = _files(mixed.root), _files(generated.root)
    for a, b in zip(mixed.nights, generated.nights):
        assert (a.recording_path, a.study_dir, a.psg_start) == (b.recording_path, b.study_dir, b.psg_start)
        assert np.array_equal(a.stages, b.stages) and a.events.equals(b.events)
        for path in (a.recording_path, a.details_path) + ((a.edf_path,) if a.psg_format == "edf+" else ()):
            assert mixed_files[path] == default_files[path], path


def test_mixed_bucket_is_deterministic_and_formats_are_checked(mixed, tmp_path):
    again = generate_bucket(tmp_path / "again", 2, SEED, psg_formats=FORMATS)
    again_files, mixed_files = _files(again.root), _files(mixed.root)
    assert again_files and all(again_files[f] == mixed_files[f] for f in again_files)
    only = generate_bucket(tmp_path / "nsrr", 3, SEED, psg_formats=["nsrr-xml"])
    assert [n.psg_format for n in only.nights] == ["nsrr-xml"] * 3
    assert len({n.psg_variant for n in only.nights}) == 3, "the NSRR vocabularies cycle"
    for bad in ((), ("edf+", "csv")):
        with pytest.raises(ValueError, match="psg_formats"):
            generate_bucket(tmp_path / "bad", 1, SEED, psg_formats=bad)
