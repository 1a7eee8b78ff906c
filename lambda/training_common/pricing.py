"""What a tenant's training jobs and endpoints cost, estimated from SageMaker's on-demand prices.

An estimate, not the bill: the exact figure is the ``tenant`` cost allocation tag in Cost
Explorer, which every training job and endpoint carries. The estimate multiplies instance-hours
(a job's billable seconds x its instance count; a deployment's service intervals x its instance
count) by the hourly on-demand price of the instance type from the table below.

The table holds SageMaker's published on-demand prices in one region (:data:`PRICE_TABLE_REGION`)
as of :data:`PRICE_TABLE_DATE`, for the instance types the platform offers. Another region, a
newer price or a negotiated rate: ``serving.price_overrides`` in the environment's configuration
(``PRICE_OVERRIDES`` in the portal's environment, a JSON object of instance type to USD per
hour), which replaces the table's price of that type for training and hosting alike. A type in
neither has no estimate: the page says so rather than guess.

Serverless endpoints are billed per inference (duration x memory, plus data processed), not per
hour in service, so their service intervals say nothing about their cost: they are not estimated,
and the page shows the per GB-second price instead (:data:`SERVERLESS_USD_PER_GB_SECOND`).
Managed spot training is billed at a discount the job record doesn't know: spot jobs are
estimated at the on-demand price, an upper bound.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from types import MappingProxyType

from .deployments import Deployment, EndpointKind, ServiceInterval
from .ids import utc_now
from .models import INSTANCE_TYPE_PATTERN

PRICE_TABLE_REGION = "us-east-1"
PRICE_TABLE_DATE = date(2024, 6, 1)
"""When the prices below were read from aws.amazon.com/sagemaker/pricing (on-demand tab)."""
PRICE_TABLE_SOURCE = "https://aws.amazon.com/sagemaker/pricing/"

TRAINING_USD_PER_HOUR: Mapping[str, float] = MappingProxyType(
    {
        "ml.m5.large": 0.115,
        "ml.m5.xlarge": 0.23,
        "ml.m5.2xlarge": 0.461,
        "ml.m5.4xlarge": 0.922,
        "ml.m5.12xlarge": 2.765,
        "ml.c5.xlarge": 0.204,
        "ml.c5.2xlarge": 0.408,
        "ml.c5.4xlarge": 0.816,
        "ml.c5.9xlarge": 1.836,
        "ml.g4dn.xlarge": 0.736,
        "ml.g4dn.2xlarge": 0.94,
        "ml.g5.xlarge": 1.408,
        "ml.g5.2xlarge": 1.515,
        "ml.p3.2xlarge": 3.825,
    }
)
"""SageMaker training, on-demand, USD per instance-hour in :data:`PRICE_TABLE_REGION`."""

HOSTING_USD_PER_HOUR: Mapping[str, float] = MappingProxyType(
    {
        "ml.t2.medium": 0.056,
        "ml.m5.large": 0.115,
        "ml.m5.xlarge": 0.23,
        "ml.m5.2xlarge": 0.461,
        "ml.m5.4xlarge": 0.922,
        "ml.c5.large": 0.102,
        "ml.c5.xlarge": 0.204,
        "ml.c5.2xlarge": 0.408,
        "ml.c5.4xlarge": 0.816,
        "ml.g4dn.xlarge": 0.736,
        "ml.g4dn.2xlarge": 0.94,
        "ml.g5.xlarge": 1.408,
        "ml.inf1.xlarge": 0.297,
    }
)
"""SageMaker real-time inference, on-demand, USD per instance-hour in :data:`PRICE_TABLE_REGION`."""

SERVERLESS_USD_PER_GB_SECOND = 0.00002
"""SageMaker Serverless Inference compute, USD per GB-second of inference duration (1,024 MB is
$0.0000200 a second), in :data:`PRICE_TABLE_REGION` as of :data:`PRICE_TABLE_DATE`; shown, not
used: the platform doesn't record inference durations per endpoint."""

