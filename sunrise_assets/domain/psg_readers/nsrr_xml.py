"""NSRR ``<PSGAnnotation>`` XML (the National Sleep Research Resource's annotation format).

``<PSGAnnotation><EpochLength>30</EpochLength><ScoredEvents><ScoredEvent>`` with, in any order,
``<EventType>`` (optional), ``<EventConcept>``, ``<Start>`` and ``<Duration>`` (s from the recording
start), optional ``<SpO2Nadir>``/``<SpO2Baseline>`` and ``<ClockTime>``. Three vocabularies are read:

- SDO concepts (NSRR translator output): ``SDO:WakeState``, ``SDO:NonRapidEyeMovementSleep-N1..N3``,
  ``SDO:RapidEyeMovementSleep``, ``SDO:ObstructiveApneaFinding``, ``SDO:HypopneaFinding``,
  ``SDO:HemoglobinOxygenDesaturationFinding``, ``SDO:SleepArousalFinding``...
- SRO concepts (older translator mappings): ``SRO:Wake``, ``SRO:Stage1Sleep``..``SRO:Stage4Sleep``,
  ``SRO:RapidEyeMovement``, ``SRO:MovementTime``/``SRO:UnscoredEpoch``/``SRO:ArtifactEpoch``
  (unscored), ``SRO:ObstructiveApnea``, ``SRO:SpO2Desaturation``, ``SRO:Arousal``...
- ``Type|Concept`` pairs (official SHHS/MESA/CHAT files): ``<EventType>Stages|Stages</EventType>`` with
  ``Wake|0``, ``Stage 1 sleep|1`` .. ``Stage 4 sleep|4``, ``REM sleep|5``, ``Movement|6``,
  ``Unscored|9``; events such as ``Obstructive apnea|Obstructive Apnea``.

Stage events are runs (multiples of the epoch length) expanded to epochs; the hypnogram spans the
recording given by the ``Recording Start Time`` event (its ``Duration``), epochs no stage covers are
unscored. A stage-like concept we do not know is an error. ``Recording Start Time`` gives the start
(``ClockTime`` ``dd.mm.yy HH.MM.SS``; an anonymised date such as ``00.00.00`` gives no absolute start).

Skipped, and counted by label in ``skipped_annotations`` with the reason in ``skip_reasons`` (what
``sunrise psg inspect`` shows):

- events whose concept or type starts with "Deleted" (scoring software records a deleted automatic
  event that way, e.g. ARES "Deleted Hypopnea 4% A");
- technician notes (EventType or concept ``Technician Notes``, ``Notes``, ``Comment``...): free text that
  may name the patient, counted under "technician note", never under their text;
- the ``Recording Start Time`` event itself (it is the recording, not an event);
- a marker whose ``Start``, ``Duration`` (missing is fine, negative is not) or ``SpO2Nadir`` is no
  usable number, such as ARES's ``Unknown Event 4|Unknown Event 4`` with ``Invalid Duration``. A
  sleep stage or a respiratory event (apnea, hypopnea) with an unusable time is an error naming the
  event instead: the night's scores are computed from those.

Vendor concept names of apneas and hypopneas (``Hypopnea 4% A``, ``Hypopnea-55-2-0``, ``Apnea-3506-2-0``,
``Apnea|Apnea``) are typed by ``psg_labels.VENDOR_EVENT_CONCEPTS`` (docs/PSG_FORMATS.md); any other
event is kept as ``other`` with its label.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time

import numpy as np

import sunrise_assets.domain.psg_readers.xml_common as xml_common
from sunalgo.labels import OTHER, STAGE_CODE, UNSCORED
from sunrise_assets.domain.psg_readers.psg_labels import (
    PsgFormatError,
    PsgLabels,
    SkippedAnnotations,
    expand_runs,
    fold,
    make_events,
    other_texts,
    stage_code,
)

FORMAT = "nsrr-xml"
ROOT = "PSGAnnotation"

_W, _N1, _N2, _N3, _R = (STAGE_CODE[s] for s in ("W", "N1", "N2", "N3", "REM"))
STAGE_CONCEPTS: dict[str, int] = {
    "sdo:wakestate": _W,
    "sdo:nonrapideyemovementsleep-n1": _N1,
    "sdo:nonrapideyemovementsleep-n2": _N2,
    "sdo:nonrapideyemovementsleep-n3": _N3,
    "sdo:nonrapideyemovementsleep-n4": _N3,
    "sdo:rapideyemovementsleep": _R,
    "sro:wake": _W,
    "sro:stage1sleep": _N1,
    "sro:stage2sleep": _N2,
    "sro:stage3sleep": _N3,
    "sro:stage4sleep": _N3,
    "sro:rapideyemovement": _R,
    "sro:movementtime": UNSCORED,
    "sro:unscoredepoch": UNSCORED,
    "sro:artifactepoch": UNSCORED,
}
# Concepts that look like a stage even when we do not know them: an error rather than an event.
_STAGE_LIKE = re.compile(
    (
        r"^(sdo|sro):.*(sleep-?n\d|stage\d|wakestate|rapideyemovement|unscoredepoch|sleepstage)"
        r"|^(sleep )?stage \w+( sleep)?$"
    ),
    re.IGNORECASE,
)
_STAGE_TYPES = frozenset({"stages", "stage", "staging", "sleep stages", "sleep staging"})
RECORDING_START = "recording start time"
TECHNICIAN_NOTE = "technician note"
# EventType (or concept name) of a technician's free-text note, folded.
_NOTE_TYPES = frozenset(
    {"technician note", "technician notes", "technician comment", "technician comments", "tech note", "tech notes"}
    | {"note", "notes", "comment", "comments", "user note", "user notes", "annotation note"}
)


def read_nsrr_xml(data: bytes, *, source: str = "", start: datetime | None = None) -> PsgLabels:
    name = source or "<NSRR XML>"
    root, epoch_s = xml_common.study_document(data, name, ROOT, default_epoch_s="30")

    clock, recording_s = None, None
    skipped = SkippedAnnotations()
    skip = skipped.add
    st_on, st_dur, st_code, unknown, misaligned = [], [], [], set(), []
    ev_on, ev_dur, ev_label, ev_nadir = [], [], [], []

    for element in root.iter():
        if xml_common.local(element.tag) != "ScoredEvent":
            continue
        f = xml_common.child_texts(element)
        concept = f.get("EventConcept", "")
        etype = f.get("EventType", "")
        where = f"ScoredEvent {concept!r}"
        if fold(concept) == RECORDING_START:
            clock = f.get("ClockTime")
            recording_s = xml_common.number(f.get("Duration"), name, f"{where} Duration", required=False)
            skip(concept, "the recording's start and length, not an event")
            continue
        if fold(concept).startswith("deleted") or fold(etype).startswith("deleted"):
            skip(concept, "deleted in the scoring software")
            continue
        if _is_note(concept, etype):
            skip(TECHNICIAN_NOTE, "free text (may name the patient), never kept")
            continue
        code, stage_like = _stage(concept, etype)
        if stage_like and code is None:
            unknown.add(concept)
            continue
        try:
            onset, duration, nadir = xml_common.event_times(f, "SpO2Nadir")
        except ValueError as exc:
            # A marker no score uses (signal quality, movement, an unknown device event): skipped and
            # counted; a stage or a respiratory event: the file is refused, naming the event.
            skipped.unusable_time(name, where, concept, exc, stage=stage_like)
            continue
        if stage_like:
            dur = epoch_s if np.isnan(duration) else duration
            if not (_on_grid(onset, epoch_s) and _on_grid(dur, epoch_s)):
                misaligned.append(f"{concept} at {onset:g} s for {dur:g} s")
            st_on.append(onset)
            st_dur.append(dur)
            st_code.append(code)
            continue
        ev_on.append(onset)
        ev_dur.append(duration)
        ev_label.append(concept)
        ev_nadir.append(nadir)
    if unknown:
        raise PsgFormatError(f"{name}: unknown sleep stage concept(s): {', '.join(sorted(unknown))}")
    if misaligned:
        raise PsgFormatError(
            f"{name}: {len(misaligned)} stage event(s) off the {epoch_s:g}-s epoch grid, first: {misaligned[0]}"
        )

    stages = np.zeros(0, dtype=np.int8)
    if st_code:
        n_epochs = int(np.floor(recording_s / epoch_s + 1e-9)) if recording_s and np.isfinite(recording_s) else None
        covered = int(round(max(o + d for o, d in zip(st_on, st_dur)) / epoch_s))
        stages = expand_runs(
            np.array(st_on), np.array(st_dur), np.array(st_code), epoch_s, max(covered, n_epochs or 0), name=name
        )
    events = make_events(ev_on, ev_dur, ev_label, ev_nadir)
    if stages.size == 0 and not (events["type"] != OTHER).any():
        raise PsgFormatError(f"{name}: no sleep stages and no scored respiratory, desaturation or arousal events")
    return PsgLabels(
        start=_clock(clock, name) or start,
        epoch_s=float(epoch_s),
        stages=stages,
        events=events,
        other_annotations=other_texts(events),
        format=FORMAT,
        recording_s=recording_s if recording_s and np.isfinite(recording_s) else None,
        skipped_annotations=skipped.counts,
        skip_reasons=skipped.reasons,
    )


def _stage(concept: str, etype: str) -> tuple[int | None, bool]:
    """(stage code or None, whether the event is a stage event)."""
    key = concept.strip().lower()
    if key in STAGE_CONCEPTS:
        return STAGE_CONCEPTS[key], True
    name, _, code = concept.partition("|")
    type_name = fold(etype.partition("|")[0])
    is_stage_type = type_name in _STAGE_TYPES
    if is_stage_type or _STAGE_LIKE.match(concept.strip()) or _STAGE_LIKE.match(name.strip()):
        found = stage_code(name)
        return found, True
    if stage_code(name) is not None and fold(name) not in ("movement", "artifact", "artefact", "unknown", "a"):
        # A bare stage name ("Wake", "REM sleep", "Stage 2 sleep") without an EventType is a stage too.
        return stage_code(name), True
    return None, False


def _is_note(concept: str, etype: str) -> bool:
    """A technician's note: its EventType, or the name before a "|" of its concept, says so."""
    return (
        fold(etype.partition("|")[0]) in _NOTE_TYPES
        or fold(concept.partition("|")[0]) in _NOTE_TYPES
        or fold(concept).startswith(("technician note", "tech note"))
    )


def _on_grid(seconds: float, epoch_s: float) -> bool:
    k = seconds / epoch_s
    return abs(k - round(k)) * epoch_s < 0.01


def _clock(text: str | None, name: str) -> datetime | None:
    """``dd.mm.yy HH.MM.SS`` (EDF clipping years), or ISO; None for an anonymised or absent date."""
    if not text:
        return None
    m = re.fullmatch(r"\s*(\d{1,2})\.(\d{1,2})\.(\d{2,4})\s+(\d{1,2})[.:](\d{2})[.:](\d{2})\s*", text)
    if m:
        d, mo, y, hh, mm, ss = (int(x) for x in m.groups())
        if len(m.group(3)) == 2:
            y = 1900 + y if y >= 85 else 2000 + y
        try:
            return datetime.combine(date(y, mo, d), time(hh, mm, ss))
        except ValueError:
            return None  # "00.00.00 23.00.00": the date was anonymised away
    try:
        return datetime.fromisoformat(text.strip()).replace(tzinfo=None)
    except ValueError:
        raise PsgFormatError(f"{name}: Recording Start Time ClockTime {text!r} is not dd.mm.yy HH.MM.SS") from None
