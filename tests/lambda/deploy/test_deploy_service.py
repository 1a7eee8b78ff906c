"""The deploy handler against moto (and botocore Stubber for what moto lacks): deploy, update,
undeploy, refusals, redelivery, forged and unreadable messages."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import ANY, Stubber
from deploy.service import Outcome
from training_common.deployments import DeploymentStatus, EndpointKind
from training_common.sqs_handler import RetryLaterError

ENDPOINT = "acme-thermostat"


class Shim:
    """The moto client, with the calls moto lacks answered by a Stubber'd client."""

    def __init__(self, moto: Any, stubbed: Any, names: set[str]) -> None:
        self._moto, self._stubbed, self._names = moto, stubbed, names

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stubbed if name in self._names else self._moto, name)


def stubbed_client() -> tuple[Any, Stubber]:
    client = boto3.client("sagemaker", region_name="us-east-1")
    return client, Stubber(client)


def tags_of(kit: Any, arn: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in kit.sagemaker.list_tags(ResourceArn=arn)["Tags"]}


def counting(kit: Any) -> dict[str, int]:
    calls: dict[str, int] = {}

    def count(model: Any, **_: Any) -> None:
        calls[model.name] = calls.get(model.name, 0) + 1

    kit.sagemaker.meta.events.register("before-call.sagemaker.*", count)
    return calls


def in_service(kit: Any, deployment_id: str = "thermostat") -> None:
    """What job-events does on the endpoint's InService event."""
    kit.deployments.update(
        "acme",
        deployment_id,
        lambda d: d.model_copy(
            update={
                "status": DeploymentStatus.IN_SERVICE,
                "serving_model_job_id": d.model_job_id,
                "serving_model_version": d.model_version,
            }
        ),
    )


