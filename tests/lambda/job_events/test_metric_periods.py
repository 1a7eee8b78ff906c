"""The metric series' period: few enough points, and one CloudWatch still answers for data of
the job's age (CloudWatch keeps 1-minute data 15 days, 5-minute data 63 days, then hourly)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from job_events.metric_series import MetricSeriesReader, period_for
from training_common import MAX_METRIC_POINTS

NOW = datetime(2024, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("age", "length", "period"),
    [
        (timedelta(hours=2), timedelta(hours=1), 60),
        (timedelta(days=15), timedelta(hours=1), 60),
        (timedelta(days=15, minutes=1), timedelta(hours=1), 300),
        (timedelta(days=20), timedelta(hours=13), 300),  # 240 points: 240 s, rounded up
        (timedelta(days=20), timedelta(hours=21), 600),  # 240 points: 360 s, rounded up
        (timedelta(days=63, minutes=1), timedelta(hours=1), 3600),
        (timedelta(days=400), timedelta(days=20), 7200),  # 240 points: 7200 s, kept
    ],
)
def test_the_period_suits_both_the_points_and_the_data_age(
    age: timedelta, length: timedelta, period: int
) -> None:
    start = NOW - age
    assert period_for(start, start + length, NOW) == period
    assert length.total_seconds() / period <= MAX_METRIC_POINTS


class RecordingCloudWatch:
    """Records GetMetricData requests; answers with no data."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def get_metric_data(self, **request: Any) -> dict[str, Any]:
        self.requests.append(request)
        return {"MetricDataResults": []}


def test_an_old_job_is_read_with_an_hourly_period() -> None:
    cloudwatch = RecordingCloudWatch()
    start = datetime.now(UTC) - timedelta(days=70)

    MetricSeriesReader(cloudwatch).read(
        "acme-job", ["validation:rmse"], start, start + timedelta(hours=2)
    )

    [request] = cloudwatch.requests
    [query] = request["MetricDataQueries"]
    assert query["MetricStat"]["Period"] == 3600
    assert request["EndTime"] == start + timedelta(hours=3)
