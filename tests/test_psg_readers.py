"""PSG label readers: every real labelled file of ../shared/data/real, counted by a second route, and
variants of the same formats generated here (files the readers never saw)."""

from __future__ import annotations

import random
import re
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import datetime, timedelta

import edfio
import numpy as np
import pyedflib
import pytest
import yasa

from sunrise_assets.domain.psg_readers import (
    EVENT_COLUMNS,
    PsgFormatError,
    detect_format,
    labels_scores,
    read_labels,
)
from tests.conftest import real_file

STAGE_KEYS = ("W", "N1", "N2", "N3", "REM", "unscored")
STAGING_SCORES = (
    "time_in_bed_min",
    "total_sleep_time_min",
    "sleep_onset_latency_min",
    "waso_min",
    "sleep_efficiency_pct",
    "rem_latency_min",
    "n1_pct",
    "rem_min",
    "arousal_index",
)


def counts_of(codes: list[int]) -> dict[str, int]:
    """Stage counts from plain codes (-1 unscored), by a Python Counter."""
    c = Counter(codes)
    return {"W": c[0], "N1": c[1], "N2": c[2], "N3": c[3], "REM": c[4], "unscored": c[-1]}


def nonzero(d: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in d.items() if v}


# ------------------------------------------------------------------------------------------ EDF+

PYEDFLIB_STAGE = {"W": 0, "1": 1, "2": 2, "3": 3, "4": 3, "R": 4, "?": -1}


def test_real_sleep_edf_hypnogram_against_pyedflib():
    path = real_file("sleep_edf", "SC4001EC-Hypnogram.edf")
    data = path.read_bytes()
    assert detect_format(data) == "edf+"
    labels = read_labels(data, source=path.name)
    assert labels.format == "edf+" and labels.start == datetime(1989, 4, 24, 16, 13) and labels.epoch_s == 30.0
    # Second route: pyedflib's annotations, expanded epoch by epoch in a plain loop.
    with pyedflib.EdfReader(str(path)) as f:
        onsets, durations, texts = f.readAnnotations()
    expected: list[int] = []
    for onset, duration, text in zip(onsets, durations, texts):
        assert int(onset) == 30 * len(expected), "the runs tile the night"
        expected += [PYEDFLIB_STAGE[str(text).removeprefix("Sleep stage ")]] * int(round(duration / 30))
    assert labels.stages.tolist() == expected
    assert (
        labels.stage_counts()
        == counts_of(expected)
        == {"W": 1997, "N1": 58, "N2": 250, "N3": 220, "REM": 125, "unscored": 230}
    )
    assert labels.events.empty and list(labels.events.columns) == list(EVENT_COLUMNS)
    assert labels_scores(labels)["ahi"] is None, "a bare hypnogram scored no respiration: AHI unavailable, not 0"


@pytest.mark.parametrize("parts", [("sleep_edf", "short_psg.edf"), ("noxturnal_rsleep", "subject1.edf")])
def test_real_edf_without_labels_is_an_error(parts):
    path = real_file(*parts)
    with pytest.raises(
        PsgFormatError, match=rf"^{re.escape(path.name)}: no sleep stage annotations and no scored events"
    ):
        read_labels(path.read_bytes(), source=path.name)


def _edf(annotations, start=datetime(2023, 12, 31, 22, 45, 0)) -> bytes:
    edf = edfio.Edf(
        [],
        recording=edfio.Recording(startdate=start.date()),
        starttime=start.time(),
        annotations=[edfio.EdfAnnotation(o, d, t) for o, d, t in annotations],
    )
    return edf.to_bytes()


