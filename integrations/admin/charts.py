"""Bar charts as inline SVG geometry: computed here, drawn by templates/admin/integrations/
chart.html, so a page needs no JavaScript and no CDN and works offline.

A chart is columns of stacked segments (one column per time bucket, one segment per series),
scaled to a round tick step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

CHART_LEFT, CHART_RIGHT, CHART_TOP, CHART_BOTTOM_MARGIN = 48, 8, 10, 24


@dataclass(frozen=True)
class Series:
    key: str | int
    label: str
    colour: str


@dataclass(frozen=True)
class Column:
    start: datetime
    values: dict[str | int, float]

    @property
    def total(self) -> float:
        return sum(self.values.values())


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    fill: str
    title: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    plot_left: int
    plot_top: int
    plot_bottom: int
    bars: list[Bar]
    y_ticks: list[tuple[float, str]]
    x_labels: list[tuple[float, str]]
    legend: list[tuple[str, str]]
    total: float
    peak: float
    summary: str = field(default="")


def stacked_bars(
    columns: Sequence[Column],
    series: Sequence[Series],
    *,
    summary: str,
    label: Callable[[datetime], str],
    label_every: int = 3,
    unit: Callable[[float], str] = lambda v: f"{v:,.0f}",
    width: int = 720,
    height: int = 200,
) -> Chart:
    """One column per bucket, each series stacked on the previous one, in `series` order."""
    top, bottom = CHART_TOP, height - CHART_BOTTOM_MARGIN
    peak = max((c.total for c in columns), default=0)
    step = tick_step(peak)
    slot = (width - CHART_LEFT - CHART_RIGHT) / max(len(columns), 1)
    per_unit = (bottom - top) / (4 * step)
    bars = [
        bar
        for i, column in enumerate(columns)
        for bar in _stack(column, series, x=CHART_LEFT + i * slot, slot=slot, bottom=bottom,
                          per_unit=per_unit, when=label(column.start), unit=unit)
    ]  # fmt: skip
    return Chart(
        width=width,
        height=height,
        plot_left=CHART_LEFT,
        plot_top=top,
        plot_bottom=bottom,
        bars=bars,
        y_ticks=[(round(bottom - (bottom - top) * k / 4, 2), unit(step * k)) for k in range(5)],
        x_labels=[
            (round(CHART_LEFT + i * slot + slot / 2, 2), label(column.start))
            for i, column in enumerate(columns)
            if i % label_every == 0
        ],
        legend=[(s.colour, s.label) for s in series],
        total=sum(c.total for c in columns),
        peak=peak,
        summary=summary,
    )


def _stack(
    column: Column,
    series: Sequence[Series],
    *,
    x: float,
    slot: float,
    bottom: float,
    per_unit: float,
    when: str,
    unit: Callable[[float], str],
) -> list[Bar]:
    bars, y = [], bottom
    for s in series:
        value = column.values.get(s.key, 0)
        if not value:
            continue
        height = value * per_unit
        y -= height
        bars.append(
            Bar(
                x=round(x + slot * 0.1, 2),
                y=round(y, 2),
                width=round(max(slot * 0.8, 1), 2),
                height=round(height, 2),
                fill=s.colour,
                title=f"{when}: {unit(value)} {s.label}",
            )
        )
    return bars


def tick_step(peak: float) -> int:
    """A round step (1, 2 or 5 x 10^n) so that four steps reach at least `peak`."""
    target = max(peak / 4, 1)
    magnitude = 10 ** math.floor(math.log10(target))
    return next(step * magnitude for step in (1, 2, 5, 10) if step * magnitude >= target)
