"""The launch handler's logic, one training or tuning request at a time.

For each message: read it (unreadable -> dead-letter queue with the reason), validate it again
with ``training_common.check_request``, then either launch it (``CreateTrainingJob`` named by the
job id, or for a tuning request ``CreateHyperParameterTuningJob`` named by the record's
``tuning_job_name``: idempotent either way), defer it (tenant's running-jobs slots full: re-sent
with a delay and a counter), reject it (job record REJECTED with the tenant-readable reason), or
leave it on the queue with back-off (SageMaker throttling or account limits). Both kinds take
the same path; :class:`SageMakerApi` holds the few names that differ. Exceptions mean "retry this
message": ``BatchProcessor`` reports it in ``batchItemFailures``. On the last receive before SQS
moves a message to the dead-letter queue the job record is marked FAILED, saying so.

A retraining policy's trigger (``is_retraining_trigger(body)``) goes to
``launch.retraining.RetrainingPlanner`` first: forged or stale triggers are dead-lettered with
the reason, a skipped run or an inactive policy is acknowledged, and a planned run takes the same
launch path with the planned request (a quota deferral re-sends the trigger, whose redelivery
rebuilds the request from the job record). When a retraining job is rejected, refused by
SageMaker or dead-lettered, its run becomes FAILED with the job's reason.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from botocore.config import Config
from botocore.exceptions import ClientError
from pydantic import ValidationError
from training_common import (
    CatalogEntry,
    CatalogRepository,
    DatasetType,
    Job,
    JobKind,
    JobRepository,
    JobStatus,
    QueueMessage,
    RetrainingTrigger,
    TenantRepository,
    TrainingRequest,
    ValidationResult,
    backoff_seconds,
    check_request,
    describe_schema_errors,
    is_job_id_of_tenant,
    is_retraining_trigger,
    iso_utc,
    new_session,
    parse_iso_utc,
    tuning_job_name,
    utc_now,
)
from training_common.sqs_handler import dead_letter, exhausted_reason, retry_later

from .retraining import PlanOutcome, RetrainingPlanner, manifest_problem
from .settings import LaunchSettings
from .training_job import build_create_training_job_request
from .tuning_job import build_create_tuning_job_request

logger = Logger()
metrics = Metrics()
tracer = Tracer()

HANDLER_NAME = "launch"
DEFERRALS_ATTRIBUTE = "quota_deferrals"
RETRYABLE_SAGEMAKER_ERRORS = frozenset({"ThrottlingException", "ResourceLimitExceeded"})
_ARN = re.compile(r"arn:aws[a-zA-Z-]*:[^\s'\"]+")
MISMATCH_REASON = "request does not match its job record"
NOT_CONFIGURED_REASON = "retraining is not configured on this launch handler"
JOB_SHAPING_FIELDS = (
    "tenant_id",
    "algorithm_id",
    "dataset_key",
    "dataset_type",
    "validation_key",
    "hyperparameters",
    "instance_type",
    "instance_count",
    "max_runtime_seconds",
    "use_spot",
    "tuning",
    "retraining",
)
"""The request's fields that shape the SageMaker job; each must equal the job record's."""


class Outcome(StrEnum):
    """What the handler did with one message (the message is acknowledged in every case)."""

    LAUNCHED = "LAUNCHED"
    ALREADY_HANDLED = "ALREADY_HANDLED"
    DEFERRED = "DEFERRED"
    REJECTED = "REJECTED"
    FAILED = "FAILED"
    DEAD_LETTERED = "DEAD_LETTERED"
    SKIPPED = "SKIPPED"
    """A retraining trigger whose run was skipped (recorded with the reason)."""
    IGNORED = "IGNORED"
    """A retraining trigger of a policy that is not active."""


@dataclass(frozen=True)
class SageMakerApi:
    """The SageMaker calls and fields that create and find one kind of job."""

    kind: JobKind
    label: str
    create: str
    describe: str
    name_field: str
    arn_field: str


SAGEMAKER_APIS: dict[JobKind, SageMakerApi] = {
    JobKind.TRAINING: SageMakerApi(
        kind=JobKind.TRAINING,
        label="Training job",
        create="create_training_job",
        describe="describe_training_job",
        name_field="TrainingJobName",
        arn_field="TrainingJobArn",
    ),
    JobKind.TUNING: SageMakerApi(
        kind=JobKind.TUNING,
        label="Tuning job",
        create="create_hyper_parameter_tuning_job",
        describe="describe_hyper_parameter_tuning_job",
        name_field="HyperParameterTuningJobName",
        arn_field="HyperParameterTuningJobArn",
    ),
}


@dataclass(frozen=True)
class Target:
    """The SageMaker job one request becomes: its kind's calls and its name."""

    api: SageMakerApi
    name: str

    @classmethod
    def of(cls, job: Job) -> Target:
        """A training job named by the job id, or a tuning job named ``tuning_job_name``."""
        if job.kind == JobKind.TUNING:
            return cls(
                SAGEMAKER_APIS[JobKind.TUNING], job.tuning_job_name or tuning_job_name(job.job_id)
            )
        return cls(SAGEMAKER_APIS[JobKind.TRAINING], job.job_id)


