"""EDF+ PSG label reader: round trip with the generator, pyedflib cross-check, real Sleep-EDF, errors."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import edfio
import numpy as np
import pandas as pd
import pyedflib
import pytest

from sunalgo.labels import EPOCH_S
from sunrise_assets.domain.psg_edf import PsgFormatError, event_type, read_edf_start_and_duration, read_psg_edf
from sunrise_assets.synthetic.generate import generate_bucket

SLEEP_EDF = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "sleep_edf"
HYPNOGRAM = SLEEP_EDF / "SC4001EC-Hypnogram.edf"
SHORT_PSG = SLEEP_EDF / "short_psg.edf"
needs_sleep_edf = pytest.mark.skipif(
    not HYPNOGRAM.exists(), reason=f"real Sleep-EDF files not found at {SLEEP_EDF} (../shared is absent)"
)
PYEDFLIB_STAGE = {"W": 0, "N1": 1, "1": 1, "N2": 2, "2": 2, "N3": 3, "3": 3, "4": 3, "R": 4, "?": -1}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    return generate_bucket(tmp_path_factory.mktemp("bucket"), 3, seed=7)


def _edf_bytes(annotations: list[tuple[float, float | None, str]], start=datetime(2024, 5, 6, 22, 15, 30)) -> bytes:
    """An annotation-only EDF+ (like a Sleep-EDF hypnogram file)."""
    edf = edfio.Edf(
        [],
        recording=edfio.Recording(startdate=start.date()),
        starttime=start.time(),
        annotations=[edfio.EdfAnnotation(o, d, t) for o, d, t in annotations],
    )
    return edf.to_bytes()


def _pyedflib_annotations(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    with pyedflib.EdfReader(str(path)) as f:
        onsets, durations, texts = f.readAnnotations()
    return np.asarray(onsets, float), np.asarray(durations, float), [str(t) for t in texts]


def _pyedflib_hypnogram(path: Path) -> np.ndarray:
    """Independent expansion of the stage TALs, read by pyedflib (plain loop, test only)."""
    onsets, durations, texts = _pyedflib_annotations(path)
    runs = [
        (o, d, t.removeprefix("Sleep stage "))
        for o, d, t in zip(onsets, durations, texts)
        if t.startswith("Sleep stage ")
    ]
    n = int(round(max(o + d for o, d, _ in runs) / EPOCH_S))
    out = np.full(n, -1, dtype=np.int8)
    for onset, duration, stage in runs:
        first = int(round(onset / EPOCH_S))
        out[first : first + int(round(duration / EPOCH_S))] = PYEDFLIB_STAGE[stage]
    return out


def test_round_trip_with_the_generator(generated):
    for night in generated.nights:
        path = generated.root / night.edf_path
        labels = read_psg_edf(path.read_bytes(), source=night.edf_path)
        assert labels.start == night.psg_start
        assert labels.epoch_s == 30.0
        assert labels.stages.dtype == np.int8
        assert np.array_equal(labels.stages, night.stages), "hypnogram epoch by epoch"
        ev = labels.events
        assert list(ev.columns) == ["onset_s", "duration_s", "type", "label"]
        truth = night.events.reset_index(drop=True)
        pd.testing.assert_frame_equal(ev[["onset_s", "duration_s", "type"]], truth, check_dtype=False)
        assert ev["onset_s"].dtype == np.float64 and ev["duration_s"].dtype == np.float64
        assert set(ev["label"]) <= {"Obstructive Apnea", "Central Apnea", "Mixed Apnea", "Hypopnea"}
        assert "Lights off" in labels.other_annotations and "Lights on" in labels.other_annotations
        assert any(night.name in text for text in labels.other_annotations), "the free-text note is kept apart"
        assert len(labels.other_annotations) == 3


def test_cross_check_with_pyedflib(generated):
    for night in generated.nights:
        path = generated.root / night.edf_path
        labels = read_psg_edf(path.read_bytes())
        assert np.array_equal(_pyedflib_hypnogram(path), labels.stages)
        onsets, durations, texts = _pyedflib_annotations(path)
        resp = [i for i, t in enumerate(texts) if "pnea" in t]
        assert np.allclose(onsets[resp], labels.events["onset_s"], atol=1e-6)
        assert np.allclose(durations[resp], labels.events["duration_s"], atol=1e-6)
        assert [texts[i] for i in resp] == labels.events["label"].tolist()


def test_header_start_and_duration(generated):
    for night in generated.nights:
        path = generated.root / night.edf_path
        start, duration = read_edf_start_and_duration(path.read_bytes())
        with pyedflib.EdfReader(str(path)) as f:
            assert start == f.getStartdatetime() == night.psg_start
            assert duration == f.getFileDuration()
        assert night.stages.size * 30 <= duration < night.stages.size * 30 + 32


def test_header_year_clipping():
    data = bytearray(_edf_bytes([(0, 30, "Sleep stage W")], start=datetime(2024, 1, 2, 23, 0, 0)))
    for yy, year in ((b"85", 1985), (b"99", 1999), (b"00", 2000), (b"84", 2084)):
        data[174:176] = yy
        assert read_edf_start_and_duration(bytes(data))[0] == datetime(year, 1, 2, 23, 0, 0)


@needs_sleep_edf
def test_real_sleep_edf_hypnogram():
    data = HYPNOGRAM.read_bytes()
    labels = read_psg_edf(data, source=HYPNOGRAM.name)
    assert labels.start == datetime(1989, 4, 24, 16, 13)
    # pyedflib, independently: every stage run, expanded, gives the same epochs.
    onsets, durations, texts = _pyedflib_annotations(HYPNOGRAM)
    stage_runs = [t for t in texts if t.startswith("Sleep stage")]
    assert len(stage_runs) == 154
    assert labels.stages.size == int(sum(durations) / 30) == 2880
    assert np.array_equal(labels.stages, _pyedflib_hypnogram(HYPNOGRAM))
    # Stages 3 and 4 are N3; "Sleep stage ?" is unscored.
    counts = np.bincount(labels.stages + 1, minlength=6)
    expected = {
        code: int(
            sum(d for d, t in zip(durations, texts) if PYEDFLIB_STAGE[t.removeprefix("Sleep stage ")] == code) / 30
        )
        for code in range(-1, 5)
    }
    assert counts.tolist() == [expected[c] for c in range(-1, 5)]
    assert counts.tolist() == [230, 1997, 58, 250, 220, 125]
    assert labels.events.empty and labels.other_annotations == []
    assert read_edf_start_and_duration(data) == (datetime(1989, 4, 24, 16, 13), 0.0)


@needs_sleep_edf
def test_real_sleep_edf_psg_without_stages():
    data = SHORT_PSG.read_bytes()
    with pyedflib.EdfReader(str(SHORT_PSG)) as f:
        assert read_edf_start_and_duration(data) == (f.getStartdatetime(), f.getFileDuration())
    with pytest.raises(PsgFormatError, match=r"short_psg\.edf: no sleep stage annotations"):
        read_psg_edf(data, source="short_psg.edf")


def test_stage_spellings_unscored_and_gaps():
    data = _edf_bytes(
        [
            (0, 60, "Sleep stage W"),
            (60, 30, "sleep stage n1"),
            (90, 30, "Sleep stage 2"),
            (120, 60, "Sleep stage 3"),
            (180, 30, "Sleep stage 4"),
            (210, 30, "Movement time"),
            (240, 30, "Sleep stage ?"),
            (270, 30, "Sleep stage REM"),
            (300, 30, "Sleep stage R"),
            (360, 30, "Sleep stage N3"),  # 330-360 not scored: a gap
            (390, None, "Sleep stage W"),  # no duration: one epoch
        ]
    )
    labels = read_psg_edf(data)
    assert labels.stages.tolist() == [0, 0, 1, 2, 3, 3, 3, -1, -1, 4, 4, -1, 3, 0]
    assert labels.start == datetime(2024, 5, 6, 22, 15, 30)


def test_event_mapping_case_insensitive():
    data = _edf_bytes(
        [
            (0, 600, "Sleep stage N2"),
            (10, 20, "Obstructive Apnea"),
            (40, 15, "CENTRAL_APNEA"),
            (70, 25, "mixed apnea"),
            (100, 12, "Hypopnea"),
            (130, 14, "Obstructive Hypopnea"),
            (160, 11, "Apnea"),
            (200, None, "Lights off"),
            (210, 3, "Arousal"),
            (220, None, "Patient asked for water"),
        ]
    )
    labels = read_psg_edf(data)
    ev = labels.events
    assert ev["type"].tolist() == ["obstructive_apnea", "central_apnea", "mixed_apnea", "hypopnea", "hypopnea", "other"]
    assert ev["label"].tolist() == [
        "Obstructive Apnea",
        "CENTRAL_APNEA",
        "mixed apnea",
        "Hypopnea",
        "Obstructive Hypopnea",
        "Apnea",
    ]
    assert ev["onset_s"].tolist() == [10, 40, 70, 100, 130, 160] and ev["duration_s"].tolist() == [
        20,
        15,
        25,
        12,
        14,
        11,
    ]
    assert labels.other_annotations == ["Lights off", "Arousal", "Patient asked for water"]
    assert event_type("Obstructive apnoea") == "obstructive_apnea" and event_type("Desaturation") is None


def test_event_without_duration_is_nan():
    labels = read_psg_edf(_edf_bytes([(0, 60, "Sleep stage N2"), (5, None, "Hypopnea")]))
    assert np.isnan(labels.events["duration_s"].iloc[0])


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty file"),
        (b"not an edf at all" * 20, "not an EDF file"),
        (b"0       " + b"x" * 300, "corrupt EDF"),
    ],
)
def test_unreadable_files_name_the_source(data, message):
    with pytest.raises(PsgFormatError, match=rf"^night-3/psg\.edf: {message}"):
        read_psg_edf(data, source="night-3/psg.edf")


def test_truncated_file(generated):
    data = (generated.root / generated.nights[0].edf_path).read_bytes()
    with pytest.raises(PsgFormatError, match="study.edf: corrupt EDF"):
        read_psg_edf(data[: len(data) // 2], source="study.edf")
    with pytest.raises(PsgFormatError, match="study.edf: not an EDF file"):
        read_edf_start_and_duration(data[:100], source="study.edf")


def test_no_stages_and_unknown_stages():
    with pytest.raises(PsgFormatError, match=r"^a\.edf: no sleep stage annotations"):
        read_psg_edf(_edf_bytes([(10, 20, "Hypopnea")]), source="a.edf")
    bad = _edf_bytes(
        [(0, 30, "Sleep stage W"), (30, 30, "Sleep stage 5"), (60, 30, "Sleep stage X"), (90, 30, "Sleep stage 5")]
    )
    with pytest.raises(PsgFormatError, match=r"^b\.edf: unknown sleep stage label\(s\): Sleep stage 5, Sleep stage X$"):
        read_psg_edf(bad, source="b.edf")
    assert issubclass(PsgFormatError, ValueError)


def test_anonymised_startdate_falls_back_to_the_header():
    edf = edfio.Edf(
        [], starttime=datetime(2024, 2, 3, 21, 5, 7).time(), annotations=[edfio.EdfAnnotation(0, 30, "Sleep stage W")]
    )
    edf.recording = edfio.Recording(startdate=None)  # "Startdate X"
    data = bytearray(edf.to_bytes())
    data[168:176] = b"03.02.24"
    labels = read_psg_edf(bytes(data))
    assert labels.start == datetime(2024, 2, 3, 21, 5, 7)
    assert read_edf_start_and_duration(bytes(data))[0].date() == date(2024, 2, 3)
