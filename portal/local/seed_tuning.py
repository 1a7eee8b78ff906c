"""The seeded tuning job: one finished tuning job whose model waits for approval.

Played through the simulator's own code (:class:`local.tuning_jobs.TuningSimulator`,
:class:`local.registry.LocalRegistry`) on a :class:`local.common.FakeClock` that starts hours
ago, so the trials, the record's progress and best job, the model archive, the model package in
moto and the notifications are exactly what a live run leaves behind, with past timestamps.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from portal_app.settings import PortalSettings
from training_common import (
    CatalogEntry,
    Job,
    JobRepository,
    JobStateUpdate,
    JobStatus,
    ModelRepository,
    NotificationRepository,
    ObjectiveType,
    ParameterRange,
    ParameterType,
    ScalingType,
    TrainingRequest,
    TrialRepository,
    TuningSpec,
    TuningStrategy,
    new_job_id,
)

from .common import EventClock, FakeClock
from .registry import LocalRegistry
from .tuning_jobs import TuningSimulator

SEED_STEP_SECONDS = 300.0
"""A seeded trial trains for ten minutes (two steps)."""

SEED_SPEC = TuningSpec(
    objective_metric="validation:auc",
    objective_type=ObjectiveType.MAXIMIZE,
    strategy=TuningStrategy.BAYESIAN,
    ranges=(
        ParameterRange(
            name="eta",
            type=ParameterType.CONTINUOUS,
            min_value=0.01,
            max_value=0.5,
            scaling=ScalingType.LOGARITHMIC,
        ),
        ParameterRange(name="max_depth", type=ParameterType.INTEGER, min_value=2, max_value=10),
        ParameterRange(name="tree_method", type=ParameterType.CATEGORICAL, values=("auto", "hist")),
    ),
    max_training_jobs=8,
    max_parallel_training_jobs=2,
)


def seed_tuning_job(
    settings: PortalSettings,
    *,
    dynamodb: Any,
    s3: Any,
    sagemaker: Any,
    entry: CatalogEntry,
    tenant_id: str,
    dataset_key: str,
    submitted: datetime,
    spec: TuningSpec = SEED_SPEC,
    validation_key: str | None = None,
) -> str:
    """Create and run to completion a tuning job of ``entry`` for ``tenant_id`` (``spec``, with
    the held-out ``validation_key`` when given); its job id."""
    job_id = new_job_id(tenant_id, submitted)
    request = TrainingRequest(
        tenant_id=tenant_id,
        job_id=job_id,
        algorithm_id=entry.id,
        dataset_key=dataset_key,
        hyperparameters={"num_round": "100", "objective": "binary:logistic"},
        instance_type="ml.m5.large",
        instance_count=1,
        max_runtime_seconds=3600,
        submitted_by=f"seed@{tenant_id}.example",
        submitted_at=submitted,
        tuning=spec,
        validation_key=validation_key,
    )
    jobs = JobRepository(dynamodb.Table(settings.jobs_table))
    notifications = NotificationRepository(dynamodb.Table(settings.notifications_table))
    jobs.create(Job.from_request(request))
    clock = FakeClock()
    events = EventClock(clock, epoch=submitted + timedelta(minutes=1))
    registry = LocalRegistry(
        sagemaker=sagemaker,
        s3=s3,
        artifacts_bucket=settings.artifacts_bucket,
        models=ModelRepository(dynamodb.Table(settings.models_table)),
        notifications=notifications,
        clock=events.now,
    )
    simulator = TuningSimulator(
        jobs=jobs,
        trials=TrialRepository(dynamodb.Table(settings.trials_table)),
        notifications=notifications,
        registry=registry,
        s3=s3,
        artifacts_bucket=settings.artifacts_bucket,
        events=events,
        step_seconds=SEED_STEP_SECONDS,
    )
    run = simulator.begin(request, entry)
    jobs.apply_state_update(
        tenant_id,
        job_id,
        JobStateUpdate(status=JobStatus.STARTING, event_time=events.now(), tuning_job_arn=run.arn),
    )
    for _ in range(4 * run.total + 4):  # each tick moves at least one trial on
        clock.advance(SEED_STEP_SECONDS)
        if simulator.advance(run):
            return job_id
    raise RuntimeError(f"the seeded tuning job {job_id} did not finish")
