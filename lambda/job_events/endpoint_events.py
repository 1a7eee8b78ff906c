"""Deployment events: endpoint state changes, baseline jobs and monitoring runs, endpoint alarms.

- An endpoint event applies to its ``Deployment`` (tenant and deployment from the event's
  ``Tags``, else ``ListTags`` on the endpoint; never from the endpoint's name) when it is newer
  than the record's ``last_event_time`` and concerns the configuration the record asked for:
  InService -> IN_SERVICE on the requested version with a new service interval; Failed ->
  FAILED with SageMaker's reason (nothing serves: intervals closed); an update that came back on
  another configuration, or RollingBack / UpdateRollbackFailed -> IN_SERVICE on the version
  that still serves, with a reason naming the refused version; Deleting while UNDEPLOYING ->
  DELETED. Each of these notifies the tenant (a deterministic notification id: a redelivered
  event neither duplicates nor loses it).
- A processing job event of a deployment's baseline job (found by name among the tenant's
  deployments; the tenant is the name's prefix, checked against the record) that completed
  sends the internal ``monitor`` request to the deployment-requests queue (the deploy handler
  checks the baseline itself). A monitoring execution (``MonitoringScheduleArn``) that
  completed puts ``Violations`` (1 or 0) in ``TrainingPlatform/Monitoring`` for the tenant and
  the endpoint, the tenant from the schedule's tags.
- An alarm entering ALARM whose name starts with ``<ALARM_PREFIX>-`` notifies the tenant of its
  tags (``ListTagsForResource``), linking to the deployment.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import ClientError
from training_common import (
    JobStatus,
    Notification,
    is_tenant_id,
    iso_utc,
    utc_now,
)
from training_common.deployments import (
    DEPLOYMENT_TAG,
    MONITORING_METRICS_NAMESPACE,
    Deployment,
    DeploymentAction,
    DeploymentChange,
    DeploymentRequest,
    DeploymentStatus,
    back_to_serving,
    close_intervals,
    is_deployment_id,
    open_interval,
    open_service_interval,
    tenant_of_resource_name,
)
from training_common.repositories import DeploymentRepository

from .events import AlarmStateChangeEvent, EndpointStateChangeEvent, ProcessingJobStateChangeEvent
from .notify import Notifier
from .outcomes import BadEventError, Outcome, ignored, stale
from .settings import JobEventsSettings
from .telemetry import logger, metrics

SUBMITTED_BY = "job-events"
IN_SERVICE_KEY = "inservice"
FAILED_KEY = "failed"
ROLLBACK_KEYS = frozenset({"rollingback", "updaterollbackfailed"})
DELETING_KEYS = frozenset({"deleting", "deleted"})
PASSING_KEYS = frozenset({"creating", "updating", "systemupdating", "outofservice"})
"""Endpoint states on the way to another: nothing to record."""
KNOWN_KEYS = PASSING_KEYS | ROLLBACK_KEYS | DELETING_KEYS | {IN_SERVICE_KEY, FAILED_KEY}
STARTED = frozenset({DeploymentStatus.CREATING, DeploymentStatus.UPDATING})
"""Statuses in which the deploy handler has asked SageMaker for a change."""
VIOLATIONS_METRIC = "Violations"
"""1 for a monitoring run that found violations, else 0 (the data-quality alarm's metric)."""
WITH_VIOLATIONS = "completedwithviolations"
"""``ExitMessage`` (or status) prefix of a monitoring run that found violations, compared
without case or spaces."""


@dataclass
class DeploymentEvents:
    """Applies endpoint, processing job and alarm events (built when DEPLOYMENTS_TABLE is set)."""

    settings: JobEventsSettings
    deployments: DeploymentRepository
    notifier: Notifier
    sagemaker: Any
    cloudwatch: Any
    sqs: Any
    clock: Callable[[], datetime] = utc_now

    # Endpoints ----------------------------------------------------------------------------

    def endpoint(self, event: EndpointStateChangeEvent) -> Outcome:
        """Apply an endpoint state change to its deployment; raises BadEventError."""
        detail = event.detail
        key = detail.status_key
        if key not in KNOWN_KEYS:
            raise BadEventError(f"unknown SageMaker endpoint status {detail.endpoint_status!r}")
        if key in PASSING_KEYS:
            return ignored(Outcome.IGNORED, "Endpoint in passing state", status=key)
        tags = detail.tags
        if not (is_tenant_id(tags.get("tenant", "")) and tags.get(DEPLOYMENT_TAG)):
            tags = self._sagemaker_tags(event.endpoint_arn)
        tenant_id, deployment_id = tags.get("tenant", ""), tags.get(DEPLOYMENT_TAG, "")
        if not is_tenant_id(tenant_id) or not is_deployment_id(deployment_id):
            return ignored(
                Outcome.NOT_PLATFORM_JOB,
                "Ignoring an endpoint without tenant and deployment tags",
                endpoint=detail.endpoint_name,
            )
        at = event.event_time
        with logger.append_context_keys(tenant_id=tenant_id, deployment_id=deployment_id):
            record = self.deployments.get(tenant_id, deployment_id)
            if record is None:
                return ignored(Outcome.UNKNOWN_JOB, "Endpoint event for an unknown deployment")
            if record.endpoint_name != detail.endpoint_name:
                return ignored(
                    Outcome.NOT_PLATFORM_JOB,
                    "Endpoint event whose endpoint isn't the record's",
                    endpoint=detail.endpoint_name,
                )
            rollback = key in ROLLBACK_KEYS or (
                key == IN_SERVICE_KEY
                and record.status == DeploymentStatus.UPDATING
                and detail.endpoint_config_name != record.endpoint_config_name
            )
            serving_config = self._serving_config(event, record) if rollback else None
            updated = self.deployments.update(
                tenant_id,
                deployment_id,
                lambda current: self._next(current, event, serving_config),
            )
            if updated is None:
                current = self.deployments.get(tenant_id, deployment_id)
                if current is not None and _same_time(current.last_event_time, at):
                    # Our own earlier write: finish its notification (idempotent).
                    self._notify(current, at)
                return stale(
                    "Stale, duplicate or unrelated endpoint event ignored",
                    event_status=detail.endpoint_status,
                    event_time=iso_utc(at),
                    record_status=current.status.value if current else None,
                )
            logger.info("Deployment updated", status=updated.status.value)
            metrics.add_metric(name="DeploymentEventsApplied", unit=MetricUnit.Count, value=1)
            self._notify(updated, at)
            return Outcome.APPLIED

    def _next(
        self,
        record: Deployment,
        event: EndpointStateChangeEvent,
        serving_config: Mapping[str, Any] | None,
    ) -> Deployment | None:
        """The record after the event, or None when the event changes nothing."""
        detail, at = event.detail, event.event_time
        if record.last_event_time is not None and iso_utc(at) <= iso_utc(record.last_event_time):
            return None
        key = detail.status_key
        requested = detail.endpoint_config_name == record.endpoint_config_name
        updated: Deployment | None = None
        if key in DELETING_KEYS:
            if record.status != DeploymentStatus.UNDEPLOYING:
                return None
            updated = record.model_copy(
                update={
                    "status": DeploymentStatus.DELETED,
                    "service_intervals": close_intervals(record.service_intervals, at),
                    "serving_model_job_id": None,
                    "serving_model_version": None,
                    "history": [
                        *record.history,
                        DeploymentChange(status=DeploymentStatus.DELETED, at=at),
                    ],
                }
            )
        elif record.status not in STARTED:
            return None
        elif key == IN_SERVICE_KEY and requested:
            updated = record.model_copy(
                update={
                    "status": DeploymentStatus.IN_SERVICE,
                    "serving_model_job_id": record.model_job_id,
                    "serving_model_version": record.model_version,
                    "failure_reason": None,
                    "service_intervals": open_interval(
                        record.service_intervals,
                        kind=record.kind,
                        realtime=record.realtime,
                        serverless=record.serverless,
                        start=at,
                    ),
                    "history": [
                        *record.history,
                        DeploymentChange(
                            status=DeploymentStatus.IN_SERVICE,
                            at=at,
                            model_job_id=record.model_job_id,
                            model_version=record.model_version,
                        ),
                    ],
                }
            )
        elif key == FAILED_KEY and (requested or detail.endpoint_config_name is None):
            reason = detail.failure_reason or "SageMaker gave no reason"
            updated = record.model_copy(
                update={
                    "status": DeploymentStatus.FAILED,
                    "failure_reason": reason,
                    "serving_model_job_id": None,
                    "serving_model_version": None,
                    "service_intervals": close_intervals(record.service_intervals, at),
                    "history": [
                        *record.history,
                        DeploymentChange(
                            status=DeploymentStatus.FAILED,
                            at=at,
                            model_job_id=record.model_job_id,
                            model_version=record.model_version,
                            reason=reason,
                        ),
                    ],
                }
            )
        elif key in ROLLBACK_KEYS or (
            key == IN_SERVICE_KEY and record.status == DeploymentStatus.UPDATING
        ):
            updated = back_to_serving(
                record,
                reason=_rollback_reason(record, detail.failure_reason),
                at=at,
                endpoint_config=serving_config,
            )
        if updated is None:
            return None
        return updated.model_copy(update={"last_event_time": at})

    def _serving_config(
        self, event: EndpointStateChangeEvent, record: Deployment
    ) -> Mapping[str, Any] | None:
        """The configuration the endpoint serves on after a rolled-back update: the event's
        when it is not the requested one, else the endpoint's current one; described from
        SageMaker, else rebuilt from the record's open service interval."""
        name = event.detail.endpoint_config_name
        if name == record.endpoint_config_name or name is None:
            try:
                name = self.sagemaker.describe_endpoint(EndpointName=record.endpoint_name).get(
                    "EndpointConfigName"
                )
            except ClientError:
                name = None
        if name == record.endpoint_config_name:
            name = None
        if name is not None:
            try:
                described: Mapping[str, Any] = self.sagemaker.describe_endpoint_config(
                    EndpointConfigName=name
                )
                return described
            except ClientError as error:
                logger.warning("Serving configuration not described", error=str(error))
        interval = open_service_interval(record.service_intervals)
        if interval is None or record.serving_model_job_id is None:
            return None
        variant: dict[str, Any] = {"ModelName": record.model_name}
        if interval.instance_type:
            variant.update(
                InstanceType=interval.instance_type, InitialInstanceCount=interval.instance_count
            )
        else:
            concurrency = record.serverless.max_concurrency if record.serverless else 1
            variant["ServerlessConfig"] = {
                "MemorySizeInMB": interval.memory_mb,
                "MaxConcurrency": concurrency,
            }
        config: dict[str, Any] = {"ProductionVariants": [variant]}
        if name is not None:
            config["EndpointConfigName"] = name
        return config

    def _notify(self, record: Deployment, at: datetime) -> None:
        """The tenant's notification of the state ``record`` entered at ``at``."""
        version = f"version {record.model_version}" if record.model_version else "the model"
        name = record.deployment_id
        status = record.status
        if status == DeploymentStatus.IN_SERVICE and record.failure_reason:
            tag, subject = "rolled-back", f"Deployment {name}: update rolled back"
            lines = [record.failure_reason]
        elif status == DeploymentStatus.IN_SERVICE:
            tag, subject = "in-service", f"Deployment {name} is in service"
            lines = [
                f"Your endpoint {record.endpoint_name} serves {version} "
                f"(job {record.model_job_id})."
            ]
        elif status == DeploymentStatus.FAILED:
            tag, subject = "failed", f"Deployment {name} failed"
            lines = [
                f"The endpoint {record.endpoint_name} could not serve {version} "
                f"(job {record.model_job_id}).",
                f"Reason: {record.failure_reason or 'not given by SageMaker'}.",
            ]
        elif status == DeploymentStatus.DELETED:
            tag, subject = "deleted", f"Deployment {name} undeployed"
            lines = [f"The endpoint {record.endpoint_name} is deleted; its history is kept."]
        else:
            return
        self._deliver(record, at, tag, subject, lines)

    # Processing jobs ----------------------------------------------------------------------

    def processing_job(self, event: ProcessingJobStateChangeEvent) -> Outcome:
        """A baseline job's completion -> ``monitor`` request; a monitoring run -> metric."""
        detail = event.detail
        if detail.monitoring_schedule_arn:
            return self._monitoring_run(event)
        name = detail.processing_job_name
        tenant_id = tenant_of_resource_name(name)
        if tenant_id is None:
            return ignored(
                Outcome.NOT_PLATFORM_JOB, "Processing job that isn't a baseline", job=name
            )
        if detail.processing_job_status != "Completed":
            return ignored(
                Outcome.IGNORED, "Baseline job not completed", status=detail.processing_job_status
            )
        record = next(
            (d for d in self.deployments.list_all(tenant_id) if d.baseline_job_name == name), None
        )
        if record is None:
            return ignored(Outcome.UNKNOWN_JOB, "Baseline job of no deployment", job=name)
        if record.status in {DeploymentStatus.UNDEPLOYING, DeploymentStatus.DELETED}:
            return ignored(Outcome.IGNORED, "Baseline of an undeployed deployment", job=name)
        queue = self.settings.deployment_requests_queue_url
        if not queue:
            raise BadEventError("a baseline completed but DEPLOYMENT_REQUESTS_QUEUE_URL is not set")
        request = DeploymentRequest(
            action=DeploymentAction.MONITOR,
            tenant_id=record.tenant_id,
            deployment_id=record.deployment_id,
            request_id=record.request_id,
            submitted_by=SUBMITTED_BY,
            submitted_at=self.clock(),
        )
        self.sqs.send_message(QueueUrl=queue, MessageBody=request.to_message_body())
        metrics.add_metric(name="MonitorRequestsSent", unit=MetricUnit.Count, value=1)
        logger.info(
            "Monitor request sent",
            tenant_id=record.tenant_id,
            deployment_id=record.deployment_id,
            baseline=name,
        )
        return Outcome.APPLIED

    def _monitoring_run(self, event: ProcessingJobStateChangeEvent) -> Outcome:
        detail = event.detail
        if detail.processing_job_status != "Completed" and not _with_violations(
            detail.processing_job_status
        ):
            return ignored(
                Outcome.IGNORED, "Monitoring run not completed", status=detail.processing_job_status
            )
        tags = self._sagemaker_tags(detail.monitoring_schedule_arn)
        tenant_id, deployment_id = tags.get("tenant", ""), tags.get(DEPLOYMENT_TAG, "")
        if not is_tenant_id(tenant_id) or not is_deployment_id(deployment_id):
            return ignored(
                Outcome.NOT_PLATFORM_JOB,
                "Monitoring schedule without tenant and deployment tags",
                schedule=detail.monitoring_schedule_arn,
            )
        record = self.deployments.get(tenant_id, deployment_id)
        if record is None:
            return ignored(Outcome.UNKNOWN_JOB, "Monitoring run of an unknown deployment")
        violations = _with_violations(detail.processing_job_status) or _with_violations(
            detail.exit_message or ""
        )
        self.cloudwatch.put_metric_data(
            Namespace=MONITORING_METRICS_NAMESPACE,
            MetricData=[
                {
                    "MetricName": VIOLATIONS_METRIC,
                    "Dimensions": [
                        {"Name": "tenant", "Value": tenant_id},
                        {"Name": "endpoint", "Value": record.endpoint_name},
                    ],
                    "Timestamp": event.event_time,
                    "Value": 1.0 if violations else 0.0,
                    "Unit": "Count",
                }
            ],
        )
        logger.info(
            "Monitoring run recorded",
            tenant_id=tenant_id,
            deployment_id=deployment_id,
            violations=violations,
        )
        return Outcome.APPLIED

    # Alarms -------------------------------------------------------------------------------

    def alarm(self, event: AlarmStateChangeEvent) -> Outcome:
        """An endpoint alarm that entered ALARM: notify its tenant."""
        detail = event.detail
        prefix = self.settings.alarm_prefix
        if not prefix or not detail.alarm_name.startswith(prefix + "-"):
            return ignored(
                Outcome.NOT_PLATFORM_JOB, "Not a platform alarm", alarm=detail.alarm_name
            )
        if detail.state.value != "ALARM":
            return ignored(Outcome.IGNORED, "Alarm state ignored", state=detail.state.value)
        arn = event.alarm_arn
        if not arn:
            raise BadEventError("an alarm event without the alarm's ARN in resources")
        try:
            listed = self.cloudwatch.list_tags_for_resource(ResourceARN=arn).get("Tags", [])
        except ClientError as error:
            return ignored(Outcome.UNKNOWN_JOB, "Alarm tags not readable", error=str(error))
        tags = {str(t.get("Key")): str(t.get("Value")) for t in listed}
        tenant_id, deployment_id = tags.get("tenant", ""), tags.get(DEPLOYMENT_TAG, "")
        if not is_tenant_id(tenant_id) or not is_deployment_id(deployment_id):
            return ignored(Outcome.NOT_PLATFORM_JOB, "Alarm without tenant and deployment tags")
        record = self.deployments.get(tenant_id, deployment_id)
        if record is None:
            return ignored(Outcome.UNKNOWN_JOB, "Alarm of an unknown deployment")
        kind = detail.alarm_name.removeprefix(f"{prefix}-{record.endpoint_name}-")
        lines = [
            f"The alarm {detail.alarm_name} of your endpoint {record.endpoint_name} is in ALARM.",
            f"Reason: {detail.state.reason or 'not given by CloudWatch'}.",
        ]
        self._deliver(
            record,
            event.time,
            f"alarm-{kind}",
            f"Deployment {record.deployment_id}: alarm {kind}",
            lines,
        )
        metrics.add_metric(name="EndpointAlarmsNotified", unit=MetricUnit.Count, value=1)
        return Outcome.APPLIED

    # Both ---------------------------------------------------------------------------------

    def _deliver(
        self, record: Deployment, at: datetime, tag: str, subject: str, lines: list[str]
    ) -> None:
        link = f"/deployments/{record.deployment_id}"
        lines = [*lines, f"Details: {self.notifier.portal_url(link)}"]
        self.notifier.deliver(
            Notification(
                tenant_id=record.tenant_id,
                notification_id=f"{Notification.make_id(iso_utc(at), record.deployment_id)}"
                f"#deployment-{tag}",
                job_id=record.serving_model_job_id or record.model_job_id,
                status=JobStatus.COMPLETED,
                subject=subject[:100],
                message="\n".join(lines),
                created_at=at,
                deployment_id=record.deployment_id,
                link=link,
            )
        )

    def _sagemaker_tags(self, arn: str | None) -> dict[str, str]:
        """A SageMaker resource's tags; empty for a resource SageMaker doesn't know (any more)."""
        if not arn:
            return {}
        try:
            listed = self.sagemaker.list_tags(ResourceArn=arn).get("Tags", [])
        except ClientError as error:
            logger.info("Tags not readable", resource=arn, error=str(error))
            return {}
        return {str(t.get("Key")): str(t.get("Value")) for t in listed}


def _rollback_reason(record: Deployment, failure: str | None) -> str:
    asked = f"version {record.model_version}" if record.model_version else "the new version"
    serving = (
        f"version {record.serving_model_version}"
        if record.serving_model_version
        else "the previous version"
    )
    why = f" ({failure})" if failure else ""
    return (
        f"The update to model {asked} (job {record.model_job_id}) was rolled back{why}; "
        f"{serving} (job {record.serving_model_job_id}) still serves."
    )


def _with_violations(text: str) -> bool:
    return text.replace(" ", "").lower().startswith(WITH_VIOLATIONS)


def _same_time(left: datetime | None, right: datetime) -> bool:
    return left is not None and iso_utc(left) == iso_utc(right)
