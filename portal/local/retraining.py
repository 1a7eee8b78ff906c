"""Continuous retraining, run locally around the **real** services.

- :class:`RetrainingRequests` receives from the retraining-requests queue and calls the
  retraining handler's ``RetrainingService.handle`` (``lambda/retraining``, unchanged) against
  moto's EventBridge Scheduler, as :class:`local.serving.ServingSimulator` does for deployments.
- :class:`local.scheduler.LocalScheduler` fires the schedules it made; before each firing
  :class:`DataFeed` drops a new readings file into the policy's dataset folder, as the tenant's
  devices would between two runs, so "new data since the last run" has something to train on.
- The simulator's launch path (:mod:`local.simulator`) hands each trigger to the launch handler's
  ``RetrainingPlanner``; the tuning simulator scores the run as :func:`scripted_objective` says
  (see :mod:`local.tuning_jobs`), and the registry (:mod:`local.registry`) hands the registered
  model to the job-events handler's ``PromotionService``, whose deployment request the serving
  simulator carries out as a blue/green update.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import boto3
from portal_app.settings import PortalSettings
from pydantic import ValidationError
from training_common import (
    DeploymentRepository,
    Job,
    ModelRepository,
    ModelVersion,
    NotificationRepository,
    ObjectiveType,
    PolicyStatus,
    RetrainingPolicyRepository,
    RetrainingRun,
    RetrainingRunRepository,
    RetrainingTrigger,
    TrainingRequest,
    new_session,
    slot_code,
)

from .common import ACCOUNT, REGION, handle_queued, local_clients
from .stack import (
    RETRAINING_POLICIES_TABLE,
    RETRAINING_REQUESTS_DLQ,
    RETRAINING_REQUESTS_QUEUE,
    RETRAINING_RUNS_TABLE,
    SCHEDULE_GROUP,
    SCHEDULER_DLQ,
    SCHEDULER_ROLE_ARN,
)

if TYPE_CHECKING:
    from job_events.retraining import PromotionService

    from .registry import LocalRegistry

log = logging.getLogger("local.retraining")

SCRIPTED_SHORTFALL = 0.01
"""A policy's odd-numbered runs end this much worse than the deployed model."""
SCRIPTED_GAIN = 0.01
"""Its even-numbered runs beat the deployed model by the policy's margin plus this."""


class Promotion(Protocol):
    """What the local registry and tuning simulator ask of the job-events handler's
    ``PromotionService``."""

    def on_registered(self, job: Job, version: ModelVersion) -> Any: ...

    def on_job_ended(self, job: Job) -> Any: ...


def queue_arn(name: str) -> str:
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"


def local_retraining_env(retraining_dlq_url: str, requests_queue_url: str) -> dict[str, str]:
    """The retraining function's environment variables, as the Training stack would set them."""
    return {
        "RETRAINING_POLICIES_TABLE": RETRAINING_POLICIES_TABLE,
        "DEAD_LETTER_QUEUE_URL": retraining_dlq_url,
        "RETRAINING_REQUESTS_QUEUE_URL": requests_queue_url,
        "SCHEDULE_GROUP": SCHEDULE_GROUP,
        "SCHEDULER_ROLE_ARN": SCHEDULER_ROLE_ARN,
        "TRAINING_REQUESTS_QUEUE_ARN": queue_arn("training-requests"),
        "SCHEDULER_DLQ_ARN": queue_arn(SCHEDULER_DLQ),
        "MAX_RECEIVE_COUNT": "5",
        "RETRY_BACKOFF_BASE_SECONDS": "1",
        "RETRY_BACKOFF_MAX_SECONDS": "5",
    }


def scripted_objective(runs: RetrainingRunRepository, request: TrainingRequest) -> float | None:
    """The best objective value the local tuning job of a retraining run ends with.

    The run's position among the policy's launched runs (those with a job, by slot) decides:
    odd (the first, third, ...) ends :data:`SCRIPTED_SHORTFALL` worse than the deployed model's
    objective the planner recorded on the run, so it is REJECTED with the comparison as the
    reason; even (the second, ...) ends better by the policy's margin plus :data:`SCRIPTED_GAIN`,
    so it is PROMOTED. None (no script: the ordinary simulated model decides) for a request that
    is not a retraining run's, or a run without a comparable deployed objective.
    """
    link = request.retraining
    if link is None:
        return None
    run = runs.get(request.tenant_id, link.run_id)
    if run is None or run.deployed_objective is None:
        return None
    launched: list[RetrainingRun] = []
    token: str | None = None
    while True:
        page = runs.list_page(request.tenant_id, link.policy_id, limit=50, token=token)
        launched += [r for r in page.items if r.job_id is not None and r.slot <= run.slot]
        token = page.next_token
        if not token:
            break
    ordinal = max(1, len(launched))
    better = ordinal % 2 == 0
    change = run.margin + SCRIPTED_GAIN if better else -SCRIPTED_SHORTFALL
    sign = 1.0 if run.objective_type == ObjectiveType.MAXIMIZE else -1.0
    return round(run.deployed_objective + sign * change, 6)