def test_unseen_edf_written_by_edfio_with_rk_stages_and_events(tmp_path):
    annotations = [
        (0, 90, "Sleep stage W"),
        (90, 60, "Sleep stage 1"),
        (150, 120, "Sleep stage 2"),
        (270, 60, "Sleep stage 3"),
        (330, 90, "Sleep stage 4"),
        (420, 30, "Movement time"),
        (450, 30, "Sleep stage ?"),
        (480, 90, "Sleep stage R"),
        (600, 30, "Sleep stage W"),  # 570-600 is not scored: a gap
        (160, 12.5, "Obstructive Apnea"),
        (200, 20, "Central apnoea"),
        (240, 15, "Mixed Apnea"),
        (300, 14, "Hypopnea"),
        (315, 20, "SpO2 desaturation"),
        (318, 5, "Arousal"),
        (10, None, "Lights off"),
        (620, None, "Lights on"),
    ]
    data = _edf(annotations)
    path = tmp_path / "unseen.edf"
    path.write_bytes(data)
    labels = read_labels(data, source="unseen.edf")
    assert labels.stages.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3, -1, -1, 4, 4, 4, -1, 0]
    with pyedflib.EdfReader(str(path)) as f:  # second route for the events
        onsets, durations, texts = f.readAnnotations()
    notes = [(o, t) for o, t in zip(onsets, texts) if not str(t).startswith(("Sleep stage", "Movement"))]
    ev = labels.events
    assert sorted(zip(ev["onset_s"], ev["label"])) == sorted((float(o), str(t)) for o, t in notes)
    assert ev["type"].tolist() == [
        "other",
        "obstructive_apnea",
        "central_apnea",
        "mixed_apnea",
        "hypopnea",
        "desaturation",
        "arousal",
        "other",
    ]
    assert labels.other_annotations == ["Lights off", "Lights on"]
    assert np.isnan(ev["duration_s"].iloc[0]) and ev["nadir"].isna().all()
    assert labels.start == datetime(2023, 12, 31, 22, 45)


def test_edf_home_sleep_test_and_unknown_stages():
    hst = read_labels(_edf([(100, 12, "Obstructive Apnea"), (400, 11, "Hypopnea"), (5, None, "Lights off")]))
    assert hst.stages.size == 0 and not hst.has_staging
    assert nonzero(hst.event_counts()) == {"obstructive_apnea": 1, "hypopnea": 1, "other": 1}
    bad = _edf(
        [(0, 30, "Sleep stage W"), (30, 30, "Sleep stage 5"), (60, 30, "Sleep stage X"), (90, 30, "Sleep stage 5")]
    )
    with pytest.raises(PsgFormatError, match=r"^b\.edf: unknown sleep stage label\(s\): Sleep stage 5, Sleep stage X$"):
        read_labels(bad, source="b.edf")


# ------------------------------------------------------------------------------------ Noxturnal

NOX_TYPES = {
    "A. Obstructive": "obstructive_apnea",
    "A. Centrale": "central_apnea",
    "A. Mixte": "mixed_apnea",
    "Hypopnée": "hypopnea",
    "Désat": "desaturation",
    "Micro-éveil": "arousal",
}
NOX_STAGES = {"Éveil": 0, "N1": 1, "N2": 2, "N3": 3, "REM": 4}


def nox_rows(data: bytes) -> list[list[str]]:
    """Independent route: decode UTF-16, split CRLF lines and commas, drop the two header rows."""
    text = data.decode("utf-16")
    return [line.split(",") for line in text.split("\r\n")[2:] if line]


