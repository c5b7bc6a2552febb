"""``gateway query --chart FILE``: the answer drawn as analysts of crime and health trends read
it. Time grouped: a line over months (quarters, years), one line per series when a second
dimension splits it. Otherwise bars by district or category, grouped when split. A withheld
cell is a gap in the line or a missing bar, never a zero (a zero would be a figure the gateway
did not release). matplotlib draws (Agg, no display; PNG or SVG by the file's suffix) and is
imported only when a chart is asked for, so the other commands do not need it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from gateway._pb import query_pb2
from gateway.cli._client import UsageError, measure_label

if TYPE_CHECKING:
    from matplotlib.axes import Axes

FORMATS = (".png", ".svg")
TIME_GRAINS = ("month", "quarter", "year")
MAX_DIMENSIONS = 2
_MAX_TICKS = 24
_WITHHELD_SHADE = "#d9d9d9"


@dataclass(frozen=True)
class Series:
    label: str  # the splitting dimension's value; "" when there is one series
    values: tuple[float, ...]  # one per x position; NaN where withheld


@dataclass(frozen=True)
class Panel:
    measure: str
    series: tuple[Series, ...]


@dataclass(frozen=True)
class ChartData:
    """What is drawn, separate from drawing it so it can be checked: withheld values are NaN."""

    kind: Literal["line", "bar"]
    x_name: str
    x: tuple[str, ...]
    split_by: str  # "" when one series
    panels: tuple[Panel, ...]
    title: str
    note: str


def check_chart_option(path: Path, group_by: Sequence[str]) -> None:
    """Refuse a chart that cannot be drawn before the query is sent (it may count against a budget)."""
    if path.suffix.lower() not in FORMATS:
        raise UsageError(f"--chart {str(path)!r}: name a .png or .svg file, e.g. --chart trend.png")
    if not path.parent.is_dir():
        raise UsageError(f"--chart {str(path)!r}: folder {str(path.parent)!r} does not exist")
    if len(group_by) > MAX_DIMENSIONS:
        raise UsageError(
            f"--chart: draws at most {MAX_DIMENSIONS} --group-by dimensions (got {len(group_by)}); "
            "use --csv for more"
        )
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise UsageError("--chart needs matplotlib: pip install 'datashare-gateway[chart]'") from exc


def chart_data(result: query_pb2.AggregateResult, dataset: str) -> ChartData:
    group_by = list(result.group_by)
    labels = [measure_label(m) for m in result.measures]
    if len(group_by) > MAX_DIMENSIONS:
        raise UsageError(f"--chart: draws at most {MAX_DIMENSIONS} --group-by dimensions")
    values = {tuple(c.key): [math.nan if v.withheld else v.value for v in c.values] for c in result.cells}
    if not group_by:
        values = {("total",): [math.nan if v.withheld else v.value for v in result.total.values]}
    time = [i for i, g in enumerate(group_by) if g in TIME_GRAINS]
    x_at = time[0] if time else 0
    split_at = 1 - x_at if len(group_by) == MAX_DIMENSIONS else None
    x = _axis(values, x_at)
    splits = _axis(values, split_at) if split_at is not None else [""]
    panels = []
    for m, label in enumerate(labels):
        series = []
        for s in splits:
            points = []
            for xv in x:
                key = (xv,) if split_at is None else ((xv, s) if x_at == 0 else (s, xv))
                points.append(values.get(key, [math.nan] * len(labels))[m])
            series.append(Series(s, tuple(points)))
        panels.append(Panel(label, tuple(series)))
    d = result.disclosure
    shown = " and ".join(group_by) or "total"
    return ChartData(
        kind="line" if time else "bar",
        x_name=group_by[x_at] if group_by else "",
        x=tuple(x),
        split_by=group_by[split_at] if split_at is not None else "",
        panels=tuple(panels),
        title=f"{d.agreement_id} · {dataset}: {', '.join(labels)} by {shown}",
        note=(
            f"Cells under k = {d.k} distinct people withheld (gaps, never zeros); counts and sums "
            f"rounded to {d.round_to}, means to one decimal. Decision {d.decision_id}."
        ),
    )


def _axis(values: dict[tuple[str, ...], list[float]], position: int) -> list[str]:
    """The distinct values at ``position`` of the keys, in the gateway's grid order."""
    return list(dict.fromkeys(key[position] for key in values))


