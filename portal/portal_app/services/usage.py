"""An endpoint's usage (CloudWatch metrics) and alarms, for the deployment page.

The inference function writes ``Invocations``, ``ClientErrors``, ``ServerErrors`` and ``Latency``
in ``TrainingPlatform/Inference`` with the dimensions ``tenant`` and ``endpoint``. The portal
reads them with its instance role (``cloudwatch:GetMetricData`` has no resource-level
permissions, so a tenant session couldn't be confined to its own metrics anyway) and always asks
for the *session's* tenant's dimension, with the endpoint name computed from the tenant and the
deployment id, never taken from a stored record.

Alarms: the names come from the tenant's deployment record (written by the deploy handler), and
each alarm is shown only when its ``tenant`` tag is the session's tenant: a record a tenant
edited could name another tenant's alarm, but its tags say whose it is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError
from training_common import (
    INFERENCE_METRICS_NAMESPACE,
    AlarmKind,
    Deployment,
    endpoint_name,
    utc_now,
)

log = logging.getLogger("portal.usage")

USAGE_HOURS = 24
"""The window of the deployment page's usage figures."""

_COUNTS = {
    "requests": "Invocations",
    "client_errors": "ClientErrors",
    "server_errors": "ServerErrors",
}
_PERCENTILES = {"p50": "p50", "p99": "p99"}


@dataclass(frozen=True)
class Usage:
    """What one endpoint served over the window."""

    hours: int
    requests: int
    client_errors: int
    server_errors: int
    p50_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class AlarmState:
    name: str
    state: str
    reason: str | None
    since: datetime | None


def _query(query_id: str, metric: str, stat: str, dimensions: list[dict[str, str]]) -> Any:
    return {
        "Id": query_id,
        "MetricStat": {
            "Metric": {
                "Namespace": INFERENCE_METRICS_NAMESPACE,
                "MetricName": metric,
                "Dimensions": dimensions,
            },
            "Period": USAGE_HOURS * 3600,
            "Stat": stat,
        },
        "ReturnData": True,
    }


def endpoint_usage(
    cloudwatch: Any, tenant_id: str, deployment_id: str, *, now: datetime | None = None
) -> Usage:
    """Requests, errors and p50/p99 latency of the tenant's endpoint over the last
    :data:`USAGE_HOURS` hours (one ``GetMetricData`` call, one period)."""
    end = (now or utc_now()).replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = end - timedelta(hours=USAGE_HOURS)
    dimensions = [
        {"Name": "tenant", "Value": tenant_id},
        {"Name": "endpoint", "Value": endpoint_name(tenant_id, deployment_id)},
    ]
    queries = [_query(key, metric, "Sum", dimensions) for key, metric in _COUNTS.items()]
    queries += [_query(key, "Latency", stat, dimensions) for key, stat in _PERCENTILES.items()]
    response = cloudwatch.get_metric_data(
        MetricDataQueries=queries, StartTime=start, EndTime=end, ScanBy="TimestampDescending"
    )
    values: dict[str, list[float]] = {
        result["Id"]: [float(v) for v in result.get("Values", [])]
        for result in response.get("MetricDataResults", [])
    }

    def total(key: str) -> int:
        return round(sum(values.get(key, [])))

    def worst(key: str) -> float | None:
        found = values.get(key, [])
        return max(found) if found else None

    return Usage(
        hours=USAGE_HOURS,
        requests=total("requests"),
        client_errors=total("client_errors"),
        server_errors=total("server_errors"),
        p50_ms=worst("p50"),
        p99_ms=worst("p99"),
    )


def _expected_suffixes(tenant_id: str, deployment_id: str) -> tuple[str, ...]:
    endpoint = endpoint_name(tenant_id, deployment_id)
    return tuple(f"-{endpoint}-{kind.value}" for kind in AlarmKind)


def endpoint_alarms(cloudwatch: Any, tenant_id: str, deployment: Deployment) -> list[AlarmState]:
    """The deployment's alarms and their states: only names of this endpoint's alarm kinds, and
    only alarms tagged with the session's tenant."""
    suffixes = _expected_suffixes(tenant_id, deployment.deployment_id)
    names = [name for name in deployment.alarm_names if name.endswith(suffixes)][:100]
    if not names:
        return []
    response = cloudwatch.describe_alarms(AlarmNames=names, AlarmTypes=["MetricAlarm"])
    found: list[AlarmState] = []
    for alarm in response.get("MetricAlarms", []):
        if not _tagged_with(cloudwatch, alarm.get("AlarmArn", ""), tenant_id):
            log.warning(
                "alarm of another tenant named in a deployment record",
                extra={"tenant_id": tenant_id, "alarm": alarm.get("AlarmName")},
            )
            continue
        found.append(
            AlarmState(
                name=alarm["AlarmName"],
                state=alarm.get("StateValue", "INSUFFICIENT_DATA"),
                reason=alarm.get("StateReason"),
                since=alarm.get("StateUpdatedTimestamp"),
            )
        )
    order = {name: index for index, name in enumerate(names)}
    return sorted(found, key=lambda a: order.get(a.name, len(order)))


def _tagged_with(cloudwatch: Any, arn: str, tenant_id: str) -> bool:
    if not arn:
        return False
    try:
        tags = cloudwatch.list_tags_for_resource(ResourceARN=arn).get("Tags", [])
    except ClientError:
        return False
    return any(tag.get("Key") == "tenant" and tag.get("Value") == tenant_id for tag in tags)
