"""The candidate comparison as a picture: one row per metric, the change (candidate minus production)
with its 95 % confidence interval around zero, coloured by verdict. Hand-written SVG, embedded in
Markdown metadata as a data URI (as the night picture is)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape

from sunrise_assets.domain.night_picture import markdown_image

WIDTH, ROW_H, LEFT, RIGHT, TOP = 640, 26, 190, 30, 34
COLOURS = {"better": "#2e7d32", "worse": "#c62828", "no significant change": "#616161", "not enough data": "#bdbdbd"}
_FONT = 'font-family="DejaVu Sans, Arial, sans-serif" font-size="12"'


def _rows(report: Mapping[str, Any]) -> list[tuple[str, dict[str, Any], str, float]]:
    """(label, change interval, verdict, scale) per metric; errors first, then epoch agreement."""
    labels = {
        "total_sleep_time_min": "TST |error| (min)",
        "sleep_efficiency_pct": "SE |error| (%)",
        "sleep_onset_latency_min": "SOL |error| (min)",
        "waso_min": "WASO |error| (min)",
        "ahi": "AHI |error| (/h)",
    }
    rows = [(labels.get(k, k), v["mae_change"], v["verdict"]) for k, v in report["scores"].items()]
    rows += [
        ("kappa (5 stages)", report["epochs"]["kappa_5class"]["change"], report["epochs"]["kappa_5class"]["verdict"]),
        ("accuracy", report["epochs"]["accuracy"]["change"], report["epochs"]["accuracy"]["verdict"]),
    ]
    out = []
    for label, change, verdict in rows:
        values = [abs(v) for v in (change["estimate"], change["ci_lower"], change["ci_upper"]) if v is not None]
        out.append((label, change, verdict, max(values, default=0.0)))
    return out


def comparison_svg(report: Mapping[str, Any]) -> bytes:
    """Each metric on its own symmetric scale (its largest |change|), zero in the middle."""
    rows = _rows(report)
    height = TOP + ROW_H * len(rows) + 24
    mid = LEFT + (WIDTH - LEFT - RIGHT) / 2
    half = (WIDTH - LEFT - RIGHT) / 2 - 8
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="8" y="18" {_FONT} font-weight="bold">candidate minus production, 95 % CI '
        "(errors: lower is better; kappa and accuracy: higher is better)</text>",
        f'<line x1="{mid}" y1="{TOP - 6}" x2="{mid}" y2="{height - 20}" stroke="#9e9e9e" stroke-dasharray="3,3"/>',
    ]
    for i, (label, change, verdict, scale) in enumerate(rows):
        y = TOP + ROW_H * i + ROW_H / 2
        colour = COLOURS.get(verdict, "#616161")
        parts.append(f'<text x="8" y="{y + 4}" {_FONT}>{escape(label)}</text>')
        if change["estimate"] is None:
            parts.append(f'<text x="{mid + 6}" y="{y + 4}" {_FONT} fill="{colour}">{escape(verdict)}</text>')
            continue

        def x(value: float, scale: float = scale) -> float:
            return mid if scale == 0 else mid + half * value / scale

        if change["ci_lower"] is not None and change["ci_upper"] is not None:
            parts.append(
                f'<line x1="{x(change["ci_lower"]):.1f}" y1="{y}" x2="{x(change["ci_upper"]):.1f}" y2="{y}" '
                f'stroke="{colour}" stroke-width="3"/>'
            )
        parts.append(f'<circle cx="{x(change["estimate"]):.1f}" cy="{y}" r="5" fill="{colour}"/>')
        parts.append(
            f'<text x="{WIDTH - RIGHT + 4}" y="{y + 4}" {_FONT} fill="{colour}" text-anchor="end">'
            f"{change['estimate']:+.3g}</text>"
        )
    parts.append("</svg>")
    return "".join(parts).encode()


def comparison_markdown(report: Mapping[str, Any], tables: str) -> str:
    """The picture above the report's tables."""
    return markdown_image(comparison_svg(report), "candidate minus production") + "\n\n" + tables
