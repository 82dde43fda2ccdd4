"""Each night's picture for the Dagster UI: the PSG hypnogram above sunalgo's, events marked.

A small, deterministic SVG (fixed 900 x 300 px, no timestamps; about 10 kB) written directly
from the arrays, embedded in Markdown metadata as a data URI, which the UI's Markdown renderer
shows as an image. Writing the SVG by hand rather than through matplotlib is a speed choice: it
takes well under a millisecond a night where a matplotlib PNG took ~140 ms of CPU (a quarter of
the whole pipeline's time per night, measured by `sunrise bench`), and no run has to import
matplotlib. sunalgo stays free of drawing code: this module only draws arrays it is given.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from xml.sax.saxutils import escape

import numpy as np

from sunalgo.labels import CENTRAL_APNEA, EPOCH_S, HYPOPNEA, MIXED_APNEA, OBSTRUCTIVE_APNEA, STAGES, UNTYPED_APNEA

WIDTH_PX, HEIGHT_PX = 900, 300

# Hypnogram rows top to bottom (wake on top, deep sleep at the bottom), as clinicians read them.
_ROW = {
    STAGES.index("W"): 4,
    STAGES.index("REM"): 3,
    STAGES.index("N1"): 2,
    STAGES.index("N2"): 1,
    STAGES.index("N3"): 0,
}
_ROW_LABELS = ("N3", "N2", "N1", "REM", "W")
EVENT_COLOURS = {
    OBSTRUCTIVE_APNEA: "#d62728",
    MIXED_APNEA: "#9467bd",
    CENTRAL_APNEA: "#1f77b4",
    HYPOPNEA: "#ff7f0e",
    UNTYPED_APNEA: "#7f7f7f",
}
_EVENT_NAMES = {
    OBSTRUCTIVE_APNEA: "obstructive",
    MIXED_APNEA: "mixed",
    CENTRAL_APNEA: "central",
    HYPOPNEA: "hypopnea",
    UNTYPED_APNEA: "untyped apnea",
}
_REM_COLOUR = "#c2185b"
_PREDICTED_EVENT_COLOUR = "#d62728"

# Layout in pixels: two panels sharing the time axis.
_LEFT, _RIGHT = 40.0, 885.0
_PANELS_TOP = (30.0, 165.0)  # y of each panel's top edge
_PANEL_H = 100.0
_Y_MIN, _Y_MAX = -1.1, 4.6  # data range of a panel: rows 0..4, event bars below row 0
_FONT = 'font-family="DejaVu Sans, Arial, sans-serif"'


def _rows(stages: np.ndarray) -> np.ndarray:
    """Row per epoch (NaN where unscored / no signal, so the line breaks there)."""
    lut = np.full(len(STAGES), np.nan)
    for code, row in _ROW.items():
        lut[code] = row
    stages = np.asarray(stages, dtype=np.int64)
    return np.where(stages >= 0, lut[np.clip(stages, 0, len(STAGES) - 1)], np.nan)


class _Axes:
    """Data -> pixel mapping of one panel (x in hours, y in hypnogram rows)."""

    def __init__(self, top: float, hours: float):
        self.top, self.scale_x = top, (_RIGHT - _LEFT) / max(hours, 1e-9)

    def x(self, hours: np.ndarray | float) -> np.ndarray | float:
        return _LEFT + np.asarray(hours) * self.scale_x

    def y(self, row: np.ndarray | float) -> np.ndarray | float:
        return self.top + (_Y_MAX - np.asarray(row)) / (_Y_MAX - _Y_MIN) * _PANEL_H


def _runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, end, value) of each run of equal values; NaN runs count as equal to each other."""
    if values.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    filled = np.where(np.isnan(values), -99.0, values)
    starts = np.flatnonzero(np.r_[True, filled[1:] != filled[:-1]])
    ends = np.r_[starts[1:], values.size]
    return starts, ends, values[starts]


def _step_path(ax: _Axes, rows: np.ndarray, only_row: float | None = None) -> str:
    """SVG path of the hypnogram as a step line, broken where unscored (or off other rows)."""
    starts, ends, values = _runs(rows)
    x0 = ax.x(starts * EPOCH_S / 3600)
    x1 = ax.x(ends * EPOCH_S / 3600)
    y = ax.y(np.nan_to_num(values))
    parts: list[str] = []
    pen_down = False
    for a, b, yy, v in zip(x0.tolist(), x1.tolist(), y.tolist(), values.tolist()):
        if v != v or (only_row is not None and v != only_row):  # NaN or not the row asked for: lift the pen
            pen_down = False
            continue
        parts.append(f"V{yy:.1f}H{b:.1f}" if pen_down else f"M{a:.1f} {yy:.1f}H{b:.1f}")
        pen_down = only_row is None
    return "".join(parts)