class DataFeed:
    """Before a schedule fires, a new readings file in its policy's dataset folder (only for
    an ACTIVE policy whose token the trigger carries: a forged trigger feeds nothing)."""

    def __init__(self, policies: RetrainingPolicyRepository, s3: Any, data_bucket: str) -> None:
        self.policies = policies
        self.s3 = s3
        self.data_bucket = data_bucket
        self.written: list[str] = []

    def __call__(self, body: str, slot: datetime) -> None:
        try:
            trigger = RetrainingTrigger.model_validate_json(body)
        except ValidationError:
            return
        policy = self.policies.get(trigger.tenant_id, trigger.policy_id)
        if policy is None or policy.token != trigger.token or policy.status != PolicyStatus.ACTIVE:
            return
        key = f"{policy.dataset_prefix}readings-{slot_code(slot)}.csv"
        self.s3.put_object(
            Bucket=self.data_bucket,
            Key=key,
            Body=b"label,f1,f2\n1,0.55,0.71\n0,0.12,0.25\n1,0.61,0.66\n",
            ContentType="text/csv",
        )
        self.written.append(key)


def promotion_service(
    settings: PortalSettings,
    registry: LocalRegistry,
    endpoint_url: str | None,
    *,
    dead_letter_queue_url: str,
) -> PromotionService:
    """The job-events handler's ``PromotionService`` over the local tables and moto, on a
    session carrying the registry's :meth:`~local.registry.LocalRegistry.sync_hook`."""
    from job_events.notify import Notifier
    from job_events.retraining import PromotionService
    from job_events.settings import JobEventsSettings

    from .serving import local_job_events_env

    session = new_session(region_name=REGION)
    registry.sync_hook(session)
    clients = local_clients(session, endpoint_url)
    dynamodb = clients.resource("dynamodb")
    job_events = JobEventsSettings.from_env(local_job_events_env(settings, dead_letter_queue_url))
    return PromotionService(
        policies=RetrainingPolicyRepository(dynamodb.Table(RETRAINING_POLICIES_TABLE)),
        runs=RetrainingRunRepository(dynamodb.Table(RETRAINING_RUNS_TABLE)),
        models=ModelRepository(dynamodb.Table(settings.models_table)),
        deployments=DeploymentRepository(dynamodb.Table(settings.deployments_table)),
        notifier=Notifier(
            job_events,
            NotificationRepository(dynamodb.Table(settings.notifications_table)),
            clients.client("sns"),
        ),
        sagemaker=clients.client("sagemaker"),
        sqs=clients.client("sqs"),
        deployment_requests_queue_url=settings.deployment_requests_queue_url,
    )


class RetrainingRequests:
    """The retraining-requests queue through the real ``RetrainingService``."""

    def __init__(
        self,
        settings: PortalSettings,
        session: boto3.Session,
        endpoint_url: str | None,
        *,
        log_level: str | None = None,
    ) -> None:
        from retraining.service import RetrainingService
        from retraining.service import logger as retraining_logger
        from retraining.settings import RetrainingSettings

        if log_level is not None:
            retraining_logger.setLevel(log_level)
        clients = local_clients(session, endpoint_url)
        self.sqs = clients.client("sqs")
        self.queue_url = str(
            self.sqs.get_queue_url(QueueName=RETRAINING_REQUESTS_QUEUE)["QueueUrl"]
        )
        dlq = str(self.sqs.get_queue_url(QueueName=RETRAINING_REQUESTS_DLQ)["QueueUrl"])
        self.service = RetrainingService.from_settings(
            RetrainingSettings.from_env(local_retraining_env(dlq, self.queue_url)), clients
        )
        self.settings = settings
        self.handled = 0

    def step(self) -> int:
        """Handle what is on the queue now; how many messages were handled."""
        handled = len(
            handle_queued(
                self.sqs,
                self.queue_url,
                self.service.handle,
                what="retraining request",
                log=log,
            )
        )
        self.handled += handled
        return handled


__all__ = [
    "DataFeed",
    "Promotion",
    "RetrainingRequests",
    "local_retraining_env",
    "promotion_service",
    "queue_arn",
    "scripted_objective",
]
