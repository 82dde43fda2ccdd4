"""PSG label readers: every format a sleep lab exports, read into one label model.

``read_labels(data)`` recognises the format from the CONTENT (``detect_format``), never from the
file name alone, and dispatches to one reader per format:

| format | module | recognised by |
|---|---|---|
| ``edf+`` | :mod:`.edf_plus` | the EDF header: version field ``0`` padded to 8 bytes, 256-byte header |
| ``nsrr-xml`` | :mod:`.nsrr_xml` | XML whose root element is ``<PSGAnnotation>`` |
| ``profusion-xml`` | :mod:`.profusion_xml` | XML whose root element is ``<CMPStudyConfig>`` |
| ``noxturnal-csv`` | :mod:`.noxturnal_csv` | \
text (BOM-aware) whose first line is a header naming start time, end time/duration and event |
| ``hypnogram-text`` | :mod:`.hypnogram_text` | \
text with one short token per line (integers or stage words), comments allowed |

Every reader returns :class:`PsgLabels` (see :mod:`.model`): 30-s epochs with AASM stages (or an
empty array for a study without staging), events with a normalised type, and the format name.
Unknown stage labels raise :class:`PsgFormatError` listing them; nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sunalgo.labels import AROUSAL, DESATURATION, OTHER, RESPIRATORY_EVENT_TYPES
from sunalgo.scores import clinical_scores
from sunrise_assets.domain.psg_readers import (
    edf_plus,
    hypnogram_text,
    noxturnal_csv,
    nsrr_xml,
    profusion_xml,
    xml_common,
)
from sunrise_assets.domain.psg_readers.hypnogram_text import NAMED_CODINGS
from sunrise_assets.domain.psg_readers.psg_labels import (
    EVENT_COLUMNS,
    STAGE_COUNT_KEYS,
    PsgFormatError,
    PsgLabels,
    event_type,
    stage_code,
)

FORMATS: tuple[str, ...] = ("edf+", "nsrr-xml", "profusion-xml", "noxturnal-csv", "hypnogram-text")
_XML_ROOTS = {nsrr_xml.ROOT: nsrr_xml.FORMAT, profusion_xml.ROOT: profusion_xml.FORMAT}

__all__ = [
    "EVENT_COLUMNS",
    "FORMATS",
    "NAMED_CODINGS",
    "STAGE_COUNT_KEYS",
    "PsgFormatError",
    "PsgLabels",
    "detect_format",
    "event_type",
    "labels_scores",
    "read_labels",
    "stage_code",
]


def detect_format(data: bytes, filename: str = "") -> str:
    """The format of a PSG label file from its bytes (``filename`` only names it in errors)."""
    name = filename or "<PSG bytes>"
    if not data:
        raise PsgFormatError(f"{name}: empty file")
    if edf_plus.looks_like_edf(data):
        return edf_plus.FORMAT
    root = xml_common.root_tag(data)
    if root is not None:
        if root in _XML_ROOTS:
            return _XML_ROOTS[root]
        raise PsgFormatError(
            f"{name}: XML with root <{root}> is no PSG export we read "
            f"(known roots: {', '.join('<' + r + '>' for r in _XML_ROOTS)})"
        )
    if b"\x00" in data[:4096] and data[:2] not in (b"\xff\xfe", b"\xfe\xff") and data[1:4:2] != b"\x00\x00":
        raise PsgFormatError(f"{name}: binary file that is neither EDF nor a known PSG export")
    text = noxturnal_csv.decode_text(data[: 1 << 20])
    first = next((line for line in text.splitlines() if line.strip()), "")
    if noxturnal_csv.header_columns(first) is not None:
        return noxturnal_csv.FORMAT
    if hypnogram_text.looks_like_hypnogram(text if len(data) <= 1 << 20 else noxturnal_csv.decode_text(data)):
        return hypnogram_text.FORMAT
    raise PsgFormatError(
        f"{name}: not a PSG label format we read (EDF+, NSRR PSGAnnotation XML, Profusion XML, Noxturnal CSV, "
        f"one-epoch-per-line hypnogram text); first line: {first[:60]!r}"
    )


def read_labels(
    data: bytes,
    *,
    source: str = "",
    stage_coding: Mapping[int, str | None] | str | None = None,
    start: datetime | None = None,
) -> PsgLabels:
    """Labels of one PSG file's bytes, whatever its format.

    ``stage_coding`` is required for integer hypnogram text (see :mod:`.hypnogram_text`) and ignored
    otherwise; ``start`` is used only when the file has no absolute time of its own (Profusion XML,
    hypnogram text, an anonymised NSRR date, Noxturnal times without dates).
    """
    fmt = detect_format(data, source)
    if fmt == edf_plus.FORMAT:
        return edf_plus.read_edf_plus(data, source=source, start=start)
    if fmt == nsrr_xml.FORMAT:
        return nsrr_xml.read_nsrr_xml(data, source=source, start=start)
    if fmt == profusion_xml.FORMAT:
        return profusion_xml.read_profusion_xml(data, source=source, start=start)
    if fmt == noxturnal_csv.FORMAT:
        return noxturnal_csv.read_noxturnal_csv(data, source=source, start=start)
    return hypnogram_text.read_hypnogram_text(data, source=source, stage_coding=stage_coding, start=start)


def labels_scores(labels: PsgLabels) -> dict[str, float | None]:
    """Clinical scores of a study, as ``sunalgo.scores.clinical_scores`` computes them for predictions.

    AHI counts every obstructive/central/mixed apnea and hypopnea; it is None for a file that scored no
    event at all (a bare hypnogram: respiration was not scored there), and 0 when the study scored other
    events but no apnea or hypopnea. ODI and the arousal index are given only where the study scored
    desaturations / arousals (a study with none may simply not score them: unavailable, not 0).
    A study without staging (home sleep test) reports AHI and ODI per hour of recording time
    (``recording_s``), and every staging score as None.
    """
    kinds = labels.events["type"]
    desats = int((kinds == DESATURATION).sum())
    arousals = int((kinds == AROUSAL).sum())
    scored_events = bool((kinds != OTHER).any())
    return clinical_scores(
        labels.stages,
        respiratory_events=float(kinds.isin(RESPIRATORY_EVENT_TYPES).sum()) if scored_events else None,
        desaturations=float(desats) if desats else None,
        arousals=float(arousals) if arousals else None,
        epoch_s=labels.epoch_s,
        recording_time_min=None if labels.recording_s is None else labels.recording_s / 60.0,
    )
