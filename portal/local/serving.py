"""Plays SageMaker hosting, Model Monitor and CloudWatch alarms around the **real** deploy and
job-events services, in process, for the local runner and the tests.

:class:`ServingSimulator` receives from the deployment-requests queue and calls
``DeployService.handle`` (helper code of ``lambda/deploy``, unchanged). moto has the models,
endpoint configurations, endpoints, processing jobs and alarms; what it lacks the
:class:`SageMakerShim` answers: ``UpdateEndpoint`` (the endpoint is switched to the new
configuration: deleted and created again under the same name and tags, which is what the runtime
sees at the end of a blue/green update) and the monitoring schedules and data-quality job
definitions (kept in memory). moto emits no EventBridge events, so the simulator builds the
bodies AWS would put on the job-events queue and hands them to ``JobEventsService.handle``:

1. ``SageMaker Endpoint State Change``: ``Creating`` (or ``Updating``) at once, ``InService``
   one step later (``Failed`` with its ``FailureReason`` for an endpoint in :attr:`fail_endpoints`);
2. ``SageMaker Processing Job State Change``: the data-quality baseline ``Completed`` (moto
   completes processing jobs at once); job-events answers with a ``monitor`` request on the
   queue, and the deploy service creates the schedule;
3. ``drift_steps`` steps after the schedule exists, one monitoring execution
   ``CompletedWithViolations`` (job-events records ``Violations`` = 1);
4. the data-quality alarm set to ``ALARM`` with moto's ``SetAlarmState`` (moto evaluates no
   alarm) and its ``CloudWatch Alarm State Change``: job-events notifies the tenant.

After an update or an undeploy the simulated runtime forgets the endpoint's cached state.
:meth:`step` is one tick: the runner's thread calls it, tests call it directly.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.exceptions import ClientError
from deploy.service import DeployService
from deploy.service import logger as deploy_logger
from deploy.settings import DeploySettings
from job_events.service import JobEventsService
from job_events.service import logger as job_events_logger
from job_events.settings import JobEventsSettings
from portal_app.settings import PortalSettings
from training_common import QueueMessage
from training_common.deployments import AlarmKind, Deployment, DeploymentStatus, alarm_name
from training_common.repositories import DeploymentRepository

from .common import ACCOUNT, REGION, handle_queued, local_clients, sagemaker_arn
from .stack import DEAD_LETTER_QUEUE, RETRAINING_POLICIES_TABLE, RETRAINING_RUNS_TABLE

log = logging.getLogger("local.serving")

ALARM_PREFIX = "tp-local"
DEFAULT_DRIFT_STEPS = 3
"""Steps between a monitoring schedule's creation and its first run, which finds drift."""

ENDPOINT_STATE_CHANGE = "SageMaker Endpoint State Change"
PROCESSING_JOB_STATE_CHANGE = "SageMaker Processing Job State Change"
ALARM_STATE_CHANGE = "CloudWatch Alarm State Change"


def _not_found(operation: str, message: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": "ResourceNotFound", "Message": message}}, operation_name=operation
    )


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


