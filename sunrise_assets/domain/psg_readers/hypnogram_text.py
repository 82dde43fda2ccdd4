"""Plain hypnogram text: one 30-s epoch per line, from the recording start.

Lines are integers (``2``, ``-1``, also ``2.000000`` as some tools write them) or stage strings
(``W``, ``Wake``, ``N1``, ``N2``, ``N3``, ``N4``, ``R``, ``REM``, ``?``, ``UNS``, ``ART``... any case).
Blank lines and comment lines (``#``, ``%``, ``//``) are skipped.

Integers mean nothing without their coding: REM is 4 in yasa and 5 in R&K-style tools (Profusion,
sleep-accel), so an integer hypnogram REQUIRES ``stage_coding``, never a guess:

- ``"yasa"``: 0 W, 1 N1, 2 N2, 3 N3, 4 REM, -1 artefact and -2 unscored (both unscored here);
- ``"rk-5rem"``: 0 W, 1 N1, 2 N2, 3 N3, 4 N3 (R&K stage 4), 5 REM, 6 movement, 9 and -1 unscored;
- a mapping ``{int: stage name}`` (names as above, None for unscored), or the same as text
  ``"0=W,1=N1,2=N2,3=N3,5=REM,-1=?"``.

A code or string we do not know is an error listing all of them. The file has no clock: ``start`` is
the caller's (None if not given).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

import numpy as np

from sunalgo.labels import EPOCH_S, UNSCORED
from sunrise_assets.domain.psg_readers.noxturnal_csv import decode_text
from sunrise_assets.domain.psg_readers.psg_labels import PsgFormatError, PsgLabels, make_events, stage_code

FORMAT = "hypnogram-text"

NAMED_CODINGS: dict[str, dict[int, str | None]] = {
    "yasa": {0: "W", 1: "N1", 2: "N2", 3: "N3", 4: "REM", -1: None, -2: None},
    "rk-5rem": {0: "W", 1: "N1", 2: "N2", 3: "N3", 4: "N3", 5: "REM", 6: None, 9: None, -1: None},
}
_INT = re.compile(r"^[+-]?\d+(\.0*)?$")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_COMMENT = ("#", "%", "//")
MAX_TOKEN = 32


def content_lines(text: str) -> list[tuple[int, str]]:
    return [
        (i, s)
        for i, line in enumerate(text.splitlines(), start=1)
        if (s := line.strip()) and not s.startswith(_COMMENT)
    ]


def looks_like_hypnogram(text: str) -> bool:
    """One short token per line, no delimiters, and any number an integer."""
    lines = content_lines(text)
    if not lines:
        return False
    for _, s in lines:
        if len(s) > MAX_TOKEN or any(d in s for d in (",", ";", "\t", "<", ">", "=")):
            return False
        if _NUMBER.match(s) and not _INT.match(s):
            return False
        if not _NUMBER.match(s) and not re.fullmatch(r"[^\W\d_][\w.'\- ]*|\?|[\w]+", s):
            return False
    return True


def resolve_coding(stage_coding: Mapping[int, str | None] | str | None) -> dict[int, int] | None:
    """Integer code -> stage code (-1 unscored) of a named, textual or explicit coding."""
    if stage_coding is None:
        return None
    if isinstance(stage_coding, str):
        key = stage_coding.strip().lower()
        if key in NAMED_CODINGS:
            mapping: Mapping[int, str | None] = NAMED_CODINGS[key]
        elif "=" in key:
            try:
                pairs = [item.split("=", 1) for item in stage_coding.split(",") if item.strip()]
                mapping = {int(k): (v.strip() or None) for k, v in pairs}
            except ValueError:
                raise PsgFormatError(f"stage coding {stage_coding!r} is not 'INT=STAGE,...'") from None
        else:
            raise PsgFormatError(
                f"unknown stage coding {stage_coding!r}: use one of {', '.join(NAMED_CODINGS)} "
                "or an explicit 'INT=STAGE,...' mapping"
            )
    else:
        mapping = stage_coding
    out: dict[int, int] = {}
    bad = []
    for k, v in mapping.items():
        code = UNSCORED if v is None else stage_code(str(v))
        if code is None:
            bad.append(f"{k}={v}")
        else:
            out[int(k)] = code
    if bad:
        raise PsgFormatError(f"stage coding maps to unknown stage name(s): {', '.join(bad)}")
    return out


def read_hypnogram_text(
    data: bytes,
    *,
    source: str = "",
    stage_coding: Mapping[int, str | None] | str | None = None,
    start: datetime | None = None,
) -> PsgLabels:
    name = source or "<hypnogram text>"
    lines = content_lines(decode_text(data))
    if not lines:
        raise PsgFormatError(f"{name}: no epochs (empty hypnogram)")
    tokens = [s for _, s in lines]
    coding = resolve_coding(stage_coding)
    numeric = [bool(_INT.match(t)) for t in tokens]
    if all(numeric) and coding is None:
        raise PsgFormatError(
            f"{name}: integer hypnogram: its stage coding must be stated ('yasa' where REM is 4, 'rk-5rem' where "
            "REM is 5, or 'INT=STAGE,...'; --stage-coding on the command line), it is never guessed"
        )
    codes = np.empty(len(tokens), dtype=np.int8)
    unknown: set[str] = set()
    cache: dict[str, int | None] = {}
    for i, (token, is_int) in enumerate(zip(tokens, numeric)):
        if token not in cache:
            if is_int:
                cache[token] = None if coding is None else coding.get(int(float(token)))
            else:
                cache[token] = stage_code(token)
        code = cache[token]
        if code is None:
            unknown.add(token)
        else:
            codes[i] = code
    if unknown:
        what = "stage code" if all(_INT.match(u) for u in unknown) else "stage label"
        raise PsgFormatError(f"{name}: unknown {what}(s): {', '.join(sorted(unknown, key=lambda u: (len(u), u)))}")
    return PsgLabels(
        start=start,
        epoch_s=EPOCH_S,
        stages=codes,
        events=make_events([], [], []),
        other_annotations=[],
        format=FORMAT,
        recording_s=codes.size * EPOCH_S,
    )