def nox_expected(rows: list[list[str]]) -> tuple[dict[str, int], dict[str, int], int]:
    fmt = "%d/%m/%Y %H:%M:%S"
    stage_rows = [r for r in rows if r[2] in NOX_STAGES]
    first = datetime.strptime(stage_rows[0][0], fmt)
    last = datetime.strptime(stage_rows[-1][1], fmt)
    n_epochs = int((last - first).total_seconds() // 30)
    stages = Counter(NOX_STAGES[r[2]] for r in stage_rows)
    stage_counts = {
        "W": stages[0],
        "N1": stages[1],
        "N2": stages[2],
        "N3": stages[3],
        "REM": stages[4],
        "unscored": n_epochs - len(stage_rows),
    }
    events = Counter(NOX_TYPES.get(r[2], "other") for r in rows if r[2] not in NOX_STAGES)
    return stage_counts, dict(events), n_epochs


@pytest.mark.parametrize(
    "name, stage_counts, events",
    [
        (
            "noxturnal_events_example_unicode.csv",
            {"W": 213, "N1": 66, "N2": 466, "N3": 364, "REM": 249, "unscored": 139},
            {"arousal": 22, "other": 31},
        ),
        (
            "noxturnal_events_example_unicode_2.csv",
            {"W": 169, "N1": 38, "N2": 354, "N3": 141, "REM": 146, "unscored": 0},
            {
                "obstructive_apnea": 114,
                "mixed_apnea": 1,
                "hypopnea": 89,
                "desaturation": 191,
                "arousal": 76,
                "other": 93,
            },
        ),
    ],
)
def test_real_noxturnal_exports_against_line_counts(name, stage_counts, events):
    path = real_file("noxturnal_rsleep", name)
    data = path.read_bytes()
    assert data[:2] == b"\xff\xfe" and detect_format(data, "") == "noxturnal-csv"
    labels = read_labels(data, source=name)
    exp_stages, exp_events, n_epochs = nox_expected(nox_rows(data))
    assert labels.n_epochs == n_epochs
    assert labels.stage_counts() == exp_stages == stage_counts
    assert nonzero(labels.event_counts()) == exp_events == events
    assert len(labels.events) + sum(v for k, v in exp_stages.items() if k != "unscored") == len(nox_rows(data))


def test_real_noxturnal_onsets_nadir_and_start():
    labels = read_labels(real_file("noxturnal_rsleep", "noxturnal_events_example_unicode_2.csv").read_bytes())
    assert labels.start == datetime(2018, 7, 25, 23, 46, 0)  # the first epoch, not the analysis start
    ev = labels.events
    first = ev.iloc[0]
    assert (first["label"], first["onset_s"], first["duration_s"]) == ("Début de l'analyse", -20.0, 0.0)
    desat = ev[ev["type"] == "desaturation"].iloc[0]
    assert (desat["onset_s"], desat["duration_s"]) == (71.0, 9.333)  # 23:47:11, "Durée" keeps the ms
    assert ev["onset_s"].is_monotonic_increasing
    # Crosses midnight: an obstructive apnea after midnight is ~ hours after the first epoch, not before it.
    apnea = ev[ev["type"] == "obstructive_apnea"]
    assert (apnea["onset_s"] > 0).all() and apnea["onset_s"].max() > 3600 * 4


def _nox_bytes(
    rows: list[list[str]],
    header="Heure de début,Heure de fin,Événement,Durée,",
    units="[],[],[],[s],",
    encoding="utf-16",
    newline="\r\n",
    delimiter=",",
) -> bytes:
    lines = [header] + ([units] if units else []) + [delimiter.join(r) for r in rows]
    return (newline.join(lines) + newline).encode(encoding)


def _shift_rows(rows, delta: timedelta, fmt_out="%d/%m/%Y %H:%M:%S"):
    fmt = "%d/%m/%Y %H:%M:%S"
    return [
        [
            (datetime.strptime(r[0], fmt) + delta).strftime(fmt_out),
            (datetime.strptime(r[1], fmt) + delta).strftime(fmt_out),
            *r[2:],
        ]
        for r in rows
    ]


def test_unseen_noxturnal_exports_other_dates_encodings_and_clock_only():
    data = real_file("noxturnal_rsleep", "noxturnal_events_example_unicode_2.csv").read_bytes()
    rows = nox_rows(data)
    base = read_labels(data)
    # New Year's Eve, later in the evening: the night now crosses midnight AND a year boundary.
    delta = datetime(2023, 12, 31, 22, 10) - datetime(2018, 7, 25, 23, 45, 40)
    variants = {
        "utf-16 + BOM, CRLF": _nox_bytes(_shift_rows(rows, delta)),
        "utf-8 + BOM, LF, ';' and an English header": _nox_bytes(
            [[c.replace(".", ",") if i == 3 else c for i, c in enumerate(r)] for r in _shift_rows(rows, delta)],
            header="Start Time;End Time;Event;Duration;",
            units="",
            encoding="utf-8-sig",
            newline="\n",
            delimiter=";",
        ),
    }
    for what, variant in variants.items():
        assert detect_format(variant, "export.txt") == "noxturnal-csv", what
        labels = read_labels(variant, source=what)
        assert labels.start == datetime(2023, 12, 31, 22, 10, 20), what
        assert np.array_equal(labels.stages, base.stages), what
        assert np.allclose(labels.events["onset_s"], base.events["onset_s"]), what
        assert np.allclose(labels.events["duration_s"], base.events["duration_s"]), what
        assert labels.events["type"].tolist() == base.events["type"].tolist(), what
    # Clock times without dates: the night is unwrapped at midnight.
    clock_only = _nox_bytes([[r[0][11:], r[1][11:], *r[2:]] for r in rows])
    labels = read_labels(clock_only)
    assert labels.start is None and np.array_equal(labels.stages, base.stages)
    assert np.allclose(labels.events["onset_s"], base.events["onset_s"])
    assert read_labels(clock_only, start=datetime(2018, 7, 25, 23, 0)).start == datetime(2018, 7, 25, 23, 46)


def test_noxturnal_unknown_stage_label_is_listed():
    rows = nox_rows(real_file("noxturnal_rsleep", "noxturnal_events_example_unicode_2.csv").read_bytes())
    renamed = {"N2": "Sommeil lent léger", "N3": "Sommeil lent profond"}
    bad = _nox_bytes([[*r[:2], renamed.get(r[2], r[2]), *r[3:]] for r in rows])
    with pytest.raises(
        PsgFormatError, match=r"unknown sleep stage label\(s\): Sommeil lent léger, Sommeil lent profond"
    ):
        read_labels(bad, source="bad.csv")


def test_noxturnal_home_sleep_test_without_staging():
    rows = nox_rows(real_file("noxturnal_rsleep", "noxturnal_events_example_unicode_2.csv").read_bytes())
    hst_rows = [r for r in rows if r[2] not in NOX_STAGES]
    labels = read_labels(_nox_bytes(hst_rows), source="hst.csv")
    assert labels.stages.size == 0 and labels.n_epochs == 0
    assert labels.start == datetime(2018, 7, 25, 23, 45, 40)  # first row: the analysis start
    assert labels.event_counts()["obstructive_apnea"] == 114 and labels.event_counts()["hypopnea"] == 89
    scores = labels_scores(labels)
    for key in STAGING_SCORES:
        assert scores[key] is None, f"{key} needs staging: unavailable, never 0"
    hours = labels.recording_s / 3600
    assert 7.0 < hours < 7.2
    assert scores["ahi"] == pytest.approx((114 + 89 + 1) / hours) and scores["odi"] == pytest.approx(191 / hours)


# ------------------------------------------------------------------------------------------ XML

PROFUSION_STAGE = {"0": 0, "1": 1, "2": 2, "3": 3, "4": 3, "5": 4}
PROFUSION_TYPES = {
    "Hypopnea": "hypopnea",
    "Obstructive Apnea": "obstructive_apnea",
    "SpO2 desaturation": "desaturation",
    "Arousal ()": "arousal",
}


def test_real_profusion_against_etree_and_yasa():
    path = real_file("nsrr_xml", "compumedics_profusion", "100022.xml")
    data = path.read_bytes()
    assert detect_format(data, "study.txt") == "profusion-xml", "from the content, not the name"
    labels = read_labels(data, source=path.name)
    root = ET.parse(path).getroot()
    codes = [PROFUSION_STAGE[s.text] for s in root.find("SleepStages")]
    assert labels.stages.tolist() == codes and len(codes) == 1051
    assert (
        labels.stage_counts()
        == counts_of(codes)
        == {"W": 171, "N1": 61, "N2": 571, "N3": 119, "REM": 129, "unscored": 0}
    )
    # A second, independent Profusion reader: yasa's.
    hyp = yasa.Hypnogram.from_profusion(str(path))
    assert np.array_equal(hyp.as_int().to_numpy(), labels.stages)
    names = [e.findtext("Name") for e in root.find("ScoredEvents")]
    expected = Counter(PROFUSION_TYPES.get(n, "other") for n in names)
    assert (
        nonzero(labels.event_counts())
        == dict(expected)
        == {"hypopnea": 175, "obstructive_apnea": 23, "desaturation": 125, "arousal": 142, "other": 16}
    )
    lowest = sorted(float(e.findtext("LowestSpO2")) for e in root.find("ScoredEvents") if e.findtext("LowestSpO2"))
    desat = labels.events[labels.events["type"] == "desaturation"]
    assert (
        sorted(desat["nadir"]) == lowest
        and labels.events.loc[labels.events["type"] != "desaturation", "nadir"].isna().all()
    )
    assert labels.start is None and labels.epoch_s == 30.0
    assert read_labels(data, start=datetime(1997, 1, 30, 22)).start == datetime(1997, 1, 30, 22)


NSRR_STAGE = {
    "SDO:WakeState": 0,
    "SDO:NonRapidEyeMovementSleep-N1": 1,
    "SDO:NonRapidEyeMovementSleep-N2": 2,
    "SDO:NonRapidEyeMovementSleep-N3": 3,
    "SDO:RapidEyeMovementSleep": 4,
}
NSRR_TYPES = {
    "SDO:ObstructiveApneaFinding": "obstructive_apnea",
    "SDO:HypopneaFinding": "hypopnea",
    "SDO:HemoglobinOxygenDesaturationFinding": "desaturation",
    "SDO:SleepArousalFinding": "arousal",
}


def nsrr_events_by_regex(text: str) -> list[tuple[str, float, float]]:
    out = []
    for block in re.findall(r"<ScoredEvent>(.*?)</ScoredEvent>", text, flags=re.S):
        concept = re.search(r"<EventConcept>(.*?)</EventConcept>", block).group(1)
        out.append(
            (
                concept,
                float(re.search(r"<Start>(.*?)</Start>", block).group(1)),
                float(re.search(r"<Duration>(.*?)</Duration>", block).group(1)),
            )
        )
    return out


def test_real_nsrr_annotation_against_regex_counts_and_profusion():
    path = real_file("nsrr_xml", "nsrr_psgannotation", "100022_Compumedics.xml")
    data = path.read_bytes()
    assert detect_format(data) == "nsrr-xml"
    labels = read_labels(data, source=path.name)
    events = nsrr_events_by_regex(data.decode("latin-1"))
    (start_concept, _, recording_s), rest = events[0], events[1:]
    assert start_concept == "Recording Start Time" and recording_s == 31530
    stage_epochs = Counter()
    for concept, _, duration in rest:
        if concept in NSRR_STAGE:
            stage_epochs[NSRR_STAGE[concept]] += int(duration // 30)
    n_epochs = int(recording_s // 30)
    expected = {
        "W": stage_epochs[0],
        "N1": stage_epochs[1],
        "N2": stage_epochs[2],
        "N3": stage_epochs[3],
        "REM": stage_epochs[4],
        "unscored": n_epochs - sum(stage_epochs.values()),
    }
    assert labels.n_epochs == n_epochs == 1051
    assert labels.stage_counts() == expected == {"W": 170, "N1": 61, "N2": 571, "N3": 119, "REM": 129, "unscored": 1}
    assert nonzero(labels.event_counts()) == dict(
        Counter(NSRR_TYPES.get(c, "other") for c, _, _ in rest if c not in NSRR_STAGE)
    )
    assert labels.start == datetime(1997, 1, 30, 22, 0, 0) and labels.recording_s == 31530
    assert labels.skipped_annotations == {"Recording Start Time": 1}
    # The same night from its Profusion source: the 2015 translator dropped the first epoch (its
    # hypnogram starts one epoch late and ends one short, read here as one unscored epoch); events agree.
    profusion = read_labels(real_file("nsrr_xml", "compumedics_profusion", "100022.xml").read_bytes())
    assert np.array_equal(labels.stages[:-1], profusion.stages[1:]) and labels.stages[-1] == -1
    for col in ("onset_s", "duration_s", "nadir"):
        assert np.allclose(labels.events[col], profusion.events[col], equal_nan=True), col
    assert labels.events["type"].tolist() == profusion.events["type"].tolist()


OFFICIAL_CONCEPT = {
    "SDO:WakeState": ("Stages|Stages", "Wake|0"),
    "SDO:NonRapidEyeMovementSleep-N1": ("Stages|Stages", "Stage 1 sleep|1"),
    "SDO:NonRapidEyeMovementSleep-N2": ("Stages|Stages", "Stage 2 sleep|2"),
    "SDO:NonRapidEyeMovementSleep-N3": ("Stages|Stages", "Stage 4 sleep|4"),
    "SDO:RapidEyeMovementSleep": ("Stages|Stages", "REM sleep|5"),
    "SDO:ObstructiveApneaFinding": ("Respiratory|Respiratory", "Obstructive apnea|Obstructive Apnea"),
    "SDO:HypopneaFinding": ("Respiratory|Respiratory", "Hypopnea|Hypopnea"),
    "SDO:HemoglobinOxygenDesaturationFinding": ("Respiratory|Respiratory", "SpO2 desaturation|SpO2 desaturation"),
    "SDO:SleepArousalFinding": ("Arousals|Arousals", "ASDA arousal|Arousal (ASDA)"),
    "Oximetry Artifact Event": ("Respiratory|Respiratory", "SpO2 artifact|SpO2 artifact"),
}
SRO_CONCEPT = {
    "SDO:WakeState": "SRO:Wake",
    "SDO:NonRapidEyeMovementSleep-N1": "SRO:Stage1Sleep",
    "SDO:NonRapidEyeMovementSleep-N2": "SRO:Stage2Sleep",
    "SDO:NonRapidEyeMovementSleep-N3": "SRO:Stage3Sleep",
    "SDO:RapidEyeMovementSleep": "SRO:RapidEyeMovement",
    "SDO:ObstructiveApneaFinding": "SRO:ObstructiveApnea",
    "SDO:HypopneaFinding": "SRO:Hypopnea",
    "SDO:HemoglobinOxygenDesaturationFinding": "SRO:SpO2Desaturation",
    "SDO:SleepArousalFinding": "SRO:Arousal",
    "Oximetry Artifact Event": "SRO:SpO2Artifact",
}


def _rewrite_nsrr(data: bytes, style: str, seed: int = 0, clock: str = "30.01.97 22.00.00") -> bytes:
    """The real NSRR file re-styled: child elements shuffled, concepts in another vocabulary."""
    rng = random.Random(seed)
    root = ET.fromstring(data)
    for event in root.iter("ScoredEvent"):
        concept = event.find("EventConcept")
        if concept.text == "Recording Start Time":
            event.find("ClockTime").text = clock
        elif style == "official":
            etype, concept.text = OFFICIAL_CONCEPT[concept.text]
            ET.SubElement(event, "EventType").text = etype
        elif style == "sro":
            concept.text = SRO_CONCEPT[concept.text]
        children = list(event)
        rng.shuffle(children)
        event[:] = children
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


@pytest.mark.parametrize("style", ["official", "sro", "sdo-shuffled"])
def test_unseen_nsrr_styles_read_the_same(style):
    data = real_file("nsrr_xml", "nsrr_psgannotation", "100022_Compumedics.xml").read_bytes()
    base = read_labels(data)
    labels = read_labels(_rewrite_nsrr(data, style, seed=len(style)), source=style)
    assert labels.format == "nsrr-xml"
    assert np.array_equal(labels.stages, base.stages)
    assert labels.event_counts() == base.event_counts()
    assert np.allclose(labels.events["onset_s"], base.events["onset_s"])
    assert np.allclose(labels.events["nadir"], base.events["nadir"], equal_nan=True)


def test_nsrr_deleted_events_skipped_unknown_stage_listed_anonymised_date():
    data = real_file("nsrr_xml", "nsrr_psgannotation", "100022_Compumedics.xml").read_bytes()
    text = data.decode("latin-1")
    deleted = (
        "<ScoredEvent><EventConcept>Deleted Hypopnea 4% A</EventConcept><Start>100</Start>"
        "<Duration>12</Duration></ScoredEvent>"
    )
    with_deleted = text.replace("<ScoredEvents>", "<ScoredEvents>" + deleted * 2, 1).encode("latin-1")
    labels = read_labels(with_deleted)
    assert labels.skipped_annotations == {"Recording Start Time": 1, "Deleted Hypopnea 4% A": 2}
    assert labels.event_counts()["hypopnea"] == 175
    bad = text.replace("SDO:NonRapidEyeMovementSleep-N3", "SDO:NonRapidEyeMovementSleep-N5", 1)
    bad = bad.replace("SDO:RapidEyeMovementSleep", "Stage 6 sleep", 1).encode("latin-1")
    with pytest.raises(
        PsgFormatError, match=r"unknown sleep stage concept\(s\): SDO:NonRapidEyeMovementSleep-N5, Stage 6 sleep$"
    ):
        read_labels(bad, source="bad.xml")
    shhs_like = read_labels(_rewrite_nsrr(data, "official", clock="00.00.00 23.00.00"))
    assert shhs_like.start is None, "an anonymised date gives no absolute start"


def test_unseen_profusion_variants():
    data = real_file("nsrr_xml", "compumedics_profusion", "100022.xml").read_bytes()
    base = read_labels(data)
    root = ET.fromstring(data)
    rng = random.Random(3)
    for event in root.find("ScoredEvents"):
        children = list(event)
        rng.shuffle(children)
        event[:] = children
    kids = list(root)
    rng.shuffle(kids)
    root[:] = kids
    shuffled = read_labels(ET.tostring(root, encoding="utf-8"))
    assert np.array_equal(shuffled.stages, base.stages) and shuffled.event_counts() == base.event_counts()
    # An export without staging (home sleep test) and one with a code we do not know.
    stages = root.find("SleepStages")
    kept = list(stages)
    stages[:] = []
    hst = read_labels(ET.tostring(root, encoding="utf-8"))
    assert hst.stages.size == 0 and hst.event_counts()["hypopnea"] == 175
    assert all(labels_scores(hst)[k] is None for k in STAGING_SCORES)
    kept[10].text, kept[20].text = "7", "R"
    stages[:] = kept
    with pytest.raises(PsgFormatError, match=r"unknown SleepStage code\(s\): '7', 'R'"):
        read_labels(ET.tostring(root, encoding="utf-8"), source="p.xml")


def test_xml_of_another_kind_is_refused():
    with pytest.raises(PsgFormatError, match=r"XML with root <svg>"):
        detect_format(b'<?xml version="1.0"?>\n<!-- x -->\n<svg width="1"></svg>', "x.xml")


# ---------------------------------------------------------------------------------- hypnogram text


def test_real_yasa_hypnogram_needs_its_coding():
    path = real_file("yasa", "data_full_6hrs_100Hz_hypno_30s.txt")
    data = path.read_bytes()
    assert detect_format(data) == "hypnogram-text"
    with pytest.raises(PsgFormatError, match="integer hypnogram: its stage coding must be stated"):
        read_labels(data, source=path.name)
    labels = read_labels(data, source=path.name, stage_coding="yasa")
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    assert labels.n_epochs == len(lines) == 720
    assert (
        labels.stage_counts()
        == counts_of([int(x) for x in lines])
        == {"W": 43, "N1": 22, "N2": 318, "N3": 182, "REM": 155, "unscored": 0}
    )
    # The wrong coding is not silently "fixed": with REM = 5, the 4s are N3.
    assert read_labels(data, stage_coding="rk-5rem").stage_counts()["REM"] == 0


@pytest.mark.parametrize("subject", ["46343", "759667", "781756", "844359"])
def test_real_walch_psg_labels(subject):
    path = real_file("sleep_accel_walch2019", "features", f"{subject}_psg_labels.out")
    labels = read_labels(path.read_bytes(), source=path.name, stage_coding="rk-5rem")
    values = [int(float(x)) for x in path.read_text().split()]
    assert labels.stage_counts() == counts_of([{5: 4}.get(v, v) for v in values])
    assert labels.n_epochs == len(values) and labels.stage_counts()["REM"] == values.count(5) > 0


@pytest.mark.parametrize(
    "parts",
    [
        ("yasa_sri", "sample_data_sri_sbj01-sbj03.csv"),
        ("sleep_accel_walch2019", "features", "46343_time_feature.out"),
        ("sleep_accel_walch2019", "clock_proxy", "46343_clock_proxy.txt"),
    ],
)
def test_files_that_are_not_label_exports_are_refused(parts):
    with pytest.raises(PsgFormatError, match="not a PSG label format we read"):
        read_labels(real_file(*parts).read_bytes(), source=parts[-1])


def test_unseen_string_and_integer_hypnograms():
    text = "# scored by hand\nw\nWake\nn1\nN2\nn3\nN4\nR\nrem\n?\nUNS\nArt\nSleep stage 2\n"
    labels = read_labels(text.encode("utf-16"), source="hand.txt")
    assert labels.format == "hypnogram-text"
    assert labels.stages.tolist() == [0, 0, 1, 2, 3, 3, 4, 4, -1, -1, -1, 2]
    with pytest.raises(PsgFormatError, match=r"unknown stage label\(s\): X, deep$"):
        read_labels(b"W\nN2\nX\ndeep\nX\n", source="bad.txt")
    ints = b"0\n1\n2\n3\n5\n-1\n"
    assert read_labels(ints, stage_coding={0: "W", 1: "N1", 2: "N2", 3: "N3", 5: "REM", -1: None}).stages.tolist() == [
        0,
        1,
        2,
        3,
        4,
        -1,
    ]
    assert read_labels(ints, stage_coding="0=W,1=N1,2=N2,3=N3,5=REM,-1=?").stages.tolist() == [0, 1, 2, 3, 4, -1]
    with pytest.raises(PsgFormatError, match=r"unknown stage code\(s\): 5, -1$"):
        read_labels(ints, stage_coding={0: "W", 1: "N1", 2: "N2", 3: "N3"})
    with pytest.raises(PsgFormatError, match="unknown stage coding 'aasm'"):
        read_labels(ints, stage_coding="aasm")


def test_empty_and_binary_files():
    with pytest.raises(PsgFormatError, match="^x: empty file"):
        read_labels(b"", source="x")
    with pytest.raises(PsgFormatError, match="binary file"):
        detect_format(bytes(range(256)) * 4)