MAX_PRICE_USD_PER_HOUR = 1000.0
"""An override above this is a typo (the dearest SageMaker instance costs less than $100/h)."""

_INSTANCE_TYPE = re.compile(INSTANCE_TYPE_PATTERN)


def parse_price_overrides(raw: str | Mapping[str, object] | None) -> dict[str, float]:
    """``PRICE_OVERRIDES``: a JSON object (or a mapping) of instance type to USD per hour.

    Raises ValueError naming the offending entry: the portal fails at start-up on a bad value,
    never on the costs page.
    """
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError as error:
            raise ValueError(f"PRICE_OVERRIDES is not JSON: {error.msg}") from None
    else:
        parsed = dict(raw)
    if not isinstance(parsed, dict):
        raise ValueError("PRICE_OVERRIDES must be a JSON object of instance type to USD per hour")
    result: dict[str, float] = {}
    for instance_type, price in parsed.items():
        if not isinstance(instance_type, str) or not _INSTANCE_TYPE.fullmatch(instance_type):
            raise ValueError(
                f"PRICE_OVERRIDES: {instance_type!r} is not an instance type like ml.m5.large"
            )
        if isinstance(price, bool) or not isinstance(price, int | float):
            raise ValueError(f"PRICE_OVERRIDES: the price of {instance_type} must be a number")
        if not 0 <= price <= MAX_PRICE_USD_PER_HOUR:
            raise ValueError(
                f"PRICE_OVERRIDES: the price of {instance_type} must be between 0 and "
                f"{MAX_PRICE_USD_PER_HOUR:g} USD per hour"
            )
        result[instance_type] = float(price)
    return result


@dataclass(frozen=True)
class Price:
    """An hourly price and where it came from."""

    usd_per_hour: float
    overridden: bool
    """True when it came from the configuration's overrides, not the table."""


@dataclass(frozen=True)
class PriceTable:
    """The table's prices with the configuration's overrides on top."""

    overrides: Mapping[str, float] = field(default_factory=dict)
    training: Mapping[str, float] = field(default_factory=lambda: TRAINING_USD_PER_HOUR)
    hosting: Mapping[str, float] = field(default_factory=lambda: HOSTING_USD_PER_HOUR)
    region: str = PRICE_TABLE_REGION
    as_of: date = PRICE_TABLE_DATE
    serverless_usd_per_gb_second: float = SERVERLESS_USD_PER_GB_SECOND

    def _price(self, table: Mapping[str, float], instance_type: str) -> Price | None:
        if instance_type in self.overrides:
            return Price(self.overrides[instance_type], overridden=True)
        if instance_type in table:
            return Price(table[instance_type], overridden=False)
        return None

    def training_price(self, instance_type: str) -> Price | None:
        return self._price(self.training, instance_type)

    def hosting_price(self, instance_type: str) -> Price | None:
        return self._price(self.hosting, instance_type)


@dataclass(frozen=True)
class CostEstimate:
    """Instance-hours and, when the instance type has a price, what they cost."""

    instance_hours: float
    usd: float | None
    """None: no price for the instance type (or a serverless endpoint); ``note`` says why."""
    instance_type: str | None = None
    usd_per_hour: float | None = None
    overridden: bool = False
    note: str | None = None


def _no_price(instance_type: str, table: PriceTable) -> str:
    return (
        f"No price for {instance_type} in the {table.region} table of "
        f"{table.as_of.isoformat()}; add it to serving.price_overrides."
    )


