"""Compumedics Profusion study export (``<CMPStudyConfig>`` XML).

``<EpochLength>``, then ``<SleepStages>`` with one ``<SleepStage>n</SleepStage>`` per epoch from the
recording start, and ``<ScoredEvents>`` with ``<ScoredEvent><Name>..</Name><Start>..</Start>
<Duration>..</Duration>`` (s from the recording start; desaturations add ``<LowestSpO2>`` and
``<Desaturation>``). The ``<ScoredEventSettings>`` legend is not read: it lists event kinds, not events.

Stage codes (Compumedics, as in the NSRR Compumedics mapping): 0 W, 1 N1, 2 N2, 3 N3, 4 N3 (R&K stage
4), 5 REM, 6 movement, 9 unscored, 10 artefact (the last three unscored). Any other code is an error.
yasa's ``Hypnogram.from_profusion`` maps 9 to wake instead; we follow the NSRR mapping.
The file carries no clock time: ``start`` is the caller's (None if not given).

As in the NSRR reader, a ``Deleted ...`` event is skipped, and so is a marker whose ``Start``,
``Duration`` or ``LowestSpO2`` is no usable number (counted in ``skipped_annotations`` with the reason);
a respiratory event with an unusable time is an error naming it.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np

import sunrise_assets.domain.psg_readers.xml_common as xml_common
from sunalgo.labels import OTHER, STAGE_CODE, UNSCORED
from sunrise_assets.domain.psg_readers.psg_labels import (
    PsgFormatError,
    PsgLabels,
    SkippedAnnotations,
    fold,
    make_events,
    other_texts,
)

FORMAT = "profusion-xml"
ROOT = "CMPStudyConfig"
STAGE_CODES: dict[int, int] = {
    0: STAGE_CODE["W"],
    1: STAGE_CODE["N1"],
    2: STAGE_CODE["N2"],
    3: STAGE_CODE["N3"],
    4: STAGE_CODE["N3"],
    5: STAGE_CODE["REM"],
    6: UNSCORED,
    9: UNSCORED,
    10: UNSCORED,
}


def read_profusion_xml(data: bytes, *, source: str = "", start: datetime | None = None) -> PsgLabels:
    name = source or "<Profusion XML>"
    root, epoch_s = xml_common.study_document(data, name, ROOT)

    raw = [
        (s.text or "").strip()
        for block in _children(root, "SleepStages")
        for s in block
        if xml_common.local(s.tag) == "SleepStage"
    ]
    lookup = {str(k): v for k, v in STAGE_CODES.items()}
    unknown = sorted({r for r in raw if r not in lookup}, key=lambda r: (len(r), r))
    if unknown:
        raise PsgFormatError(
            f"{name}: unknown SleepStage code(s): {', '.join(repr(u) for u in unknown)} "
            "(known: 0 W, 1 N1, 2 N2, 3/4 N3, 5 REM, 6/9/10 unscored)"
        )
    stages = np.array([lookup[r] for r in raw], dtype=np.int8)

    on, dur, label, nadir = [], [], [], []
    skipped = SkippedAnnotations()
    for block in _children(root, "ScoredEvents"):
        for element in block:
            if xml_common.local(element.tag) != "ScoredEvent":
                continue
            f = xml_common.child_texts(element)
            event = f.get("Name", "")
            if not event:
                raise PsgFormatError(f"{name}: a ScoredEvent has no Name")
            if fold(event).startswith("deleted"):
                skipped.add(event, "deleted in the scoring software")
                continue
            try:
                onset, duration, lowest = xml_common.event_times(f, "LowestSpO2")
            except ValueError as exc:
                skipped.unusable_time(name, f"ScoredEvent {event!r}", event, exc)
                continue
            on.append(onset)
            dur.append(duration)
            label.append(event)
            nadir.append(lowest)
    events = make_events(on, dur, label, nadir)
    if stages.size == 0 and not (events["type"] != OTHER).any():
        raise PsgFormatError(f"{name}: no SleepStages and no scored respiratory, desaturation or arousal events")
    return PsgLabels(
        start=start,
        epoch_s=float(epoch_s),
        stages=stages,
        events=events,
        other_annotations=other_texts(events),
        format=FORMAT,
        recording_s=stages.size * float(epoch_s) or None,
        skipped_annotations=skipped.counts,
        skip_reasons=skipped.reasons,
    )


def _children(root, tag: str):
    return [c for c in root if xml_common.local(c.tag) == tag]
