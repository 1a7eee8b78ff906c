"""The job-events handler's logic, one SageMaker state-change event at a time.

- Training job events of plain training jobs apply to the job record with a conditional write
  (newer than ``last_event_time``, allowed by the status machine); running and final ones also
  refresh the record's metric series from CloudWatch (a CloudWatch error is logged, never
  fatal), and COMPLETED registers the model.
- Training job events of a tuning job's training jobs (``TuningJobArn``, or without it a ``job``
  tag naming another job of the tenant; the tag names the platform job) write a trial,
  conditional on its event time; the tuning job's record is left to the tuning job's own events.
- Tuning job events apply status, progress counters and the best training job (from
  ``DescribeHyperParameterTuningJob``) to the record; COMPLETED or STOPPED with a best job
  registers the best training job's model (a redelivered final event describes the tuning job
  again when the record has no best job). No best job at all: the tenant is told, nothing is
  registered.
- Model package events apply the approval status to the version's record; an approval or
  rejection notifies the tenant.
- A retraining run's job (``Job.retraining``) that ends: its registered model is promoted,
  rejected or left waiting, or the run fails (``retraining.PromotionService``; only with
  ``RETRAINING_POLICIES_TABLE`` and ``RETRAINING_RUNS_TABLE``). A promotion whose deployment is
  busy raises after setting the event's back-off, so SQS delivers it again later.
- Endpoint, processing job (baseline, monitoring run) and endpoint alarm events apply to
  deployments (``endpoint_events.DeploymentEvents``; only with ``DEPLOYMENTS_TABLE``, else they
  go to the dead-letter queue).

Events for unknown jobs, for resources that aren't the platform's and stale or duplicate events
change nothing. A job's final state notifies the tenant exactly once (``notify.Notifier``).
Unreadable events go to the dead-letter queue with the reason; AWS errors propagate, so that
SQS delivers the event again (a registration error notifies the tenant first). The
``TrainingJobs*``/``TuningJobs*`` final-state metrics count a job's entry into its final state once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError
from training_common import (
    CatalogRepository,
    FinalMetric,
    Job,
    JobKind,
    JobRepository,
    JobStateUpdate,
    JobStatus,
    ModelRepository,
    ModelVersion,
    NotificationRepository,
    QueueMessage,
    RetrainingPolicyRepository,
    RetrainingRunRepository,
    TrialRepository,
    backoff_seconds,
    describe_schema_errors,
    from_sagemaker_status,
    is_final,
    is_job_id_of_tenant,
    is_tenant_id,
    iso_utc,
    new_session,
)
from training_common.repositories import DeploymentRepository
from training_common.sqs_handler import dead_letter, hold_message

from .endpoint_events import DeploymentEvents
from .events import (
    AlarmStateChangeEvent,
    EndpointStateChangeEvent,
    ProcessingJobStateChangeEvent,
    TrainingJobStateChangeEvent,
    TrainingJobStateDetail,
    TuningJobStateChangeEvent,
    UnexpectedEventError,
    parse_event,
)
from .metric_series import MetricSeriesReader
from .model_events import ModelStatusEvents
from .notify import Notifier
from .outcomes import BadEventError, Outcome, ignored, stale
from .registry import ModelRegistrar, ModelSource, RegistrationError
from .retraining import DeploymentBusyError, PromotionService
from .sagemaker_jobs import SageMakerJobs, artifact_key_in_prefix
from .settings import JobEventsSettings
from .telemetry import logger, metrics, tracer

__all__ = ["HANDLER_NAME", "JobEventsService", "Outcome", "logger", "metrics", "tracer"]

HANDLER_NAME = "job_events"
SERIES_STATUSES = frozenset(
    {JobStatus.IN_PROGRESS, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.STOPPED}
)
"""Statuses whose events refresh a training job's metric series."""
REGISTERING_TUNING_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.STOPPED})
"""Final statuses of a tuning job that register its best training job's model, if it has one."""
IGNORED_TUNING_STATUSES = frozenset({"Deleting", "DeleteFailed"})
"""Tuning job statuses after the job's life (a deleted tuning job keeps its record)."""


