"""Server-side SVG charts for the dashboard: bars and lines, no JavaScript.

Readable without colour: each series of a bar chart has its own fill pattern (solid, hatched, dotted), each
series of a line chart its own dash and marker shape, and a legend shows both. The SVG is `role="img"` with a
<title> and <desc>; each bar and point has a <title> with its label and value (a tooltip); and the page shows
the same numbers as a table beside the chart (`Chart.rows`, rendered by templates/dashboard/_chart.html).
Only presentation attributes are used: the dashboard's CSP forbids inline styles.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 28, 40
INK = "#1a1d21"
GRID = "#d5d9e0"
# Colour helps, but each series is also told apart by its pattern, dash and marker.
COLOURS = ("#2457d6", "#b3541e", "#2e7d32")
DASHES = ("", "6 4", "2 3")
MARKERS = ("circle", "square", "triangle")


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: Sequence[int]


@dataclass(frozen=True, slots=True)
class Chart:
    id: str
    title: str
    description: str
    labels: Sequence[str]
    series: Sequence[Series]
    svg: Markup
    fmt: Callable[[int], str] = field(default=str)

    @property
    def rows(self) -> list[tuple[str, list[str]]]:
        """The chart's numbers, one row per label, one column per series; the last label first (the newest
        day is what one looks for, and it is at the top of the table's scroll box)."""
        rows = [(label, [self.fmt(s.values[i]) for s in self.series]) for i, label in enumerate(self.labels)]
        return rows[::-1]


@dataclass(frozen=True, slots=True)
class Axis:
    """The y axis: TICKS equal steps of a round size (1, 2 or 5 times a power of ten, at least 1) from `bottom`
    (0, or below it when a value is negative) to `top`, the smallest such range holding every value; so each
    gridline's label is exact."""

    bottom: int
    step: int

    @property
    def top(self) -> int:
        return self.bottom + self.step * TICKS

    def y(self, value: int) -> float:
        plot_h = HEIGHT - TOP - BOTTOM
        return TOP + plot_h - plot_h * (value - self.bottom) / (self.top - self.bottom)


TICKS = 4


def axis_for(values: Sequence[int]) -> Axis:
    lo, hi = min(0, *values) if values else 0, max(0, *values) if values else 0
    step = 1
    while True:
        for m in (1, 2, 5):
            bottom = (lo // (m * step)) * (m * step)  # floor to a multiple of the step
            if bottom + m * step * TICKS >= hi:
                return Axis(bottom, m * step)
        step *= 10


def _frame(
    chart_id: str, title: str, description: str, axis: Axis, fmt: Callable[[int], str], labels: Sequence[str]
) -> list[str]:
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" class="chart" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc" focusable="false">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(description)}</desc>',
    ]
    for i in range(TICKS + 1):  # gridlines and their labels, bottom to top
        value = axis.bottom + axis.step * i
        y = axis.y(value)
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        tick = escape(fmt(value))
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="{INK}">{tick}</text>')
    n = len(labels)
    every = max(1, round(n / 6))
    slot = (WIDTH - LEFT - RIGHT) / max(n, 1)
    for i, label in enumerate(labels):
        if i % every == 0 or i == n - 1:
            x = LEFT + slot * (i + 0.5)
            out.append(
                f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" font-size="11" fill="{INK}">'
                f"{escape(label)}</text>"
            )
    zero = axis.y(0)  # the baseline: bars grow up from it, or down for a negative value
    out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{zero:.1f}" y2="{zero:.1f}" stroke="{INK}"/>')
    return out


def _patterns(chart_id: str, count: int) -> str:
    defs = ["<defs>"]
    for k in range(count):
        colour = COLOURS[k % len(COLOURS)]
        style = k % 3
        defs.append(f'<pattern id="{chart_id}-p{k}" width="6" height="6" patternUnits="userSpaceOnUse">')
        if style == 0:  # solid
            defs.append(f'<rect width="6" height="6" fill="{colour}"/>')
        elif style == 1:  # diagonal hatching
            hatch = "M-1,1 l2,-2 M0,6 l6,-6 M5,7 l2,-2"
            defs.append(
                f'<rect width="6" height="6" fill="#fff"/><path d="{hatch}" stroke="{colour}" stroke-width="2"/>'
            )
        else:  # dots
            defs.append(f'<rect width="6" height="6" fill="#fff"/><circle cx="3" cy="3" r="1.6" fill="{colour}"/>')
        defs.append("</pattern>")
    defs.append("</defs>")
    return "".join(defs)


