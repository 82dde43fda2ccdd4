"""PSG scoring writers: every format read back by the readers gives the truth, and the files look like
the real exports of ../shared/data/real (compared for shape, never copied)."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from sunalgo.labels import AROUSAL, DESATURATION, OTHER, UNSCORED
from sunrise_assets.domain.psg_readers import PsgFormatError, detect_format, read_labels
from sunrise_assets.domain.psg_writers import (
    NSRR_STYLES,
    STAGE_CODING_FILE,
    write_hypnogram_text,
    write_noxturnal_csv,
    write_nsrr_xml,
    write_profusion_xml,
    write_stage_coding,
)
from sunrise_assets.synthetic.simulator import hypnogram, respiratory_events
from tests.conftest import real_file

START = datetime(2024, 10, 26, 22, 47, 13)  # the night crosses midnight (and, in Brussels, a DST change)


@pytest.fixture(scope="module")
def truth() -> tuple[np.ndarray, pd.DataFrame]:
    """A synthetic night's stages with unscored epochs (first, inside, last) and its respiratory events,
    plus desaturations (with nadir and baseline) and arousals after some of them."""
    rng = np.random.default_rng(5)
    stages = hypnogram(rng, 900, ahi=25.0)
    stages[[0, 1]] = UNSCORED
    stages[400:403] = UNSCORED
    stages[-1] = UNSCORED
    resp = respiratory_events(rng, stages, np.zeros(stages.size, dtype=np.int64), 25.0)
    assert len(resp) > 50
    ends = (resp["onset_s"] + resp["duration_s"]).to_numpy()[::2]
    desat = pd.DataFrame(
        {
            "onset_s": np.round(ends + 3.0, 1),
            "duration_s": np.round(rng.uniform(8, 40, ends.size), 1),
            "type": DESATURATION,
            "nadir": np.round(rng.uniform(78, 93, ends.size)),
            "baseline": 95.0,
        }
    )
    arousal = pd.DataFrame(
        {"onset_s": np.round(ends - 1.5, 1), "duration_s": np.round(rng.uniform(3, 15, ends.size), 1), "type": AROUSAL}
    )
    events = pd.concat([resp, desat, arousal], ignore_index=True).sort_values("onset_s", kind="stable")
    return stages, events.reset_index(drop=True)


def _scored(labels) -> pd.DataFrame:
    return labels.events[labels.events["type"] != OTHER].reset_index(drop=True)


def _check_events(got: pd.DataFrame, events: pd.DataFrame, *, whole_seconds: bool = False, nadir: bool = True) -> None:
    assert got["type"].tolist() == events["type"].tolist()
    onsets = events["onset_s"].to_numpy()
    expected = np.floor(onsets + 0.5) if whole_seconds else onsets
    assert np.array_equal(got["onset_s"].to_numpy(), expected)
    assert np.array_equal(got["duration_s"].to_numpy(), events["duration_s"].to_numpy())
    if nadir:
        want = np.where(events["type"] == DESATURATION, events.get("nadir", np.nan), np.nan)
        assert np.array_equal(got["nadir"].to_numpy(), want, equal_nan=True)


# ------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("style", NSRR_STYLES)
def test_nsrr_round_trip(truth, style):
    stages, events = truth
    deleted = (1234.5, 12.0, "Deleted Hypopnea 4% A")
    data = write_nsrr_xml(
        stages, events, start=START, style=style, other_events=[deleted, (600.0, 9.0, "Oximetry Artifact Event")]
    )
    assert detect_format(data) == "nsrr-xml"
    labels = read_labels(data, source=f"{style}.xml")
    assert labels.format == "nsrr-xml" and labels.start == START and labels.epoch_s == 30.0
    assert labels.stages.dtype == np.int8 and np.array_equal(labels.stages, stages)
    _check_events(_scored(labels), events)
    assert labels.other_annotations == ["Oximetry Artifact Event"]
    assert labels.skipped_annotations == {"Recording Start Time": 1, "Deleted Hypopnea 4% A": 1}
    assert labels.recording_s == stages.size * 30.0


def test_profusion_round_trip(truth):
    stages, events = truth
    data = write_profusion_xml(stages, events, other_events=[(600.0, 9.0, "SpO2 artifact")])
    assert detect_format(data) == "profusion-xml"
    labels = read_labels(data, source="p.xml")
    assert labels.start is None, "a Profusion export has no clock time"
    assert read_labels(data, start=START).start == START
    assert np.array_equal(labels.stages, stages)
    _check_events(_scored(labels), events)
    assert labels.other_annotations == ["SpO2 artifact"]


@pytest.mark.parametrize("language", ["fr", "en"])
def test_noxturnal_round_trip(truth, language):
    stages, events = truth
    data = write_noxturnal_csv(
        stages,
        events,
        start=START,
        language=language,
        other_events=[(0.0, 0.0, "Début de l'analyse" if language == "fr" else "Analysis start")],
    )
    assert detect_format(data) == "noxturnal-csv"
    labels = read_labels(data, source="n.csv")
    assert labels.start == START, "the first stage row's clock time is the study start"
    assert np.array_equal(labels.stages, stages)
    _check_events(_scored(labels), events, whole_seconds=True, nadir=False)
    assert labels.events["nadir"].isna().all(), "the CSV has no nadir column"
    assert len(labels.other_annotations) == 1


@pytest.mark.parametrize("coding", ["rk-5rem", "yasa"])
def test_hypnogram_text_round_trip(truth, coding):
    stages, _ = truth
    data = write_hypnogram_text(stages, coding=coding)
    assert detect_format(data) == "hypnogram-text"
    sidecar = write_stage_coding(coding)
    assert sidecar == f"{coding}\n".encode() and STAGE_CODING_FILE == "stage_coding.txt"
    labels = read_labels(data, stage_coding=sidecar.decode().strip(), start=START)
    assert np.array_equal(labels.stages, stages) and labels.events.empty and labels.start == START
    with pytest.raises(PsgFormatError, match="stage coding must be stated"):
        read_labels(data)
    other = "yasa" if coding == "rk-5rem" else "rk-5rem"
    try:
        wrong = read_labels(data, stage_coding=other).stages
    except PsgFormatError:
        wrong = None  # yasa's -2 is no rk-5rem code
    assert wrong is None or not np.array_equal(wrong, stages), "the coding matters: REM is 4 in one, 5 in the other"


def test_nsrr_without_clock_and_with_a_longer_recording(truth):
    stages, events = truth
    labels = read_labels(write_nsrr_xml(stages, events, start=None, recording_s=stages.size * 30.0 + 45.0))
    assert labels.start is None, "00.00.00: an anonymised date, as in de-identified NSRR files"
    assert labels.stages.size == stages.size + 1 and labels.stages[-1] == UNSCORED


def test_events_of_type_other_keep_their_label_and_empty_events(truth):
    stages, _ = truth
    events = pd.DataFrame(
        {
            "onset_s": [100.0, 50.0],
            "duration_s": [10.0, np.nan],
            "type": [OTHER, "hypopnea"],
            "label": ["PLM (Left)", None],
        }
    )
    for data in (write_nsrr_xml(stages, events, start=START), write_profusion_xml(stages, events)):
        labels = read_labels(data)
        assert labels.events["type"].tolist() == ["hypopnea", OTHER]
        assert labels.other_annotations == ["PLM (Left)"] and math.isnan(labels.events["duration_s"][0])
    for data in (
        write_nsrr_xml(stages, None, start=START),
        write_profusion_xml(stages, events.iloc[:0]),
        write_noxturnal_csv(stages, None, start=START),
    ):
        labels = read_labels(data)
        assert np.array_equal(labels.stages, stages) and labels.events.empty


def test_bad_input_is_refused(truth):
    stages, events = truth
    with pytest.raises(ValueError, match=r"stage code\(s\) \[7\]"):
        write_profusion_xml(np.array([0, 7], dtype=np.int8), None)
    with pytest.raises(ValueError, match=r"unknown event type\(s\) \['snore'\]"):
        write_nsrr_xml(stages, pd.DataFrame({"onset_s": [1.0], "duration_s": [2.0], "type": ["snore"]}), start=START)
    with pytest.raises(ValueError, match="need a 'label' column"):
        write_profusion_xml(stages, pd.DataFrame({"onset_s": [1.0], "duration_s": [2.0], "type": [OTHER]}))
    with pytest.raises(ValueError, match="NSRR style"):
        write_nsrr_xml(stages, events, start=START, style="edf")
    with pytest.raises(ValueError, match="language"):
        write_noxturnal_csv(stages, events, start=START, language="pt")
    with pytest.raises(ValueError, match="start is required"):
        write_noxturnal_csv(stages, events, start=None)
    with pytest.raises(ValueError, match="stage coding"):
        write_hypnogram_text(stages, coding="aasm")


# ------------------------------------------------------------------------ what the files look like


def test_nsrr_file_looks_like_the_translator_output(truth):
    stages, events = truth
    data = write_nsrr_xml(stages, events, start=START)
    assert data.startswith(b'<?xml version="1.0" encoding="ISO-8859-1"?>\n<PSGAnnotation>')
    root = ET.fromstring(data)
    assert [c.tag for c in root] == ["SoftwareVersion", "EpochLength", "ScoredEvents"]
    first = root.find("ScoredEvents")[0]
    assert first.findtext("EventConcept") == "Recording Start Time" and first.findtext("Start") == "0"
    assert first.findtext("ClockTime") == "26.10.24 22.47.13"
    ours = {e.tag for e in root.iter()}
    real = real_file("nsrr_xml", "nsrr_psgannotation", "100022_Compumedics.xml")
    assert ours <= {e.tag for e in ET.fromstring(real.read_bytes()).iter()}, "no element the real export lacks"
    concepts = [e.findtext("EventConcept") for e in root.iter("ScoredEvent")]
    assert "SDO:HemoglobinOxygenDesaturationFinding" in concepts and "SDO:NonRapidEyeMovementSleep-N2" in concepts
    official = ET.fromstring(write_nsrr_xml(stages, events, start=START, style="official"))
    kinds = {e.findtext("EventType") for e in official.iter("ScoredEvent")}
    assert {"Stages|Stages", "Respiratory|Respiratory", "Arousals|Arousals"} <= kinds


def test_profusion_file_looks_like_the_compumedics_export(truth):
    stages, events = truth
    data = write_profusion_xml(stages, events)
    assert data.startswith(
        b'<?xml version="1.0" encoding="utf-8"?>\r\n<CMPStudyConfig>\r\n\t<EpochLength>30</EpochLength>'
    )
    assert b"\n" not in data.replace(b"\r\n", b"") and not data.endswith(b"\n")
    root = ET.fromstring(data)
    real = ET.fromstring(real_file("nsrr_xml", "compumedics_profusion", "100022.xml").read_bytes())
    assert [c.tag for c in root] == [c.tag for c in real if c.tag != "Montage"]
    codes = [int(s.text) for s in root.iter("SleepStage")]
    assert len(codes) == stages.size and set(codes) <= {0, 1, 2, 3, 5, 9} and 5 in codes and 9 in codes
    desat = next(e for e in root.iter("ScoredEvent") if e.findtext("Name") == "SpO2 desaturation")
    assert [c.tag for c in desat] == [
        c.tag for c in next(e for e in real.iter("ScoredEvent") if e.find("LowestSpO2") is not None)
    ]
    assert b"ClockTime" not in data and b"2024" not in data


def test_noxturnal_file_looks_like_the_rsleep_export(truth):
    stages, events = truth
    data = write_noxturnal_csv(stages, events, start=START)
    real = real_file("noxturnal_rsleep", "noxturnal_events_example_unicode_2.csv").read_bytes()
    assert data[:2] == real[:2] == b"\xff\xfe", "UTF-16 LE with a BOM"
    text = data.decode("utf-16")
    lines = text.split("\r\n")
    assert lines[-1] == "" and all("\n" not in line and "\r" not in line for line in lines), "CRLF only"
    assert lines[:2] == real.decode("utf-16").split("\r\n")[:2], "same header and units row"
    row = re.compile(r"^(\d\d/\d\d/\d{4} \d\d:\d\d:\d\d),(\d\d/\d\d/\d{4} \d\d:\d\d:\d\d),([^,]+),(\d+(\.\d{1,3})?),$")
    rows = [row.match(line) for line in lines[2:-1]]
    assert all(rows), next(line for line, m in zip(lines[2:], rows) if not m)
    assert rows[0].group(1) == "26/10/2024 22:47:13" and rows[0].group(3) == "Non scoré"
    assert {m.group(1)[:10] for m in rows} == {"26/10/2024", "27/10/2024"}, "the night crosses midnight"
    starts = [datetime.strptime(m.group(1), "%d/%m/%Y %H:%M:%S") for m in rows]
    assert starts == sorted(starts)
    names = {m.group(3) for m in rows}
    assert {"Éveil", "N2", "REM", "A. Obstructive", "Hypopnée", "Désat", "Micro-éveil"} <= names
    # Unscored epochs inside the night are gaps (Noxturnal writes no row); first and last epochs pin the grid.
    assert [i for i, m in enumerate(rows) if m.group(3) == "Non scoré"] == [0, len(rows) - 1]
    stage_rows = [
        m for m in rows if m.group(4) == "30" and m.group(3) in {"Éveil", "N1", "N2", "N3", "REM", "Non scoré"}
    ]
    assert len(stage_rows) == int((stages != UNSCORED).sum()) + 2
    english = write_noxturnal_csv(stages, events, start=START, language="en").decode("utf-16")
    assert english.startswith("Start Time,End Time,Event,Duration,\r\n[],[],[],[s],\r\n")


def test_hypnogram_text_looks_like_yasa_and_sleep_accel(truth):
    stages, _ = truth
    yasa_file = write_hypnogram_text(stages, coding="yasa").decode()
    real = real_file("yasa", "data_full_6hrs_100Hz_hypno_30s.txt").read_text()
    assert yasa_file.splitlines()[:2] == real.splitlines()[:2]
    body = yasa_file.splitlines()[2:]
    assert len(body) == stages.size and set(body) <= {"0", "1", "2", "3", "4", "-2"}
    rk = write_hypnogram_text(stages, coding="rk-5rem").decode().splitlines()
    assert len(rk) == stages.size and set(rk) <= {"0", "1", "2", "3", "5", "-1"} and "5" in rk


@pytest.mark.parametrize(
    "parts",
    [
        ("nsrr_xml", "nsrr_psgannotation", "100022_Compumedics.xml"),
        ("nsrr_xml", "compumedics_profusion", "100022.xml"),
        ("noxturnal_rsleep", "noxturnal_events_example_unicode.csv"),
        ("noxturnal_rsleep", "noxturnal_events_example_unicode_2.csv"),
    ],
)
def test_real_exports_rewritten_read_the_same(parts):
    """A real night read, written again in its own format and read back: same stages and events
    (other events included, with their labels); the writers handle what real nights contain."""
    real = read_labels(real_file(*parts).read_bytes())
    events = real.events
    if real.format == "nsrr-xml":
        data = write_nsrr_xml(real.stages, events, start=real.start, recording_s=real.recording_s)
    elif real.format == "profusion-xml":
        data = write_profusion_xml(real.stages, events)
    else:
        data = write_noxturnal_csv(real.stages, events, start=real.start)
    again = read_labels(data)
    assert again.format == real.format and again.start == real.start
    assert np.array_equal(again.stages, real.stages)
    for col in ("type", "label"):
        assert again.events[col].tolist() == events[col].tolist(), col
    for col in ("onset_s", "duration_s", "nadir"):
        assert np.allclose(again.events[col], events[col], equal_nan=True, atol=1e-9), col