@dataclass
class JobEventsService:
    """Applies SageMaker state changes to the platform's records and notifies tenants.

    Every AWS client and repository is injected; the helpers are built from them.
    """

    settings: JobEventsSettings
    jobs: JobRepository
    notifications: NotificationRepository
    trials: TrialRepository
    models: ModelRepository
    sns: Any
    sqs: Any
    sagemaker: Any
    cloudwatch: Any
    s3: Any
    catalog: CatalogRepository | None = None
    deployments: DeploymentRepository | None = None
    """Without it (no ``DEPLOYMENTS_TABLE``), deployment events are dead-lettered."""
    retraining_policies: RetrainingPolicyRepository | None = None
    retraining_runs: RetrainingRunRepository | None = None
    """With both, retraining runs' models are promoted or rejected (``promotion``)."""
    notifier: Notifier = field(init=False)
    registrar: ModelRegistrar = field(init=False)
    sagemaker_jobs: SageMakerJobs = field(init=False)
    metric_series: MetricSeriesReader = field(init=False)
    model_events: ModelStatusEvents = field(init=False)
    deployment_events: DeploymentEvents | None = field(init=False)
    promotion: PromotionService | None = field(init=False)

    def __post_init__(self) -> None:
        bucket = self.settings.artifacts_bucket
        self.notifier = Notifier(self.settings, self.notifications, self.sns)
        self.registrar = ModelRegistrar(self.sagemaker, self.s3, self.models, bucket, self.catalog)
        self.sagemaker_jobs = SageMakerJobs(self.sagemaker, bucket)
        self.metric_series = MetricSeriesReader(self.cloudwatch)
        self.model_events = ModelStatusEvents(self.models, self.jobs, self.notifier, self.sagemaker)
        self.deployment_events = (
            None
            if self.deployments is None
            else DeploymentEvents(
                self.settings,
                self.deployments,
                self.notifier,
                self.sagemaker,
                self.cloudwatch,
                self.sqs,
            )
        )
        self.promotion = (
            None
            if self.retraining_policies is None or self.retraining_runs is None
            else PromotionService(
                policies=self.retraining_policies,
                runs=self.retraining_runs,
                models=self.models,
                deployments=self.deployments,
                notifier=self.notifier,
                sagemaker=self.sagemaker,
                sqs=self.sqs,
                deployment_requests_queue_url=self.settings.deployment_requests_queue_url,
            )
        )

    @classmethod
    def from_settings(
        cls, settings: JobEventsSettings, session: boto3.Session | None = None
    ) -> JobEventsService:
        """Build the service with boto3 clients from ``session`` (default: a new session)."""
        session = session or new_session()
        s3 = session.client("s3")
        catalog = (
            CatalogRepository(s3, settings.catalog_bucket, settings.catalog_cache_seconds)
            if settings.catalog_bucket
            else None
        )
        return cls(
            settings=settings,
            jobs=JobRepository.from_table_name(settings.jobs_table, session),
            notifications=NotificationRepository.from_table_name(
                settings.notifications_table, session
            ),
            trials=TrialRepository.from_table_name(settings.trials_table, session),
            models=ModelRepository.from_table_name(settings.models_table, session),
            sns=session.client("sns"),
            sqs=session.client("sqs"),
            sagemaker=session.client("sagemaker"),
            cloudwatch=session.client("cloudwatch"),
            s3=s3,
            catalog=catalog,
            deployments=(
                DeploymentRepository.from_table_name(settings.deployments_table, session)
                if settings.deployments_table
                else None
            ),
            retraining_policies=(
                RetrainingPolicyRepository.from_table_name(
                    settings.retraining_policies_table, session
                )
                if settings.retraining_policies_table and settings.retraining_runs_table
                else None
            ),
            retraining_runs=(
                RetrainingRunRepository.from_table_name(settings.retraining_runs_table, session)
                if settings.retraining_policies_table and settings.retraining_runs_table
                else None
            ),
        )

    @tracer.capture_method
    def handle(self, message: QueueMessage) -> Outcome:
        """Process one event; raises (AWS errors) to leave it on the queue for another attempt."""
        try:
            event = parse_event(message.body)
        except ValidationError as error:
            reason = "unreadable state-change event: " + "; ".join(describe_schema_errors(error))
            return self._dead_letter(message, reason)
        except UnexpectedEventError as error:
            return self._dead_letter(message, str(error))
        if isinstance(event, TrainingJobStateChangeEvent):
            return self._training_job(message, event)
        if isinstance(event, TuningJobStateChangeEvent):
            return self._tuning_job(message, event)
        try:
            if isinstance(
                event,
                EndpointStateChangeEvent | ProcessingJobStateChangeEvent | AlarmStateChangeEvent,
            ):
                return self._deployment_event(event)
            return self.model_events.apply(event)
        except BadEventError as error:
            return self._dead_letter(message, str(error))

    def _deployment_event(
        self,
        event: EndpointStateChangeEvent | ProcessingJobStateChangeEvent | AlarmStateChangeEvent,
    ) -> Outcome:
        handler = self.deployment_events
        if handler is None:
            raise BadEventError(f"{event.detail_type!r} events need DEPLOYMENTS_TABLE")
        if isinstance(event, EndpointStateChangeEvent):
            return handler.endpoint(event)
        if isinstance(event, ProcessingJobStateChangeEvent):
            return handler.processing_job(event)
        return handler.alarm(event)

    # Training jobs ------------------------------------------------------------------------

    def _training_job(self, message: QueueMessage, event: TrainingJobStateChangeEvent) -> Outcome:
        detail = event.detail
        tenant_id = detail.tags.get("tenant", "")
        if not is_tenant_id(tenant_id):
            return ignored(
                Outcome.NOT_PLATFORM_JOB,
                "Ignoring a training job without a tenant tag",
                job=detail.training_job_name,
            )
        try:
            status = from_sagemaker_status(detail.training_job_status)
        except ValueError as error:
            return self._dead_letter(message, str(error))
        if detail.tuning_job_arn or _names_another_job(detail, tenant_id):
            return self._trial(event, tenant_id)
        job_id = detail.training_job_name
        update = JobStateUpdate(
            status=status,
            event_time=event.event_time,
            secondary_status=detail.secondary_status,
            failure_reason=detail.failure_reason,
            training_job_arn=detail.training_job_arn,
            billable_seconds=detail.billable_time_in_seconds,
            final_metrics=[
                FinalMetric(name=m.metric_name, value=m.value)
                for m in detail.final_metric_data_list
            ],
            model_artifact_key=artifact_key_in_prefix(
                detail.model_artifacts.s3_model_artifacts if detail.model_artifacts else None,
                self.settings.artifacts_bucket,
                tenant_id,
                job_id,
            ),
        )
        with logger.append_context_keys(tenant_id=tenant_id, job_id=job_id):
            job, outcome = self._apply(tenant_id, job_id, update)
            if job is None:
                return outcome
            if outcome == Outcome.APPLIED and status in SERIES_STATUSES:
                self._refresh_metric_series(job, event)
            return self._after_final(
                message, job, outcome, lambda: self.sagemaker_jobs.training_job_source(job, detail)
            )

    def _refresh_metric_series(self, job: Job, event: TrainingJobStateChangeEvent) -> None:
        """Replace the record's metric series; a failure is logged and costs only the chart."""
        detail = event.detail
        names = detail.metric_names
        if not names:
            return
        start = detail.training_start_time or detail.creation_time or job.created_at
        end = max(event.event_time, start + timedelta(minutes=1))
        try:
            series = self.metric_series.read(detail.training_job_name, names, start, end)
            self.jobs.set_metric_series(job.tenant_id, job.job_id, series)
        except (ClientError, BotoCoreError) as error:
            logger.warning("Metric series not refreshed", error=str(error))
            metrics.add_metric(name="MetricSeriesFailed", unit=MetricUnit.Count, value=1)
            return
        logger.info("Metric series refreshed", points=sum(len(s.points) for s in series))

    def _trial(self, event: TrainingJobStateChangeEvent, tenant_id: str) -> Outcome:
        detail = event.detail
        job_id = detail.tags.get("job", "")
        name = detail.training_job_name
        if not is_job_id_of_tenant(job_id, tenant_id):
            return ignored(
                Outcome.NOT_PLATFORM_JOB, "Ignoring a tuning job's training job without a job tag"
            )
        with logger.append_context_keys(tenant_id=tenant_id, job_id=job_id, training_job=name):
            parent = self.jobs.get(tenant_id, job_id)
            if parent is None:
                return ignored(Outcome.UNKNOWN_JOB, "Training job event for an unknown job")
            if (
                parent.kind != JobKind.TUNING
                or parent.tuning is None
                or not parent.tuning_job_name
                or not _is_training_job_of(detail, parent.tuning_job_name)
            ):
                return ignored(
                    Outcome.NOT_PLATFORM_JOB,
                    "Training job of a tuning job that isn't the record's",
                    tuning_job_arn=detail.tuning_job_arn,
                )
            trial = self.sagemaker_jobs.trial(parent, detail, event.event_time)
            if not self.trials.apply(trial):
                return stale("Stale or duplicate trial event ignored", status=trial.status)
            logger.info("Trial recorded", status=trial.status, objective=trial.objective_value)
            metrics.add_metric(name="TrialsApplied", unit=MetricUnit.Count, value=1)
            return Outcome.APPLIED

    # Tuning jobs --------------------------------------------------------------------------

    def _tuning_job(self, message: QueueMessage, event: TuningJobStateChangeEvent) -> Outcome:
        detail = event.detail
        tenant_id, job_id = detail.tags.get("tenant", ""), detail.tags.get("job", "")
        if not is_tenant_id(tenant_id) or not is_job_id_of_tenant(job_id, tenant_id):
            return ignored(
                Outcome.NOT_PLATFORM_JOB,
                "Ignoring a tuning job without tenant and job tags",
                tuning_job=detail.tuning_job_name,
            )
        if detail.tuning_job_status in IGNORED_TUNING_STATUSES:
            return ignored(Outcome.IGNORED, "Tuning job deletion event ignored")
        try:
            status = from_sagemaker_status(detail.tuning_job_status)
        except ValueError:
            reason = f"unknown SageMaker tuning job status {detail.tuning_job_status!r}"
            return self._dead_letter(message, reason)
        with logger.append_context_keys(tenant_id=tenant_id, job_id=job_id):
            record = self.jobs.get(tenant_id, job_id)
            if record is None:
                return ignored(Outcome.UNKNOWN_JOB, "Event for an unknown job ignored")
            if record.tuning_job_name != detail.tuning_job_name:
                return ignored(
                    Outcome.NOT_PLATFORM_JOB,
                    "Tuning job event whose name isn't the record's",
                    tuning_job=detail.tuning_job_name,
                    record_tuning_job=record.tuning_job_name,
                )
            progress = detail.progress()
            newer = record.last_event_time is None or iso_utc(record.last_event_time) < iso_utc(
                event.event_time
            )
            wants_best = is_final(status) or progress.objective_succeeded > 0
            best = (
                self.sagemaker_jobs.best_training_job(detail.tuning_job_name)
                if newer and wants_best
                else None
            )
            update = JobStateUpdate(
                status=status,
                event_time=event.event_time,
                failure_reason=detail.failure_reason,
                tuning_job_arn=detail.tuning_job_arn,
                tuning_progress=progress,
                best_training_job=best,
            )
            job, outcome = self._apply(tenant_id, job_id, update)
            if job is None:
                return outcome
            if job.best_training_job is None and job.status in REGISTERING_TUNING_STATUSES:
                # A redelivered (stale) final event did not describe the tuning job, or its
                # update lost a race: ask now, so that the best model is still registered.
                if not (newer and wants_best):
                    best = self.sagemaker_jobs.best_training_job(detail.tuning_job_name)
                if best is not None:
                    self.jobs.set_best_training_job(tenant_id, job_id, best)
                    job = job.model_copy(update={"best_training_job": best})
            final = job
            return self._after_final(
                message, final, outcome, lambda: self.sagemaker_jobs.best_job_source(final)
            )

    # Both ---------------------------------------------------------------------------------

    def _apply(
        self, tenant_id: str, job_id: str, update: JobStateUpdate
    ) -> tuple[Job | None, Outcome]:
        job = self.jobs.apply_state_update(tenant_id, job_id, update)
        if job is not None:
            logger.info("Job record updated", status=job.status.value)
            metrics.add_metric(name="EventsApplied", unit=MetricUnit.Count, value=1)
            if _entered_final_state(job, update):
                # TrainingJobsCompleted / ...Failed / ...Stopped (TuningJobs... for tuning jobs):
                # the Observability stack's dashboard and its failed-jobs alarm read these.
                kind = "TuningJobs" if job.kind == JobKind.TUNING else "TrainingJobs"
                metrics.add_metric(
                    name=f"{kind}{job.status.value.title()}", unit=MetricUnit.Count, value=1
                )
            return job, Outcome.APPLIED
        job = self.jobs.get(tenant_id, job_id)
        if job is None:
            ignored(Outcome.UNKNOWN_JOB, "Event for an unknown job ignored", status=update.status)
            return None, Outcome.UNKNOWN_JOB
        return job, stale(
            "Stale or duplicate event ignored",
            event_status=update.status.value,
            event_time=iso_utc(update.event_time),
            record_status=job.status.value,
            last_event_time=iso_utc(job.last_event_time) if job.last_event_time else None,
        )

    def _after_final(
        self,
        message: QueueMessage,
        job: Job,
        outcome: Outcome,
        source: Callable[[], ModelSource],
    ) -> Outcome:
        """On a final state (also on a redelivery: both steps are idempotent): register the
        model when there is one, then notify the tenant. A model that can't be registered
        parks the event on the dead-letter queue with the reason, after the notification; any
        other registration error notifies the tenant first and then propagates (SQS delivers
        the event again), so the tenant hears of the job even if every attempt fails."""
        if not is_final(job.status) or job.status == JobStatus.REJECTED:
            return outcome
        if job.kind == JobKind.TUNING:
            # A tuning job whose training jobs all failed has no best job: nothing to register.
            registers = (
                job.status in REGISTERING_TUNING_STATUSES and job.best_training_job is not None
            )
        else:
            registers = job.status == JobStatus.COMPLETED
        model, problem = None, None
        if registers:
            try:
                model = self.registrar.ensure_registered(job, source)
            except RegistrationError as error:
                problem = f"cannot register the model: {error}"
            except Exception:
                logger.exception("Model registration failed; notifying before the retry")
                metrics.add_metric(name="RegistrationsRetried", unit=MetricUnit.Count, value=1)
                self.notifier.ensure_notified(job, None)
                raise
        self.notifier.ensure_notified(job, model)
        try:
            self._retraining_outcome(job, model, problem)
        except DeploymentBusyError:
            self._back_off(message)
            raise
        if problem is not None:
            return self._dead_letter(message, problem)
        return outcome

    def _retraining_outcome(
        self, job: Job, model: ModelVersion | None, problem: str | None
    ) -> None:
        """A retraining run's job ended: decide about its model (Completed and registered), or
        record the run FAILED. DeploymentBusyError and AWS errors propagate (retry)."""
        if self.promotion is None or job.retraining is None:
            return
        if model is not None and job.status == JobStatus.COMPLETED:
            self.promotion.on_registered(job, model)
        else:
            reason = (
                None
                if problem is None
                else "The model could not be registered: "
                + problem.removeprefix("cannot register the model: ").rstrip(".")
                + "."
            )
            self.promotion.on_job_ended(job, reason)

    def _back_off(self, message: QueueMessage) -> None:
        """Keep the event off the queue for a while (the deployment is busy)."""
        delay = backoff_seconds(
            message.receive_count,
            base=self.settings.busy_backoff_base_seconds,
            cap=self.settings.busy_backoff_max_seconds,
        )
        logger.info("Retrying the event later", retry_in_seconds=delay)
        hold_message(self.sqs, self.settings.job_events_queue_url, message, delay, logger)

    def _dead_letter(self, message: QueueMessage, reason: str) -> Outcome:
        dead_letter(
            self.sqs,
            self.settings.events_dlq_url,
            message,
            reason,
            handler=HANDLER_NAME,
            logger=logger,
            metrics=metrics,
            metric="EventsDeadLettered",
        )
        return Outcome.DEAD_LETTERED