def _legend_box(chart_id: str, k: int, x: float, kind: str) -> str:
    colour = COLOURS[k % len(COLOURS)]
    if kind == "bar":
        return f'<rect x="{x:.1f}" y="8" width="14" height="12" fill="url(#{chart_id}-p{k})" stroke="{colour}"/>'
    dash = f' stroke-dasharray="{DASHES[k % 3]}"' if DASHES[k % 3] else ""
    return f'<line x1="{x:.1f}" x2="{x + 18:.1f}" y1="14" y2="14" stroke="{colour}" stroke-width="2"{dash}/>' + _marker(
        MARKERS[k % 3], x + 9, 14, colour
    )


def _legend(chart_id: str, series: Sequence[Series], kind: str) -> list[str]:
    out = []
    x = float(LEFT)
    for k, s in enumerate(series):
        out.append(_legend_box(chart_id, k, x, kind))
        out.append(f'<text x="{x + 22:.1f}" y="18" font-size="12" fill="{INK}">{escape(s.name)}</text>')
        x += 40 + 7 * len(s.name)
    return out


def _marker(shape: str, x: float, y: float, colour: str) -> str:
    if shape == "square":
        return f'<rect x="{x - 3.5:.1f}" y="{y - 3.5:.1f}" width="7" height="7" fill="{colour}"/>'
    if shape == "triangle":
        corners = f"M{x:.1f},{y - 4.5:.1f} L{x + 4.5:.1f},{y + 3.5:.1f} L{x - 4.5:.1f},{y + 3.5:.1f} Z"
        return f'<path d="{corners}" fill="{colour}"/>'
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}"/>'


def bar_chart(
    chart_id: str,
    title: str,
    description: str,
    labels: Sequence[str],
    series: Sequence[Series],
    fmt: Callable[[int], str] = str,
    axis_fmt: Callable[[int], str] | None = None,
) -> Chart:
    """Grouped bars: one group per label, one bar per series. `fmt` writes a value in the table and tooltips,
    `axis_fmt` (default `fmt`) on the y axis, where space is short."""
    axis = axis_for([v for s in series for v in s.values])
    slot = (WIDTH - LEFT - RIGHT) / max(len(labels), 1)
    bar_w = slot * 0.8 / max(len(series), 1)
    out = _frame(chart_id, title, description, axis, axis_fmt or fmt, labels)
    out.insert(3, _patterns(chart_id, len(series)))
    for k, s in enumerate(series):
        colour = COLOURS[k % len(COLOURS)]
        for i, value in enumerate(s.values):
            y0, y1 = sorted((axis.y(0), axis.y(value)))
            x = LEFT + slot * i + slot * 0.1 + bar_w * k
            y, h = y0, y1 - y0
            out.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="url(#{chart_id}-p{k})" '
                f'stroke="{colour}" stroke-width="0.5"><title>{escape(labels[i])}: {escape(s.name)} '
                f"{escape(fmt(value))}</title></rect>"
            )
    out += _legend(chart_id, series, "bar")
    out.append("</svg>")
    return Chart(chart_id, title, description, labels, series, Markup("".join(out)), fmt)  # noqa: S704 (escaped above)


def line_chart(
    chart_id: str,
    title: str,
    description: str,
    labels: Sequence[str],
    series: Sequence[Series],
    fmt: Callable[[int], str] = str,
    axis_fmt: Callable[[int], str] | None = None,
) -> Chart:
    """One line per series, a marker at each point (its shape tells the series apart). `fmt` and `axis_fmt` as
    for bar_chart."""
    axis = axis_for([v for s in series for v in s.values])
    slot = (WIDTH - LEFT - RIGHT) / max(len(labels), 1)
    out = _frame(chart_id, title, description, axis, axis_fmt or fmt, labels)
    for k, s in enumerate(series):
        colour = COLOURS[k % len(COLOURS)]
        points = [(LEFT + slot * (i + 0.5), axis.y(v)) for i, v in enumerate(s.values)]
        dash = f' stroke-dasharray="{DASHES[k % 3]}"' if DASHES[k % 3] else ""
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        for i, (x, y) in enumerate(points):
            out.append(
                f"<g>{_marker(MARKERS[k % 3], x, y, colour)}<title>{escape(labels[i])}: {escape(s.name)} "
                f"{escape(fmt(s.values[i]))}</title></g>"
            )
    out += _legend(chart_id, series, "line")
    out.append("</svg>")
    return Chart(chart_id, title, description, labels, series, Markup("".join(out)), fmt)  # noqa: S704 (escaped above)