class SageMakerShim:
    """moto's SageMaker client plus the calls moto 5.2.5 lacks; every other attribute is the
    moto client's. ``on_change(endpoint_name)`` is called after an update or a delete."""

    def __init__(self, sagemaker: Any, on_change: Callable[[str], None]) -> None:
        self._moto = sagemaker
        self._on_change = on_change
        self._lock = threading.Lock()
        self.job_definitions: dict[str, dict[str, Any]] = {}
        self.schedules: dict[str, dict[str, Any]] = {}
        self.updates: list[dict[str, Any]] = []
        """Every ``UpdateEndpoint`` request (tests read its ``DeploymentConfig``)."""
        self.failed: dict[str, str] = {}
        """Endpoints whose creation failed, with the reason: ``DescribeEndpoint`` says
        ``Failed`` for them until they are deleted (moto keeps them InService)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._moto, name)

    def update_endpoint(
        self, *, EndpointName: str, EndpointConfigName: str, **rest: Any
    ) -> dict[str, Any]:
        endpoint = self._moto.describe_endpoint(EndpointName=EndpointName)
        self._moto.describe_endpoint_config(EndpointConfigName=EndpointConfigName)
        tags = self._moto.list_tags(ResourceArn=endpoint["EndpointArn"]).get("Tags", [])
        self._moto.delete_endpoint(EndpointName=EndpointName)
        self._moto.create_endpoint(
            EndpointName=EndpointName, EndpointConfigName=EndpointConfigName, Tags=tags
        )
        with self._lock:
            self.updates.append(
                {"EndpointName": EndpointName, "EndpointConfigName": EndpointConfigName, **rest}
            )
        self._on_change(EndpointName)
        return {"EndpointArn": endpoint["EndpointArn"]}

    def describe_endpoint(self, *, EndpointName: str) -> dict[str, Any]:
        answer = dict(self._moto.describe_endpoint(EndpointName=EndpointName))
        with self._lock:
            reason = self.failed.get(EndpointName)
        if reason is not None:
            answer |= {"EndpointStatus": "Failed", "FailureReason": reason}
        return answer

    def delete_endpoint(self, *, EndpointName: str) -> dict[str, Any]:
        answer = dict(self._moto.delete_endpoint(EndpointName=EndpointName))
        with self._lock:
            self.failed.pop(EndpointName, None)
        self._on_change(EndpointName)
        return answer

    # Data-quality job definitions ---------------------------------------------------------

    def create_data_quality_job_definition(self, **request: Any) -> dict[str, Any]:
        name = str(request["JobDefinitionName"])
        arn = sagemaker_arn("data-quality-job-definition", name)
        with self._lock:
            if name in self.job_definitions:
                raise ClientError(
                    {"Error": {"Code": "ResourceInUse", "Message": f"{name} already exists"}},
                    "CreateDataQualityJobDefinition",
                )
            self.job_definitions[name] = {
                **request,
                "JobDefinitionArn": arn,
                "CreationTime": datetime.now(UTC),
            }
        return {"JobDefinitionArn": arn}

    def describe_data_quality_job_definition(self, *, JobDefinitionName: str) -> dict[str, Any]:
        with self._lock:
            found = self.job_definitions.get(JobDefinitionName)
        if found is None:
            raise _not_found(
                "DescribeDataQualityJobDefinition", f"Could not find {JobDefinitionName}"
            )
        return dict(found)

    def delete_data_quality_job_definition(self, *, JobDefinitionName: str) -> dict[str, Any]:
        with self._lock:
            found = self.job_definitions.pop(JobDefinitionName, None)
        if found is None:
            raise _not_found(
                "DeleteDataQualityJobDefinition", f"Could not find {JobDefinitionName}"
            )
        return {}

    # Monitoring schedules -----------------------------------------------------------------

    def create_monitoring_schedule(self, **request: Any) -> dict[str, Any]:
        name = str(request["MonitoringScheduleName"])
        arn = sagemaker_arn("monitoring-schedule", name)
        now = datetime.now(UTC)
        with self._lock:
            if name in self.schedules:
                raise ClientError(
                    {"Error": {"Code": "ResourceInUse", "Message": f"{name} already exists"}},
                    "CreateMonitoringSchedule",
                )
            self.schedules[name] = {
                "MonitoringScheduleName": name,
                "MonitoringScheduleArn": arn,
                "MonitoringScheduleStatus": "Scheduled",
                "MonitoringType": "DataQuality",
                "MonitoringScheduleConfig": request.get("MonitoringScheduleConfig", {}),
                "Tags": list(request.get("Tags", [])),
                "CreationTime": now,
                "LastModifiedTime": now,
            }
        return {"MonitoringScheduleArn": arn}

    def describe_monitoring_schedule(self, *, MonitoringScheduleName: str) -> dict[str, Any]:
        with self._lock:
            found = self.schedules.get(MonitoringScheduleName)
        if found is None:
            raise _not_found(
                "DescribeMonitoringSchedule", f"Could not find {MonitoringScheduleName}"
            )
        return {k: v for k, v in found.items() if k != "Tags"}

    def update_monitoring_schedule(
        self, *, MonitoringScheduleName: str, MonitoringScheduleConfig: dict[str, Any]
    ) -> dict[str, Any]:
        with self._lock:
            found = self.schedules.get(MonitoringScheduleName)
            if found is not None:
                found["MonitoringScheduleConfig"] = MonitoringScheduleConfig
                found["LastModifiedTime"] = datetime.now(UTC)
        if found is None:
            raise _not_found("UpdateMonitoringSchedule", f"Could not find {MonitoringScheduleName}")
        return {"MonitoringScheduleArn": found["MonitoringScheduleArn"]}

    def delete_monitoring_schedule(self, *, MonitoringScheduleName: str) -> dict[str, Any]:
        with self._lock:
            found = self.schedules.pop(MonitoringScheduleName, None)
        if found is None:
            raise _not_found("DeleteMonitoringSchedule", f"Could not find {MonitoringScheduleName}")
        return {}

    def list_tags(self, *, ResourceArn: str, **rest: Any) -> dict[str, Any]:
        """A schedule's tags from memory; anything else from moto."""
        with self._lock:
            schedule = next(
                (s for s in self.schedules.values() if s["MonitoringScheduleArn"] == ResourceArn),
                None,
            )
        if schedule is not None:
            return {"Tags": list(schedule["Tags"])}
        return dict(self._moto.list_tags(ResourceArn=ResourceArn, **rest))