def _bars(ax: _Axes, spans_h: Sequence[tuple[float, float]], colour: str) -> str:
    """One path of rectangles under the hypnogram (events), so a night of ~100 events is one element."""
    if not spans_h:
        return ""
    y0, y1 = ax.y(-0.3), ax.y(-1.0)
    d = "".join(
        f"M{ax.x(s):.1f} {y0:.1f}h{max(w * ax.scale_x, 0.8):.1f}V{y1:.1f}h{-max(w * ax.scale_x, 0.8):.1f}z"
        for s, w in spans_h
    )
    return f'<path d="{d}" fill="{colour}"/>'


def _legend(ax: _Axes, items: Sequence[tuple[str, str]]) -> str:
    """Colour key right-aligned above the panel."""
    out, x = [], _RIGHT
    for label, colour in reversed(items):
        width = 6.0 * len(label) + 16
        x -= width
        out.append(
            f'<rect x="{x:.1f}" y="{ax.top - 14:.1f}" width="9" height="7" fill="{colour}"/>'
            f'<text x="{x + 12:.1f}" y="{ax.top - 7:.1f}" font-size="9" {_FONT}>{escape(label)}</text>'
        )
    return "".join(out)


def _panel(ax: _Axes, stages: np.ndarray, title: str) -> str:
    rows = _rows(stages)
    grid = "".join(
        f'<line x1="{_LEFT}" x2="{_RIGHT}" y1="{ax.y(r):.1f}" y2="{ax.y(r):.1f}" stroke="#e0e0e0" stroke-width="0.5"/>'
        f'<text x="{_LEFT - 4}" y="{ax.y(r) + 3:.1f}" font-size="9" text-anchor="end" {_FONT}>{label}</text>'
        for r, label in enumerate(_ROW_LABELS)
    )
    frame = (
        f'<rect x="{_LEFT}" y="{ax.top}" width="{_RIGHT - _LEFT}" height="{_PANEL_H}" fill="none" '
        f'stroke="#888888" stroke-width="0.6"/>'
    )
    rem_row = float(_ROW[STAGES.index("REM")])
    return (
        frame
        + grid
        + f'<text x="{_LEFT}" y="{ax.top - 4:.1f}" font-size="10" {_FONT}>{escape(title)}</text>'
        + f'<path d="{_step_path(ax, rows)}" fill="none" stroke="#333333" stroke-width="1"/>'
        + f'<path d="{_step_path(ax, rows, only_row=rem_row)}" fill="none" stroke="{_REM_COLOUR}" stroke-width="3.5"/>'
    )


def _time_axis(ax: _Axes, hours: float) -> str:
    step = 1 if hours <= 12 else 2
    ticks = "".join(
        f'<line x1="{ax.x(h):.1f}" x2="{ax.x(h):.1f}" y1="{ax.top + _PANEL_H:.1f}" y2="{ax.top + _PANEL_H + 3:.1f}" '
        'stroke="#555555"/>'
        f'<text x="{ax.x(h):.1f}" y="{ax.top + _PANEL_H + 13:.1f}" font-size="9" text-anchor="middle" '
        f"{_FONT}>{h}</text>"
        for h in range(0, int(hours) + 1, step)
    )
    label = (
        f'<text x="{(_LEFT + _RIGHT) / 2:.1f}" y="{HEIGHT_PX - 4}" font-size="9" text-anchor="middle" {_FONT}>'
        "hours since lights off</text>"
    )
    return ticks + label