def training_cost(
    instance_type: str,
    instance_count: int,
    billable_seconds: int | None,
    table: PriceTable,
) -> CostEstimate:
    """A training job's (or a tuning job's, with its training jobs' billable seconds summed)
    estimate: billable seconds x instance count x the hourly training price."""
    hours = max(0, billable_seconds or 0) * max(0, instance_count) / 3600
    price = table.training_price(instance_type)
    note = None if billable_seconds is not None else "No billable time reported yet."
    if price is None:
        return CostEstimate(hours, None, instance_type, note=_no_price(instance_type, table))
    return CostEstimate(
        hours,
        hours * price.usd_per_hour,
        instance_type,
        price.usd_per_hour,
        price.overridden,
        note,
    )


def interval_hours(interval: ServiceInterval, now: datetime) -> float:
    """Hours the interval lasted (an open interval: until ``now``); never negative."""
    end = interval.end or now
    return max(0.0, (end - interval.start).total_seconds() / 3600)


def deployment_cost(
    deployment: Deployment, table: PriceTable, now: datetime | None = None
) -> CostEstimate:
    """A deployment's estimate over its service intervals: hours x instance count x the hourly
    hosting price of each interval's instance type (they differ after a resize). Serverless
    intervals are not estimated (billed per inference duration, which no interval records)."""
    return intervals_cost(deployment.service_intervals, table, now)


def intervals_cost(
    intervals: Iterable[ServiceInterval], table: PriceTable, now: datetime | None = None
) -> CostEstimate:
    """:func:`deployment_cost` over any service intervals."""
    now = now or utc_now()
    hours = 0.0
    usd = 0.0
    priced = True
    serverless = False
    types: list[str] = []
    prices: set[float] = set()
    overridden = False
    missing: list[str] = []
    for interval in intervals:
        if interval.kind == EndpointKind.SERVERLESS:
            serverless = True
            continue
        instance_hours = interval_hours(interval, now) * max(0, interval.instance_count)
        hours += instance_hours
        instance_type = interval.instance_type or ""
        if instance_type not in types:
            types.append(instance_type)
        price = table.hosting_price(instance_type)
        if price is None:
            priced = False
            if instance_type not in missing:
                missing.append(instance_type)
            continue
        usd += instance_hours * price.usd_per_hour
        prices.add(price.usd_per_hour)
        overridden = overridden or price.overridden
    if serverless and not types:
        return CostEstimate(
            0.0,
            None,
            note=(
                "Serverless: billed per inference (duration x memory), which the platform "
                f"doesn't record; compute is ${table.serverless_usd_per_gb_second:.7f} per "
                f"GB-second in {table.region} ({table.as_of.isoformat()})."
            ),
        )
    single = types[0] if len(types) == 1 else None
    note = None
    if missing:
        note = "; ".join(_no_price(t or "an unknown type", table) for t in missing)
    elif serverless:
        note = "Serverless periods are not estimated (billed per inference)."
    return CostEstimate(
        hours,
        usd if priced else None,
        single,
        prices.pop() if len(prices) == 1 else None,
        overridden,
        note,
    )


@dataclass(frozen=True)
class CostTotals:
    """Sums of the estimates a page lists, and how many had no price."""

    instance_hours: float
    usd: float
    unpriced: int


def totals(estimates: Iterable[CostEstimate]) -> CostTotals:
    hours = 0.0
    usd = 0.0
    unpriced = 0
    for estimate in estimates:
        hours += estimate.instance_hours
        if estimate.usd is None:
            unpriced += 1 if estimate.instance_hours or estimate.note else 0
        else:
            usd += estimate.usd
    return CostTotals(hours, usd, unpriced)


__all__ = [
    "HOSTING_USD_PER_HOUR",
    "PRICE_TABLE_DATE",
    "PRICE_TABLE_REGION",
    "PRICE_TABLE_SOURCE",
    "SERVERLESS_USD_PER_GB_SECOND",
    "TRAINING_USD_PER_HOUR",
    "CostEstimate",
    "CostTotals",
    "Price",
    "PriceTable",
    "deployment_cost",
    "interval_hours",
    "intervals_cost",
    "parse_price_overrides",
    "totals",
    "training_cost",
]
