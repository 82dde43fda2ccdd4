"""Each night's picture for the Dagster UI: the PSG hypnogram above sunalgo's, events marked.

A small, deterministic PNG (Agg, fixed size and dpi, no software/date chunks; about 20 kB),
embedded in Markdown metadata as a data URI, which the UI's Markdown renderer shows as an image.
sunalgo stays free of matplotlib: this module only draws arrays it is given.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import numpy as np

from sunalgo.labels import CENTRAL_APNEA, EPOCH_S, HYPOPNEA, MIXED_APNEA, OBSTRUCTIVE_APNEA, STAGES

WIDTH_PX, HEIGHT_PX, DPI = 900, 300, 100

# Hypnogram rows top to bottom (wake on top, deep sleep at the bottom), as clinicians read them.
_ROW = {STAGES.index("W"): 4, STAGES.index("REM"): 3, STAGES.index("N1"): 2, STAGES.index("N2"): 1, STAGES.index("N3"): 0}
_ROW_LABELS = ("N3", "N2", "N1", "REM", "W")
EVENT_COLOURS = {
    OBSTRUCTIVE_APNEA: "#d62728",
    MIXED_APNEA: "#9467bd",
    CENTRAL_APNEA: "#1f77b4",
    HYPOPNEA: "#ff7f0e",
}
_EVENT_NAMES = {OBSTRUCTIVE_APNEA: "obstructive", MIXED_APNEA: "mixed", CENTRAL_APNEA: "central", HYPOPNEA: "hypopnea"}
_REM_COLOUR = "#c2185b"
_PREDICTED_EVENT_COLOUR = "#d62728"


def _rows(stages: np.ndarray) -> np.ndarray:
    """Row per epoch (NaN where unscored / no signal, so the line breaks there)."""
    lut = np.full(len(STAGES), np.nan)
    for code, row in _ROW.items():
        lut[code] = row
    stages = np.asarray(stages, dtype=np.int64)
    return np.where(stages >= 0, lut[np.clip(stages, 0, len(STAGES) - 1)], np.nan)


def _draw_hypnogram(ax, stages: np.ndarray, title: str) -> None:
    rows = _rows(stages)
    hours = np.arange(rows.size + 1) * EPOCH_S / 3600
    y = np.append(rows, rows[-1] if rows.size else np.nan)
    ax.step(hours, y, where="post", color="#333333", linewidth=0.9)
    rem = np.where(rows == _ROW[STAGES.index("REM")], rows, np.nan)
    ax.step(hours, np.append(rem, np.nan), where="post", color=_REM_COLOUR, linewidth=3.0, solid_capstyle="butt")
    ax.set_yticks(range(len(_ROW_LABELS)), _ROW_LABELS, fontsize=7)
    ax.set_ylim(-1.1, 4.6)
    ax.grid(axis="y", color="#e0e0e0", linewidth=0.5)
    ax.set_title(title, fontsize=8, loc="left", pad=3)
    ax.tick_params(axis="x", labelsize=7)


def hypnogram_png(
    psg_stages: np.ndarray,
    predicted_stages: np.ndarray,
    psg_events: Sequence[tuple[float, float, str]] = (),
    predicted_event_epochs: np.ndarray | None = None,
    *,
    psg_caption: str = "PSG (technician)",
    predicted_caption: str = "sunalgo (predicted)",
) -> bytes:
    """PNG bytes: PSG hypnogram (respiratory events as coloured bars under it) above sunalgo's
    (epochs predicted to hold an obstructive event as red ticks). Same inputs, same bytes."""
    # A bare Figure (no pyplot): no global backend state, rendered by Agg on save.
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    fig = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
    top, bottom = fig.subplots(2, 1, sharex=True)
    fig.subplots_adjust(left=0.045, right=0.985, top=0.90, bottom=0.13, hspace=0.35)

    _draw_hypnogram(top, psg_stages, psg_caption)
    seen = []
    bars: dict[str, list[tuple[float, float]]] = {}
    for onset_s, duration_s, kind in psg_events:
        colour = EVENT_COLOURS.get(kind)
        if colour is None:
            continue
        bars.setdefault(kind, []).append((onset_s / 3600, max(duration_s, 20.0) / 3600))
        if kind not in seen:
            seen.append(kind)
    for kind in seen:  # one artist per event type, not per event (~100 a night): several times faster
        top.broken_barh(bars[kind], (-1.0, 0.7), color=EVENT_COLOURS[kind], linewidth=0)
    if seen:
        top.legend(
            handles=[Patch(color=EVENT_COLOURS[k], label=_EVENT_NAMES[k]) for k in EVENT_COLOURS if k in seen],
            loc="upper right", bbox_to_anchor=(1.0, 1.32), ncol=len(seen), fontsize=6.5, frameon=False,
            handlelength=1.0, columnspacing=0.8,
        )

    _draw_hypnogram(bottom, predicted_stages, predicted_caption)
    if predicted_event_epochs is not None:
        epochs = np.flatnonzero(np.asarray(predicted_event_epochs, dtype=bool))
        if epochs.size:
            bottom.broken_barh([(e * EPOCH_S / 3600, EPOCH_S / 3600) for e in epochs], (-1.0, 0.7),
                               color=_PREDICTED_EVENT_COLOUR, linewidth=0)
            bottom.legend(handles=[Patch(color=_PREDICTED_EVENT_COLOUR, label="epoch with a predicted obstructive event")],
                          loc="upper right", bbox_to_anchor=(1.0, 1.32), fontsize=6.5, frameon=False, handlelength=1.0)
    bottom.set_xlabel("hours since lights off", fontsize=7, labelpad=1)
    n = max(np.asarray(psg_stages).size, np.asarray(predicted_stages).size)
    bottom.set_xlim(0, max(n, 1) * EPOCH_S / 3600)

    buf = io.BytesIO()
    # No Software/date chunks: identical inputs give identical bytes (about 20 kB).
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def markdown_image(png: bytes, alt: str = "hypnogram") -> str:
    """Markdown the Dagster UI renders as the image (its sanitizer allows data: image sources)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


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
    """The night's picture and key scores as materialization metadata (picture first).

    ``psg_events``: table with onset_s, duration_s and type (silver psg_respiratory_events);
    ``clinical``: the gold clinical_scores document ({"psg": {...}, "sunalgo": {...}});
    ``agreement``: sunalgo's agreement with the PSG (kappa_5class, accuracy), shown in the caption.
    """
    from dagster import MetadataValue

    events = list(zip(psg_events["onset_s"], psg_events["duration_s"], psg_events["type"]))
    predicted = caption("sunalgo (predicted)", clinical.get("sunalgo", {}))
    kappa, accuracy = ((agreement or {}).get(k) for k in ("kappa_5class", "accuracy"))
    if kappa is not None and accuracy is not None:
        predicted += f"  |  agreement with PSG: kappa {kappa:.2f}, accuracy {100 * accuracy:.0f} %"
    png = hypnogram_png(
        psg_stages, predicted_stages, events, predicted_event_epochs,
        psg_caption=caption("PSG (technician)", clinical.get("psg", {})), predicted_caption=predicted,
    )
    meta: dict = {"hypnogram": MetadataValue.md(markdown_image(png, "PSG hypnogram above sunalgo's"))}
    for source in ("psg", "sunalgo"):
        for name in KEY_SCORES:
            value = clinical.get(source, {}).get(name)
            if value is not None and np.isfinite(value):
                meta[f"{source}_{name}"] = round(float(value), 2)
    return meta
