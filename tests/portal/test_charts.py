"""The inline SVG charts: scaling, empty and single-point series, non-finite values, escaping."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from datetime import timedelta

import portal_helpers  # noqa: F401 - puts portal/ on sys.path first
import pytest
from portal_app.charts import (
    HEIGHT,
    MARGIN_BOTTOM,
    MARGIN_LEFT,
    MARGIN_RIGHT,
    MARGIN_TOP,
    WIDTH,
    Line,
    Scale,
    line_chart,
    metrics_chart,
    objective_chart,
    ticks,
)
from training_common import MetricPoint, MetricSeries, ObjectiveType, Trial, utc_now

SVG = "{http://www.w3.org/2000/svg}"


def _parse(markup: str) -> ET.Element:
    return ET.fromstring(markup)


def _polyline_points(root: ET.Element, series: str) -> list[tuple[float, float]]:
    group = next(g for g in root.iter(f"{SVG}g") if g.get("data-series") == series)
    polyline = group.find(f"{SVG}polyline")
    assert polyline is not None
    return [
        (float(x), float(y))
        for x, y in (pair.split(",") for pair in (polyline.get("points") or "").split())
    ]


def _chart(*lines: Line, integer_x: bool = False) -> ET.Element:
    markup = line_chart(
        lines, chart_id="c", title="T", x_label="x", y_label="y", integer_x=integer_x
    )
    return _parse(str(markup))


def test_points_are_scaled_into_the_plot_area_with_y_upwards() -> None:
    root = _chart(Line("a", [(0, 10), (5, 20), (10, 30)]))
    points = _polyline_points(root, "a")
    assert points[0] == (MARGIN_LEFT, HEIGHT - MARGIN_BOTTOM)  # smallest x and y: bottom left
    assert points[-1] == (WIDTH - MARGIN_RIGHT, MARGIN_TOP)  # largest: top right
    middle_x = (MARGIN_LEFT + WIDTH - MARGIN_RIGHT) / 2
    middle_y = (MARGIN_TOP + HEIGHT - MARGIN_BOTTOM) / 2
    assert points[1] == pytest.approx((middle_x, middle_y), abs=0.06)
    assert root.get("data-points") == "3"
    assert root.get("role") == "img" and root.get("aria-labelledby") == "c-title"
    title = root.find(f"{SVG}title")
    assert title is not None and title.text == "T"


def test_all_series_share_one_scale_and_each_has_a_legend_entry() -> None:
    root = _chart(Line("low", [(0, 0), (1, 1)]), Line("high", [(0, 9), (1, 10)]))
    assert _polyline_points(root, "low")[0][1] == HEIGHT - MARGIN_BOTTOM
    assert _polyline_points(root, "high")[1][1] == MARGIN_TOP
    legend = [t.text for g in root.iter(f"{SVG}g") if g.get("class") == "legend" for t in g]
    assert "low" in legend and "high" in legend
    labels = {t.get("class"): t.text for t in root.iter(f"{SVG}text") if t.get("class")}
    assert labels == {"x-label": "x", "y-label": "y"}


def test_empty_series_draw_a_message_not_a_line() -> None:
    for lines in ([], [Line("a", [])], [Line("a", [(math.nan, 1.0), (1.0, math.inf)])]):
        root = _chart(*lines)
        assert root.get("id") == "c" and root.get("data-points") == "0"
        assert not list(root.iter(f"{SVG}polyline"))
        empty = [t for t in root.iter(f"{SVG}text") if t.get("data-empty")]
        assert empty and empty[0].text == "No data to draw yet."


def test_a_single_point_is_a_dot_in_the_middle() -> None:
    root = _chart(Line("a", [(3.0, 0.75)]))
    assert not list(root.iter(f"{SVG}polyline"))
    (dot,) = list(root.iter(f"{SVG}circle"))
    assert float(dot.get("cx") or 0) == pytest.approx((MARGIN_LEFT + WIDTH - MARGIN_RIGHT) / 2)
    assert float(dot.get("cy") or 0) == pytest.approx((MARGIN_TOP + HEIGHT - MARGIN_BOTTOM) / 2)


def test_nan_and_infinite_values_are_left_out() -> None:
    root = _chart(Line("a", [(0, 1), (1, math.nan), (2, math.inf), (3, -math.inf), (4, 2)]))
    assert root.get("data-points") == "2"
    points = _polyline_points(root, "a")
    assert [x for x, _ in points] == [MARGIN_LEFT, WIDTH - MARGIN_RIGHT]
    markup = ET.tostring(root, encoding="unicode").lower()
    assert not re.search(r"\b(nan|inf)\b", markup)


def test_names_titles_and_labels_are_escaped() -> None:
    evil = '<script>alert("x")</script>&'
    markup = str(
        line_chart(
            [Line(evil, [(0, 1), (1, 2)], markers=True)],
            chart_id="c",
            title=evil,
            x_label=evil,
            y_label=evil,
        )
    )
    assert "<script>" not in markup
    assert "&lt;script&gt;" in markup and "&amp;" in markup
    root = _parse(markup)
    assert root.find(f"{SVG}title") is not None
    assert {g.get("data-series") for g in root.iter(f"{SVG}g") if g.get("data-series")} == {evil}


def test_chart_id_must_be_an_element_id() -> None:
    with pytest.raises(ValueError, match="not a valid element id"):
        line_chart([], chart_id='x" onload="alert(1)', title="", x_label="", y_label="")


def test_ticks_are_round_and_integer_ticks_whole() -> None:
    assert ticks(0, 20) == [0, 5, 10, 15, 20]
    assert ticks(0.51, 0.57) == pytest.approx([0.52, 0.54, 0.56])
    assert all(value.is_integer() for value in ticks(1, 7, integers=True))
    assert ticks(1, 2, integers=True) == [1.0, 2.0]
    assert ticks(5, 5) == [5]


def test_extreme_spans_fall_back_to_their_ends() -> None:
    # A diverging job can report values whose span overflows a float, or subnormal ones.
    assert ticks(-1e308, 1e308) == [-1e308, 1e308]
    assert ticks(5e-324, 1e-323) == [5e-324, 1e-323]


def test_a_chart_of_extreme_values_still_draws() -> None:
    start = utc_now()
    series = [
        MetricSeries(
            name="loss",
            points=[
                MetricPoint(at=start, value=-1e308),
                MetricPoint(at=start + timedelta(minutes=1), value=1e308),
            ],
        )
    ]
    svg = str(metrics_chart(series))
    assert ET.fromstring(svg).get("id") == "metrics-chart"


def test_a_flat_series_is_widened_around_its_value() -> None:
    scale = Scale.of([(0, 2.0), (1, 2.0)])
    assert scale is not None and scale.y_min < 2.0 < scale.y_max
    zero = Scale.of([(0, 0.0)])
    assert zero is not None and (zero.y_min, zero.y_max) == (-1.0, 1.0)


def _trial(number: int, value: float | None) -> Trial:
    now = utc_now()
    return Trial(
        tenant_id="acme",
        trial_id=f"job#t-{number:03d}",
        job_id="job",
        training_job_name=f"t-{number:03d}",
        status="Completed",
        objective_value=value,
        objective_key="job#~",
        last_event_time=now,
        updated_at=now,
    )


@pytest.mark.parametrize(
    ("direction", "best"),
    [
        (ObjectiveType.MAXIMIZE, [0.5, 0.5, 0.7, 0.7]),
        (ObjectiveType.MINIMIZE, [0.5, 0.4, 0.4, 0.2]),
    ],
)
def test_objective_chart_plots_trials_in_launch_order_and_the_best_so_far(
    direction: ObjectiveType, best: list[float]
) -> None:
    trials = [_trial(1, 0.5), _trial(2, 0.4), _trial(3, None), _trial(4, 0.7), _trial(5, 0.2)]
    root = _parse(str(objective_chart(trials, metric="validation:auc", objective_type=direction)))
    assert root.get("id") == "objective-chart"
    dots = next(g for g in root.iter(f"{SVG}g") if g.get("data-series") == "validation:auc")
    tooltips = [c.find(f"{SVG}title") for c in dots.iter(f"{SVG}circle")]
    assert [t.text for t in tooltips if t is not None] == [
        "validation:auc: 0.5 at 1",
        "validation:auc: 0.4 at 2",
        "validation:auc: 0.7 at 4",
        "validation:auc: 0.2 at 5",
    ]  # trial 3 reported nothing; the others keep their launch number
    assert dots.find(f"{SVG}polyline") is None  # a scatter, not a line
    line = _polyline_points(root, "best so far")
    scale = Scale.of([(1, 0.2), (5, 0.7)])
    assert scale is not None
    assert [round(y, 1) for _, y in line] == [round(scale.y(v), 1) for v in best]


def test_metrics_chart_draws_one_line_per_metric_in_minutes() -> None:
    start = utc_now()
    series = [
        MetricSeries(
            name="train:loss",
            points=[
                MetricPoint(at=start + timedelta(minutes=m), value=1 / (m + 1)) for m in (0, 5)
            ],
        ),
        MetricSeries(
            name="validation:auc",
            points=[
                MetricPoint(at=start + timedelta(minutes=m), value=0.5 + m / 20) for m in (5, 10)
            ],
        ),
        MetricSeries(name="silent", points=[]),
    ]
    root = _parse(str(metrics_chart(series)))
    assert root.get("id") == "metrics-chart" and root.get("data-points") == "4"
    assert _polyline_points(root, "train:loss")[0][0] == MARGIN_LEFT  # minute 0
    assert _polyline_points(root, "validation:auc")[-1][0] == WIDTH - MARGIN_RIGHT  # minute 10
    labels = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "x-label"]
    assert labels == ["minutes since the first value"]
    empty = _parse(str(metrics_chart([])))
    assert empty.get("id") == "metrics-chart" and empty.get("data-points") == "0"