@dataclass
class _Pending:
    """An event to deliver once ``due`` (a step count) is reached."""

    due: int
    body: str
    before: Callable[[], None] | None = None
    after: Callable[[], None] | None = None


@dataclass
class _Watched:
    """What the simulator already played for one deployment's current request."""

    request_id: str
    played: set[str] = field(default_factory=set)
    schedule_seen_at: int | None = None


def local_deploy_env(settings: PortalSettings, dead_letter_queue_url: str) -> dict[str, str]:
    """The deploy function's environment variables, as the Training stack would set them."""
    return {
        "DEPLOYMENTS_TABLE": settings.deployments_table,
        "MODELS_TABLE": settings.models_table,
        "TENANTS_TABLE": settings.tenants_table,
        "DEAD_LETTER_QUEUE_URL": dead_letter_queue_url,
        "DATA_BUCKET": settings.data_bucket,
        "DATA_KEY_ARN": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/00000000-0000-4000-8000-00000000da7a",
        "ENDPOINT_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/endpoint-execution",
        "MONITORING_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/model-monitoring",
        "ENDPOINT_SUBNET_IDS": "subnet-0local0a,subnet-0local0b",
        "ENDPOINT_SECURITY_GROUP_IDS": "sg-0local0endpoints",
        "ALARM_PREFIX": ALARM_PREFIX,
        "BLUE_GREEN_BAKE_SECONDS": "0",
        "AWS_REGION": REGION,
        "RETRY_BACKOFF_BASE_SECONDS": "1",
        "RETRY_BACKOFF_MAX_SECONDS": "5",
        "DEPLOYMENT_REQUESTS_QUEUE_URL": settings.deployment_requests_queue_url,
    }


def local_job_events_env(settings: PortalSettings, dead_letter_queue_url: str) -> dict[str, str]:
    """The job-events function's environment variables, deployments included."""
    return {
        "JOBS_TABLE": settings.jobs_table,
        "NOTIFICATIONS_TABLE": settings.notifications_table,
        "TRIALS_TABLE": settings.trials_table,
        "MODELS_TABLE": settings.models_table,
        "ARTIFACTS_BUCKET": settings.artifacts_bucket,
        "NOTIFICATIONS_TOPIC_ARN": settings.notifications_topic_arn,
        "JOB_EVENTS_DLQ_URL": dead_letter_queue_url,
        "CATALOG_BUCKET": settings.catalog_bucket,
        "DEPLOYMENTS_TABLE": settings.deployments_table,
        "DEPLOYMENT_REQUESTS_QUEUE_URL": settings.deployment_requests_queue_url,
        "ALARM_PREFIX": ALARM_PREFIX,
        "RETRAINING_POLICIES_TABLE": RETRAINING_POLICIES_TABLE,
        "RETRAINING_RUNS_TABLE": RETRAINING_RUNS_TABLE,
    }


