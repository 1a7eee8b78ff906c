"""Line charts as inline SVG: no charting library, no script, nothing fetched from a CDN.

The fleet has no internet route and the pages' Content-Security-Policy allows only the portal's own
scripts and styles, so charts are drawn on the server as SVG markup with presentation attributes
(no ``style`` attributes, which the policy would block). Pure functions: data in, markup out.

Points whose coordinates are not finite (NaN, infinities) are left out; names, titles and labels
are escaped. An empty chart is still an ``<svg>`` with the chart's id, saying there is no data.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape
from training_common import MetricSeries, ObjectiveType, Trial

WIDTH = 640
HEIGHT = 300
MARGIN_LEFT = 64
MARGIN_RIGHT = 16
MARGIN_TOP = 52
MARGIN_BOTTOM = 48
TICKS = 5

PALETTE = ("#0972d3", "#d91515", "#1d8102", "#8456ce", "#e07700", "#00819c", "#5f6b7a", "#c33d69")
"""Line colours, in series order (repeats after eight series)."""

_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")

Point = tuple[float, float]


@dataclass(frozen=True)
class Line:
    """One series: its name (shown in the legend) and its (x, y) points in drawing order."""

    name: str
    points: Sequence[Point]
    markers: bool = False
    """Draw a dot at every point (always drawn when the series has a single point)."""
    connect: bool = True
    """Join the points with a line (False: a scatter of dots)."""


@dataclass(frozen=True)
class Scale:
    """Maps data coordinates into the plot area of a ``WIDTH`` by ``HEIGHT`` view box."""

    x_min: float
    x_max: float
    y_min: float
    y_max: float

    @classmethod
    def of(cls, points: Iterable[Point]) -> Scale | None:
        """The scale that fits ``points`` (None when there are none); a zero-width range is
        widened so a single point or a constant series is drawn in the middle."""
        xs, ys = [], []
        for x, y in points:
            xs.append(x)
            ys.append(y)
        if not xs:
            return None
        x_min, x_max = _widen(min(xs), max(xs))
        y_min, y_max = _widen(min(ys), max(ys))
        return cls(x_min, x_max, y_min, y_max)

    def x(self, value: float) -> float:
        width = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
        return MARGIN_LEFT + (value - self.x_min) / (self.x_max - self.x_min) * width

    def y(self, value: float) -> float:
        height = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
        return MARGIN_TOP + height - (value - self.y_min) / (self.y_max - self.y_min) * height


def _widen(low: float, high: float) -> tuple[float, float]:
    if high > low:
        return low, high
    pad = abs(low) * 0.1 or 1.0
    return low - pad, high + pad


def finite_points(points: Iterable[Point]) -> list[Point]:
    """The points whose coordinates are both finite numbers."""
    return [(float(x), float(y)) for x, y in points if math.isfinite(x) and math.isfinite(y)]


def ticks(low: float, high: float, count: int = TICKS, *, integers: bool = False) -> list[float]:
    """About ``count`` round values (1, 2 or 5 times a power of ten apart) from ``low`` to
    ``high``; whole numbers only when ``integers``."""
    if count < 2 or not high > low:
        return [low]
    raw = (high - low) / (count - 1)
    if not (math.isfinite(raw) and raw > sys.float_info.min * 1e3):
        # A span too wide for a float (-1e308 to 1e308) or too narrow for a power of ten
        # (subnormal values): the two ends are the ticks.
        return [low, high]
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    if integers:
        step = max(1.0, float(math.ceil(step)))
    first = math.ceil(low / step - 1e-9) * step
    values = []
    value = first
    while value <= high + step * 1e-9:
        values.append(round(value, 12))
        value += step
    return values


def number(value: float) -> str:
    """A tick or tooltip label: four significant digits."""
    return f"{value:.4g}"


def _coord(value: float) -> str:
    return f"{value:.1f}"


def line_chart(
    lines: Sequence[Line],
    *,
    chart_id: str,
    title: str,
    x_label: str,
    y_label: str,
    integer_x: bool = False,
    empty_message: str = "No data to draw yet.",
) -> Markup:
    """An ``<svg id=chart_id>`` line chart of ``lines`` with labelled axes and a legend.

    The root carries ``role="img"``, ``aria-labelledby`` (its ``<title>``) and
    ``data-points`` (how many points were drawn, after dropping non-finite ones).
    """
    if not _ID.fullmatch(chart_id):
        raise ValueError(f"chart id {chart_id!r} is not a valid element id")
    cleaned = [
        Line(line.name, finite_points(line.points), line.markers, line.connect) for line in lines
    ]
    drawn = sum(len(line.points) for line in cleaned)
    scale = Scale.of(point for line in cleaned for point in line.points)
    parts = [
        f'<svg id="{chart_id}" class="chart" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="{chart_id}-title" '
        f'data-points="{drawn}">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<text x="{MARGIN_LEFT}" y="18" font-size="14" font-weight="600" fill="#1d2330">'
        f"{escape(title)}</text>",
    ]
    if scale is None:
        parts.append(
            f'<text x="{WIDTH / 2:.0f}" y="{HEIGHT / 2:.0f}" text-anchor="middle" '
            f'font-size="13" fill="#5f6b7a" data-empty="1">{escape(empty_message)}</text>'
        )
    else:
        parts.extend(_axes(scale, x_label, y_label, integer_x=integer_x))
        for index, line in enumerate(cleaned):
            parts.extend(_series(line, scale, PALETTE[index % len(PALETTE)]))
        parts.extend(_legend(cleaned))
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated text is escaped above


def _axes(scale: Scale, x_label: str, y_label: str, *, integer_x: bool) -> list[str]:
    left, right = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
    top, bottom = MARGIN_TOP, HEIGHT - MARGIN_BOTTOM
    parts = [
        f'<g class="axes" stroke="#5f6b7a" stroke-width="1">'
        f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}"/></g>',
        '<g class="ticks" font-size="11" fill="#5f6b7a">',
    ]
    for value in ticks(scale.x_min, scale.x_max, integers=integer_x):
        x = _coord(scale.x(value))
        parts.append(
            f'<line x1="{x}" y1="{bottom}" x2="{x}" y2="{bottom + 4}" stroke="#5f6b7a"/>'
            f'<text x="{x}" y="{bottom + 16}" text-anchor="middle">{number(value)}</text>'
        )
    for value in ticks(scale.y_min, scale.y_max):
        y = _coord(scale.y(value))
        parts.append(
            f'<line x1="{left}" y1="{y}" x2="{right}" y2="{y}" stroke="#e3e6ea"/>'
            f'<text x="{left - 6}" y="{y}" text-anchor="end" dominant-baseline="middle">'
            f"{number(value)}</text>"
        )
    parts.append("</g>")
    parts.append(
        f'<text class="x-label" x="{(left + right) / 2:.0f}" y="{HEIGHT - 8}" '
        f'text-anchor="middle" font-size="12" fill="#1d2330">{escape(x_label)}</text>'
    )
    middle = (top + bottom) / 2
    parts.append(
        f'<text class="y-label" x="14" y="{middle:.0f}" text-anchor="middle" font-size="12" '
        f'fill="#1d2330" transform="rotate(-90 14 {middle:.0f})">{escape(y_label)}</text>'
    )
    return parts


def _series(line: Line, scale: Scale, colour: str) -> list[str]:
    if not line.points:
        return []
    name = escape(line.name)
    coords = [(_coord(scale.x(x)), _coord(scale.y(y))) for x, y in line.points]
    parts = [f'<g class="series" data-series="{name}">']
    if line.connect and len(coords) > 1:
        joined = " ".join(f"{x},{y}" for x, y in coords)
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{joined}"/>'
        )
    if line.markers or not line.connect or len(coords) == 1:
        for (x, y), (raw_x, raw_y) in zip(coords, line.points, strict=True):
            parts.append(
                f'<circle cx="{x}" cy="{y}" r="3.5" fill="{colour}">'
                f"<title>{name}: {number(raw_y)} at {number(raw_x)}</title></circle>"
            )
    parts.append("</g>")
    return parts


def _legend(lines: Sequence[Line]) -> list[str]:
    # One row below the title, left to right in series order.
    parts = ['<g class="legend" font-size="12" fill="#1d2330">']
    x = float(MARGIN_LEFT)
    for index, line in enumerate(lines):
        label = line.name[:40]
        colour = PALETTE[index % len(PALETTE)]
        parts.append(
            f'<rect x="{x:.0f}" y="27" width="10" height="10" fill="{colour}"/>'
            f'<text x="{x + 14:.0f}" y="36">{escape(label)}</text>'
        )
        x += 30 + 7 * len(label)
    parts.append("</g>")
    return parts


def objective_chart(
    trials: Sequence[Trial], *, metric: str, objective_type: ObjectiveType
) -> Markup:
    """``svg#objective-chart``: each trial's objective value by launch number (trials in launch
    order, the first is 1), and the best value so far as a second line."""
    values: list[Point] = []
    best: list[Point] = []
    incumbent: float | None = None
    maximize = objective_type == ObjectiveType.MAXIMIZE
    for number_, trial in enumerate(trials, start=1):
        value = trial.objective_value
        if value is None or not math.isfinite(value):
            continue
        values.append((float(number_), value))
        if incumbent is None or (value > incumbent if maximize else value < incumbent):
            incumbent = value
        best.append((float(number_), incumbent))
    return line_chart(
        [Line(metric, values, markers=True, connect=False), Line("best so far", best)],
        chart_id="objective-chart",
        title=f"{metric} ({objective_type.value.lower()}) over the training jobs",
        x_label="training job (launch order)",
        y_label=metric,
        integer_x=True,
        empty_message="No training job has reported an objective value yet.",
    )


def metrics_chart(series: Sequence[MetricSeries]) -> Markup:
    """``svg#metrics-chart``: one line per metric, minutes since the first reported value."""
    starts = [point.at for item in series for point in item.points]
    origin = min(starts) if starts else None
    lines = [
        Line(
            item.name,
            [((point.at - origin).total_seconds() / 60.0, point.value) for point in item.points]
            if origin is not None
            else [],
        )
        for item in series
    ]
    return line_chart(
        lines,
        chart_id="metrics-chart",
        title="Training metrics over time",
        x_label="minutes since the first value",
        y_label="value",
        empty_message="SageMaker has reported no metric values for this job yet.",
    )


__all__ = [
    "Line",
    "Scale",
    "finite_points",
    "line_chart",
    "metrics_chart",
    "number",
    "objective_chart",
    "ticks",
]
