"""Plays the launch handler, SageMaker and the job-events handler for the local runner.

The handlers' own code isn't wired here: the simulator reads the training-requests queue, runs the
same ``check_request`` the launch handler runs, and moves records through the same repository
methods the handlers use (``transition`` for the launch, ``apply_state_update`` for SageMaker's
state-change events, ``TrialRepository.apply`` for a tuning job's training jobs). A training job
goes STARTING → IN_PROGRESS → COMPLETED in two steps, with a metric series for its chart; a tuning
job runs its trials as :mod:`local.tuning_jobs` describes. On completion the model archive is
where SageMaker writes it and the model is registered (:mod:`local.registry`).

A schedule's trigger (``is_retraining_trigger``) goes to the launch handler's own
``RetrainingPlanner`` (``lambda/launch/retraining.py``): a forged or stale trigger goes to the
dead-letter queue, a skipped run or an inactive policy is acknowledged, and a planned run's
request (its job and run records written by the planner) is launched like any other, once per
slot (a job already past QUEUED is not launched again). A refused retraining request fails its
run (``fail_run``). The run's model is decided by the job-events handler's ``PromotionService``
(:mod:`local.registry`), its score scripted by :mod:`local.tuning_jobs`.

moto lacks ``StopTrainingJob`` and ``StopHyperParameterTuningJob``:
:meth:`JobSimulator.session_hook` answers them on the portal's sessions, and watches
``UpdateModelPackage`` (which moto has) to play the "Model Package State Change" event that
follows an approval.

:meth:`JobSimulator.step` is one tick; the background thread calls it every 0.3 s, tests call it
directly with a :class:`local.common.FakeClock`.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from launch.retraining import PlanOutcome, RetrainingPlanner, manifest_problem
from portal_app.settings import PortalSettings
from pydantic import ValidationError
from training_common import (
    CatalogRepository,
    DeploymentRepository,
    FinalMetric,
    JobRepository,
    JobStateUpdate,
    JobStatus,
    ModelRepository,
    NotificationRepository,
    QueueMessage,
    RetrainingPolicyRepository,
    RetrainingRunRepository,
    RetrainingTrigger,
    TenantRepository,
    TrainingRequest,
    TrialRepository,
    check_request,
    is_retraining_trigger,
    model_artifact_key,
    send_to_dead_letter_queue,
    utc_now,
)

from .common import REGION, EventClock, job_notification, model_archive, sagemaker_arn
from .registry import LocalRegistry
from .retraining import promotion_service, scripted_objective
from .search import metric_series, metric_values
from .stack import DEAD_LETTER_QUEUE, RETRAINING_POLICIES_TABLE, RETRAINING_RUNS_TABLE
from .tuning_jobs import TuningRun, TuningSimulator

log = logging.getLogger("local.simulator")

DEFAULT_STEP_SECONDS = 1.5
"""One simulated step: a training job takes two, a tuning job one plus two per wave of trials
(6 trials, 2 in parallel: about 10 s)."""


@dataclass
class _Running:
    request: TrainingRequest
    started: float
    started_at: datetime
    stage: int = 0
    stop_requested: bool = False


class JobSimulator:
    """Queue → STARTING → IN_PROGRESS → COMPLETED (or STOPPED), for training and tuning jobs."""

    def __init__(
        self,
        settings: PortalSettings,
        session: boto3.Session,
        endpoint_url: str | None,
        *,
        step_seconds: float = DEFAULT_STEP_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        poll_seconds: float = 0.3,
    ) -> None:
        self.settings = settings
        self.step_seconds = step_seconds
        self.poll_seconds = poll_seconds
        self.events = EventClock(clock)
        self.sqs = session.client("sqs", region_name=REGION, endpoint_url=endpoint_url)
        self.s3 = session.client("s3", region_name=REGION, endpoint_url=endpoint_url)
        sagemaker = session.client("sagemaker", region_name=REGION, endpoint_url=endpoint_url)
        dynamodb = session.resource("dynamodb", region_name=REGION, endpoint_url=endpoint_url)
        self.tenants = TenantRepository(dynamodb.Table(settings.tenants_table))
        self.jobs = JobRepository(dynamodb.Table(settings.jobs_table))
        self.notifications = NotificationRepository(dynamodb.Table(settings.notifications_table))
        self.catalog = CatalogRepository(self.s3, settings.catalog_bucket, 0)
        models = ModelRepository(dynamodb.Table(settings.models_table))
        self.registry = LocalRegistry(
            sagemaker=sagemaker,
            s3=self.s3,
            artifacts_bucket=settings.artifacts_bucket,
            models=models,
            notifications=self.notifications,
            clock=self.events.now,
        )
        self.runs = RetrainingRunRepository(dynamodb.Table(RETRAINING_RUNS_TABLE))
        self.policies = RetrainingPolicyRepository(dynamodb.Table(RETRAINING_POLICIES_TABLE))
        self.dead_letter_queue_url = str(
            self.sqs.get_queue_url(QueueName=DEAD_LETTER_QUEUE)["QueueUrl"]
        )
        self.planner = RetrainingPlanner(
            policies=self.policies,
            runs=self.runs,
            jobs=self.jobs,
            models=models,
            deployments=DeploymentRepository(dynamodb.Table(settings.deployments_table)),
            tenants=self.tenants,
            s3=self.s3,
            data_bucket=settings.data_bucket,
        )
        self.promotion = promotion_service(
            settings, self.registry, endpoint_url, dead_letter_queue_url=self.dead_letter_queue_url
        )
        self.registry.promotion = self.promotion
        self.tuning = TuningSimulator(
            jobs=self.jobs,
            trials=TrialRepository(dynamodb.Table(settings.trials_table)),
            notifications=self.notifications,
            registry=self.registry,
            s3=self.s3,
            artifacts_bucket=settings.artifacts_bucket,
            events=self.events,
            step_seconds=step_seconds,
            script=functools.partial(scripted_objective, self.runs),
            on_ended=self.promotion.on_job_ended,
        )
        self._running: dict[str, _Running] = {}
        self._tuning: dict[str, TuningRun] = {}
        self.finished_tuning: dict[str, TuningRun] = {}
        """Tuning runs that ended, by job id (tests read their ``peak_parallel``)."""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="job-simulator", daemon=True)

    def start(self) -> JobSimulator:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def session_hook(self, session: boto3.Session) -> None:
        """Answer the stop calls moto lacks on ``session``'s clients, and watch approvals."""
        session.events.register("before-call.sagemaker.StopTrainingJob", self._on_stop_training)
        session.events.register(
            "before-call.sagemaker.StopHyperParameterTuningJob", self._on_stop_tuning
        )
        self.registry.session_hook(session)

    def _on_stop_training(
        self, params: dict[str, Any], **_: Any
    ) -> tuple[AWSResponse, dict[str, Any]]:
        name = json.loads(params["body"])["TrainingJobName"]  # the serialized request
        with self._lock:
            running = self._running.get(name)
            if running is not None:
                running.stop_requested = True
        return _answer(running is not None, f"Job {name} is not running")

    def _on_stop_tuning(
        self, params: dict[str, Any], **_: Any
    ) -> tuple[AWSResponse, dict[str, Any]]:
        name = json.loads(params["body"])["HyperParameterTuningJobName"]
        with self._lock:
            run = next((r for r in self._tuning.values() if r.name == name), None)
            if run is not None:
                run.stop_requested = True
        return _answer(run is not None, f"Tuning job {name} is not running")

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.step()
            self._stop.wait(self.poll_seconds)

    def step(self) -> None:
        """One tick: launch queued requests, move running jobs on, deliver registry events."""
        try:
            self._launch_from_queue()
            self._advance()
            self._advance_tuning()
            self.registry.deliver_events()
            self.registry.retry_promotions()
        except Exception:
            log.exception("simulator step failed")

    def _launch_from_queue(self) -> None:
        response = self.sqs.receive_message(
            QueueUrl=self.settings.training_requests_queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
        )
        for message in response.get("Messages", []):
            if self._handle(message):
                self.sqs.delete_message(
                    QueueUrl=self.settings.training_requests_queue_url,
                    ReceiptHandle=message["ReceiptHandle"],
                )

    def _handle(self, message: dict[str, Any]) -> bool:
        """Launch (or refuse) one queued request; False leaves it on the queue."""
        body = str(message["Body"])
        if is_retraining_trigger(body):
            planned = self._plan(message)
            if planned is None:
                return True
            request = planned
        else:
            request = TrainingRequest.model_validate_json(body)
        result = check_request(request, tenants=self.tenants, jobs=self.jobs, catalog=self.catalog)
        if result.only_transient:
            return False  # stays on the queue until a running job ends, like the launch handler
        reason = (
            result.reason
            if not result.ok
            else manifest_problem(self.s3, self.settings.data_bucket, request)
        )
        if reason is None:
            self._launch(request)
            return True
        if (
            self.jobs.transition(
                request.tenant_id,
                request.job_id,
                JobStatus.REJECTED,
                from_statuses=[JobStatus.QUEUED],
                failure_reason=reason,
            )
            and request.retraining is not None
        ):
            self.planner.fail_run(
                request.tenant_id, request.retraining.run_id, reason, job_id=request.job_id
            )
        return True

    def _plan(self, message: dict[str, Any]) -> TrainingRequest | None:
        """A trigger's request to launch, or None when there is none (acknowledged, or on the
        dead-letter queue)."""
        body = str(message["Body"])
        try:
            trigger = RetrainingTrigger.model_validate_json(body)
        except ValidationError:
            self._dead_letter(message, "unreadable retraining trigger")
            return None
        planned = self.planner.plan(trigger, utc_now())
        if planned.outcome in {PlanOutcome.FORGED, PlanOutcome.STALE}:
            self._dead_letter(message, planned.reason)
            return None
        if planned.outcome != PlanOutcome.LAUNCH or planned.request is None:
            log.info("retraining trigger acknowledged", extra={"outcome": planned.outcome.value})
            return None
        job = self.jobs.get(planned.request.tenant_id, planned.request.job_id)
        if job is not None and job.status != JobStatus.QUEUED:
            return None  # a second delivery of a slot that launched: at most once
        return planned.request

    def _dead_letter(self, message: dict[str, Any], reason: str) -> None:
        send_to_dead_letter_queue(
            self.sqs,
            self.dead_letter_queue_url,
            QueueMessage(
                message_id=str(message["MessageId"]),
                body=str(message["Body"]),
                receipt_handle=str(message["ReceiptHandle"]),
            ),
            reason=reason,
            handler="launch",
        )
        log.info("retraining trigger dead-lettered", extra={"why": reason})

    def _launch(self, request: TrainingRequest) -> None:
        if request.tuning is not None:
            entry = self.catalog.get(request.algorithm_id)
            assert entry is not None  # check_request found it
            run = self.tuning.begin(request, entry)
            if self.jobs.transition(
                request.tenant_id,
                request.job_id,
                JobStatus.STARTING,
                from_statuses=[JobStatus.QUEUED],
                launch_attempts=1,
                tuning_job_arn=run.arn,
            ):
                with self._lock:
                    self._tuning[request.job_id] = run
            return
        if self.jobs.transition(
            request.tenant_id,
            request.job_id,
            JobStatus.STARTING,
            from_statuses=[JobStatus.QUEUED],
            launch_attempts=1,
            training_job_arn=sagemaker_arn("training-job", request.job_id),
        ):
            with self._lock:
                self._running[request.job_id] = _Running(
                    request, self.events.clock(), self.events.now()
                )

    def _advance_tuning(self) -> None:
        with self._lock:
            runs = list(self._tuning.values())
        for run in runs:
            if self.tuning.advance(run):
                with self._lock:
                    self._tuning.pop(run.job_id, None)
                    self.finished_tuning[run.job_id] = run

    def _advance(self) -> None:
        now = self.events.clock()
        with self._lock:
            running = list(self._running.values())
        for job in running:
            elapsed = now - job.started
            if job.stop_requested:
                self._event(job, JobStatus.STOPPING, "Stopping")
                self._finish(job, JobStatus.STOPPED, "Stopped")
            elif job.stage == 0 and elapsed >= self.step_seconds:
                self._event(job, JobStatus.IN_PROGRESS, "Training")
                job.stage = 1
            elif job.stage == 1 and elapsed >= 2 * self.step_seconds:
                self._finish(job, JobStatus.COMPLETED, "Completed")

    def _event(self, job: _Running, status: JobStatus, secondary: str, **extra: Any) -> None:
        self.jobs.apply_state_update(
            job.request.tenant_id,
            job.request.job_id,
            JobStateUpdate(
                status=status, event_time=self.events.now(), secondary_status=secondary, **extra
            ),
        )

    def _finish(self, job: _Running, status: JobStatus, secondary: str) -> None:
        request = job.request
        tenant_id, job_id = request.tenant_id, request.job_id
        billable = max(1, int((self.events.now() - job.started_at).total_seconds()))
        extra: dict[str, Any] = {"billable_seconds": billable}
        entry = self.catalog.get(request.algorithm_id)
        finals = {} if entry is None else metric_values(entry, request.hyperparameters)
        key = model_artifact_key(tenant_id, job_id)
        if status == JobStatus.COMPLETED:
            self.s3.put_object(
                Bucket=self.settings.artifacts_bucket, Key=key, Body=model_archive(job_id)
            )
            extra |= {
                "model_artifact_key": key,
                "final_metrics": [FinalMetric(name=n, value=v) for n, v in finals.items()],
            }
        self._event(job, status, secondary, **extra)
        if finals:
            self.jobs.set_metric_series(
                tenant_id, job_id, metric_series(finals, job.started_at, self.events.now())
            )
        with self._lock:
            self._running.pop(job_id, None)
        self.notifications.put_if_absent(
            job_notification(
                tenant_id,
                job_id,
                status,
                f"Training job {status.value.lower()}: {job_id}",
                f"Job {job_id} ended {status.value}. Open the job page to download its model."
                if status == JobStatus.COMPLETED
                else f"Job {job_id} ended {status.value}.",
                self.events.now(),
            )
        )
        stored = self.jobs.get(tenant_id, job_id)
        if status == JobStatus.COMPLETED and entry is not None and stored is not None:
            self.registry.register(
                stored,
                training_job_name=job_id,
                artifact_key=key,
                image_uri=entry.image_uri,
                content_type=entry.input_content_type,
                metrics=stored.final_metrics,
                hyperparameters=request.hyperparameters,
            )
        log.info("job finished", extra={"job_id": job_id, "status": status.value})


def _answer(ok: bool, message: str) -> tuple[AWSResponse, dict[str, Any]]:
    """SageMaker's answer to a stop call: 200, or the ValidationException of a job not running."""
    if ok:
        response = AWSResponse("https://api.sagemaker.local/", 200, {}, None)
        return response, {"ResponseMetadata": {"HTTPStatusCode": 200}}
    error = {"Code": "ValidationException", "Message": message}
    return AWSResponse("https://api.sagemaker.local/", 400, {}, None), {"Error": error}