class ServingSimulator:
    """The deployment-requests queue through the real deploy service, and the events AWS would
    send back through the real job-events service."""

    def __init__(
        self,
        settings: PortalSettings,
        session: boto3.Session,
        endpoint_url: str | None,
        *,
        forget: Callable[[str], None] = lambda _name: None,
        drift_steps: int = DEFAULT_DRIFT_STEPS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        log_level: str | None = None,
    ) -> None:
        """``log_level``: the services' Powertools loggers' level (the runner keeps their INFO
        lines off the console); None leaves it as the environment sets it."""
        if log_level is not None:
            deploy_logger.setLevel(log_level)
            job_events_logger.setLevel(log_level)
        self.settings = settings
        self.clock = clock
        self.drift_steps = drift_steps
        self._forget = forget
        clients = local_clients(session, endpoint_url)
        self.sqs = clients.client("sqs")
        self.cloudwatch = clients.client("cloudwatch")
        dlq = str(self.sqs.get_queue_url(QueueName=DEAD_LETTER_QUEUE)["QueueUrl"])
        self.shim = SageMakerShim(clients.client("sagemaker"), self._changed)
        self.deploy = DeployService.from_settings(
            DeploySettings.from_env(local_deploy_env(settings, dlq)), clients
        )
        self.deploy.sagemaker = self.shim
        # replace() runs __post_init__ again: the helpers it builds get the shim too.
        self.job_events = dataclasses.replace(
            JobEventsService.from_settings(
                JobEventsSettings.from_env(local_job_events_env(settings, dlq)), clients
            ),
            sagemaker=self.shim,
        )
        self.deployments = DeploymentRepository.from_table_name(settings.deployments_table, clients)
        self.fail_endpoints: dict[str, str] = {}
        """Endpoint name -> the ``FailureReason`` its next creation or update ends with (tests
        set it; used once)."""
        self.steps = 0
        self._pending: list[_Pending] = []
        self._watched: dict[tuple[str, str], _Watched] = {}
        self._lock = threading.Lock()

    # The tick ----------------------------------------------------------------------------

    def step(self) -> None:
        """One tick: carry out queued requests, deliver the events that are due."""
        with self._lock:
            self.steps += 1
            self._receive()
            self._deliver_due()
            self._monitoring_runs()

    def _changed(self, endpoint_name: str) -> None:
        self._forget(endpoint_name)

    def _receive(self) -> None:
        queue = self.settings.deployment_requests_queue_url
        for message in handle_queued(
            self.sqs, queue, self.deploy.handle, what="deploy request", log=log
        ):
            self._after_request(message.body)

    def _after_request(self, body: str) -> None:
        request = json.loads(body)
        record = self.deployments.get(request["tenant_id"], request["deployment_id"])
        if record is None:
            return
        key = (record.tenant_id, record.deployment_id)
        watched = self._watched.get(key)
        if watched is None or watched.request_id != record.request_id:
            watched = self._watched[key] = _Watched(record.request_id)
        if record.status in {DeploymentStatus.CREATING, DeploymentStatus.UPDATING}:
            self._play_endpoint(record, watched)

    def _play_endpoint(self, record: Deployment, watched: _Watched) -> None:
        if "endpoint" in watched.played:
            return
        watched.played.add("endpoint")
        endpoint = self.shim.describe_endpoint(EndpointName=record.endpoint_name)
        first = "Creating" if record.status == DeploymentStatus.CREATING else "Updating"
        self._deliver(self._endpoint_event(endpoint, first))
        name = record.endpoint_name
        failure = self.fail_endpoints.pop(name, None)
        final = self._endpoint_event(endpoint, "Failed" if failure else "InService", failure)
        pending = _Pending(self.steps + 1, final)
        if failure:  # SageMaker says Failed from now on, until the endpoint is deleted
            pending.before = functools.partial(self.shim.failed.__setitem__, name, failure)
        elif record.baseline_job_name:
            pending.after = functools.partial(self._baseline_done, record.baseline_job_name)
        self._pending.append(pending)

    def _baseline_done(self, name: str) -> None:
        try:
            job = self.shim.describe_processing_job(ProcessingJobName=name)
        except ClientError:
            return
        tags = self.shim.list_tags(ResourceArn=job["ProcessingJobArn"]).get("Tags", [])
        self._deliver(self._processing_event(job, tags))

    def _deliver_due(self) -> None:
        due = [p for p in self._pending if p.due <= self.steps]
        self._pending = [p for p in self._pending if p.due > self.steps]
        for pending in due:
            if pending.before is not None:
                pending.before()
            self._deliver(pending.body)
            if pending.after is not None:
                pending.after()

    def _monitoring_runs(self) -> None:
        """A schedule's first run, ``drift_steps`` after it appeared, finds violations."""
        for schedule in list(self.shim.schedules.values()):
            tags = {t["Key"]: t["Value"] for t in schedule["Tags"]}
            tenant, deployment_id = tags.get("tenant"), tags.get("deployment")
            if tenant is None or deployment_id is None:
                continue
            watched = self._watched.get((tenant, deployment_id))
            if watched is None or "drift" in watched.played:
                continue
            if watched.schedule_seen_at is None:
                watched.schedule_seen_at = self.steps
            if self.steps - watched.schedule_seen_at < self.drift_steps:
                continue
            watched.played.add("drift")
            record = self.deployments.get(tenant, deployment_id)
            if record is None or record.status == DeploymentStatus.DELETED:
                continue
            self._deliver(self._execution_event(schedule, record))
            self._raise_drift_alarm(record)

    def _raise_drift_alarm(self, record: Deployment) -> None:
        name = alarm_name(ALARM_PREFIX, record.endpoint_name, AlarmKind.DATA_QUALITY)
        alarms = self.cloudwatch.describe_alarms(AlarmNames=[name]).get("MetricAlarms", [])
        if not alarms:
            return
        previous = str(alarms[0].get("StateValue") or "INSUFFICIENT_DATA")
        reason = (
            "Threshold Crossed: 1 out of the last 1 datapoints [1.0] was greater than or equal "
            "to the threshold (1.0)."
        )
        self.cloudwatch.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason=reason)
        self._deliver(self._alarm_event(alarms[0], previous, reason))

    # Event bodies ------------------------------------------------------------------------

    def _envelope(self, source: str, detail_type: str, resource: str, detail: Any) -> str:
        return json.dumps(
            {
                "version": "0",
                "id": str(uuid.uuid4()),
                "detail-type": detail_type,
                "source": source,
                "account": ACCOUNT,
                "time": self.clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
                "region": REGION,
                "resources": [resource],
                "detail": detail,
            },
            default=str,
        )

    def _endpoint_event(
        self, endpoint: dict[str, Any], status: str, failure: str | None = None
    ) -> str:
        """What SageMaker sends: the ``DescribeEndpoint`` response, times in epoch ms, tags as a
        map."""
        arn = str(endpoint["EndpointArn"])
        tags = self.shim.list_tags(ResourceArn=arn).get("Tags", [])
        detail: dict[str, Any] = {
            "EndpointName": endpoint["EndpointName"],
            "EndpointArn": arn,
            "EndpointConfigName": endpoint.get("EndpointConfigName"),
            "ProductionVariants": [
                {k: v for k, v in variant.items() if k in {"VariantName", "CurrentInstanceCount"}}
                for variant in endpoint.get("ProductionVariants", [])
            ],
            "EndpointStatus": status,
            "CreationTime": _ms(endpoint.get("CreationTime") or self.clock()),
            "LastModifiedTime": _ms(self.clock()),
            "Tags": {t["Key"]: t["Value"] for t in tags},
        }
        if failure:
            detail["FailureReason"] = failure
        return self._envelope("aws.sagemaker", ENDPOINT_STATE_CHANGE, arn, detail)

    def _processing_event(self, job: dict[str, Any], tags: list[dict[str, str]]) -> str:
        arn = str(job["ProcessingJobArn"])
        now = _ms(self.clock())
        detail = {
            "ProcessingJobName": job["ProcessingJobName"],
            "ProcessingJobArn": arn,
            "ProcessingJobStatus": "Completed",
            "ExitMessage": "Completed: Job completed successfully with no violations.",
            "RoleArn": job.get("RoleArn"),
            "ProcessingOutputConfig": job.get("ProcessingOutputConfig"),
            "CreationTime": now - 60_000,
            "ProcessingEndTime": now,
            "LastModifiedTime": now,
            "Tags": {t["Key"]: t["Value"] for t in tags},
        }
        return self._envelope("aws.sagemaker", PROCESSING_JOB_STATE_CHANGE, arn, detail)

    def _execution_event(self, schedule: dict[str, Any], record: Deployment) -> str:
        """A monitoring execution: a processing job SageMaker starts for the schedule, named
        after it, that found violations."""
        stamp = self.clock().strftime("%Y%m%d%H%M")
        name = f"model-monitoring-{stamp}-{uuid.uuid4().hex[:20]}"
        arn = sagemaker_arn("processing-job", name)
        now = _ms(self.clock())
        detail = {
            "ProcessingJobName": name,
            "ProcessingJobArn": arn,
            "ProcessingJobStatus": "Completed",
            "ExitMessage": "CompletedWithViolations: Job completed successfully with 2 violations.",
            "MonitoringScheduleArn": schedule["MonitoringScheduleArn"],
            "Environment": {"dataset_format": '{"csv": {"header": false}}'},
            "CreationTime": now - 60_000,
            "ProcessingEndTime": now,
            "LastModifiedTime": now,
            "Tags": {"tenant": record.tenant_id, "deployment": record.deployment_id},
        }
        return self._envelope("aws.sagemaker", PROCESSING_JOB_STATE_CHANGE, arn, detail)

    def _alarm_event(self, alarm: dict[str, Any], previous: str, reason: str) -> str:
        """What CloudWatch sends to EventBridge when an alarm changes state."""
        arn = str(alarm["AlarmArn"])
        now = self.clock().strftime("%Y-%m-%dT%H:%M:%S.000+0000")
        metric = {
            "id": "m1",
            "metricStat": {
                "metric": {
                    "namespace": alarm.get("Namespace"),
                    "name": alarm.get("MetricName"),
                    "dimensions": {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])},
                },
                "period": alarm.get("Period"),
                "stat": alarm.get("Statistic"),
            },
            "returnData": True,
        }
        detail = {
            "alarmName": alarm["AlarmName"],
            "state": {"value": "ALARM", "reason": reason, "timestamp": now},
            "previousState": {"value": previous, "timestamp": now},
            "configuration": {
                "description": alarm.get("AlarmDescription"),
                "metrics": [metric],
            },
        }
        return self._envelope("aws.cloudwatch", ALARM_STATE_CHANGE, arn, detail)

    def _deliver(self, body: str) -> None:
        message = QueueMessage(
            message_id=str(uuid.uuid4()), body=body, receipt_handle=uuid.uuid4().hex
        )
        try:
            outcome = self.job_events.handle(message)
        except Exception:
            log.exception("job-events failed on a simulated event")
            return
        log.info("event delivered", extra={"outcome": str(outcome)})