def hypnogram_svg(
    psg_stages: np.ndarray,
    predicted_stages: np.ndarray,
    psg_events: Sequence[tuple[float, float, str]] = (),
    predicted_event_epochs: np.ndarray | None = None,
    *,
    psg_caption: str = "PSG (technician)",
    predicted_caption: str = "sunalgo (predicted)",
) -> bytes:
    """SVG bytes: PSG hypnogram (respiratory events as coloured bars under it) above sunalgo's
    (epochs predicted to hold an obstructive event as red ticks). Same inputs, same bytes."""
    n = max(np.asarray(psg_stages).size, np.asarray(predicted_stages).size, 1)
    hours = n * EPOCH_S / 3600
    top, bottom = (_Axes(y, hours) for y in _PANELS_TOP)

    body = [_panel(top, psg_stages, psg_caption)]
    bars: dict[str, list[tuple[float, float]]] = {}
    for onset_s, duration_s, kind in psg_events:
        if kind in EVENT_COLOURS:
            bars.setdefault(kind, []).append((float(onset_s) / 3600, max(float(duration_s), 20.0) / 3600))
    body += [_bars(top, bars[kind], colour) for kind, colour in EVENT_COLOURS.items() if kind in bars]
    body.append(_legend(top, [(_EVENT_NAMES[k], c) for k, c in EVENT_COLOURS.items() if k in bars]))

    body.append(_panel(bottom, predicted_stages, predicted_caption))
    if predicted_event_epochs is not None:
        epochs = np.flatnonzero(np.asarray(predicted_event_epochs, dtype=bool))
        if epochs.size:
            spans = [(e * EPOCH_S / 3600, EPOCH_S / 3600) for e in epochs.tolist()]
            body.append(_bars(bottom, spans, _PREDICTED_EVENT_COLOUR))
            body.append(_legend(bottom, [("epoch with a predicted obstructive event", _PREDICTED_EVENT_COLOUR)]))
    body.append(_time_axis(bottom, hours))
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH_PX}" height="{HEIGHT_PX}" '
        f'viewBox="0 0 {WIDTH_PX} {HEIGHT_PX}"><rect width="100%" height="100%" fill="#ffffff"/>'
        + "".join(body)
        + "</svg>"
    )
    return svg.encode("utf-8")


def markdown_image(svg: bytes, alt: str = "hypnogram") -> str:
    """Markdown the Dagster UI renders as the image (its sanitizer allows data: image sources)."""
    return f"![{alt}](data:image/svg+xml;base64,{base64.b64encode(svg).decode('ascii')})"


def caption(prefix: str, values: Mapping[str, float | None]) -> str:
    """'PSG: TST 412 min, SE 86.0 %, AHI 12.3/h' style, skipping unknown values."""
    parts = []
    for label, (value, fmt) in {
        "TST": (values.get("total_sleep_time_min"), "{:.0f} min"),
        "SE": (values.get("sleep_efficiency_pct"), "{:.1f} %"),
        "AHI": (values.get("ahi"), "{:.1f}/h"),
    }.items():
        if value is not None and np.isfinite(value):
            parts.append(f"{label} {fmt.format(value)}")
    return f"{prefix}: " + ", ".join(parts) if parts else prefix


KEY_SCORES = ("total_sleep_time_min", "sleep_efficiency_pct", "ahi")


def night_picture_metadata(
    psg_stages: np.ndarray,
    predicted_stages: np.ndarray,
    psg_events,
    predicted_event_epochs: np.ndarray,
    clinical: Mapping[str, Mapping[str, float | None]],
    agreement: Mapping[str, float | None] | None = None,
) -> dict:
    """The night's picture (Markdown, under ``hypnogram``) and key scores, for materialization
    metadata (picture first; the asset wraps the Markdown as Dagster Markdown metadata).

    ``psg_events``: table with onset_s, duration_s and type (silver psg_respiratory_events);
    ``clinical``: the gold clinical_scores document ({"psg": {...}, "sunalgo": {...}});
    ``agreement``: sunalgo's agreement with the PSG (kappa_5class, accuracy), shown in the caption.
    """
    events = list(zip(psg_events["onset_s"], psg_events["duration_s"], psg_events["type"]))
    predicted = caption("sunalgo (predicted)", clinical.get("sunalgo", {}))
    kappa, accuracy = ((agreement or {}).get(k) for k in ("kappa_5class", "accuracy"))
    if kappa is not None and accuracy is not None:
        predicted += f"  |  agreement with PSG: kappa {kappa:.2f}, accuracy {100 * accuracy:.0f} %"
    svg = hypnogram_svg(
        psg_stages,
        predicted_stages,
        events,
        predicted_event_epochs,
        psg_caption=caption("PSG (technician)", clinical.get("psg", {})),
        predicted_caption=predicted,
    )
    meta: dict = {"hypnogram": markdown_image(svg, "PSG hypnogram above sunalgo's")}
    for source in ("psg", "sunalgo"):
        for name in KEY_SCORES:
            value = clinical.get(source, {}).get(name)
            if value is not None and np.isfinite(value):
                meta[f"{source}_{name}"] = round(float(value), 2)
    return meta