def test_deploy_creates_an_isolated_captured_endpoint_its_alarms_and_a_baseline(kit: Any) -> None:
    req = kit.submit(kit.deploy_request())

    assert kit.service().handle(kit.message(req)) is Outcome.CREATING

    record = kit.deployments.get("acme", "thermostat")
    assert record.status is DeploymentStatus.CREATING
    assert [h.status for h in record.history] == [
        DeploymentStatus.PENDING,
        DeploymentStatus.CREATING,
    ]
    assert record.model_version == 1
    model = kit.sagemaker.describe_model(ModelName=record.model_name)
    assert model["PrimaryContainer"]["ModelPackageName"].endswith("model-package/acme-models/1")
    assert model["VpcConfig"] == {
        "SecurityGroupIds": ["sg-endpoint"],
        "Subnets": ["subnet-aaa", "subnet-bbb"],
    }
    assert model["ExecutionRoleArn"] == kit.env["ENDPOINT_ROLE_ARN"]
    config = kit.sagemaker.describe_endpoint_config(EndpointConfigName=record.endpoint_config_name)
    assert config["KmsKeyId"] == kit.env["DATA_KEY_ARN"]
    capture = config["DataCaptureConfig"]
    assert (
        capture["DestinationS3Uri"]
        == "s3://data-bucket/tenants/acme/monitoring/acme-thermostat/capture/"
    )
    assert capture["KmsKeyId"] == kit.env["DATA_KEY_ARN"]
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.m5.large"
    endpoint = kit.sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    assert endpoint["EndpointConfigName"] == record.endpoint_config_name
    assert tags_of(kit, endpoint["EndpointArn"]) == {"tenant": "acme", "deployment": "thermostat"}
    alarms = kit.cloudwatch.describe_alarms(AlarmNamePrefix="tp-test-acme-thermostat-")[
        "MetricAlarms"
    ]
    assert sorted(a["AlarmName"] for a in alarms) == sorted(record.alarm_names)
    assert len(alarms) == 4
    tags = kit.cloudwatch.list_tags_for_resource(ResourceARN=alarms[0]["AlarmArn"])["Tags"]
    assert {t["Key"]: t["Value"] for t in tags} == {"tenant": "acme", "deployment": "thermostat"}
    job = kit.sagemaker.describe_processing_job(ProcessingJobName=record.baseline_job_name)
    source = job["ProcessingInputs"][0]["S3Input"]["S3Uri"]
    assert source == "s3://data-bucket/tenants/acme/datasets/houses/"
    output = job["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
    assert output == "s3://data-bucket/tenants/acme/monitoring/acme-thermostat/baseline/"
    assert job["AppSpecification"]["ImageUri"].startswith("156813124566.dkr.ecr.us-east-1")
    assert job["RoleArn"] == kit.env["MONITORING_ROLE_ARN"]


def test_the_same_request_twice_creates_nothing_twice(kit: Any) -> None:
    req = kit.submit(kit.deploy_request())
    calls = counting(kit)

    kit.service(kit.sagemaker).handle(kit.message(req))
    kit.service(kit.sagemaker).handle(kit.message(req, receive_count=2))

    for name in ("CreateModel", "CreateEndpointConfig", "CreateEndpoint", "CreateProcessingJob"):
        assert calls.get(name) == 1, name
    assert kit.deployments.get("acme", "thermostat").status is DeploymentStatus.CREATING


def test_a_request_that_is_not_the_records_latest_is_ignored(kit: Any) -> None:
    old = kit.deploy_request()
    kit.deployments.submit(old)
    kit.deployments.update(
        "acme", "thermostat", lambda d: d.model_copy(update={"status": DeploymentStatus.FAILED})
    )
    kit.submit(kit.deploy_request(model_job_id="acme-job-2"))
    calls = counting(kit)

    assert kit.service(kit.sagemaker).handle(kit.message(old)) is Outcome.STALE

    assert calls == {}
    assert kit.deployments.get("acme", "thermostat").status is DeploymentStatus.PENDING


def test_unreadable_and_unknown_requests_go_to_the_dead_letter_queue_with_the_reason(
    kit: Any,
) -> None:
    service = kit.service()
    assert service.handle(kit.message('{"action": "deploy"}')) is Outcome.DEAD_LETTERED
    assert service.handle(kit.message(kit.deploy_request())) is Outcome.DEAD_LETTERED

    reasons = [m["MessageAttributes"]["failure_reason"]["StringValue"] for m in kit.dead_letters()]
    assert reasons[0].startswith("unreadable deployment request: ")
    assert reasons[1] == "no deployment record for this request"


def test_a_forged_request_differing_from_its_record_is_parked_and_the_record_kept(kit: Any) -> None:
    req = kit.submit(kit.deploy_request())
    forged = req.model_copy(
        update={"realtime": req.realtime.model_copy(update={"instance_count": 20})}
    )

    assert kit.service().handle(kit.message(forged)) is Outcome.DEAD_LETTERED

    assert kit.deployments.get("acme", "thermostat").status is DeploymentStatus.PENDING
    reasons = [m["MessageAttributes"]["failure_reason"]["StringValue"] for m in kit.dead_letters()]
    assert reasons == ["request does not match its deployment record"]


def test_over_the_endpoint_quota_the_deployment_fails_with_the_reason(
    kit: Any, platform: Any, make: Any
) -> None:
    platform.tenants.put(make.tenant(max_endpoint_instances=2))
    first = kit.submit(kit.deploy_request("first"))
    kit.service().handle(kit.message(first))
    second = kit.submit(
        kit.deploy_request("second", realtime={"instance_type": "ml.m5.large", "instance_count": 2})
    )

    assert kit.service().handle(kit.message(second)) is Outcome.REJECTED

    record = kit.deployments.get("acme", "second")
    assert record.status is DeploymentStatus.FAILED
    assert "your other endpoints run 1" in str(record.failure_reason)
    with pytest.raises(ClientError):
        kit.sagemaker.describe_endpoint(EndpointName="acme-second")


def test_serverless_is_refused_where_the_tenant_requires_vpc_inference(
    kit: Any, platform: Any, make: Any
) -> None:
    platform.tenants.put(make.tenant(require_vpc_inference=True))
    req = kit.submit(
        kit.deploy_request(
            kind=EndpointKind.SERVERLESS,
            realtime=None,
            serverless={"memory_mb": 2048, "max_concurrency": 5},
        )
    )

    assert kit.service().handle(kit.message(req)) is Outcome.REJECTED

    record = kit.deployments.get("acme", "thermostat")
    assert record.status is DeploymentStatus.FAILED
    assert "serverless inference does not support" in str(record.failure_reason)


def test_a_serverless_endpoint_has_no_vpc_capture_baseline_or_drift_alarm(kit: Any) -> None:
    req = kit.submit(
        kit.deploy_request(
            kind=EndpointKind.SERVERLESS,
            realtime=None,
            serverless={"memory_mb": 2048, "max_concurrency": 5},
        )
    )

    assert kit.service().handle(kit.message(req)) is Outcome.CREATING

    record = kit.deployments.get("acme", "thermostat")
    model = kit.sagemaker.describe_model(ModelName=record.model_name)
    assert not model.get("VpcConfig")
    config = kit.sagemaker.describe_endpoint_config(EndpointConfigName=record.endpoint_config_name)
    assert config["ProductionVariants"][0]["ServerlessConfig"] == {
        "MemorySizeInMB": 2048,
        "MaxConcurrency": 5,
    }
    assert not config.get("DataCaptureConfig")
    assert record.baseline_job_name is None
    assert not any(name.endswith("-data-quality") for name in record.alarm_names)
    assert len(record.alarm_names) == 3


def test_a_version_that_is_not_approved_is_refused(kit: Any) -> None:
    from training_common import ModelApprovalStatus

    kit.models.put_if_absent(
        kit.approved_model("acme-job-3", 3, approval_status=ModelApprovalStatus.PENDING)
    )
    req = kit.submit(kit.deploy_request(model_job_id="acme-job-3"))

    assert kit.service().handle(kit.message(req)) is Outcome.REJECTED

    assert "is not approved" in str(kit.deployments.get("acme", "thermostat").failure_reason)


def test_a_new_version_updates_the_endpoint_blue_green_with_rollback_alarms(kit: Any) -> None:
    kit.service().handle(kit.message(kit.submit(kit.deploy_request())))
    in_service(kit)
    update = kit.submit(kit.deploy_request(model_job_id="acme-job-2"))
    client, stub = stubbed_client()
    new_config = None

    def expect(record: Any) -> None:
        stub.add_response(
            "update_endpoint",
            {"EndpointArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{ENDPOINT}"},
            {
                "EndpointName": ENDPOINT,
                "EndpointConfigName": ANY,
                "DeploymentConfig": {
                    "BlueGreenUpdatePolicy": {
                        "TrafficRoutingConfiguration": {
                            "Type": "ALL_AT_ONCE",
                            "WaitIntervalInSeconds": 300,
                        },
                        "TerminationWaitInSeconds": 0,
                        "MaximumExecutionTimeoutInSeconds": 2100,
                    },
                    "AutoRollbackConfiguration": {
                        "Alarms": [
                            {"AlarmName": "tp-test-acme-thermostat-invocation-5xx"},
                            {"AlarmName": "tp-test-acme-thermostat-model-latency"},
                        ]
                    },
                },
            },
        )

    expect(None)
    with stub:
        outcome = kit.service(Shim(kit.sagemaker, client, {"update_endpoint"})).handle(
            kit.message(update)
        )
        stub.assert_no_pending_responses()

    assert outcome is Outcome.UPDATING
    record = kit.deployments.get("acme", "thermostat")
    new_config = record.endpoint_config_name
    assert record.status is DeploymentStatus.UPDATING
    assert record.model_version == 2 and record.serving_model_version == 1
    assert kit.sagemaker.describe_endpoint_config(EndpointConfigName=new_config)


def test_an_update_sagemaker_refuses_returns_to_the_serving_version_with_the_reason(
    kit: Any,
) -> None:
    kit.service().handle(kit.message(kit.submit(kit.deploy_request())))
    in_service(kit)
    serving_config = kit.deployments.get("acme", "thermostat").endpoint_config_name
    update = kit.submit(
        kit.deploy_request(
            model_job_id="acme-job-2",
            realtime={"instance_type": "ml.m5.xlarge", "instance_count": 1},
        )
    )
    client, stub = stubbed_client()
    stub.add_client_error(
        "update_endpoint",
        "ValidationException",
        "Instance type not available in arn:aws:sagemaker:us-east-1:123456789012:endpoint/x",
    )

    with stub:
        outcome = kit.service(Shim(kit.sagemaker, client, {"update_endpoint"})).handle(
            kit.message(update)
        )

    assert outcome is Outcome.REJECTED
    record = kit.deployments.get("acme", "thermostat")
    assert record.status is DeploymentStatus.IN_SERVICE
    assert record.model_job_id == "acme-job-1" and record.model_version == 1
    assert record.realtime.instance_type == "ml.m5.large"
    assert record.endpoint_config_name == serving_config
    assert (
        record.failure_reason
        == "SageMaker did not accept the deployment: Instance type not available in <arn>"
    )


def test_throttling_backs_off_and_the_last_attempt_says_so_on_the_record(kit: Any) -> None:
    req = kit.submit(kit.deploy_request())
    client, stub = stubbed_client()
    stub.add_client_error("describe_model", "ThrottlingException", "slow down")
    stub.add_client_error("describe_model", "ThrottlingException", "slow down")

    with stub:
        service = kit.service(Shim(kit.sagemaker, client, {"describe_model"}))
        with pytest.raises(RetryLaterError):
            service.handle(kit.message(req, receive_count=1))
        assert kit.deployments.get("acme", "thermostat").status is DeploymentStatus.PENDING
        with pytest.raises(RetryLaterError):
            service.handle(kit.message(req, receive_count=5))

    record = kit.deployments.get("acme", "thermostat")
    assert record.status is DeploymentStatus.FAILED
    assert "after 5 attempts (last error: ThrottlingException)" in str(record.failure_reason)


def test_undeploy_deletes_schedule_endpoint_and_alarms_and_records_deleted(kit: Any) -> None:
    kit.service().handle(kit.message(kit.submit(kit.deploy_request())))
    in_service(kit)
    undeploy = kit.submit(kit.other_request("undeploy"))
    client, stub = stubbed_client()
    stub.add_client_error("delete_monitoring_schedule", "ResourceNotFound", "no schedule")
    stub.add_client_error("delete_data_quality_job_definition", "ResourceNotFound", "none")

    with stub:
        names = {"delete_monitoring_schedule", "delete_data_quality_job_definition"}
        outcome = kit.service(Shim(kit.sagemaker, client, names)).handle(kit.message(undeploy))
        stub.assert_no_pending_responses()

    assert outcome is Outcome.UNDEPLOYED
    with pytest.raises(ClientError):
        kit.sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    assert (
        kit.cloudwatch.describe_alarms(AlarmNamePrefix="tp-test-acme-thermostat-")["MetricAlarms"]
        == []
    )
    record = kit.deployments.get("acme", "thermostat")
    assert record.status is DeploymentStatus.DELETED
    assert record.history[-1].status is DeploymentStatus.DELETED


def test_an_undeploy_retried_after_job_events_recorded_deleted_still_cleans_up(kit: Any) -> None:
    """SageMaker's "endpoint deleted" event may reach job-events (DELETED) before the first
    attempt's cleanup is done: the retry of the same request deletes what is left."""
    kit.service().handle(kit.message(kit.submit(kit.deploy_request())))
    in_service(kit)
    undeploy = kit.submit(kit.other_request("undeploy"))
    prefix = "tp-test-acme-thermostat-"
    assert kit.cloudwatch.describe_alarms(AlarmNamePrefix=prefix)["MetricAlarms"]

    def deleted_by_events(current: Any) -> Any:
        return current.model_copy(update={"status": DeploymentStatus.DELETED})

    kit.deployments.update("acme", "thermostat", deleted_by_events)
    client, stub = stubbed_client()  # moto has no monitoring schedules
    stub.add_client_error("delete_monitoring_schedule", "ResourceNotFound", "no schedule")
    stub.add_client_error("delete_data_quality_job_definition", "ResourceNotFound", "none")
    with stub:
        names = {"delete_monitoring_schedule", "delete_data_quality_job_definition"}
        service = kit.service(Shim(kit.sagemaker, client, names))
        outcome = service.handle(kit.message(undeploy, receive_count=2))
        stub.assert_no_pending_responses()

    assert outcome is Outcome.ALREADY_HANDLED
    assert kit.cloudwatch.describe_alarms(AlarmNamePrefix=prefix)["MetricAlarms"] == []
    with pytest.raises(ClientError):
        kit.sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    assert kit.deployments.get("acme", "thermostat").status is DeploymentStatus.DELETED


def test_monitor_creates_the_job_definition_and_schedule_of_a_completed_baseline(kit: Any) -> None:
    kit.service().handle(kit.message(kit.submit(kit.deploy_request())))
    record = kit.deployments.get("acme", "thermostat")
    client, stub = stubbed_client()
    stub.add_client_error("describe_data_quality_job_definition", "ResourceNotFound", "none")
    stub.add_response(
        "create_data_quality_job_definition",
        {
            "JobDefinitionArn": "arn:aws:sagemaker:us-east-1:123456789012:"
            "data-quality-job-definition/q"
        },
        {
            "JobDefinitionName": ANY,
            "DataQualityBaselineConfig": {
                "BaseliningJobName": record.baseline_job_name,
                "ConstraintsResource": {
                    "S3Uri": "s3://data-bucket/tenants/acme/monitoring/acme-thermostat/baseline/constraints.json"
                },
                "StatisticsResource": {
                    "S3Uri": "s3://data-bucket/tenants/acme/monitoring/acme-thermostat/baseline/statistics.json"
                },
            },
            "DataQualityAppSpecification": ANY,
            "DataQualityJobInput": {
                "EndpointInput": {
                    "EndpointName": ENDPOINT,
                    "LocalPath": "/opt/ml/processing/input/endpoint",
                    "S3InputMode": "File",
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
            "DataQualityJobOutputConfig": ANY,
            "JobResources": ANY,
            "NetworkConfig": ANY,
            "RoleArn": kit.env["MONITORING_ROLE_ARN"],
            "StoppingCondition": {"MaxRuntimeInSeconds": 1800},
            "Tags": [
                {"Key": "tenant", "Value": "acme"},
                {"Key": "deployment", "Value": "thermostat"},
            ],
        },
    )
    stub.add_client_error("describe_monitoring_schedule", "ResourceNotFound", "none")
    stub.add_response(
        "create_monitoring_schedule",
        {"MonitoringScheduleArn": "arn:aws:sagemaker:us-east-1:123456789012:monitoring-schedule/s"},
        {
            "MonitoringScheduleName": ANY,
            "MonitoringScheduleConfig": {
                "ScheduleConfig": {"ScheduleExpression": "cron(0 * ? * * *)"},
                "MonitoringJobDefinitionName": ANY,
                "MonitoringType": "DataQuality",
            },
            "Tags": [
                {"Key": "tenant", "Value": "acme"},
                {"Key": "deployment", "Value": "thermostat"},
            ],
        },
    )
    names = {
        "describe_data_quality_job_definition",
        "create_data_quality_job_definition",
        "describe_monitoring_schedule",
        "create_monitoring_schedule",
    }

    with stub:
        service = kit.service(Shim(kit.sagemaker, client, names))
        assert service.handle(kit.message(kit.other_request("monitor"))) is Outcome.MONITORED
        stub.assert_no_pending_responses()

    assert kit.deployments.get("acme", "thermostat").monitoring_schedule_name is not None


def test_a_forged_monitor_message_does_nothing_the_platform_would_not(kit: Any) -> None:
    req = kit.submit(
        kit.deploy_request(
            kind=EndpointKind.SERVERLESS,
            realtime=None,
            serverless={"memory_mb": 2048, "max_concurrency": 5},
        )
    )
    kit.service().handle(kit.message(req))
    client, stub = stubbed_client()  # nothing stubbed: any monitoring call would fail the test

    with stub:
        service = kit.service(
            Shim(
                kit.sagemaker,
                client,
                {"create_monitoring_schedule", "create_data_quality_job_definition"},
            )
        )
        assert service.handle(kit.message(kit.other_request("monitor"))) is Outcome.IGNORED
        assert (
            service.handle(kit.message(kit.other_request("monitor", "unknown")))
            is Outcome.DEAD_LETTERED
        )

    assert kit.deployments.get("acme", "thermostat").monitoring_schedule_name is None
