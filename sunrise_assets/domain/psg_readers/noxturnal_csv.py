"""Noxturnal (Nox Medical) event exports as CSV.

What the sites send (see ``../shared/data/real/noxturnal_rsleep``): UTF-16 LE with a BOM, CRLF line
ends, a header ``Heure de début,Heure de fin,Événement,Durée,`` (the English export says ``Start
Time,End Time,Event,Duration``), an optional units row ``[],[],[],[s],``, then one row per event with
``dd/mm/YYYY HH:MM:SS`` local clock times and a trailing delimiter. UTF-8 (with or without BOM),
``;`` or tab delimiters, ISO times and decimal commas are read too. Times without a date are read
as a night: a time more than 12 h earlier than the previous row's is on the next day.

Sleep stages are 30-s events (``Éveil``/``Wake``, ``N1``, ``N2``, ``N3``, ``REM``/``SP``/``Sommeil
paradoxal``); the epoch origin is the first stage event's start, and epochs no stage row covers are
unscored. Every other row is an event with its onset relative to that origin (a row before it, such as
``Début de l'analyse``, has a negative onset): ``A. Obstructive``/``A. Centrale``/``A. Mixte`` (and
``Apnée ...``), ``Hypopnée``, ``Désat``, ``Micro-éveil``, English equivalents, and the rest ("other":
``MJ``, ``PLM``, body positions, ``Artefact``, device ``Notification``/``Avertissement``...).
A study without stage rows (home sleep test) is read as events only, from its first row.

An unknown label whose every row is exactly one epoch on the stage grid looks like a stage we do not
know: that is an error listing such labels, not a silent "other".
"""

from __future__ import annotations

import csv
import re
from datetime import datetime, timedelta

import numpy as np

from sunalgo.labels import EPOCH_S, OTHER
from sunrise_assets.domain.psg_readers.psg_labels import (
    PsgFormatError,
    PsgLabels,
    event_type,
    expand_runs,
    fold,
    make_events,
    other_texts,
    stage_code,
)

FORMAT = "noxturnal-csv"

START_HEADERS = ("heure de debut", "debut", "start time", "start", "begin", "begin time", "onset")
END_HEADERS = ("heure de fin", "fin", "end time", "end", "stop", "stop time")
EVENT_HEADERS = ("evenement", "event", "event type", "type", "name", "nom", "label")
DURATION_HEADERS = ("duree", "duration")
# Known non-stage labels that may happen to last exactly one epoch.
KNOWN_OTHER = frozenset(
    fold(x)
    for x in (
        "Artefact",
        "Artifact",
        "Notification",
        "Avertissement",
        "Warning",
        "Début de l'analyse",
        "Fin de l'analyse",
        "Analysis start",
        "Analysis end",
        "MJ",
        "PLM",
        "LM",
        "Dos",
        "Gauche",
        "Droite",
        "Debout",
        "Ventre",
        "Supine",
        "Left",
        "Right",
        "Upright",
        "Prone",
        "Ronflement",
        "Snore",
        "Snoring",
        "Lights off",
        "Lights on",
    )
)

_DMY = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})[ T](\d{1,2}):(\d{2}):(\d{2})([.,]\d+)?$")
_HMS = re.compile(r"^(\d{1,2}):(\d{2}):(\d{2})([.,]\d+)?$")
_EPOCH0 = datetime(2000, 1, 1)