@dataclass
class LaunchService:
    """Launches training requests; every AWS client and repository is injected."""

    settings: LaunchSettings
    tenants: TenantRepository
    jobs: JobRepository
    catalog: CatalogRepository
    sagemaker: Any
    sqs: Any
    planner: RetrainingPlanner | None = None
    """Plans retraining triggers (None: retraining not configured, triggers dead-lettered)."""
    s3: Any = None
    """Reads retraining manifests before launch (default: the planner's client)."""

    @classmethod
    def from_settings(
        cls, settings: LaunchSettings, session: boto3.Session | None = None
    ) -> LaunchService:
        """Build the service with boto3 clients from ``session`` (default: a new session)."""
        session = session or new_session()
        retries = Config(retries={"mode": "standard", "max_attempts": 3})
        s3 = session.client("s3")  # one client for the catalog, the manifests and the planner
        planner = None
        if settings.retraining_enabled:
            assert settings.retraining_policies_table and settings.retraining_runs_table
            assert settings.models_table and settings.deployments_table
            planner = RetrainingPlanner.from_tables(
                session=session,
                policies_table=settings.retraining_policies_table,
                runs_table=settings.retraining_runs_table,
                jobs_table=settings.jobs_table,
                models_table=settings.models_table,
                deployments_table=settings.deployments_table,
                tenants_table=settings.tenants_table,
                data_bucket=settings.data_bucket,
                data_key_arn=settings.manifest_key_arn,
                max_trigger_age_hours=settings.max_trigger_age_hours,
                s3=s3,
            )
        return cls(
            settings=settings,
            tenants=TenantRepository.from_table_name(settings.tenants_table, session),
            jobs=JobRepository.from_table_name(settings.jobs_table, session),
            catalog=CatalogRepository(s3, settings.catalog_bucket, settings.catalog_cache_seconds),
            sagemaker=session.client("sagemaker", config=retries),
            sqs=session.client("sqs"),
            planner=planner,
            s3=s3,
        )

    @tracer.capture_method
    def handle(self, message: QueueMessage) -> Outcome:
        """Process one message; raises to leave it on the queue for another attempt."""
        try:
            return self._handle(message)
        except Exception as error:
            if message.receive_count >= self.settings.max_receive_count:
                self._mark_dead_lettered(message, error)
            raise

    def _handle(self, message: QueueMessage) -> Outcome:
        if is_retraining_trigger(message.body):
            return self._handle_trigger(message)
        request = self._parse(message)
        if request is None:
            return Outcome.DEAD_LETTERED
        with logger.append_context_keys(
            tenant_id=request.tenant_id, job_id=request.job_id, kind=request.kind.value
        ):
            return self._launch(message, request)

    def _handle_trigger(self, message: QueueMessage) -> Outcome:
        """A retraining schedule's trigger: plan the run, then launch it like any request."""
        try:
            trigger = RetrainingTrigger.model_validate_json(message.body)
        except ValidationError as error:
            reason = "unreadable retraining trigger: " + "; ".join(describe_schema_errors(error))
            self._dead_letter(message, reason)
            return Outcome.DEAD_LETTERED
        if self.planner is None:
            self._dead_letter(message, NOT_CONFIGURED_REASON)
            return Outcome.DEAD_LETTERED
        with logger.append_context_keys(
            tenant_id=trigger.tenant_id, policy_id=trigger.policy_id, slot=iso_utc(trigger.slot)
        ):
            planned = self.planner.plan(trigger, utc_now())
            if planned.outcome in {PlanOutcome.FORGED, PlanOutcome.STALE}:
                self._dead_letter(message, planned.reason)
                return Outcome.DEAD_LETTERED
            if planned.outcome == PlanOutcome.IGNORED:
                metrics.add_metric(name="RetrainingTriggersIgnored", unit=MetricUnit.Count, value=1)
                logger.info("Retraining trigger ignored", reason=planned.reason)
                return Outcome.IGNORED
            if planned.outcome == PlanOutcome.SKIPPED or planned.request is None:
                metrics.add_metric(name="RetrainingRunsSkipped", unit=MetricUnit.Count, value=1)
                logger.info("Retraining run skipped", reason=planned.reason)
                return Outcome.SKIPPED
            request = planned.request
            with logger.append_context_keys(job_id=request.job_id, kind=request.kind.value):
                outcome = self._launch(message, request)
            if outcome == Outcome.LAUNCHED:
                metrics.add_metric(name="RetrainingRunsLaunched", unit=MetricUnit.Count, value=1)
            return outcome

    def _fail_run(self, request: TrainingRequest, reason: str) -> None:
        """A retraining job that will not run: its run becomes FAILED with the job's reason."""
        if request.retraining is None or self.planner is None:
            return
        try:
            self.planner.fail_run(
                request.tenant_id, request.retraining.run_id, reason, job_id=request.job_id
            )
        except Exception:
            logger.exception("Could not mark the retraining run FAILED")

    def _parse(self, message: QueueMessage) -> TrainingRequest | None:
        try:
            return TrainingRequest.model_validate_json(message.body)
        except ValidationError as error:
            problems = describe_schema_errors(error)
        reason = "unreadable training request: " + "; ".join(problems)
        self._dead_letter(message, reason)
        self._fail_unreadable(message.body, reason)
        return None

    def _fail_unreadable(self, body: str, reason: str) -> None:
        """Tell the tenant, when the broken body still names a queued job of a valid tenant."""
        try:
            data = json.loads(body)
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        if is_retraining_trigger(body):
            return  # a trigger names a policy, not a job: nothing queued to fail
        tenant_id, job_id = data.get("tenant_id"), data.get("job_id")
        if not (
            isinstance(tenant_id, str)
            and isinstance(job_id, str)
            and is_job_id_of_tenant(job_id, tenant_id)
        ):
            return
        # A tenant session can send the queue anything: only a body that also carries the
        # record's submission time (to the millisecond, which no other tenant can read) may fail
        # the job, so a forged broken message can't cancel another tenant's job.
        job = self.jobs.get(tenant_id, job_id)
        if job is None or not _same_time(data.get("submitted_at"), job.created_at):
            logger.warning("Unreadable request names a job it does not match", job_id=job_id)
            return
        self.jobs.transition(
            tenant_id,
            job_id,
            JobStatus.FAILED,
            from_statuses={JobStatus.QUEUED},
            failure_reason="The platform could not read this job's request, so it was not "
            "started; it was set aside for the platform team. Please submit the job again.",
        )
        logger.warning("Unreadable request names a job", tenant_id=tenant_id, job_id=job_id)

    def _dead_letter(self, message: QueueMessage, reason: str) -> None:
        dead_letter(
            self.sqs,
            self.settings.requests_dlq_url,
            message,
            reason,
            handler=HANDLER_NAME,
            logger=logger,
            metrics=metrics,
        )

    def _launch(self, message: QueueMessage, request: TrainingRequest) -> Outcome:
        job = self.jobs.get(request.tenant_id, request.job_id)
        if job is None:
            self._dead_letter(message, "no job record for this request")
            return Outcome.DEAD_LETTERED
        if job.status != JobStatus.QUEUED:
            logger.info("Job already handled", status=job.status.value)
            return Outcome.ALREADY_HANDLED
        differing = mismatched_fields(request, job)
        if differing:
            return self._mismatch(message, differing)
        target = Target.of(job)
        deferrals = message.int_attribute(DEFERRALS_ATTRIBUTE)
        attempts = deferrals + message.receive_count
        if message.receive_count > 1:
            arn = self._existing_arn(target)
            if arn is not None:
                return self._mark_starting(request, target, arn, attempts)
        result = check_request(request, tenants=self.tenants, jobs=self.jobs, catalog=self.catalog)
        if result.only_transient:
            return self._defer(message, request, result, deferrals)
        if not result.ok:
            return self._reject(request, result.reason, attempts, result)
        algorithm, problem = self._algorithm_and_data(request)
        if algorithm is None or problem is not None:
            return self._reject(request, problem or "", attempts)
        job_request = self._build(request, algorithm, target)
        try:
            response = getattr(self.sagemaker, target.api.create)(**job_request)
        except ClientError as error:
            return self._create_failed(message, request, target, error, attempts)
        return self._mark_starting(request, target, str(response[target.api.arn_field]), attempts)

    def _build(
        self, request: TrainingRequest, algorithm: CatalogEntry, target: Target
    ) -> dict[str, Any]:
        if target.api.kind == JobKind.TUNING:
            return build_create_tuning_job_request(
                request, algorithm, self.settings, name=target.name
            )
        return build_create_training_job_request(request, algorithm, self.settings)

    def _algorithm_and_data(
        self, request: TrainingRequest
    ) -> tuple[CatalogEntry | None, str | None]:
        """The catalog entry, and why the job may not start after all (None: it may)."""
        algorithm = self.catalog.get(request.algorithm_id)
        if algorithm is None:  # removed from the catalog between the check and now
            return None, f"Algorithm '{request.algorithm_id}' is not in the catalog."
        return algorithm, self._manifest_problem(request)

    def _manifest_problem(self, request: TrainingRequest) -> str | None:
        """Why a ``ManifestFile`` request's manifest may not be trained on (None: it may)."""
        s3 = self.s3 if self.s3 is not None else getattr(self.planner, "s3", None)
        if s3 is None:
            return None if request.dataset_type == DatasetType.S3_PREFIX else NOT_CONFIGURED_REASON
        return manifest_problem(s3, self.settings.data_bucket, request)

    def _existing_arn(self, target: Target) -> str | None:
        """The ARN of the SageMaker job called ``target.name``, or None when there is none."""
        try:
            response = getattr(self.sagemaker, target.api.describe)(
                **{target.api.name_field: target.name}
            )
        except ClientError as error:
            if _error_code(error) in {"ValidationException", "ResourceNotFound"}:
                return None
            raise
        return str(response[target.api.arn_field])

    def _mark_starting(
        self, request: TrainingRequest, target: Target, arn: str | None, attempts: int
    ) -> Outcome:
        """QUEUED -> STARTING with the job's ARN (None: "already exists", yet not found)."""
        tuning = target.api.kind == JobKind.TUNING
        moved = self.jobs.transition(
            request.tenant_id,
            request.job_id,
            JobStatus.STARTING,
            from_statuses={JobStatus.QUEUED},
            launch_attempts=attempts,
            training_job_arn=None if tuning else arn,
            tuning_job_arn=arn if tuning else None,
        )
        if not moved:
            logger.info("Job record already past QUEUED; SageMaker events got there first")
        metrics.add_metric(name="JobsLaunched", unit=MetricUnit.Count, value=1)
        if tuning:
            metrics.add_metric(name="TuningJobsLaunched", unit=MetricUnit.Count, value=1)
        logger.info(
            f"{target.api.label} created", sagemaker_name=target.name, arn=arn, attempts=attempts
        )
        return Outcome.LAUNCHED

    def _create_failed(
        self,
        message: QueueMessage,
        request: TrainingRequest,
        target: Target,
        error: ClientError,
        attempts: int,
    ) -> Outcome:
        code = _error_code(error)
        text = str(error.response.get("Error", {}).get("Message", ""))
        if code == "ResourceInUse" or (code == "ValidationException" and "already exists" in text):
            return self._mark_starting(request, target, self._existing_arn(target), attempts)
        if code in RETRYABLE_SAGEMAKER_ERRORS:
            metrics.add_metric(name="LaunchRetries", unit=MetricUnit.Count, value=1)
            retry_later(
                self.sqs,
                self.settings.requests_queue_url,
                message,
                base=self.settings.backoff_base_seconds,
                cap=self.settings.backoff_max_seconds,
                why=code,
                logger=logger,
                cause=error,
            )
        if code == "ValidationException":
            reason = "SageMaker did not accept the job: " + _ARN.sub("<arn>", text)
            if self.jobs.transition(
                request.tenant_id,
                request.job_id,
                JobStatus.FAILED,
                from_statuses={JobStatus.QUEUED},
                failure_reason=reason,
                launch_attempts=attempts,
            ):
                self._fail_run(request, reason)
            metrics.add_metric(name="LaunchesRefused", unit=MetricUnit.Count, value=1)
            logger.error(
                "SageMaker refused the job",
                operation=target.api.create,
                error_code=code,
                error=text,
            )
            return Outcome.FAILED
        raise error

    def _mismatch(self, message: QueueMessage, differing: list[str]) -> Outcome:
        """The message disagrees with its job record on what the job runs: park the message and
        leave the record alone. Anyone who can send to the queue could forge such a message for
        another tenant's queued job; marking that job FAILED would let the forgery cancel it."""
        self._dead_letter(message, MISMATCH_REASON)
        metrics.add_metric(name="RequestsMismatched", unit=MetricUnit.Count, value=1)
        logger.warning("Request does not match its job record", fields=differing)
        return Outcome.DEAD_LETTERED

    def _defer(
        self,
        message: QueueMessage,
        request: TrainingRequest,
        result: ValidationResult,
        deferrals: int,
    ) -> Outcome:
        if deferrals >= self.settings.max_deferrals:
            reason = (
                f"{result.reason} It waited through {deferrals} checks without a free slot, "
                "so it was not started; submit it again when a running job has finished."
            )
            return self._reject(request, reason, deferrals + message.receive_count, result)
        delay = backoff_seconds(
            deferrals + 1,
            base=self.settings.defer_base_seconds,
            cap=self.settings.defer_max_seconds,
        )
        self.sqs.send_message(
            QueueUrl=self.settings.requests_queue_url,
            MessageBody=message.body,
            DelaySeconds=delay,
            MessageAttributes={
                DEFERRALS_ATTRIBUTE: {"DataType": "Number", "StringValue": str(deferrals + 1)}
            },
        )
        self.jobs.set_launch_attempts(
            request.tenant_id, request.job_id, deferrals + message.receive_count
        )
        metrics.add_metric(name="JobsDeferred", unit=MetricUnit.Count, value=1)
        logger.info("Tenant at its running-jobs limit; request deferred", delay_seconds=delay)
        return Outcome.DEFERRED

    def _reject(
        self,
        request: TrainingRequest,
        reason: str,
        attempts: int,
        result: ValidationResult | None = None,
    ) -> Outcome:
        if self.jobs.transition(
            request.tenant_id,
            request.job_id,
            JobStatus.REJECTED,
            from_statuses={JobStatus.QUEUED},
            failure_reason=reason,
            launch_attempts=attempts,
        ):
            self._fail_run(request, reason)
        metrics.add_metric(name="JobsRejected", unit=MetricUnit.Count, value=1)
        codes = sorted(result.codes) if result else []
        logger.info("Job rejected", reason=reason, problems=codes)
        return Outcome.REJECTED

    def _mark_dead_lettered(self, message: QueueMessage, error: Exception) -> None:
        """Last attempt failed: SQS will move the message to the DLQ; the job record says so
        (and a retraining job's run)."""
        request = self._request_of(message)
        if request is None:
            return
        reason = exhausted_reason("start the job", message, error)
        try:
            job = self.jobs.get(request.tenant_id, request.job_id)
            if job is None or mismatched_fields(request, job):
                return  # not this record's request: the record is not the message's to fail
            moved = self.jobs.transition(
                request.tenant_id,
                request.job_id,
                JobStatus.FAILED,
                from_statuses={JobStatus.QUEUED},
                failure_reason=reason,
            )
        except Exception:
            logger.exception("Could not mark the job FAILED before the dead-letter queue")
            return
        if moved:
            self._fail_run(request, reason)
        metrics.add_metric(name="LaunchesExhausted", unit=MetricUnit.Count, value=1)
        logger.error("Last attempt failed; message goes to the dead-letter queue", reason=reason)

    def _request_of(self, message: QueueMessage) -> TrainingRequest | None:
        """The request a message stands for: its body, or for a retraining trigger that matches
        its policy the request its job record was created from (None: neither)."""
        try:
            if not is_retraining_trigger(message.body):
                return TrainingRequest.model_validate_json(message.body)
            if self.planner is None:
                return None
            return self.planner.request_of(RetrainingTrigger.model_validate_json(message.body))
        except ValidationError:
            return None
        except Exception:
            logger.exception("Could not read the job record of a retraining trigger")
            return None


def mismatched_fields(request: TrainingRequest, job: Job) -> list[str]:
    """The job-shaping fields on which ``request`` and its record ``job`` differ.

    The SageMaker request is built from the message, which a tenant session can send: it must
    say exactly what the portal recorded, so a message can launch only the job its record
    describes (and the record's kind and slots, which the quota counts, follow from ``tuning``).
    """
    return [name for name in JOB_SHAPING_FIELDS if getattr(request, name) != getattr(job, name)]


def _same_time(value: object, expected: datetime) -> bool:
    """True when ``value`` is an ISO timestamp of the same millisecond as ``expected``."""
    if not isinstance(value, str):
        return False
    try:
        return iso_utc(parse_iso_utc(value)) == iso_utc(expected)
    except ValueError:
        return False


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
