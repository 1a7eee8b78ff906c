"""The price table, the estimates and the costs page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from portal_helpers import Platform
from test_serving_pages import put_in_service
from training_common import EndpointKind, ServiceInterval, utc_now
from training_common.pricing import (
    HOSTING_USD_PER_HOUR,
    PRICE_TABLE_REGION,
    PriceTable,
    intervals_cost,
    parse_price_overrides,
    training_cost,
)

JSON = {"accept": "application/json"}


def test_training_cost_is_billable_seconds_times_instances_times_the_price() -> None:
    table = PriceTable()
    estimate = training_cost("ml.m5.xlarge", 2, 5400, table)
    assert estimate.instance_hours == pytest.approx(3.0)
    assert estimate.usd == pytest.approx(3.0 * 0.23) and not estimate.overridden
    unknown = training_cost("ml.x9.huge", 1, 3600, table)
    assert unknown.usd is None and "serving.price_overrides" in (unknown.note or "")
    overridden = training_cost("ml.x9.huge", 1, 3600, PriceTable(overrides={"ml.x9.huge": 2.5}))
    assert overridden.usd == pytest.approx(2.5) and overridden.overridden
    assert training_cost("ml.m5.large", 1, None, table).usd == 0


def test_deployment_cost_sums_its_intervals_and_leaves_serverless_unestimated() -> None:
    now = utc_now()
    intervals = [
        ServiceInterval(
            kind=EndpointKind.REALTIME,
            instance_type="ml.m5.large",
            instance_count=2,
            start=now - timedelta(hours=5),
            end=now - timedelta(hours=3),
        ),
        ServiceInterval(
            kind=EndpointKind.REALTIME,
            instance_type="ml.c5.xlarge",
            instance_count=1,
            start=now - timedelta(hours=3),
        ),
    ]
    estimate = intervals_cost(intervals, PriceTable(), now)
    assert estimate.instance_hours == pytest.approx(7.0)
    assert estimate.usd == pytest.approx(4 * HOSTING_USD_PER_HOUR["ml.m5.large"] + 3 * 0.204)
    serverless = ServiceInterval(
        kind=EndpointKind.SERVERLESS, memory_mb=2048, start=now - timedelta(hours=1)
    )
    alone = intervals_cost([serverless], PriceTable(), now)
    assert alone.usd is None and "per GB-second" in (alone.note or "")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("not json", "not JSON"),
        ("[1]", "JSON object"),
        ('{"m5.large": 1}', "not an instance type"),
        ('{"ml.m5.large": "cheap"}', "must be a number"),
        ('{"ml.m5.large": -1}', "between 0 and"),
    ],
)
def test_bad_price_overrides_name_the_problem(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_price_overrides(raw)
    assert parse_price_overrides('{"ml.m5.large": 0.2}') == {"ml.m5.large": 0.2}
    assert parse_price_overrides("") == {}


def test_costs_page_estimates_jobs_and_deployments_with_the_tables_date(
    platform: Platform,
) -> None:
    put_in_service(platform, "acme", "thermostat", platform.seeded.approved_models["acme"], hours=4)
    client = platform.client("alice")
    body = client.get("/costs", headers=JSON).json()
    assert body["price_table"]["region"] == PRICE_TABLE_REGION
    jobs = {j["job_id"]: j for j in body["jobs"]}
    completed = jobs[platform.seeded.jobs["acme"][0]]
    # seeded: 1,200 billable seconds on one ml.m5.large
    assert completed["usd"] == pytest.approx(1200 / 3600 * 0.115)
    (deployment,) = body["deployments"]
    assert deployment["instance_hours"] == pytest.approx(4.0, rel=0.01)
    assert deployment["usd"] == pytest.approx(4 * 0.115, rel=0.01)
    assert body["endpoint_total_usd"] == pytest.approx(deployment["usd"])
    page = client.get("/costs").text
    assert "us-east-1 as of" in page and "Cost Explorer" in page
    assert "<code>tenant = acme</code>" in page
