"""What the two XML readers share: parsing bytes safely enough, the document root and epoch length, and
reading numbers with clear errors."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

from sunrise_assets.domain.psg_readers.psg_labels import PsgFormatError

_ROOT_RE = re.compile(rb"<\s*([A-Za-z_][\w.\-]*(?::[\w.\-]+)?)[\s>/]")


def root_tag(data: bytes) -> str | None:
    """Name of the first element of an XML document (after the declaration, comments and doctype),
    found without parsing the whole file; None when the bytes do not start like XML."""
    head = data[:4096]
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    elif head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            head = head.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError:
            return None
    head = head.lstrip()
    if not head.startswith(b"<"):
        return None
    head = re.sub(rb"<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>]*>", b"", head, flags=re.DOTALL).lstrip()
    m = _ROOT_RE.match(head)
    return m.group(1).decode("ascii", "replace").split(":")[-1] if m else None


def parse(data: bytes, name: str) -> ET.Element:
    if b"<!ENTITY" in data[:65536]:
        raise PsgFormatError(f"{name}: XML with entity declarations is not accepted")
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise PsgFormatError(f"{name}: not well-formed XML ({exc})") from exc


def study_document(data: bytes, name: str, root: str, default_epoch_s: str | None = None) -> tuple[ET.Element, float]:
    """A scoring export's root element (checked to be ``<root>``) and its EpochLength in seconds
    (``default_epoch_s`` when absent, else required; 1 to 300 s)."""
    element = parse(data, name)
    if local(element.tag) != root:
        raise PsgFormatError(f"{name}: XML root <{local(element.tag)}> is not <{root}>")
    epoch_s = number(child_texts(element).get("EpochLength") or default_epoch_s, name, "EpochLength")
    if not 1.0 <= epoch_s <= 300.0:  # 1e-300 or 1e300 would give absurd epoch counts
        raise PsgFormatError(f"{name}: EpochLength {epoch_s:g} s is not a scoring epoch length (1 to 300 s)")
    return element, epoch_s


def local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def child_texts(element: ET.Element) -> dict[str, str]:
    """Direct children by (namespace-free) tag, in any order; the first of a repeated tag wins."""
    out: dict[str, str] = {}
    for child in element:
        out.setdefault(local(child.tag), (child.text or "").strip())
    return out


def number(text: str | None, name: str, what: str, *, required: bool = True) -> float:
    try:
        return value(text, what, required=required)
    except ValueError as exc:
        raise PsgFormatError(f"{name}: {exc}") from None


def value(text: str | None, what: str, *, required: bool = True) -> float:
    """The finite number ``text`` holds (NaN when absent and not ``required``), else ValueError saying
    what is wrong with ``what`` ("Duration 'Invalid Duration' is not a number")."""
    if text is None or text == "":
        if required:
            raise ValueError(f"{what} is missing")
        return float("nan")
    try:
        number_ = float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if not math.isfinite(number_):  # "nan", "inf" parse as floats but are no time or duration
        raise ValueError(f"{what} {text!r} is not a finite number")
    return number_


def event_times(fields: dict[str, str], nadir_field: str) -> tuple[float, float, float]:
    """A scored event's onset (required), duration (NaN when absent, never negative) and SpO2 nadir
    (NaN when absent); ValueError naming the field that cannot be used."""
    onset = value(fields.get("Start"), "Start")
    duration = value(fields.get("Duration"), "Duration", required=False)
    if duration < 0:
        raise ValueError(f"Duration {fields.get('Duration')!r} is negative")
    return onset, duration, value(fields.get(nadir_field), nadir_field, required=False)
