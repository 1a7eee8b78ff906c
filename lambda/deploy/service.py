"""The deploy handler's logic, one deployment request at a time.

For each message: read it (unreadable -> dead-letter queue with the reason), match it to its
``Deployment`` record (no record, or fields that differ from it -> dead-letter queue; a
``request_id`` that is not the record's latest -> ignored as stale), then:

- **deploy**: validate again (``validate_deployment``: tenant active, version approved and the
  tenant's, endpoint quota, serverless rules). Refused: the record says why (FAILED, or back to
  IN_SERVICE on the version that serves). Else create idempotently the model, the endpoint
  configuration and the alarms, write CREATING or UPDATING with their names (before the
  endpoint call, so the endpoint's events always find them), then ``CreateEndpoint``, or for an
  existing endpoint ``UpdateEndpoint`` blue/green with automatic rollback on the rollback
  alarms; a new real-time endpoint also gets its data-quality baseline job.
- **undeploy**: delete the monitoring schedule and job definition, the endpoint, its alarms,
  configuration and model; record DELETED.
- **monitor** (the job-events handler's word that a baseline completed): check it
  (``DescribeProcessingJob``), then create the data-quality job definition and the monitoring
  schedule.

Names come from ``resource_name`` over (deployment id, request id), so a redelivered request
creates nothing twice. SageMaker throttling and account limits leave the message on the queue
with back-off; on the last receive before the dead-letter queue the record says so. Anything
else unexpected raises: ``BatchProcessor`` reports the message in ``batchItemFailures``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from botocore.config import Config
from botocore.exceptions import ClientError
from pydantic import ValidationError
from training_common import (
    ModelRepository,
    ModelVersion,
    QueueMessage,
    TenantRepository,
    describe_schema_errors,
    new_session,
    utc_now,
)
from training_common.deployments import (
    Deployment,
    DeploymentAction,
    DeploymentChange,
    DeploymentRequest,
    DeploymentStatus,
    EndpointKind,
    back_to_serving,
    capture_prefix,
    close_intervals,
)
from training_common.repositories import DeploymentRepository
from training_common.sqs_handler import dead_letter, exhausted_reason, retry_later
from training_common.validation import validate_deployment

from . import monitoring, resources
from .images import model_monitor_image_uri
from .sagemaker_calls import (
    RETRYABLE_CODES,
    delete_if_present,
    describe_or_none,
    ensure,
    error_code,
    error_text,
    is_already_there,
    without_arns,
)
from .settings import DeploySettings

logger = Logger()
metrics = Metrics()
tracer = Tracer()

HANDLER_NAME = "deploy"
MISMATCH_REASON = "request does not match its deployment record"
NO_RECORD_REASON = "no deployment record for this request"
IN_FLIGHT = frozenset(
    {DeploymentStatus.PENDING, DeploymentStatus.CREATING, DeploymentStatus.UPDATING}
)
"""States in which a deploy request is still being carried out (a redelivery continues it)."""
BUSY_ENDPOINT_STATUSES = frozenset(
    {"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting", "OutOfService"}
)
"""Endpoint states in which SageMaker accepts no update: wait and try again."""


class Outcome(StrEnum):
    """What the handler did with one message (the message is acknowledged in every case)."""

    CREATING = "CREATING"
    UPDATING = "UPDATING"
    REJECTED = "REJECTED"
    UNDEPLOYED = "UNDEPLOYED"
    MONITORED = "MONITORED"
    STALE = "STALE"
    ALREADY_HANDLED = "ALREADY_HANDLED"
    IGNORED = "IGNORED"
    DEAD_LETTERED = "DEAD_LETTERED"


@dataclass
class DeployService:
    """Carries out deployment requests; every AWS client and repository is injected.

    ``sagemaker`` is a boto3 SageMaker client or anything with the same methods (the local
    simulator passes a shim for the calls moto lacks)."""

    settings: DeploySettings
    tenants: TenantRepository
    models: ModelRepository
    deployments: DeploymentRepository
    sagemaker: Any
    cloudwatch: Any
    sqs: Any

    @classmethod
    def from_settings(
        cls, settings: DeploySettings, session: boto3.Session | None = None
    ) -> DeployService:
        """Build the service with boto3 clients from ``session`` (default: a new session)."""
        session = session or new_session()
        retries = Config(retries={"mode": "standard", "max_attempts": 3})
        return cls(
            settings=settings,
            tenants=TenantRepository.from_table_name(settings.tenants_table, session),
            models=ModelRepository.from_table_name(settings.models_table, session),
            deployments=DeploymentRepository.from_table_name(settings.deployments_table, session),
            sagemaker=session.client("sagemaker", config=retries),
            cloudwatch=session.client("cloudwatch", config=retries),
            sqs=session.client("sqs"),
        )

    @property
    def image_uri(self) -> str:
        region = self.settings.region or str(self.sagemaker.meta.region_name)
        return model_monitor_image_uri(region, self.settings.model_monitor_image_uri)

    @tracer.capture_method
    def handle(self, message: QueueMessage) -> Outcome:
        """Process one message; raises to leave it on the queue for another attempt."""
        try:
            return self._handle(message)
        except Exception as error:
            if message.receive_count >= self.settings.max_receive_count:
                self._mark_exhausted(message, error)
            raise

    def _handle(self, message: QueueMessage) -> Outcome:
        try:
            request = DeploymentRequest.model_validate_json(message.body)
        except ValidationError as error:
            reason = "unreadable deployment request: " + "; ".join(describe_schema_errors(error))
            return self._dead_letter(message, reason)
        with logger.append_context_keys(
            tenant_id=request.tenant_id,
            deployment_id=request.deployment_id,
            action=request.action.value,
            request_id=request.request_id,
        ):
            record = self.deployments.get(request.tenant_id, request.deployment_id)
            if record is None:
                return self._dead_letter(message, NO_RECORD_REASON)
            if request.action == DeploymentAction.MONITOR:
                return self._monitor(record)
            if record.request_id != request.request_id:
                logger.info("Request is not the record's latest; ignored")
                metrics.add_metric(name="RequestsStale", unit=MetricUnit.Count, value=1)
                return Outcome.STALE
            if mismatched_fields(request, record):
                # Anyone who can send to the queue could forge a message; it must say exactly
                # what the portal recorded, or it is parked and the record left alone.
                logger.warning(
                    "Request differs from its record", fields=mismatched_fields(request, record)
                )
                return self._dead_letter(message, MISMATCH_REASON)
            if request.action == DeploymentAction.UNDEPLOY:
                return self._undeploy(record)
            return self._deploy(message, request, record)

    # Deploy ------------------------------------------------------------------------------

    def _deploy(
        self, message: QueueMessage, request: DeploymentRequest, record: Deployment
    ) -> Outcome:
        if record.status not in IN_FLIGHT:
            logger.info("Request already handled", status=record.status.value)
            return Outcome.ALREADY_HANDLED
        assert request.model_job_id is not None
        model = self.models.get(request.tenant_id, request.model_job_id)
        if record.status == DeploymentStatus.PENDING:
            result = validate_deployment(
                request,
                tenant=self.tenants.get(request.tenant_id),
                model=model,
                deployments=self.deployments.list_all(request.tenant_id),
            )
            if not result.ok:
                metrics.add_metric(name="DeploymentsRejected", unit=MetricUnit.Count, value=1)
                logger.info("Deployment refused", problems=sorted(result.codes))
                self._refuse(record, result.reason)
                return Outcome.REJECTED
        assert model is not None
        try:
            return self._create(message, record, model)
        except ClientError as error:
            return self._sagemaker_error(message, record, error)

    def _create(self, message: QueueMessage, record: Deployment, model: ModelVersion) -> Outcome:
        config_name = self._ensure_resources(record, model)
        endpoint = describe_or_none(
            self.sagemaker.describe_endpoint, EndpointName=record.endpoint_name
        )
        current_config = None if endpoint is None else endpoint.get("EndpointConfigName")
        new_endpoint = endpoint is None or (
            current_config == config_name and record.serving_model_job_id is None
        )
        if endpoint is not None and current_config != config_name:
            self._wait_for(message, record, str(endpoint.get("EndpointStatus", "")))
        status = DeploymentStatus.CREATING if new_endpoint else DeploymentStatus.UPDATING
        baseline = None
        if record.kind == EndpointKind.REALTIME and (new_endpoint or not record.baseline_job_name):
            baseline = resources.baseline_job_name(record)
        if self._record_started(record, model, status, baseline) is None:
            return Outcome.STALE
        if endpoint is None:
            self._create_endpoint(record, config_name)
        elif current_config != config_name:
            self._update_endpoint(record, config_name, endpoint)
        if baseline is not None:
            job = monitoring.create_baseline_job_request(
                self.settings, record, model, self.image_uri
            )
            ensure(
                self.sagemaker.describe_processing_job,
                self.sagemaker.create_processing_job,
                {"ProcessingJobName": baseline},
                job,
            )
        metrics.add_metric(
            name="EndpointsCreated" if new_endpoint else "EndpointsUpdated",
            unit=MetricUnit.Count,
            value=1,
        )
        logger.info(
            "Deployment started",
            status=status.value,
            endpoint_config=config_name,
            baseline=baseline,
        )
        return Outcome.CREATING if new_endpoint else Outcome.UPDATING

    def _ensure_resources(self, record: Deployment, model: ModelVersion) -> str:
        """The model, the endpoint configuration and the alarms; the configuration's name."""
        settings, sm = self.settings, self.sagemaker
        model_request = resources.create_model_request(settings, record, model)
        ensure(
            sm.describe_model,
            sm.create_model,
            {"ModelName": model_request["ModelName"]},
            model_request,
        )
        config_request = resources.create_endpoint_config_request(settings, record)
        config_name = str(config_request["EndpointConfigName"])
        ensure(
            sm.describe_endpoint_config,
            sm.create_endpoint_config,
            {"EndpointConfigName": config_name},
            config_request,
        )
        for alarm in resources.put_metric_alarm_requests(settings, record):
            self.cloudwatch.put_metric_alarm(**alarm)
        return config_name

    def _wait_for(self, message: QueueMessage, record: Deployment, status: str) -> None:
        """Back off while the endpoint can't take an update; a failed one is deleted first
        (SageMaker updates no failed endpoint), so the next attempt creates it afresh."""
        if status == "Failed":
            self.sagemaker.delete_endpoint(EndpointName=record.endpoint_name)
            self._back_off(message, "the failed endpoint is being deleted")
        if status in BUSY_ENDPOINT_STATUSES:
            self._back_off(message, f"the endpoint is {status}")

    def _create_endpoint(self, record: Deployment, config_name: str) -> None:
        try:
            self.sagemaker.create_endpoint(
                EndpointName=record.endpoint_name,
                EndpointConfigName=config_name,
                Tags=resources.tags(record),
            )
        except ClientError as error:
            if not is_already_there(error):
                raise

    def _update_endpoint(
        self, record: Deployment, config_name: str, endpoint: dict[str, Any]
    ) -> None:
        update: dict[str, Any] = {
            "EndpointName": record.endpoint_name,
            "EndpointConfigName": config_name,
        }
        if record.kind == EndpointKind.REALTIME and _serves_realtime(self.sagemaker, endpoint):
            # Deployment guardrails are for instance-based endpoints only.
            update["DeploymentConfig"] = resources.deployment_config(self.settings, record)
        self.sagemaker.update_endpoint(**update)

    def _record_started(
        self,
        record: Deployment,
        model: ModelVersion,
        status: DeploymentStatus,
        baseline: str | None,
    ) -> Deployment | None:
        names = {
            "model_name": resources.model_name(record),
            "endpoint_config_name": resources.endpoint_config_name(record),
            "model_version": model.model_version,
            "model_package_arn": model.model_package_arn,
            "alarm_names": resources.alarm_names(self.settings, record),
        }
        if record.kind == EndpointKind.REALTIME:
            names["capture_prefix"] = capture_prefix(record.tenant_id, record.endpoint_name)
        if baseline is not None:
            names["baseline_job_name"] = baseline

        def change(current: Deployment) -> Deployment | None:
            if current.request_id != record.request_id or current.status not in IN_FLIGHT:
                return None
            history = current.history
            if current.status != status:
                history = [
                    *history,
                    DeploymentChange(
                        status=status,
                        at=utc_now(),
                        model_job_id=current.model_job_id,
                        model_version=model.model_version,
                    ),
                ]
            return current.model_copy(update={**names, "status": status, "history": history})

        return self.deployments.update(record.tenant_id, record.deployment_id, change)

    def _refuse(self, record: Deployment, reason: str) -> Deployment | None:
        """The record after a refused or failed request: FAILED, or IN_SERVICE on what serves."""
        config = None
        if record.serving_model_job_id is not None:
            config = describe_or_none(
                self.sagemaker.describe_endpoint_config,
                EndpointConfigName=_serving_config(self, record),
            )

        def change(current: Deployment) -> Deployment | None:
            if current.request_id != record.request_id or current.status not in IN_FLIGHT:
                return None
            return back_to_serving(current, reason=reason, at=utc_now(), endpoint_config=config)

        return self.deployments.update(record.tenant_id, record.deployment_id, change)

    def _sagemaker_error(
        self, message: QueueMessage, record: Deployment, error: ClientError
    ) -> Outcome:
        code = error_code(error)
        if code in RETRYABLE_CODES:
            metrics.add_metric(name="DeployRetries", unit=MetricUnit.Count, value=1)
            self._back_off(message, f"SageMaker answered {code}", error)
        if code == "ValidationException":
            reason = "SageMaker did not accept the deployment: " + without_arns(error_text(error))
            logger.error(
                "SageMaker refused the deployment", error_code=code, error=error_text(error)
            )
            metrics.add_metric(name="DeploymentsRefused", unit=MetricUnit.Count, value=1)
            self._refuse(record, reason)
            return Outcome.REJECTED
        raise error

    # Undeploy ----------------------------------------------------------------------------

    def _undeploy(self, record: Deployment) -> Outcome:
        if record.status == DeploymentStatus.DELETED:
            # SageMaker's "endpoint deleted" event can reach the job-events handler, which
            # records DELETED, before this request's cleanup is done; a retry of the request
            # (the same request id: a new deploy would have replaced it) finishes it. Every
            # delete is idempotent.
            self._delete_resources(record)
            return Outcome.ALREADY_HANDLED
        if record.status != DeploymentStatus.UNDEPLOYING:
            return Outcome.STALE
        self._delete_resources(record)
        now = utc_now()

        def change(current: Deployment) -> Deployment | None:
            if (
                current.request_id != record.request_id
                or current.status != DeploymentStatus.UNDEPLOYING
            ):
                return None
            return current.model_copy(
                update={
                    "status": DeploymentStatus.DELETED,
                    "service_intervals": close_intervals(current.service_intervals, now),
                    "monitoring_schedule_name": None,
                    "alarm_names": [],
                    "serving_model_job_id": None,
                    "serving_model_version": None,
                    "history": [
                        *current.history,
                        DeploymentChange(status=DeploymentStatus.DELETED, at=now),
                    ],
                }
            )

        self.deployments.update(record.tenant_id, record.deployment_id, change)
        metrics.add_metric(name="EndpointsDeleted", unit=MetricUnit.Count, value=1)
        logger.info("Deployment undeployed", endpoint=record.endpoint_name)
        return Outcome.UNDEPLOYED

    def _delete_resources(self, record: Deployment) -> None:
        """Delete what serves the deployment: monitoring schedule and job definition, endpoint,
        alarms, endpoint configuration and model (each only if present)."""
        sm = self.sagemaker
        schedule = record.monitoring_schedule_name or resources.schedule_name(record)
        delete_if_present(sm.delete_monitoring_schedule, MonitoringScheduleName=schedule)
        if record.baseline_job_name:
            delete_if_present(
                sm.delete_data_quality_job_definition,
                JobDefinitionName=resources.job_definition_name(record, record.baseline_job_name),
            )
        delete_if_present(sm.delete_endpoint, EndpointName=record.endpoint_name)
        alarms = record.alarm_names or resources.alarm_names(self.settings, record)
        self.cloudwatch.delete_alarms(AlarmNames=alarms)
        if record.endpoint_config_name:
            delete_if_present(
                sm.delete_endpoint_config, EndpointConfigName=record.endpoint_config_name
            )
        if record.model_name:
            delete_if_present(sm.delete_model, ModelName=record.model_name)

    # Monitor -----------------------------------------------------------------------------

    def _monitor(self, record: Deployment) -> Outcome:
        """Create the job definition and schedule of the record's completed baseline. The
        message says only "look": every fact comes from the record and from SageMaker."""
        baseline = record.baseline_job_name
        if (
            record.kind != EndpointKind.REALTIME
            or baseline is None
            or record.status
            in {DeploymentStatus.DELETED, DeploymentStatus.UNDEPLOYING, DeploymentStatus.FAILED}
        ):
            logger.info("Nothing to monitor", status=record.status.value, baseline=baseline)
            return Outcome.IGNORED
        sm = self.sagemaker
        job = describe_or_none(sm.describe_processing_job, ProcessingJobName=baseline)
        if job is None or job.get("ProcessingJobStatus") != "Completed":
            logger.info("Baseline not completed; no schedule yet", baseline=baseline)
            return Outcome.IGNORED
        definition = monitoring.create_job_definition_request(
            self.settings, record, baseline, self.image_uri
        )
        definition_name = definition["JobDefinitionName"]
        ensure(
            sm.describe_data_quality_job_definition,
            sm.create_data_quality_job_definition,
            {"JobDefinitionName": definition_name},
            definition,
        )
        name = resources.schedule_name(record)
        schedule = describe_or_none(sm.describe_monitoring_schedule, MonitoringScheduleName=name)
        if schedule is None:
            try:
                sm.create_monitoring_schedule(
                    **monitoring.create_schedule_request(self.settings, record, definition_name)
                )
            except ClientError as error:
                if not is_already_there(error):
                    raise
        elif (
            schedule.get("MonitoringScheduleConfig", {}).get("MonitoringJobDefinitionName")
            != definition_name
        ):
            sm.update_monitoring_schedule(
                MonitoringScheduleName=name,
                MonitoringScheduleConfig=monitoring.monitoring_schedule_config(
                    self.settings, definition_name
                ),
            )

        def change(current: Deployment) -> Deployment | None:
            if (
                current.monitoring_schedule_name == name
                or current.status == DeploymentStatus.DELETED
            ):
                return None
            return current.model_copy(update={"monitoring_schedule_name": name})

        self.deployments.update(record.tenant_id, record.deployment_id, change)
        metrics.add_metric(name="MonitoringSchedulesCreated", unit=MetricUnit.Count, value=1)
        logger.info("Monitoring schedule in place", schedule=name, job_definition=definition_name)
        return Outcome.MONITORED

    # Queue -------------------------------------------------------------------------------

    def _back_off(self, message: QueueMessage, why: str, cause: Exception | None = None) -> None:
        retry_later(
            self.sqs,
            self.settings.requests_queue_url,
            message,
            base=self.settings.backoff_base_seconds,
            cap=self.settings.backoff_max_seconds,
            why=why,
            logger=logger,
            cause=cause,
        )

    def _dead_letter(self, message: QueueMessage, reason: str) -> Outcome:
        dead_letter(
            self.sqs,
            self.settings.dead_letter_queue_url,
            message,
            reason,
            handler=HANDLER_NAME,
            logger=logger,
            metrics=metrics,
        )
        return Outcome.DEAD_LETTERED

    def _mark_exhausted(self, message: QueueMessage, error: Exception) -> None:
        """Last attempt failed: SQS moves the message to the DLQ; the record says so."""
        try:
            request = DeploymentRequest.model_validate_json(message.body)
        except ValidationError:
            return
        reason = exhausted_reason(f"carry out the {request.action.value}", message, error)
        try:
            record = self.deployments.get(request.tenant_id, request.deployment_id)
            if (
                record is None
                or record.request_id != request.request_id
                or mismatched_fields(request, record)
            ):
                return
            if request.action == DeploymentAction.DEPLOY:
                self._refuse(record, reason)
            elif request.action == DeploymentAction.UNDEPLOY:
                self.deployments.update(
                    record.tenant_id,
                    record.deployment_id,
                    lambda current: (
                        current.model_copy(
                            update={
                                "status": DeploymentStatus.FAILED,
                                "failure_reason": reason,
                                "history": [
                                    *current.history,
                                    DeploymentChange(
                                        status=DeploymentStatus.FAILED, at=utc_now(), reason=reason
                                    ),
                                ],
                            }
                        )
                        if current.request_id == request.request_id
                        and current.status == DeploymentStatus.UNDEPLOYING
                        else None
                    ),
                )
        except Exception:
            logger.exception("Could not record the exhausted request")
            return
        metrics.add_metric(name="DeploymentsExhausted", unit=MetricUnit.Count, value=1)
        logger.error("Last attempt failed; message goes to the dead-letter queue", reason=reason)


