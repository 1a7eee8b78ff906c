"""The costs page: estimates of the tenant's jobs and deployments (see training_common.pricing).

Read with the tenant's own credentials: the jobs table (one page of jobs, newest first), the
trials of its tuning jobs (their training jobs' billable seconds) and its deployments' service
intervals. Nothing here calls Cost Explorer: the page points at the ``tenant`` cost allocation
tag for the exact figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from training_common import Deployment, Job, JobKind, Page, utc_now
from training_common.pricing import (
    CostEstimate,
    CostTotals,
    PriceTable,
    deployment_cost,
    totals,
    training_cost,
)

from ..aws import TenantAws
from . import jobs

MAX_TRIAL_PAGES = 20
"""Trials pages (of 50) summed for one tuning job: 1,000 training jobs, twice the tenant max."""


@dataclass(frozen=True)
class CostView:
    jobs: list[tuple[Job, CostEstimate]]
    billable: dict[str, int | None]
    """Each listed job's billable seconds (a tuning job: its training jobs' sum)."""
    next_token: str | None
    deployments: list[tuple[Deployment, CostEstimate]]
    training_total: CostTotals
    endpoint_total: CostTotals


def tuning_billable_seconds(aws: TenantAws, job: Job) -> int | None:
    """The billable seconds of a tuning job's training jobs (None: none reported yet)."""
    total: int | None = None
    token: str | None = None
    for _ in range(MAX_TRIAL_PAGES):
        page = aws.trials.in_launch_order(aws.tenant_id, job.job_id, limit=50, token=token)
        for trial in page.items:
            if trial.billable_seconds is not None:
                total = (total or 0) + trial.billable_seconds
        token = page.next_token
        if token is None:
            break
    return total


def billable_seconds(aws: TenantAws, job: Job) -> int | None:
    if job.kind == JobKind.TUNING and job.billable_seconds is None:
        return tuning_billable_seconds(aws, job)
    return job.billable_seconds


def job_estimates(
    aws: TenantAws, table: PriceTable, page: Page[Job]
) -> tuple[list[tuple[Job, CostEstimate]], dict[str, int | None]]:
    estimates = []
    billable: dict[str, int | None] = {}
    for job in page.items:
        seconds = billable_seconds(aws, job)
        billable[job.job_id] = seconds
        estimates.append(
            (job, training_cost(job.instance_type, job.instance_count, seconds, table))
        )
    return estimates, billable


def deployment_estimates(
    aws: TenantAws, table: PriceTable, now: datetime | None = None
) -> list[tuple[Deployment, CostEstimate]]:
    now = now or utc_now()
    found = sorted(aws.deployments.list_all(aws.tenant_id), key=lambda d: d.deployment_id)
    return [(d, deployment_cost(d, table, now)) for d in found]


def cost_view(aws: TenantAws, table: PriceTable, token: str | None) -> CostView:
    page = jobs.list_page(aws, token)
    job_rows, billable = job_estimates(aws, table, page)
    deployment_rows = deployment_estimates(aws, table)
    return CostView(
        jobs=job_rows,
        billable=billable,
        next_token=page.next_token,
        deployments=deployment_rows,
        training_total=totals(c for _, c in job_rows),
        endpoint_total=totals(c for _, c in deployment_rows),
    )
