"""CloudWatch's ``GetMetricData`` with percentile statistics, which moto lacks, for local runs.

moto stores what ``PutMetricData`` sends but answers only Sum, Average, Minimum, Maximum and
SampleCount (a ``p99`` query fails inside moto). :class:`LocalMetrics` keeps its own copy of the
data points: :meth:`LocalMetrics.recorder_hook` on the sessions that put metrics (the local
inference API's) records each datum before moto gets it, and :meth:`LocalMetrics.session_hook`
on the portal's sessions answers ``GetMetricData`` from that copy, percentiles included
(nearest rank over the values and their counts), with the same query and answer shapes. The call
never reaches moto, so the answer is what AWS would give for the same data.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse

_PERCENTILE = re.compile(r"p(\d{1,2}(\.\d+)?)")


@dataclass(frozen=True)
class _Point:
    namespace: str
    name: str
    dimensions: frozenset[tuple[str, str]]
    at: datetime
    values: tuple[tuple[float, float], ...]
    """(value, count) pairs."""


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def statistic(stat: str, values: list[tuple[float, float]]) -> float | None:
    """``stat`` (Sum, SampleCount, Average, Minimum, Maximum or pNN) over (value, count) pairs."""
    if not values:
        return None
    count = sum(c for _, c in values)
    if stat == "Sum":
        return sum(v * c for v, c in values)
    if stat == "SampleCount":
        return count
    if stat == "Average":
        return sum(v * c for v, c in values) / count if count else None
    if stat == "Minimum":
        return min(v for v, _ in values)
    if stat == "Maximum":
        return max(v for v, _ in values)
    match = _PERCENTILE.fullmatch(stat)
    if match is None:
        raise ValueError(f"unsupported statistic {stat!r}")
    rank = max(1.0, math.ceil(float(match.group(1)) / 100 * count))
    seen = 0.0
    for value, weight in sorted(values):
        seen += weight
        if seen >= rank:
            return value
    return max(v for v, _ in values)


class LocalMetrics:
    """The data points put through the recorded sessions, and ``GetMetricData`` over them."""

    def __init__(self) -> None:
        self._points: list[_Point] = []
        self._lock = threading.Lock()
        self._pending = threading.local()

    def recorder_hook(self, session: boto3.Session) -> None:
        """Record every ``PutMetricData`` made with ``session``'s clients (moto gets it too)."""
        session.events.register("provide-client-params.cloudwatch.PutMetricData", self._record)

    def session_hook(self, session: boto3.Session) -> None:
        """Answer ``GetMetricData`` on ``session``'s clients from the recorded points."""
        session.events.register(
            "provide-client-params.cloudwatch.GetMetricData", self._remember_query
        )
        session.events.register("before-call.cloudwatch.GetMetricData", self._answer)

    def _remember_query(self, params: dict[str, Any], **_: Any) -> None:
        # The call's own parameters (datetimes, not the wire format), for _answer in this thread.
        self._pending.query = dict(params)

    def _record(self, params: dict[str, Any], **_: Any) -> None:
        self.put(params["Namespace"], params.get("MetricData", []))

    def put(self, namespace: str, data: list[dict[str, Any]]) -> None:
        now = datetime.now(UTC)
        points = []
        for datum in data:
            if "Values" in datum:
                counts = datum.get("Counts") or [1.0] * len(datum["Values"])
                pairs = tuple(zip(map(float, datum["Values"]), map(float, counts), strict=True))
            elif "StatisticValues" in datum:
                stats = datum["StatisticValues"]
                mean = float(stats["Sum"]) / max(float(stats["SampleCount"]), 1.0)
                pairs = ((mean, float(stats["SampleCount"])),)
            else:
                pairs = ((float(datum.get("Value", 0.0)), 1.0),)
            points.append(
                _Point(
                    namespace=namespace,
                    name=datum["MetricName"],
                    dimensions=frozenset(
                        (d["Name"], d["Value"]) for d in datum.get("Dimensions", [])
                    ),
                    at=_as_datetime(datum.get("Timestamp", now)),
                    values=pairs,
                )
            )
        with self._lock:
            self._points.extend(points)

    def query(
        self, queries: list[dict[str, Any]], start: datetime, end: datetime
    ) -> list[dict[str, Any]]:
        """``MetricDataResults`` for MetricStat queries (newest period first)."""
        with self._lock:
            points = list(self._points)
        results = []
        for query in queries:
            stat = query["MetricStat"]
            metric = stat["Metric"]
            period = timedelta(seconds=int(stat["Period"]))
            dimensions = frozenset((d["Name"], d["Value"]) for d in metric.get("Dimensions", []))
            matching = [
                p
                for p in points
                if p.namespace == metric["Namespace"]
                and p.name == metric["MetricName"]
                and p.dimensions == dimensions
                and start <= p.at < end
            ]
            timestamps: list[datetime] = []
            values: list[float] = []
            bucket = start
            while bucket < end:
                inside = [
                    pair for p in matching if bucket <= p.at < bucket + period for pair in p.values
                ]
                value = statistic(stat["Stat"], inside)
                if value is not None:
                    timestamps.append(bucket)
                    values.append(value)
                bucket += period
            results.append(
                {
                    "Id": query["Id"],
                    "Label": query.get("Label", metric["MetricName"]),
                    "Timestamps": list(reversed(timestamps)),
                    "Values": list(reversed(values)),
                    "StatusCode": "Complete",
                }
            )
        return results

    def _answer(self, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        request: dict[str, Any] = self._pending.query
        self._pending.query = None
        parsed = {
            "MetricDataResults": self.query(
                request["MetricDataQueries"],
                _as_datetime(request["StartTime"]),
                _as_datetime(request["EndTime"]),
            ),
            "ResponseMetadata": {"HTTPStatusCode": 200},
        }
        return AWSResponse("https://monitoring.local/", 200, {}, None), parsed
