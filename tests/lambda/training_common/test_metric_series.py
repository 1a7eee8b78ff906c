"""A job record's metrics over time stay small whatever the job reports."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from training_common import (
    MAX_METRIC_POINTS,
    MAX_METRIC_SERIES_POINTS,
    Job,
    MetricPoint,
    MetricSeries,
    utc_now,
)


def _series(names: int, points: int) -> list[MetricSeries]:
    start = utc_now()
    return [
        MetricSeries(
            name=f"metric-{n}",
            points=[
                MetricPoint(at=start + timedelta(minutes=i), value=i / 7) for i in range(points)
            ],
        )
        for n in range(names)
    ]


def test_forty_metrics_are_thinned_to_the_total_keeping_each_curves_ends(
    platform: Any, make: Any
) -> None:
    job = Job.from_request(make.request())
    platform.jobs.create(job)
    reported = _series(40, MAX_METRIC_POINTS)

    assert platform.jobs.set_metric_series("acme", job.job_id, reported)

    stored = platform.jobs.get("acme", job.job_id)
    assert stored is not None and len(stored.metric_series) == 40
    assert sum(len(s.points) for s in stored.metric_series) <= MAX_METRIC_SERIES_POINTS
    for kept, sent in zip(stored.metric_series, reported, strict=True):
        assert kept.points[0] == sent.points[0] and kept.points[-1] == sent.points[-1]
    assert len(json.dumps(stored.model_dump(mode="json"))) < 100_000


def test_one_metric_keeps_at_most_the_per_metric_points_evenly_spaced(
    platform: Any, make: Any
) -> None:
    job = Job.from_request(make.request())
    platform.jobs.create(job)

    platform.jobs.set_metric_series("acme", job.job_id, _series(1, 1000))

    stored = platform.jobs.get("acme", job.job_id)
    assert stored is not None
    [series] = stored.metric_series
    assert len(series.points) == MAX_METRIC_POINTS
    gaps = {(b.at - a.at) for a, b in zip(series.points, series.points[1:], strict=False)}
    assert max(gaps) - min(gaps) <= timedelta(minutes=1)  # evenly thinned, not cut
