"""PSG scoring exports written from truth, the way the labs' software writes them.

The counterpart of :mod:`sunrise_assets.domain.psg_readers` for the synthetic bucket: sites deliver their
scoring in several formats, so the generated bucket must too. Each writer takes the truth

- ``stages``: int8 per 30-s epoch from the study start (``sunalgo.labels`` codes, -1 unscored);
- ``events``: a DataFrame with ``onset_s``, ``duration_s`` (s from epoch 0) and ``type``
  (``obstructive_apnea``, ``central_apnea``, ``mixed_apnea``, ``hypopnea``, ``untyped_apnea``,
  ``desaturation``, ``arousal``; ``other`` needs a ``label`` column, written as is), optionally ``nadir`` (SpO2 % of a
  desaturation) and ``baseline`` (SpO2 % before it);
- ``start``: the PSG start, a naive site-local wall clock (where the format has a clock);
- ``other_events``: ``(onset_s, duration_s or None, label)`` annotations in the format's own
  vocabulary (artefacts, body positions, a deleted automatic event...), written verbatim;

and returns the file's bytes. ``read_labels(write_X(...))`` gives back the truth stages and the
events' onsets, durations and types, to the file's time resolution (Noxturnal clock times have whole
seconds; every other format keeps the onsets exactly). What each writes, as in the real exports of
``../shared/data/real`` (see its SOURCES.md):

| writer | format | clock time | notes |
|---|---|---|---|
| :func:`write_nsrr_xml` | ``<PSGAnnotation>`` (ISO-8859-1) | ``Recording Start Time`` ``ClockTime`` | \
``sdo`` / ``sro`` / ``official`` (``Type|Concept``) vocabularies |
| :func:`write_profusion_xml` | Compumedics ``<CMPStudyConfig>`` (CRLF, tabs) | none | \
one ``<SleepStage>`` per epoch (REM 5, unscored 9) |
| :func:`write_noxturnal_csv` | Noxturnal events CSV (UTF-16 LE + BOM, CRLF) | every row, ``dd/mm/YYYY HH:MM:SS`` | \
French (default) or English labels |
| :func:`write_hypnogram_text` | one integer per line | none | \
coding ``rk-5rem`` (REM 5) or ``yasa`` (REM 4): never in the file, see :func:`write_stage_coding` |

None of these exports carries a patient name, birth date or reference (the real ones do not): in a
study folder the identifiers are in the EDF header, ``patient.json`` and the folder name.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from xml.sax.saxutils import escape

import numpy as np
import pandas as pd

from sunalgo.labels import (
    AROUSAL,
    CENTRAL_APNEA,
    DESATURATION,
    EPOCH_S,
    HYPOPNEA,
    MIXED_APNEA,
    OBSTRUCTIVE_APNEA,
    OTHER,
    STAGE_CODE,
    UNSCORED,
    UNTYPED_APNEA,
)

OtherEvent = tuple[float, float | None, str]

NSRR_STYLES: tuple[str, ...] = ("sdo", "sro", "official")
NOXTURNAL_LANGUAGES: tuple[str, ...] = ("fr", "en")
CODINGS: tuple[str, ...] = ("rk-5rem", "yasa")
STAGE_CODING_FILE = "stage_coding.txt"  # sidecar of an integer hypnogram: the name of its coding

_W, _N1, _N2, _N3, _R = (STAGE_CODE[s] for s in ("W", "N1", "N2", "N3", "REM"))
_SCORED_TYPES = (OBSTRUCTIVE_APNEA, CENTRAL_APNEA, MIXED_APNEA, HYPOPNEA, UNTYPED_APNEA, DESATURATION, AROUSAL)


# ------------------------------------------------------------------------------------ the truth


def _stages(stages: np.ndarray) -> np.ndarray:
    codes = np.asarray(stages)
    if codes.ndim != 1:
        raise ValueError(f"stages must be one code per epoch, got shape {codes.shape}")
    bad = sorted({int(c) for c in np.unique(codes)} - {UNSCORED, _W, _N1, _N2, _N3, _R})
    if bad:
        raise ValueError(f"stage code(s) {bad} are no sunalgo.labels stage (0 W .. 4 REM, -1 unscored)")
    return codes.astype(np.int8)


def _runs(codes: np.ndarray) -> list[tuple[int, int, int]]:
    """(first epoch, number of epochs, code) of each run of equal stages."""
    if codes.size == 0:
        return []
    starts = np.concatenate([[0], np.flatnonzero(np.diff(codes)) + 1])
    lengths = np.diff(np.concatenate([starts, [codes.size]]))
    return [(int(s), int(n), int(codes[s])) for s, n in zip(starts, lengths)]


def _events(events: pd.DataFrame | None) -> list[dict]:
    """Rows of the truth events, checked, sorted by onset (stable)."""
    if events is None or len(events) == 0:
        return []
    missing = {"onset_s", "duration_s", "type"} - set(events.columns)
    if missing:
        raise ValueError(f"events lack column(s) {sorted(missing)}")
    kinds = events["type"].astype(str)
    unknown = sorted(set(kinds) - {*_SCORED_TYPES, OTHER})
    if unknown:
        raise ValueError(f"unknown event type(s) {unknown}: use {', '.join(_SCORED_TYPES)} or other (with a label)")
    if (kinds == OTHER).any() and "label" not in events.columns:
        raise ValueError("events of type 'other' need a 'label' column (their text in the file)")
    onset = events["onset_s"].to_numpy(np.float64)
    if not np.isfinite(onset).all():
        raise ValueError("event onsets must be finite")
    n = len(events)
    nadir = events["nadir"].to_numpy(np.float64) if "nadir" in events.columns else np.full(n, np.nan)
    baseline = events["baseline"].to_numpy(np.float64) if "baseline" in events.columns else np.full(n, np.nan)
    labels = events["label"].astype(object).to_numpy() if "label" in events.columns else np.full(n, None)
    rows = [
        {
            "onset": float(o),
            "duration": float(d),
            "type": t,
            "nadir": float(na),
            "baseline": float(b),
            "label": None if t != OTHER else str(lab),
        }
        for o, d, t, na, b, lab in zip(onset, events["duration_s"].to_numpy(np.float64), kinds, nadir, baseline, labels)
    ]
    order = np.argsort(onset, kind="stable")
    return [rows[i] for i in order]


def _others(other_events: Iterable[OtherEvent]) -> list[tuple[float, float, str]]:
    out = []
    for onset, duration, label in other_events:
        out.append((float(onset), float("nan") if duration is None else float(duration), str(label)))
    return out


def _num(x: float) -> str:
    """Shortest text that reads back as the same float, without a trailing ``.0`` ("5900", "5694.9")."""
    return repr(float(x)).removesuffix(".0")


def _float(x: float) -> str:
    """Shortest text that reads back as the same float, ``.0`` kept ("1702.0"), as NSRR writes starts."""
    return repr(float(x))


# ------------------------------------------------------------------------------------ NSRR XML

_NSRR_STAGE: dict[str, dict[int, str | None]] = {
    # SDO has no concept for an unscored epoch: the NSRR translator leaves a gap.
    "sdo": {
        _W: "SDO:WakeState",
        _N1: "SDO:NonRapidEyeMovementSleep-N1",
        _N2: "SDO:NonRapidEyeMovementSleep-N2",
        _N3: "SDO:NonRapidEyeMovementSleep-N3",
        _R: "SDO:RapidEyeMovementSleep",
        UNSCORED: None,
    },
    "sro": {
        _W: "SRO:Wake",
        _N1: "SRO:Stage1Sleep",
        _N2: "SRO:Stage2Sleep",
        _N3: "SRO:Stage3Sleep",
        _R: "SRO:RapidEyeMovement",
        UNSCORED: "SRO:UnscoredEpoch",
    },
    "official": {
        _W: "Wake|0",
        _N1: "Stage 1 sleep|1",
        _N2: "Stage 2 sleep|2",
        _N3: "Stage 3 sleep|3",
        _R: "REM sleep|5",
        UNSCORED: "Unscored|9",
    },
}
_NSRR_EVENT: dict[str, dict[str, str]] = {
    "sdo": {
        OBSTRUCTIVE_APNEA: "SDO:ObstructiveApneaFinding",
        CENTRAL_APNEA: "SDO:CentralApneaFinding",
        MIXED_APNEA: "SDO:MixedApneaFinding",
        HYPOPNEA: "SDO:HypopneaFinding",
        UNTYPED_APNEA: "SDO:ApneaFinding",
        DESATURATION: "SDO:HemoglobinOxygenDesaturationFinding",
        AROUSAL: "SDO:SleepArousalFinding",
    },
    "sro": {
        OBSTRUCTIVE_APNEA: "SRO:ObstructiveApnea",
        CENTRAL_APNEA: "SRO:CentralApnea",
        MIXED_APNEA: "SRO:MixedApnea",
        HYPOPNEA: "SRO:Hypopnea",
        UNTYPED_APNEA: "SRO:Apnea",
        DESATURATION: "SRO:SpO2Desaturation",
        AROUSAL: "SRO:Arousal",
    },
    "official": {
        OBSTRUCTIVE_APNEA: "Obstructive apnea|Obstructive Apnea",
        CENTRAL_APNEA: "Central apnea|Central Apnea",
        MIXED_APNEA: "Mixed apnea|Mixed Apnea",
        HYPOPNEA: "Hypopnea|Hypopnea",
        UNTYPED_APNEA: "Apnea|Apnea",
        DESATURATION: "SpO2 desaturation|SpO2 desaturation",
        AROUSAL: "Arousal|Arousal ()",
    },
}
_NSRR_EVENT_TYPE = {AROUSAL: "Arousals|Arousals"}  # official style; every other scored event is respiratory


def write_nsrr_xml(
    stages: np.ndarray,
    events: pd.DataFrame | None,
    *,
    start: datetime | None,
    style: str = "sdo",
    epoch_s: float = EPOCH_S,
    recording_s: float | None = None,
    other_events: Iterable[OtherEvent] = (),
    software: str = "Compumedics",
) -> bytes:
    """NSRR ``<PSGAnnotation>`` XML, as the NSRR translator writes it.

    The first event is ``Recording Start Time`` (Start 0, Duration = ``recording_s``, by default the
    scored epochs' length, so that trailing unscored epochs survive; ``ClockTime`` ``dd.mm.yy HH.MM.SS``
    of ``start``, ``00.00.00 00.00.00`` when it is None as in de-identified NSRR files). Then the events
    by onset (``SpO2Nadir``/``SpO2Baseline`` on desaturations that state them), then the merged stage
    runs. ``style``: ``sdo`` (translator output, unscored epochs left as gaps), ``sro`` (older concepts),
    ``official`` (SHHS/MESA ``<EventType>Stages|Stages</EventType>`` with ``Stage 2 sleep|2`` concepts).
    A deleted event is an ``other_events`` row such as ``(100.0, 12.0, "Deleted Hypopnea 4% A")``.
    """
    if style not in NSRR_STYLES:
        raise ValueError(f"NSRR style {style!r}: use one of {', '.join(NSRR_STYLES)}")
    codes = _stages(stages)
    official = style == "official"
    length = codes.size * epoch_s if recording_s is None else float(recording_s)
    clock = "00.00.00 00.00.00" if start is None else f"{start:%d.%m.%y %H.%M.%S}"

    def event(children: list[tuple[str, str | None]]) -> list[str]:
        out = ["        <ScoredEvent>"]
        for tag, text in children:
            out.append(f"            <{tag}/>" if text is None else f"            <{tag}>{escape(text)}</{tag}>")
        out.append("        </ScoredEvent>")
        return out

    lines = [
        '<?xml version="1.0" encoding="ISO-8859-1"?>',
        "<PSGAnnotation>",
        f"    <SoftwareVersion>{escape(software)}</SoftwareVersion>",
        f"    <EpochLength>{_num(epoch_s)}</EpochLength>",
        "    <ScoredEvents>",
    ]
    head = [("EventType", None)] if official else []
    lines += event(
        head
        + [("EventConcept", "Recording Start Time"), ("Start", "0"), ("Duration", _num(length)), ("ClockTime", clock)]
    )
    rows: list[tuple[float, list[tuple[str, str | None]]]] = []
    for e in _events(events):
        kind = e["type"]
        children = []
        if official and kind != OTHER:
            children.append(("EventType", _NSRR_EVENT_TYPE.get(kind, "Respiratory|Respiratory")))
        children.append(("EventConcept", e["label"] if kind == OTHER else _NSRR_EVENT[style][kind]))
        if not math.isnan(e["duration"]):
            children.append(("Duration", _num(e["duration"])))
        children.append(("Start", _float(e["onset"])))
        if kind == DESATURATION and not math.isnan(e["nadir"]):
            children.append(("SpO2Nadir", _num(e["nadir"])))
        if kind == DESATURATION and not math.isnan(e["baseline"]):
            children.append(("SpO2Baseline", _float(e["baseline"])))
        rows.append((e["onset"], children))
    for onset, duration, label in _others(other_events):
        children = [("EventConcept", label)]
        if not math.isnan(duration):
            children.append(("Duration", _num(duration)))
        rows.append((onset, children + [("Start", _float(onset))]))
    for _, children in sorted(rows, key=lambda r: r[0]):  # stable: truth order kept on equal onsets
        lines += event(children)
    for first, n, code in _runs(codes):
        concept = _NSRR_STAGE[style][code]
        if concept is None:
            continue
        head = [("EventType", "Stages|Stages")] if official else []
        lines += event(
            head + [("EventConcept", concept), ("Start", _float(first * epoch_s)), ("Duration", _float(n * epoch_s))]
        )
    lines += ["    </ScoredEvents>", "</PSGAnnotation>"]
    return ("\n".join(lines) + "\n").encode("latin-1", errors="xmlcharrefreplace")


# ------------------------------------------------------------------------------- Profusion XML

_PROFUSION_STAGE = {_W: 0, _N1: 1, _N2: 2, _N3: 3, _R: 5, UNSCORED: 9}
_PROFUSION_EVENT = {
    OBSTRUCTIVE_APNEA: "Obstructive Apnea",
    CENTRAL_APNEA: "Central Apnea",
    MIXED_APNEA: "Mixed Apnea",
    HYPOPNEA: "Hypopnea",
    UNTYPED_APNEA: "Apnea",
    DESATURATION: "SpO2 desaturation",
    AROUSAL: "Arousal ()",
}
_PROFUSION_INPUT = {DESATURATION: "SAO2", AROUSAL: "EMG"}  # every other scored event: AIRFLOW
# (name, colour, input) of the legend, as the real export lists them.
_PROFUSION_LEGEND = (
    ("Central Apnea", 16689645, "AIRFLOW"),
    ("Obstructive Apnea", 16628921, "AIRFLOW"),
    ("Mixed Apnea", 16577711, "AIRFLOW"),
    ("SpO2 desaturation", 9342719, "SAO2"),
    ("Respiratory artifact", 10406345, "AIRFLOW"),
    ("SpO2 artifact", 10406345, "SAO2"),
    ("Arousal ()", 11206589, "EMG"),
    ("Hypopnea", 16117971, "AIRFLOW"),
    ("RERA", 11206589, "AIRFLOW"),
)


def write_profusion_xml(
    stages: np.ndarray,
    events: pd.DataFrame | None,
    *,
    epoch_s: float = EPOCH_S,
    other_events: Iterable[OtherEvent] = (),
) -> bytes:
    """Compumedics Profusion ``<CMPStudyConfig>`` study export (UTF-8, tabs, CRLF, no final newline).

    ``<EpochLength>``, the step channels and the scored-event legend, ``<ScoredEvents>`` by onset
    (desaturations carry ``<LowestSpO2>`` and, with a baseline, ``<Desaturation>``), then one
    ``<SleepStage>`` per epoch (0 W, 1 N1, 2 N2, 3 N3, 5 REM, 9 unscored). No clock time: the study's
    start is the EDF's.
    """
    codes = _stages(stages)
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        "<CMPStudyConfig>",
        f"\t<EpochLength>{_num(epoch_s)}</EpochLength>",
    ]
    lines += ["\t<StepChannels>"]
    for channel, labels in (("POSITION", ("RIGHT", "LEFT", "BACK", "FRONT")), ("LIGHT", ("ON", "OFF"))):
        lines += ["\t\t<StepChannel>", f"\t\t\t<Input>{channel}</Input>", "\t\t\t<Labels>"]
        lines += [f"\t\t\t\t<Label>{label}</Label>" for label in labels]
        lines += ["\t\t\t</Labels>", "\t\t</StepChannel>"]
    lines += ["\t</StepChannels>", "\t<ScoredEventSettings>"]
    for name, colour, channel in _PROFUSION_LEGEND:
        lines += [
            "\t\t<ScoredEventSetting>",
            f"\t\t\t<Name>{escape(name)}</Name>",
            f"\t\t\t<Colour>{colour}</Colour>",
            "\t\t\t<TextColour>4194304</TextColour>",
            f"\t\t\t<Input>{channel}</Input>",
            "\t\t</ScoredEventSetting>",
        ]
    lines += ["\t</ScoredEventSettings>", "\t<ScoredEvents>"]
    rows: list[tuple[float, list[str]]] = []
    for e in _events(events):
        kind = e["type"]
        body = []
        if kind == DESATURATION and not math.isnan(e["nadir"]):
            body.append(f"<LowestSpO2>{_num(e['nadir'])}</LowestSpO2>")
            if not math.isnan(e["baseline"]):
                body.append(f"<Desaturation>{_num(round(e['baseline'] - e['nadir'], 3))}</Desaturation>")
        body.append(f"<Name>{escape(e['label'] if kind == OTHER else _PROFUSION_EVENT[kind])}</Name>")
        body.append(f"<Start>{_num(e['onset'])}</Start>")
        if not math.isnan(e["duration"]):
            body.append(f"<Duration>{_num(e['duration'])}</Duration>")
        if kind != OTHER:
            body.append(f"<Input>{_PROFUSION_INPUT.get(kind, 'AIRFLOW')}</Input>")
        rows.append((e["onset"], body))
    for onset, duration, label in _others(other_events):
        body = [f"<Name>{escape(label)}</Name>", f"<Start>{_num(onset)}</Start>"]
        if not math.isnan(duration):
            body.append(f"<Duration>{_num(duration)}</Duration>")
        rows.append((onset, body))
    for _, body in sorted(rows, key=lambda r: r[0]):
        lines += ["\t\t<ScoredEvent>", *(f"\t\t\t{b}" for b in body), "\t\t</ScoredEvent>"]
    lines += ["\t</ScoredEvents>", "\t<SleepStages>"]
    lines += [f"\t\t<SleepStage>{_PROFUSION_STAGE[int(c)]}</SleepStage>" for c in codes]
    lines += ["\t</SleepStages>", "</CMPStudyConfig>"]
    return "\r\n".join(lines).encode("utf-8")


# ------------------------------------------------------------------------------ Noxturnal CSV

_NOX_HEADER = {"fr": "Heure de début,Heure de fin,Événement,Durée,", "en": "Start Time,End Time,Event,Duration,"}
_NOX_STAGE = {
    "fr": {_W: "Éveil", _N1: "N1", _N2: "N2", _N3: "N3", _R: "REM", UNSCORED: "Non scoré"},
    "en": {_W: "Wake", _N1: "N1", _N2: "N2", _N3: "N3", _R: "REM", UNSCORED: "Unscored"},
}
_NOX_EVENT = {
    "fr": {
        OBSTRUCTIVE_APNEA: "A. Obstructive",
        CENTRAL_APNEA: "A. Centrale",
        MIXED_APNEA: "A. Mixte",
        HYPOPNEA: "Hypopnée",
        UNTYPED_APNEA: "Apnée",
        DESATURATION: "Désat",
        AROUSAL: "Micro-éveil",
    },
    "en": {
        OBSTRUCTIVE_APNEA: "Obstructive Apnea",
        CENTRAL_APNEA: "Central Apnea",
        MIXED_APNEA: "Mixed Apnea",
        HYPOPNEA: "Hypopnea",
        UNTYPED_APNEA: "Apnea",
        DESATURATION: "Desaturation",
        AROUSAL: "Arousal",
    },
}
# Body positions (sunrise_assets.synthetic.simulator.BODY_POSITIONS order) as Noxturnal names them.
NOXTURNAL_POSITIONS = {
    "fr": ("Dos", "Gauche", "Droite", "Ventre", "Debout"),
    "en": ("Supine", "Left", "Right", "Prone", "Upright"),
}
NOXTURNAL_ANALYSIS_START = {"fr": "Début de l'analyse", "en": "Analysis start"}
NOXTURNAL_ARTEFACT = {"fr": "Artefact", "en": "Artifact"}


def _whole(seconds: float) -> int:
    return math.floor(seconds + 0.5)


def _duration3(seconds: float) -> str:
    """Seconds with at most 3 decimals and no trailing zeros ("30", "9.333", "0")."""
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def write_noxturnal_csv(
    stages: np.ndarray,
    events: pd.DataFrame | None,
    *,
    start: datetime,
    language: str = "fr",
    other_events: Iterable[OtherEvent] = (),
) -> bytes:
    """Noxturnal event export: UTF-16 LE with BOM, CRLF, the header and the ``[],[],[],[s],`` units row,
    then one row per 30-s stage epoch and per event, by start time, each ending with a comma.

    Start and end are ``dd/mm/YYYY HH:MM:SS`` local clock times (whole seconds, rounded; the night
    crosses midnight), the duration is in seconds with up to 3 decimals. Unscored epochs are gaps, as
    Noxturnal leaves them, except an unscored FIRST or LAST epoch, written as ``Non scoré`` /
    ``Unscored`` so that the epoch origin (the first stage row) and the length survive. A
    desaturation's nadir is not exported (the CSV has no column for it).
    """
    if language not in NOXTURNAL_LANGUAGES:
        raise ValueError(f"Noxturnal language {language!r}: use one of {', '.join(NOXTURNAL_LANGUAGES)}")
    if start is None:
        raise ValueError("a Noxturnal export has clock times: start is required")
    codes = _stages(stages)
    origin = start.replace(microsecond=0) + timedelta(seconds=_whole(start.microsecond / 1e6))
    rows: list[tuple[int, int, int, str, str]] = []  # (start s, order, end s, label, duration)
    step = int(EPOCH_S)
    for k, code in enumerate(codes.tolist()):
        if code == UNSCORED and 0 < k < codes.size - 1:
            continue
        rows.append((k * step, 0, (k + 1) * step, _NOX_STAGE[language][code], _duration3(EPOCH_S)))
    for e in _events(events):
        duration = 0.0 if math.isnan(e["duration"]) else e["duration"]
        label = e["label"] if e["type"] == OTHER else _NOX_EVENT[language][e["type"]]
        rows.append((_whole(e["onset"]), 1, _whole(e["onset"] + duration), label, _duration3(duration)))
    for onset, duration, label in _others(other_events):
        duration = 0.0 if math.isnan(duration) else duration
        rows.append((_whole(onset), 1, _whole(onset + duration), label, _duration3(duration)))
    rows.sort(key=lambda r: (r[0], r[1]))

    def clock(seconds: int) -> str:
        return f"{origin + timedelta(seconds=seconds):%d/%m/%Y %H:%M:%S}"

    lines = [_NOX_HEADER[language], "[],[],[],[s],"]
    for begin, _order, end, label, duration in rows:
        if "," in label or '"' in label:
            label = '"' + label.replace('"', '""') + '"'
        lines.append(f"{clock(begin)},{clock(end)},{label},{duration},")
    return "\ufeff".encode("utf-16-le") + ("\r\n".join(lines) + "\r\n").encode("utf-16-le")


# ----------------------------------------------------------------------------- hypnogram text

_CODING_OUT = {
    # sleep-accel / R&K style: REM 5, unscored -1.
    "rk-5rem": {_W: 0, _N1: 1, _N2: 2, _N3: 3, _R: 5, UNSCORED: -1},
    # yasa's Hypnogram.as_int(): REM 4, unscored -2 (-1 is yasa's artefact).
    "yasa": {_W: 0, _N1: 1, _N2: 2, _N3: 3, _R: 4, UNSCORED: -2},
}
_YASA_HEADER = ("# 1 value per 30 seconds of data (1 / 30 Hz)", "# 0: Wake, 1: N1, 2: N2, 3: N3, 4: REM")


def write_hypnogram_text(stages: np.ndarray, *, coding: str = "rk-5rem", header: bool | None = None) -> bytes:
    """One integer per 30-s epoch per line (LF), in ``coding`` (``rk-5rem``: 0 W, 1 N1, 2 N2, 3 N3,
    5 REM, -1 unscored; ``yasa``: REM 4, -2 unscored). ``header`` (default: for yasa only) adds the two
    ``#`` comment lines of yasa's example hypnogram. The coding is NOT in the file (an integer
    hypnogram never says it): deliver it beside, see :func:`write_stage_coding`."""
    if coding not in _CODING_OUT:
        raise ValueError(f"stage coding {coding!r}: use one of {', '.join(CODINGS)}")
    codes = _stages(stages)
    table = _CODING_OUT[coding]
    lines = list(_YASA_HEADER) if (coding == "yasa" if header is None else header) else []
    lines += [str(table[int(c)]) for c in codes]
    return ("\n".join(lines) + "\n").encode("ascii")


def write_stage_coding(coding: str) -> bytes:
    """The sidecar (:data:`STAGE_CODING_FILE`) naming an integer hypnogram's coding, e.g. ``rk-5rem``."""
    if coding not in _CODING_OUT:
        raise ValueError(f"stage coding {coding!r}: use one of {', '.join(CODINGS)}")
    return f"{coding}\n".encode("ascii")
