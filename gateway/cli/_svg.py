"""Inline SVG charts for the auditor's HTML report, drawn here so that the gateway's install needs
no plotting library and the page needs no script. Every label is data (agreement ids, principals,
reasons) and is escaped; a long label is shortened on the chart and given whole in a tooltip."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

OUTCOME_COLOURS = (("allow", "#2e7d32"), ("deny", "#c62828"), ("error", "#ef6c00"))
_FONT = 'font-family="system-ui, sans-serif" font-size="12"'
_LABEL_CHARS = 34
_WIDTH = 760


@dataclass(frozen=True)
class Row:
    """One bar: a label and a value per series (stacked in the order of ``series``)."""

    label: str
    values: tuple[float, ...]


def _short(label: str, limit: int = _LABEL_CHARS) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _open(width: int, height: int, title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" class="chart">'
        f"<title>{escape(title)}</title>"
    )


def _legend(series: Sequence[tuple[str, str]], x: float, y: float) -> str:
    parts = []
    for name, colour in series:
        parts.append(
            f'<rect x="{x:.1f}" y="{y - 10:.1f}" width="12" height="12" fill="{colour}"/>'
            f'<text x="{x + 16:.1f}" y="{y:.1f}" {_FONT}>{escape(name)}</text>'
        )
        x += 24 + 8 * len(name)
    return "".join(parts)


def _nice_max(value: float) -> float:
    """A round axis maximum at or above ``value`` (1, 2 or 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= value))


def _axis(value: float, ticks: int = 5) -> tuple[float, float]:
    """(top, step) of a y axis for counts: a round step (1, 2 or 5 times a power of ten, at
    least 1) and the top at the first multiple of it at or above ``value``, in at most
    ``ticks`` steps, so that every gridline is a whole number."""
    step = max(1.0, _nice_max(value / ticks))
    return max(step, math.ceil(value / step) * step), step


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def hbar_chart(
    title: str,
    rows: Sequence[Row],
    series: Sequence[tuple[str, str]],
    *,
    maximum: float | None = None,
    percent: bool = False,
) -> str:
    """Horizontal bars, one per row, segments stacked by series; the total at the bar's end."""
    left, bar_h, gap, top = 250, 18, 10, 34
    plot_w = _WIDTH - left - 60
    height = top + len(rows) * (bar_h + gap) + 10
    top_value = maximum if maximum is not None else _nice_max(max((sum(r.values) for r in rows), default=0))
    out = [_open(_WIDTH, height, title), _legend(series, left, 16)]
    for i, row in enumerate(rows):
        y = top + i * (bar_h + gap)
        out.append(
            f'<text x="{left - 8}" y="{y + 13}" text-anchor="end" {_FONT}>'
            f"<title>{escape(row.label)}</title>{escape(_short(row.label))}</text>"
        )
        x = float(left)
        for value, (name, colour) in zip(row.values, series, strict=True):
            w = plot_w * value / top_value if top_value else 0.0
            if w > 0:
                shown = f"{value:.0%}" if percent else _number(value)
                out.append(
                    f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colour}">'
                    f"<title>{escape(row.label)}: {escape(name)} {shown}</title></rect>"
                )
            x += w
        total = sum(row.values)
        shown = f"{total:.0%}" if percent else _number(total)
        out.append(f'<text x="{x + 6:.1f}" y="{y + 13}" {_FONT}>{shown}</text>')
    out.append(f'<line x1="{left}" y1="{top - 4}" x2="{left}" y2="{height - 6}" stroke="#555"/>')
    out.append("</svg>")
    return "".join(out)


def column_chart(title: str, rows: Sequence[Row], series: Sequence[tuple[str, str]]) -> str:
    """Vertical stacked columns over time (one per row, in order), with a y axis and gridlines;
    at most about twelve x labels, so that they do not overlap."""
    left, right, top, bottom = 110, 20, 34, 90
    plot_h = 220
    height = top + plot_h + bottom
    plot_w = _WIDTH - left - right
    top_value, step = _axis(max((sum(r.values) for r in rows), default=0))
    slot = plot_w / max(len(rows), 1)
    bar_w = min(max(slot * 0.8, 1.0), 48.0)  # one bucket stays a column, not a wall
    every = max(1, math.ceil(len(rows) / 12))
    out = [_open(_WIDTH, height, title), _legend(series, left, 16)]
    for tick in range(round(top_value / step) + 1):
        value = step * tick
        y = top + plot_h - plot_h * value / top_value
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{_WIDTH - right}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" {_FONT}>{_number(value)}</text>'
        )
    for i, row in enumerate(rows):
        x = left + i * slot + (slot - bar_w) / 2
        y = float(top + plot_h)
        for value, (name, colour) in zip(row.values, series, strict=True):
            h = plot_h * value / top_value
            if h > 0:
                y -= h
                out.append(
                    f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{colour}">'
                    f"<title>{escape(row.label)}: {escape(name)} {_number(value)}</title></rect>"
                )
        if i % every == 0:
            cx, cy = x + bar_w / 2, top + plot_h + 12
            out.append(
                f'<text x="{cx:.1f}" y="{cy:.1f}" text-anchor="end" '
                f'transform="rotate(-40 {cx:.1f} {cy:.1f})" {_FONT}>{escape(row.label)}</text>'
            )
    out.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{_WIDTH - right}" y2="{top + plot_h}" stroke="#555"/>'
    )
    out.append("</svg>")
    return "".join(out)
