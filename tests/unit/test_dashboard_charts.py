"""The dashboard's server-side SVG charts (web/dashboard/charts.py): exact axis labels, negative values inside
the plot, series told apart without colour, the numbers as table rows, and text escaped."""

from __future__ import annotations

import re

import pytest
from markupsafe import Markup

from tender.web.dashboard.charts import BOTTOM, HEIGHT, TOP, Series, axis_for, bar_chart, line_chart


@pytest.mark.parametrize(
    ("values", "bottom", "top"),
    [
        ([], 0, 4),
        ([0, 0], 0, 4),
        ([3], 0, 4),
        ([4], 0, 4),
        ([5], 0, 8),
        ([17], 0, 20),
        ([2501], 0, 4000),
        ([-3, 10], -5, 15),
        ([-7], -8, 0),
        ([-120, 30], -150, 50),
    ],
)
def test_the_axis_is_four_round_steps_holding_every_value(values: list[int], bottom: int, top: int) -> None:
    axis = axis_for(values)
    assert (axis.bottom, axis.top) == (bottom, top)
    assert all(axis.bottom <= v <= axis.top for v in values)
    assert str(axis.step)[0] in "125" and set(str(axis.step)[1:]) <= {"0"}


def _ticks(svg: str) -> list[str]:
    return re.findall(r'text-anchor="end" font-size="11" fill="#1a1d21">([^<]*)</text>', svg)


def test_gridline_labels_are_the_values_they_stand_at() -> None:
    chart = bar_chart("c", "Count", "desc", ["a", "b"], [Series("n", [1, 5])])
    assert _ticks(chart.svg) == ["0", "2", "4", "6", "8"]


def test_negative_values_stay_inside_the_plot() -> None:
    chart = line_chart("c", "Balance", "desc", ["a", "b", "c"], [Series("available", [-300, 0, 900])])
    ys = [float(y) for y in re.findall(r'<circle cx="[\d.]+" cy="([\d.]+)"', chart.svg)]
    assert len(ys) == 4  # three points and the legend's marker
    assert all(TOP <= y <= HEIGHT - BOTTOM for y in ys[:3])
    assert _ticks(chart.svg)[0].startswith("-")
    bars = bar_chart("b", "Net", "desc", ["a", "b"], [Series("net", [-5, 5])])
    heights = [float(h) for h in re.findall(r'height="([\d.]+)" fill="url\(#b-p0\)"', bars.svg)]
    assert heights[0] == pytest.approx(heights[1]) and heights[0] > 0  # one down, one up, the same size


def test_series_differ_by_pattern_and_marker_not_only_colour() -> None:
    bars = bar_chart("b", "t", "d", ["x"], [Series("one", [1]), Series("two", [2])])
    assert '<pattern id="b-p0"' in bars.svg and '<pattern id="b-p1"' in bars.svg
    assert "<path d=" in bars.svg.split('id="b-p1"')[1].split("</pattern>")[0]  # the second is hatched
    lines = line_chart("l", "t", "d", ["x"], [Series("one", [1]), Series("two", [2])])
    assert "<circle" in lines.svg and "<rect x=" in lines.svg and 'stroke-dasharray="6 4"' in lines.svg


def test_the_table_rows_hold_the_same_numbers_newest_first() -> None:
    chart = bar_chart(
        "c", "t", "d", ["mon", "tue"], [Series("all", [3, 7]), Series("ok", [1, 2])], fmt=lambda v: f"{v}!"
    )
    assert chart.rows == [("tue", ["7!", "2!"]), ("mon", ["3!", "1!"])]


def test_text_is_escaped() -> None:
    chart = bar_chart("c", "<script>x</script>", "a & b", ["<b>"], [Series('"><img src=x>', [1])])
    svg = str(chart.svg)
    assert "<script>" not in svg and "<img" not in svg and "<b>" not in svg
    assert "&lt;script&gt;" in svg and "a &amp; b" in svg
    assert isinstance(chart.svg, Markup)  # so the template does not escape the SVG itself again
