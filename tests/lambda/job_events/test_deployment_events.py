"""Endpoint, processing job and alarm events applied to deployments (moto; Stubber for the
monitoring schedule's tags, which moto lacks)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.stub import Stubber
from job_events.service import Outcome
from training_common import QueueMessage
from training_common.deployments import (
    MONITORING_METRICS_NAMESPACE,
    AlarmKind,
    DeploymentAction,
    DeploymentRequest,
    DeploymentStatus,
    alarm_name,
)

ACCOUNT = "123456789012"
REGION = "us-east-1"
T0 = 1_700_000_000_000  # epoch milliseconds, as in conftest

TAGS = {"tenant": "acme", "deployment": "thermostat"}
ENDPOINT = "acme-thermostat"


def _notifications(platform: Any, tenant: str) -> list[Any]:
    return platform.notifications.list_page(tenant).items


def _in_service(deploy_kit: Any, at_ms: int = T0) -> Any:
    record = deploy_kit.started()
    service = deploy_kit.service()
    event = deploy_kit.endpoint_event(
        ENDPOINT, "InService", at_ms, config=record.endpoint_config_name, tags=TAGS
    )
    assert service.handle(event) == Outcome.APPLIED
    return deploy_kit.deployments.get("acme", "thermostat")


def _sagemaker_endpoint(platform: Any, config: str) -> None:
    """The model, configuration and endpoint in moto, tagged as the deploy handler tags them."""
    sm = platform.sagemaker
    tags = [{"Key": k, "Value": v} for k, v in TAGS.items()]
    model = f"{config}-model"
    sm.create_model(
        ModelName=model,
        PrimaryContainer={"Image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/xgb:1"},
        ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/endpoint",
        Tags=tags,
    )
    sm.create_endpoint_config(
        EndpointConfigName=config,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": model,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
        Tags=tags,
    )
    sm.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=config, Tags=tags)


def test_in_service_opens_an_interval_and_notifies_once(
    platform: Any, deploy_kit: Any, jobs_kit: Any
) -> None:
    record = deploy_kit.started()
    _sagemaker_endpoint(platform, str(record.endpoint_config_name))
    inbox = jobs_kit.subscribe("acme")
    service = deploy_kit.service()
    # No Tags in the event: the tenant and deployment come from ListTags on the endpoint.
    event = deploy_kit.endpoint_event(
        ENDPOINT, "IN_SERVICE", T0, config=record.endpoint_config_name
    )

    assert service.handle(event) == Outcome.APPLIED
    assert service.handle(event) == Outcome.STALE  # redelivered

    stored = deploy_kit.deployments.get("acme", "thermostat")
    assert stored.status == DeploymentStatus.IN_SERVICE
    assert (stored.serving_model_job_id, stored.serving_model_version) == ("acme-job-1", 1)
    assert stored.last_event_time == datetime.fromtimestamp(T0 / 1000, UTC)
    [interval] = stored.service_intervals
    assert (interval.instance_type, interval.instance_count, interval.end) == (
        "ml.m5.large",
        1,
        None,
    )
    assert stored.history[-1].status == DeploymentStatus.IN_SERVICE
    [note] = _notifications(platform, "acme")
    assert note.deployment_id == "thermostat"
    assert note.link == "/deployments/thermostat"
    assert note.job_id == "acme-job-1"
    assert note.published
    assert "https://portal.example.com/deployments/thermostat" in note.message
    assert len(platform.receive_all(inbox)) == 1


def test_creation_failure_records_the_reason(platform: Any, deploy_kit: Any) -> None:
    record = deploy_kit.started()
    event = deploy_kit.endpoint_event(
        ENDPOINT,
        "Failed",
        T0,
        config=record.endpoint_config_name,
        tags=TAGS,
        FailureReason="The primary container did not pass the ping health check.",
    )

    assert deploy_kit.service().handle(event) == Outcome.APPLIED

    stored = deploy_kit.deployments.get("acme", "thermostat")
    assert stored.status == DeploymentStatus.FAILED
    assert stored.failure_reason == "The primary container did not pass the ping health check."
    assert stored.serving_model_job_id is None
    [note] = _notifications(platform, "acme")
    assert "ping health check" in note.message
    assert note.subject == "Deployment thermostat failed"


def test_rolled_back_update_serves_the_previous_version(platform: Any, deploy_kit: Any) -> None:
    first = _in_service(deploy_kit)
    _sagemaker_endpoint(platform, str(first.endpoint_config_name))
    update = deploy_kit.started("acme-job-2", 2)
    assert update.status == DeploymentStatus.UPDATING
    assert update.endpoint_config_name != first.endpoint_config_name
    # Blue/green rolled back on an alarm: the endpoint is in service on the old configuration.
    event = deploy_kit.endpoint_event(
        ENDPOINT, "InService", T0 + 60_000, config=first.endpoint_config_name, tags=TAGS
    )

    assert deploy_kit.service().handle(event) == Outcome.APPLIED

    stored = deploy_kit.deployments.get("acme", "thermostat")
    assert stored.status == DeploymentStatus.IN_SERVICE
    assert (stored.model_job_id, stored.model_version) == ("acme-job-1", 1)
    assert stored.serving_model_version == 1
    assert stored.endpoint_config_name == first.endpoint_config_name
    assert "version 2" in str(stored.failure_reason)
    assert "rolled back" in str(stored.failure_reason)
    [interval] = stored.service_intervals  # the old capacity kept serving
    assert interval.end is None
    subjects = sorted(note.subject for note in _notifications(platform, "acme"))
    assert subjects == [
        "Deployment thermostat is in service",
        "Deployment thermostat: update rolled back",
    ]


def test_rolling_back_without_described_config_uses_the_open_interval(
    platform: Any, deploy_kit: Any
) -> None:
    first = _in_service(deploy_kit)
    update = deploy_kit.started("acme-job-2", 2)
    event = deploy_kit.endpoint_event(
        ENDPOINT, "RollingBack", T0 + 60_000, config=update.endpoint_config_name, tags=TAGS
    )

    assert deploy_kit.service().handle(event) == Outcome.APPLIED

    stored = deploy_kit.deployments.get("acme", "thermostat")
    assert stored.status == DeploymentStatus.IN_SERVICE
    assert stored.model_job_id == "acme-job-1"
    assert stored.realtime == first.realtime
    assert "version 2" in str(stored.failure_reason)


def test_stale_and_unrelated_events_change_nothing(platform: Any, deploy_kit: Any) -> None:
    record = _in_service(deploy_kit, T0)
    service = deploy_kit.service()
    older = deploy_kit.endpoint_event(
        ENDPOINT, "Failed", T0 - 1000, config=record.endpoint_config_name, tags=TAGS
    )
    other_config = deploy_kit.endpoint_event(
        ENDPOINT, "InService", T0 + 5000, config="acme-c00000000000000000000", tags=TAGS
    )
    globex_tags = deploy_kit.endpoint_event(
        ENDPOINT,
        "Failed",
        T0 + 6000,
        config=record.endpoint_config_name,
        tags={"tenant": "globex", "deployment": "thermostat"},
    )
    passing = deploy_kit.endpoint_event(
        ENDPOINT, "Updating", T0 + 7000, config=record.endpoint_config_name, tags=TAGS
    )

    assert service.handle(older) == Outcome.STALE
    assert service.handle(other_config) == Outcome.STALE
    assert service.handle(globex_tags) == Outcome.UNKNOWN_JOB
    assert service.handle(passing) == Outcome.IGNORED

    stored = deploy_kit.deployments.get("acme", "thermostat")
    assert stored.status == DeploymentStatus.IN_SERVICE
    assert stored.history == record.history
    assert len(_notifications(platform, "acme")) == 1


def test_undeploy_ends_deleted_with_closed_intervals(platform: Any, deploy_kit: Any) -> None:
    record = _in_service(deploy_kit)
    deploy_kit.submit("undeploy", "acme", "thermostat")
    event = deploy_kit.endpoint_event(
        ENDPOINT, "Deleting", T0 + 3_600_000, config=record.endpoint_config_name, tags=TAGS
    )

    assert deploy_kit.service().handle(event) == Outcome.APPLIED

    stored = deploy_kit.deployments.get("acme", "thermostat")
    assert stored.status == DeploymentStatus.DELETED
    [interval] = stored.service_intervals
    assert interval.end is not None
    assert interval.end - interval.start == timedelta(hours=1)
    assert any(
        n.subject == "Deployment thermostat undeployed" for n in _notifications(platform, "acme")
    )


def test_completed_baseline_sends_the_monitor_request(platform: Any, deploy_kit: Any) -> None:
    record = _in_service(deploy_kit)
    event = deploy_kit.processing_event(str(record.baseline_job_name), "Completed", T0 + 900_000)

    assert deploy_kit.service().handle(event) == Outcome.APPLIED

    [message] = deploy_kit.requests()
    request = DeploymentRequest.model_validate_json(message["Body"])
    assert request.action == DeploymentAction.MONITOR
    assert (request.tenant_id, request.deployment_id) == ("acme", "thermostat")
    assert request.request_id == record.request_id
    assert request.submitted_by == "job-events"


def test_other_processing_jobs_send_nothing(deploy_kit: Any) -> None:
    record = _in_service(deploy_kit)
    service = deploy_kit.service()
    failed = deploy_kit.processing_event(str(record.baseline_job_name), "Failed", T0 + 1)
    unknown = deploy_kit.processing_event("acme-b0123456789abcdef0123", "Completed", T0 + 2)
    foreign = deploy_kit.processing_event("someone-elses-job", "Completed", T0 + 3)

    assert service.handle(failed) == Outcome.IGNORED
    assert service.handle(unknown) == Outcome.UNKNOWN_JOB
    assert service.handle(foreign) == Outcome.NOT_PLATFORM_JOB
    assert deploy_kit.requests() == []


def test_monitoring_run_with_violations_puts_one(deploy_kit: Any) -> None:
    _in_service(deploy_kit)
    schedule = (
        f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:monitoring-schedule/acme-s0123456789abcdef0123"
    )
    service = deploy_kit.service()
    at_ms = int(datetime.now(UTC).timestamp() * 1000) - 60_000
    runs = [
        deploy_kit.processing_event(
            "model-monitoring-202311142200-0123456789abcdef",
            "Completed",
            at_ms,
            schedule_arn=schedule,
            ExitMessage="CompletedWithViolations: Job completed successfully with 3 violations.",
        ),
        deploy_kit.processing_event(
            "model-monitoring-202311142300-0123456789abcdef",
            "Completed",
            at_ms + 1000,
            schedule_arn=schedule,
            ExitMessage="Completed: Job completed successfully with no violations.",
        ),
    ]
    stub = Stubber(service.sagemaker)
    for _ in runs:
        stub.add_response(
            "list_tags",
            {"Tags": [{"Key": k, "Value": v} for k, v in TAGS.items()]},
            {"ResourceArn": schedule},
        )
    with stub:
        assert [service.handle(run) for run in runs] == [Outcome.APPLIED, Outcome.APPLIED]
    stub.assert_no_pending_responses()

    data = deploy_kit.cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "v",
                "MetricStat": {
                    "Metric": {
                        "Namespace": MONITORING_METRICS_NAMESPACE,
                        "MetricName": "Violations",
                        "Dimensions": [
                            {"Name": "tenant", "Value": "acme"},
                            {"Name": "endpoint", "Value": ENDPOINT},
                        ],
                    },
                    "Period": 1,
                    "Stat": "Maximum",
                },
            }
        ],
        StartTime=datetime.now(UTC) - timedelta(hours=1),
        EndTime=datetime.now(UTC) + timedelta(minutes=1),
    )["MetricDataResults"][0]
    assert sorted(data["Values"]) == [0.0, 1.0]


def test_alarm_notifies_only_its_tenant(platform: Any, deploy_kit: Any, jobs_kit: Any) -> None:
    _in_service(deploy_kit)
    deploy_kit.started(tenant="globex", deployment_id="thermostat")
    acme_inbox, globex_inbox = jobs_kit.subscribe("acme"), jobs_kit.subscribe("globex")
    platform.receive_all(acme_inbox)
    name = alarm_name(deploy_kit.alarm_prefix, ENDPOINT, AlarmKind.DATA_QUALITY)
    deploy_kit.cloudwatch.put_metric_alarm(
        AlarmName=name,
        Namespace=MONITORING_METRICS_NAMESPACE,
        MetricName="Violations",
        Dimensions=[{"Name": "tenant", "Value": "acme"}, {"Name": "endpoint", "Value": ENDPOINT}],
        Statistic="Maximum",
        Period=3600,
        EvaluationPeriods=1,
        Threshold=0,
        ComparisonOperator="GreaterThanThreshold",
        Tags=[{"Key": k, "Value": v} for k, v in TAGS.items()],
    )
    service = deploy_kit.service()
    alarm = deploy_kit.alarm_event(name, "ALARM", reason="1 datapoint [1.0] > 0.0")

    assert service.handle(alarm) == Outcome.APPLIED
    assert service.handle(alarm) == Outcome.APPLIED  # redelivered: same notification id
    assert service.handle(deploy_kit.alarm_event(name, "OK", previous="ALARM")) == Outcome.IGNORED
    assert service.handle(deploy_kit.alarm_event(name, "INSUFFICIENT_DATA")) == Outcome.IGNORED
    other = deploy_kit.alarm_event("someone-else-alarm", "ALARM")
    assert service.handle(other) == Outcome.NOT_PLATFORM_JOB

    alarm_notes = [
        n
        for n in _notifications(platform, "acme")
        if n.notification_id.endswith("alarm-data-quality")
    ]
    assert len(alarm_notes) == 1
    assert name in alarm_notes[0].message
    assert "1 datapoint [1.0] > 0.0" in alarm_notes[0].message
    assert alarm_notes[0].link == "/deployments/thermostat"
    assert _notifications(platform, "globex") == []
    assert len(platform.receive_all(acme_inbox)) == 1
    assert platform.receive_all(globex_inbox) == []


def test_malformed_and_unconfigured_events_are_dead_lettered(
    deploy_kit: Any, jobs_kit: Any
) -> None:
    service = deploy_kit.service()
    no_status = deploy_kit.endpoint_event(ENDPOINT, "InService", T0, config="c", tags=TAGS)
    body = json.loads(no_status.body)
    del body["detail"]["EndpointStatus"]
    unreadable = QueueMessage(message_id="m-bad", body=json.dumps(body), receipt_handle="rh")
    odd = deploy_kit.endpoint_event(ENDPOINT, "Exploding", T0, config="c", tags=TAGS)
    alarm = deploy_kit.alarm_event(f"{deploy_kit.alarm_prefix}-{ENDPOINT}-model-latency", "ALARM")

    assert service.handle(unreadable) == Outcome.DEAD_LETTERED
    assert service.handle(odd) == Outcome.DEAD_LETTERED
    without_table = deploy_kit.service(DEPLOYMENTS_TABLE="")
    assert without_table.handle(alarm) == Outcome.DEAD_LETTERED

    reasons = [m["MessageAttributes"] for m in jobs_kit.dead_letters()]
    text = json.dumps(reasons)
    assert "EndpointStatus" in text
    assert "unknown SageMaker endpoint status 'Exploding'" in text
    assert "DEPLOYMENTS_TABLE" in text


def test_redelivery_finishes_a_notification_the_first_delivery_lost(
    platform: Any, deploy_kit: Any
) -> None:
    record = deploy_kit.started()
    service = deploy_kit.service()
    event = deploy_kit.endpoint_event(
        ENDPOINT, "InService", T0, config=record.endpoint_config_name, tags=TAGS
    )
    assert service.handle(event) == Outcome.APPLIED
    [note] = _notifications(platform, "acme")
    # As if the first attempt wrote the record and then died before the notification.
    platform.notifications.table.delete_item(
        Key={"tenant_id": "acme", "notification_id": note.notification_id}
    )

    assert service.handle(event) == Outcome.STALE

    [again] = _notifications(platform, "acme")
    assert again.notification_id == note.notification_id
    assert again.published
