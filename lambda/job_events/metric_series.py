"""A training job's metrics over time, read from CloudWatch for the job page's chart.

SageMaker publishes the values its metric definitions' regexes find in the training log as
CloudWatch metrics in namespace ``/aws/sagemaker/TrainingJobs``, dimension ``Host`` =
``<training job name>/algo-1``. One ``GetMetricData`` call reads them all; the period is chosen
so that no metric has more than :data:`training_common.MAX_METRIC_POINTS` points over the job's
lifetime, and paging stops there too, so neither the calls nor the job record can grow without
bound. The period is also rounded up to what CloudWatch keeps for data of the start's age (5
minutes after 15 days, 1 hour after 63 days): a finer period would return nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from training_common import MAX_METRIC_POINTS, MetricPoint, MetricSeries, utc_now

TRAINING_JOBS_NAMESPACE = "/aws/sagemaker/TrainingJobs"
MIN_PERIOD_SECONDS = 60
MAX_PAGES = 5
RETENTION_GRANULARITY = ((timedelta(days=63), 3600), (timedelta(days=15), 300))
"""(age, period): CloudWatch returns data older than ``age`` only for multiples of ``period``."""
MAX_QUERIES = 500
"""GetMetricData takes at most 500 queries; SageMaker allows 40 metric definitions per job."""


def host_dimension(training_job_name: str) -> str:
    """The ``Host`` dimension of a single-instance training job's metrics."""
    return f"{training_job_name}/algo-1"


def period_for(start: datetime, end: datetime, now: datetime | None = None) -> int:
    """The smallest multiple of 60 s that keeps ``[start, end]`` within MAX_METRIC_POINTS, and
    that CloudWatch still answers for a start of that age (relative to ``now``): data older than
    15 days only in multiples of 300 s, older than 63 days only in multiples of 3600 s."""
    seconds = max(1.0, (end - start).total_seconds())
    periods = math.ceil(seconds / MAX_METRIC_POINTS / MIN_PERIOD_SECONDS)
    period = max(1, periods) * MIN_PERIOD_SECONDS
    age = (now or utc_now()) - start
    granularity = next(
        (step for older_than, step in RETENTION_GRANULARITY if age > older_than),
        MIN_PERIOD_SECONDS,
    )
    return math.ceil(period / granularity) * granularity


@dataclass
class MetricSeriesReader:
    """Reads a training job's metric series with an injected CloudWatch client."""

    cloudwatch: Any

    def read(
        self,
        training_job_name: str,
        metric_names: list[str],
        start: datetime,
        end: datetime,
        now: datetime | None = None,
    ) -> list[MetricSeries]:
        """Each metric's values between ``start`` and ``end``, oldest first (at most
        MAX_METRIC_POINTS each). Raises botocore's errors; the caller decides what they cost."""
        names = metric_names[:MAX_QUERIES]
        if not names:
            return []
        period = period_for(start, end, now)
        queries = [
            {
                "Id": f"m{index}",
                "Label": name,
                "MetricStat": {
                    "Metric": {
                        "Namespace": TRAINING_JOBS_NAMESPACE,
                        "MetricName": name,
                        "Dimensions": [
                            {"Name": "Host", "Value": host_dimension(training_job_name)}
                        ],
                    },
                    "Period": period,
                    "Stat": "Average",
                },
                "ReturnData": True,
            }
            for index, name in enumerate(names)
        ]
        points: dict[str, list[MetricPoint]] = {f"m{index}": [] for index in range(len(names))}
        request: dict[str, Any] = {
            "MetricDataQueries": queries,
            # CloudWatch's window is [start, end): one period past the end keeps the last value.
            "StartTime": start,
            "EndTime": end + timedelta(seconds=period),
            "ScanBy": "TimestampAscending",
            "MaxDatapoints": MAX_METRIC_POINTS * len(names),
        }
        for _ in range(MAX_PAGES):
            response = self.cloudwatch.get_metric_data(**request)
            for result in response.get("MetricDataResults", []):
                kept = points.get(str(result.get("Id")))
                if kept is None:
                    continue
                for at, value in zip(
                    result.get("Timestamps", []), result.get("Values", []), strict=False
                ):
                    if len(kept) < MAX_METRIC_POINTS and math.isfinite(value):
                        kept.append(MetricPoint(at=at, value=value))
            token = response.get("NextToken")
            if not token or all(len(kept) >= MAX_METRIC_POINTS for kept in points.values()):
                break
            request["NextToken"] = token
        return [
            MetricSeries(name=name, points=sorted(points[f"m{index}"], key=lambda p: p.at))
            for index, name in enumerate(names)
        ]
