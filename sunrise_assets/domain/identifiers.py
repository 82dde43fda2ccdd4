"""Identifiers of a night's raw files, and scanning bytes for them (no Dagster).

What counts as an identifier is in docs/THREAT_MODEL.md. Identifier values are PHI: they stay in
memory, and callers report only how many were found where.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_NAME_SPLIT = re.compile(r"[\s_,]+")
_EDF_DATE = re.compile(r"^(\d{2})-([A-Za-z]{3})-(\d{4})$")


def _date_forms(day: date) -> set[str]:
    return {day.isoformat(), f"{day:%Y%m%d}", f"{day.day:02d}-{_MONTHS[day.month - 1]}-{day.year}", f"{day:%d.%m.%y}"}


def _parse_date(text: str) -> date | None:
    text = text.strip()
    try:
        return datetime.fromisoformat(text).date()
    except ValueError:
        pass
    m = _EDF_DATE.match(text)
    if m and m.group(2).upper() in _MONTHS:
        try:
            return date(int(m.group(3)), _MONTHS.index(m.group(2).upper()) + 1, int(m.group(1)))
        except ValueError:
            return None
    return None


def _add_value(found: set[str], value: str | None, *, name: bool = False) -> None:
    value = (value or "").strip()
    if not value or value.upper() == "X":
        return
    found.add(value)
    day = _parse_date(value)
    if day is not None:
        found |= _date_forms(day)
    if name:
        parts = [p for p in _NAME_SPLIT.split(value) if p]
        found.update(parts)
        if len(parts) > 1:
            found.update({" ".join(parts), "_".join(parts), " ".join(reversed(parts)), "_".join(reversed(parts))})


def _recording_identifiers(data: bytes, found: set[str]) -> None:
    from sunalgo.recording import decode_message, parse_start_time

    message = decode_message(data)
    p = message.patient
    _add_value(found, p.name, name=True)
    for value in (p.birth_date, p.patient_ref, p.site, p.note, message.recording_id, message.device_serial):
        _add_value(found, value)
    if message.start_time:
        found |= _date_forms(parse_start_time(message.start_time).date())


def _edf_identifiers(data: bytes, found: set[str]) -> None:
    """EDF(+) header: local patient (code sex birthdate name ...) and recording identification."""
    if len(data) < 184:
        return
    patient = data[8:88].decode("ascii", "replace").strip()
    recording = data[88:168].decode("ascii", "replace").strip()
    fields = patient.split()
    if fields:
        _add_value(found, patient)
        for i, value in enumerate(fields):
            if i == 1 and value.upper() in {"M", "F"}:
                continue
            _add_value(found, value, name=(i == 3))
    tokens = recording.split()
    if tokens[:1] == ["Startdate"]:
        _add_value(found, tokens[1] if len(tokens) > 1 else None)
        for value in tokens[2:4]:  # hospital administration code, technician (equipment is no PHI)
            _add_value(found, value)
    elif recording:
        _add_value(found, recording)
    try:  # dd.mm.yy start date of the header
        dd, mm, yy = (int(x) for x in data[168:176].decode("ascii").split("."))
        found |= _date_forms(date(2000 + yy if yy < 85 else 1900 + yy, mm, dd))
    except ValueError:
        pass


def _json_identifiers(data: bytes, found: set[str]) -> None:
    def walk(value: Any, key: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, str(k))
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, str) and key.lower() != "sex":
            _add_value(found, value, name="name" in key.lower() or "physician" in key.lower())

    try:
        document = json.loads(data)
    except ValueError as exc:  # no content in the message: it is PHI
        raise ValueError(
            f"the patient.json beside the PSG is not valid JSON (line {getattr(exc, 'lineno', '?')})"
        ) from None
    walk(document)


def identifiers_from_raw(
    recording: bytes | None = None, psg_edf: bytes | None = None, patient_json: bytes | None = None
) -> set[str]:
    """Every identifier of a night as its raw files write it (PHI: keep it in memory only).

    From the Sunrise recording's patient block, ids and start date; the EDF+ local patient and
    recording identification and start date; and the patient.json beside the EDF. Dates come in
    the forms they are written (ISO, YYYYMMDD, DD-MMM-YYYY, DD.MM.YY); names also as their parts.
    """
    found: set[str] = set()
    if recording:
        _recording_identifiers(recording, found)
    if psg_edf:
        _edf_identifiers(psg_edf, found)
    if patient_json:
        _json_identifiers(patient_json, found)
    return found


def _searchable(identifier: str) -> bool:
    """Short or purely numeric strings would match by chance (in hashes, offsets, sample bytes)."""
    return len(identifier) >= 4 and (not identifier.isdigit() or len(identifier) >= 8)


def searchable_forms(identifier: str) -> set[bytes]:
    forms = {identifier, identifier.upper(), identifier.replace(" ", "_"), identifier.replace("_", " ")}
    forms |= {f.upper() for f in set(forms)}
    return {f.encode("utf-8") for f in forms if _searchable(f)}


def scan_for_identifiers(data: bytes, identifiers: Iterable[str]) -> list[str]:
    """The identifiers (as given) found in ``data``, as written or upper-case, ``_`` for spaces."""
    return sorted(i for i in identifiers if any(v in data for v in searchable_forms(i)))


def recording_without_samples(data: bytes) -> bytes:
    """A recording's bytes with its sample fields emptied: what the scan reads of a recording.

    Samples are sensor counts copied unchanged from the device; scanning megabytes of them for
    short strings would only find coincidences.
    """
    from sunalgo.recording import decode_message

    message = decode_message(data)
    for block in (message.accelerometer, message.gyroscope):
        block.samples = b""
    return message.SerializeToString(deterministic=True)


def raw_patient_json(bucket, study_edf_path: str) -> bytes | None:
    """The patient.json some sites put beside the EDF (None when there is none)."""
    path = study_edf_path.rsplit("/", 1)[0] + "/patient.json"
    return bucket.read_bytes(path) if bucket.exists(path) else None