def decode_text(data: bytes) -> str:
    """Text of a CSV/TXT export: BOM first (UTF-16/UTF-8), then UTF-8, then Windows-1252."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data.decode("utf-16", errors="replace")  # an odd byte count must not crash
    if data[:3] == b"\xef\xbb\xbf":
        return data[3:].decode("utf-8")
    if len(data) >= 4 and data[1:4:2] == b"\x00\x00" and data[0:4:2] != b"\x00\x00":
        return data.decode("utf-16-le", errors="replace")  # UTF-16 LE without a BOM
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def header_columns(line: str) -> tuple[str, dict[str, int]] | None:
    """(delimiter, column index per role) when ``line`` is a Noxturnal-like header, else None."""
    delimiter = max((",", ";", "\t"), key=line.count)
    cells = [fold(c) for c in next(csv.reader([line], delimiter=delimiter))]
    roles: dict[str, int] = {}
    for role, names in (
        ("start", START_HEADERS),
        ("end", END_HEADERS),
        ("event", EVENT_HEADERS),
        ("duration", DURATION_HEADERS),
    ):
        for i, cell in enumerate(cells):
            if cell in names and i not in roles.values():
                roles[role] = i
                break
    if "start" in roles and "event" in roles and ("end" in roles or "duration" in roles):
        return delimiter, roles
    return None


def read_noxturnal_csv(data: bytes, *, source: str = "", start: datetime | None = None) -> PsgLabels:
    name = source or "<Noxturnal CSV>"
    lines = decode_text(data).splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    found = header_columns(lines[0]) if lines else None
    if found is None:
        raise PsgFormatError(f"{name}: no Noxturnal header (start time, end time, event, duration) on the first line")
    delimiter, col = found
    rows = []
    for lineno, cells in enumerate(csv.reader(lines[1:], delimiter=delimiter), start=2):
        if not any(c.strip() for c in cells) or all(re.fullmatch(r"\s*(\[.*\])?\s*", c) for c in cells):
            continue  # blank line or the units row "[],[],[],[s],"
        try:
            rows.append(
                (
                    lineno,
                    cells[col["start"]].strip(),
                    cells[col["end"]].strip() if "end" in col else "",
                    cells[col["event"]].strip(),
                    cells[col["duration"]].strip() if "duration" in col else "",
                )
            )
        except IndexError:
            raise PsgFormatError(f"{name}: line {lineno} has {len(cells)} cells, the header names more") from None
    if not rows:
        raise PsgFormatError(f"{name}: no event rows")

    starts, dated = _clock_seconds([r[1] for r in rows], [r[0] for r in rows], name)
    durations = np.empty(len(rows))
    for i, (lineno, _s, end, _label, duration) in enumerate(rows):
        if duration:
            try:
                durations[i] = float(duration.replace(",", "."))
            except ValueError:
                raise PsgFormatError(f"{name}: line {lineno}: duration {duration!r} is not a number") from None
            if not np.isfinite(durations[i]):  # "nan", "inf": a corrupt row, not a run to the end of time
                raise PsgFormatError(f"{name}: line {lineno}: duration {duration!r} is not a finite number")
            continue
        if not end:
            raise PsgFormatError(f"{name}: line {lineno}: neither an end time nor a duration")
        end_s, _ = _clock_seconds([end], [lineno], name, after=starts[i])
        durations[i] = end_s[0] - starts[i]
    labels = [r[3] for r in rows]
    # "Artefact" is an event in these exports, not an unscored epoch: known other labels are never stages.
    codes = [None if fold(label) in KNOWN_OTHER else stage_code(label) for label in labels]
    is_stage = np.array([c is not None for c in codes], dtype=bool)

    origin = starts[is_stage].min() if is_stage.any() else starts.min()
    onsets = starts - origin
    stages = np.zeros(0, dtype=np.int8)
    if is_stage.any():
        k_on, k_dur = onsets[is_stage] / EPOCH_S, durations[is_stage] / EPOCH_S
        bad = np.flatnonzero(
            (np.abs(k_on - np.round(k_on)) * EPOCH_S > 0.5)
            | (np.abs(k_dur - np.round(k_dur)) * EPOCH_S > 0.5)
            | (np.round(k_dur) < 1)
        )
        if bad.size:
            i = np.flatnonzero(is_stage)[bad[0]]
            raise PsgFormatError(
                f"{name}: {bad.size} stage row(s) off the 30-s epoch grid, first: line {rows[i][0]} "
                f"{labels[i]!r} at {onsets[i]:+g} s for {durations[i]:g} s"
            )
        stages = expand_runs(
            onsets[is_stage], durations[is_stage], np.array([c for c in codes if c is not None]), EPOCH_S, name=name
        )
        _check_unknown_stage_like(name, labels, is_stage, onsets, durations)

    ev = ~is_stage
    events = make_events(onsets[ev], durations[ev], [label for label, s in zip(labels, is_stage) if not s])
    if stages.size == 0 and not (events["type"] != OTHER).any():
        raise PsgFormatError(f"{name}: no sleep stages and no scored respiratory, desaturation or arousal events")
    if dated:
        first = _EPOCH0 + timedelta(seconds=float(origin))
    elif start is not None:
        first = datetime.combine(start.date(), datetime.min.time()) + timedelta(seconds=float(origin))
    else:
        first = None
    span = float((starts + durations).max() - starts.min())
    return PsgLabels(
        start=first,
        epoch_s=EPOCH_S,
        stages=stages,
        events=events,
        other_annotations=other_texts(events),
        format=FORMAT,
        recording_s=span or None,
    )


def _check_unknown_stage_like(
    name: str, labels: list[str], is_stage: np.ndarray, onsets: np.ndarray, durations: np.ndarray
) -> None:
    """Unknown labels that are always exactly one epoch on the stage grid: stages we do not know."""
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        if not is_stage[i] and event_type(label) == OTHER and fold(label) not in KNOWN_OTHER:
            by_label.setdefault(label, []).append(i)
    suspects = []
    for label, idx in by_label.items():
        k = onsets[idx] / EPOCH_S
        if np.all(np.abs(durations[idx] - EPOCH_S) < 0.5) and np.all(np.abs(k - np.round(k)) * EPOCH_S < 0.5):
            suspects.append(label)
    if suspects:
        raise PsgFormatError(
            f"{name}: unknown sleep stage label(s): {', '.join(sorted(suspects))} "
            "(30-s rows on the epoch grid that are no stage we know)"
        )


def _clock_seconds(
    texts: list[str], linenos: list[int], name: str, after: float | None = None
) -> tuple[np.ndarray, bool]:
    """Seconds since 2000-01-01 of each clock time, and whether the times carry a date.

    ``dd/mm/YYYY HH:MM:SS[.fff]`` (rewritten to ISO for ``datetime.fromisoformat``), ISO, or a bare
    ``HH:MM:SS`` read as a night (a time > 12 h before the previous one is on the next day).
    """
    out = np.empty(len(texts))
    dated = True
    day, previous = 0, after
    for i, (text, lineno) in enumerate(zip(texts, linenos)):
        m = _DMY.match(text)
        if m:
            d, mo, y, hh, mm, ss, frac = m.groups()
            iso = f"{y}-{int(mo):02d}-{int(d):02d}T{int(hh):02d}:{mm}:{ss}{(frac or '').replace(',', '.')}"
        elif _HMS.match(text):
            hh, mm, ss, frac = _HMS.match(text).groups()
            seconds = int(hh) * 3600 + int(mm) * 60 + int(ss) + float((frac or ".0").replace(",", "."))
            while previous is not None and seconds + day * 86400 < previous - 43200:
                day += 1
            out[i] = previous = seconds + day * 86400
            dated = False
            continue
        else:
            iso = text
        try:
            out[i] = (datetime.fromisoformat(iso).replace(tzinfo=None) - _EPOCH0).total_seconds()
        except ValueError:
            raise PsgFormatError(f"{name}: line {lineno}: time {text!r} is not dd/mm/YYYY HH:MM:SS") from None
        previous = out[i]
    return out, dated