def draw_chart(data: ChartData, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    n = len(data.panels)
    fig = Figure(figsize=(10, 1.6 + 3.2 * n), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0]
    for ax, panel in zip(axes, data.panels, strict=True):
        if data.kind == "line":
            _lines(ax, data, panel)
        else:
            _bars(ax, data, panel)
        ax.set_ylabel(_measure_words(panel.measure))
        if panel.measure in ("subjects", "records"):  # counts: no 17.5 people
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(axis="y", alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        if all(math.isnan(v) for s in panel.series for v in s.values):
            ax.set_ylim(0, 1)
            ax.text(0.5, 0.5, "every cell withheld", transform=ax.transAxes, ha="center", color="grey")
    _x_ticks(axes[-1], data)
    fig.suptitle(data.title, fontsize=11, x=0.01, ha="left")
    fig.supxlabel(data.note, fontsize=8, x=0.01, ha="left", color="#555555")
    fig.savefig(path, format=path.suffix.lower().lstrip("."), dpi=110, metadata=_metadata(path))


def _lines(ax: Axes, data: ChartData, panel: Panel) -> None:
    xs = range(len(data.x))
    for j, s in enumerate(panel.series):
        # markers: a released month between two withheld ones still shows as a point
        ax.plot(xs, s.values, marker="o", markersize=3, linewidth=1.6, color=f"C{j % 10}", label=s.label)
    gaps = [i for i in xs if all(math.isnan(s.values[i]) for s in panel.series)]
    for i in gaps:
        ax.axvspan(i - 0.5, i + 0.5, color=_WITHHELD_SHADE, alpha=0.5, linewidth=0)
    if gaps:
        ax.text(0.99, 0.98, "shaded: withheld", transform=ax.transAxes, ha="right", va="top", fontsize=7)
    if data.split_by:
        ax.legend(title=data.split_by, fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
    ax.set_ylim(bottom=0)


def _bars(ax: Axes, data: ChartData, panel: Panel) -> None:
    from matplotlib.patches import Patch

    width = 0.8 / len(panel.series)
    handles = []
    for j, s in enumerate(panel.series):
        colour = f"C{j % 10}"  # fixed per series: an all-withheld series still has its legend colour
        offset = (j - (len(panel.series) - 1) / 2) * width
        drawn = [(i + offset, v) for i, v in enumerate(s.values) if not math.isnan(v)]
        ax.bar([p for p, _ in drawn], [v for _, v in drawn], width=width * 0.95, color=colour)
        for i, v in enumerate(s.values):  # a labelled empty slot, so no one reads the absence as zero
            if math.isnan(v):
                ax.text(
                    i + offset,
                    0,
                    " withheld",
                    rotation=90,
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    color=colour,
                    style="italic",
                )
        handles.append(Patch(facecolor=colour, label=s.label))
    if data.split_by:
        ax.legend(handles=handles, title=data.split_by, fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
    ax.set_ylim(bottom=0)


def _x_ticks(ax: Axes, data: ChartData) -> None:
    step = max(1, math.ceil(len(data.x) / _MAX_TICKS))
    ticks = list(range(0, len(data.x), step))
    rotated = len(data.x) > 8
    labels = [data.x[i] for i in ticks]
    ax.set_xticks(ticks, labels, rotation=45 if rotated else 0, ha="right" if rotated else "center")
    ax.set_xlim(-0.6, len(data.x) - 0.4)
    ax.set_xlabel(data.x_name)


def _measure_words(label: str) -> str:
    kind, _, field = label.partition(":")
    words = {"subjects": "distinct people", "records": "records", "sum": "sum of", "mean": "mean of"}
    return f"{words.get(kind, kind)} {field}".strip()


def _metadata(path: Path) -> dict[str, str | None]:
    # no creation date: the same answer draws the same file
    return {"Date": None} if path.suffix.lower() == ".svg" else {"Software": None}