def _names_another_job(detail: TrainingJobStateDetail, tenant_id: str) -> bool:
    """Whether the ``job`` tag names a job of the tenant other than the training job itself:
    a tuning job's training job, even when the event lacks ``TuningJobArn``."""
    job_id = detail.tags.get("job", "")
    return is_job_id_of_tenant(job_id, tenant_id) and job_id != detail.training_job_name


def _is_training_job_of(detail: TrainingJobStateDetail, tuning_job_name: str) -> bool:
    """Whether the training job belongs to the tuning job called ``tuning_job_name``: by its
    ``TuningJobArn``, else by its name, ``<tuning job name>-nnn-xxxxxxxx`` (case-insensitive)."""
    if detail.tuning_job_arn:
        return detail.tuning_job_arn.rsplit("/", 1)[-1].lower() == tuning_job_name.lower()
    return detail.training_job_name.lower().startswith(tuning_job_name.lower() + "-")


def _entered_final_state(job: Job, update: JobStateUpdate) -> bool:
    """Whether applying ``update`` moved the job into its final state (a later event of the same
    final status adds details but is no second completion, failure or stop)."""
    if not is_final(job.status):
        return False
    entries = [entry for entry in job.status_history if entry.status == job.status]
    return len(entries) == 1 and iso_utc(entries[0].at) == iso_utc(update.event_time)