def mismatched_fields(request: DeploymentRequest, record: Deployment) -> list[str]:
    """The fields on which a deploy request and its record differ (an undeploy must find its
    record undeploying or deleted)."""
    if request.action == DeploymentAction.UNDEPLOY:
        ok = record.status in {DeploymentStatus.UNDEPLOYING, DeploymentStatus.DELETED}
        return [] if ok else ["status"]
    return [
        name
        for name in ("model_job_id", "kind", "realtime", "serverless")
        if getattr(request, name) != getattr(record, name)
    ]


def _serves_realtime(sagemaker: Any, endpoint: dict[str, Any]) -> bool:
    """Whether the endpoint runs on instances now (its current configuration's variant)."""
    config = describe_or_none(
        sagemaker.describe_endpoint_config,
        EndpointConfigName=str(endpoint.get("EndpointConfigName")),
    )
    variants = (config or {}).get("ProductionVariants") or [{}]
    return not variants[0].get("ServerlessConfig")


def _serving_config(service: DeployService, record: Deployment) -> str:
    """The configuration the endpoint runs on now (the record's may already name the new one)."""
    endpoint = describe_or_none(
        service.sagemaker.describe_endpoint, EndpointName=record.endpoint_name
    )
    if endpoint is not None and endpoint.get("EndpointConfigName"):
        return str(endpoint["EndpointConfigName"])
    return str(record.endpoint_config_name)
