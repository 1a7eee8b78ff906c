"""End to end through both Lambda handlers, in moto: request -> SageMaker job -> events ->
COMPLETED record -> notification stored and published to the tenant's subscription."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import job_events.app as job_events_app
import launch.app as launch_app
import pytest
from training_common import JobStatus, iso_utc


@pytest.fixture
def handlers_env(platform: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Both handlers read the moto platform's environment; their cached services start fresh."""
    for name, value in platform.env.items():
        monkeypatch.setenv(name, value)
    launch_app.service.cache_clear()
    job_events_app.service.cache_clear()
    yield platform
    launch_app.service.cache_clear()
    job_events_app.service.cache_clear()


def test_request_to_notification(handlers_env: Any, make: Any) -> None:
    platform = handlers_env
    platform.tenants.put(make.tenant())
    req = make.queue(platform, make.request())
    platform.sqs.send_message(
        QueueUrl=platform.env["TRAINING_REQUESTS_QUEUE_URL"], MessageBody=req.to_message_body()
    )
    inbox = platform.sqs.create_queue(QueueName="acme-inbox")["QueueUrl"]
    inbox_arn = platform.sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    platform.session.client("sns").subscribe(
        TopicArn=platform.env["NOTIFICATIONS_TOPIC_ARN"],
        Protocol="sqs",
        Endpoint=inbox_arn,
        Attributes={"FilterPolicy": json.dumps({"tenant_id": ["acme"]})},
    )

    launched = launch_app.handler(
        {"Records": [make.receive_live(platform, "training-requests")]}, make.context
    )

    assert launched == {"batchItemFailures": []}
    described = platform.sagemaker.describe_training_job(TrainingJobName=req.job_id)
    assert platform.jobs.get("acme", req.job_id).status is JobStatus.STARTING

    # EventBridge delivers SageMaker's state changes to the job-events queue.
    tags = platform.sagemaker.list_tags(ResourceArn=described["TrainingJobArn"])["Tags"]
    start = described["CreationTime"]
    for offset, status in ((1, "InProgress"), (2, "Completed")):
        at = start + timedelta(minutes=offset)
        detail = {
            **{k: v for k, v in described.items() if k != "ResponseMetadata"},
            "TrainingJobStatus": status,
            "SecondaryStatus": status,
            "LastModifiedTime": int(at.timestamp() * 1000),
            "Tags": {t["Key"]: t["Value"] for t in tags},
        }
        event = {
            "version": "0",
            "id": f"evt-{offset}",
            "detail-type": "SageMaker Training Job State Change",
            "source": "aws.sagemaker",
            "account": "123456789012",
            "time": iso_utc(at),
            "region": "us-east-1",
            "resources": [described["TrainingJobArn"]],
            "detail": detail,
        }
        platform.sqs.send_message(
            QueueUrl=platform.queue_url("job-events"), MessageBody=json.dumps(event, default=str)
        )
        applied = job_events_app.handler(
            {"Records": [make.receive_live(platform, "job-events")]}, make.context
        )
        assert applied == {"batchItemFailures": []}

    record = platform.jobs.get("acme", req.job_id)
    assert record.status is JobStatus.COMPLETED
    assert [e.status for e in record.status_history] == [
        JobStatus.QUEUED,
        JobStatus.STARTING,
        JobStatus.IN_PROGRESS,
        JobStatus.COMPLETED,
    ]
    assert record.model_artifact_key == (
        f"tenants/acme/jobs/{req.job_id}/output/{req.job_id}/output/model.tar.gz"
    )
    [notification] = platform.notifications.list_page("acme").items
    assert notification.job_id == req.job_id
    [delivered] = platform.receive_all(inbox)
    envelope = json.loads(delivered["Body"])
    assert envelope["Subject"] == f"Training job {req.job_id} completed"
    assert envelope["MessageAttributes"]["tenant_id"] == {"Type": "String", "Value": "acme"}
    assert f"https://portal.example.com/jobs/{req.job_id}" in envelope["Message"]


def test_malformed_messages_go_to_the_dlq_and_the_rest_of_the_batch_succeeds(
    handlers_env: Any, make: Any
) -> None:
    platform = handlers_env
    platform.tenants.put(make.tenant())
    good = make.queue(platform, make.request())
    named = make.queue(platform, make.request())
    schema_invalid = json.loads(named.to_message_body()) | {"instance_count": "many"}
    records = [
        make.sqs_record("this is not json", message_id="bad-json"),
        make.sqs_record(json.dumps(schema_invalid), message_id="bad-schema"),
        make.sqs_record(good.to_message_body(), message_id="good"),
    ]

    response = launch_app.handler({"Records": records}, make.context)

    assert response == {"batchItemFailures": []}
    parked = {
        m["MessageAttributes"]["source_message_id"]["StringValue"]: m
        for m in platform.receive_all(platform.env["TRAINING_REQUESTS_DLQ_URL"])
    }
    assert set(parked) == {"bad-json", "bad-schema"}
    assert parked["bad-json"]["Body"] == "this is not json"
    assert parked["bad-json"]["MessageAttributes"]["failure_reason"]["StringValue"].startswith(
        "unreadable training request: Invalid JSON"
    )
    assert (
        "instance_count: Input should be a valid integer"
        in (parked["bad-schema"]["MessageAttributes"]["failure_reason"]["StringValue"])
    )
    assert platform.jobs.get("acme", good.job_id).status is JobStatus.STARTING
    failed = platform.jobs.get("acme", named.job_id)
    assert failed.status is JobStatus.FAILED
    assert "could not read this job's request" in failed.failure_reason


def test_throttled_item_is_reported_and_becomes_visible_after_its_back_off(
    handlers_env: Any, make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform = handlers_env
    monkeypatch.setenv("RETRY_BACKOFF_BASE_SECONDS", "0")
    platform.tenants.put(make.tenant())
    req = make.queue(platform, make.request())
    platform.sqs.send_message(
        QueueUrl=platform.env["TRAINING_REQUESTS_QUEUE_URL"], MessageBody=req.to_message_body()
    )
    record = make.receive_live(platform, "training-requests")
    from botocore.exceptions import ClientError

    def throttled(**_: Any) -> None:
        raise ClientError(
            {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}},
            "CreateTrainingJob",
        )

    monkeypatch.setattr(launch_app.service().sagemaker, "create_training_job", throttled)

    response = launch_app.handler({"Records": [record]}, make.context)

    assert response == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    # The queue's own visibility timeout is 30 s; the handler's back-off (0 s here) replaced it.
    again = make.receive_live(platform, "training-requests")
    assert again["messageId"] == record["messageId"]
    assert again["attributes"]["ApproximateReceiveCount"] == "2"
    assert platform.jobs.get("acme", req.job_id).status is JobStatus.QUEUED


def _event(detail_type: str, resource: str, detail: dict[str, Any], at: Any) -> str:
    return json.dumps(
        {
            "version": "0",
            "id": f"evt-{detail_type}-{iso_utc(at)}",
            "detail-type": detail_type,
            "source": "aws.sagemaker",
            "account": "123456789012",
            "time": iso_utc(at),
            "region": "us-east-1",
            "resources": [resource],
            "detail": detail,
        },
        default=str,
    )


def test_tuning_job_to_approved_model(handlers_env: Any, make: Any) -> None:
    """A tuning job's trial, its completion (best model registered) and the tenant's approval,
    all through the job-events Lambda entry point."""
    from moto.sagemaker.models import sagemaker_backends
    from training_common import ModelRepository, TrialRepository

    platform = handlers_env
    req = make.queue(
        platform,
        make.request(
            tuning={
                "objective_metric": "validation:rmse",
                "objective_type": "Minimize",
                "ranges": [
                    {"name": "eta", "type": "Continuous", "min_value": 0.1, "max_value": 0.5}
                ],
                "max_training_jobs": 6,
                "max_parallel_training_jobs": 2,
            }
        ),
    )
    record = platform.jobs.get("acme", req.job_id)
    tags = [{"Key": "tenant", "Value": "acme"}, {"Key": "job", "Value": req.job_id}]
    image = make.algorithm().image_uri
    output = f"s3://artifacts-bucket/tenants/acme/jobs/{req.job_id}/output"
    definition = {
        "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File"},
        "RoleArn": "arn:aws:iam::123456789012:role/sagemaker-training",
        "OutputDataConfig": {"S3OutputPath": output},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 50},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }
    tuning_arn = platform.sagemaker.create_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=record.tuning_job_name,
        HyperParameterTuningJobConfig={
            "Strategy": "Bayesian",
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 6, "MaxParallelTrainingJobs": 2},
        },
        TrainingJobDefinition=definition,
        Tags=tags,
    )["HyperParameterTuningJobArn"]
    trial_name = f"{record.tuning_job_name}-001-0a1b2c3d"
    platform.sagemaker.create_training_job(
        TrainingJobName=trial_name, HyperParameters={"eta": "0.3"}, Tags=tags, **definition
    )
    backend = sagemaker_backends["123456789012"]["us-east-1"]
    backend.hyper_parameter_tuning_jobs[record.tuning_job_name].best_training_job = {
        "TrainingJobName": trial_name,
        "TunedHyperParameters": {"eta": "0.3"},
        "FinalHyperParameterTuningJobObjectiveMetric": {
            "MetricName": "validation:rmse",
            "Value": 0.2,
        },
    }
    described = platform.sagemaker.describe_training_job(TrainingJobName=trial_name)
    start = described["CreationTime"]
    trial_detail = {
        **{k: v for k, v in described.items() if k != "ResponseMetadata"},
        "TuningJobArn": tuning_arn,
        "FinalMetricDataList": [{"MetricName": "validation:rmse", "Value": 0.2}],
        "LastModifiedTime": int((start + timedelta(minutes=5)).timestamp() * 1000),
        "Tags": {t["Key"]: t["Value"] for t in tags},
    }
    tuning_detail = {
        "HyperParameterTuningJobName": record.tuning_job_name,
        "HyperParameterTuningJobArn": tuning_arn,
        "HyperParameterTuningJobStatus": "Completed",
        "TrainingJobStatusCounters": {"Completed": 1},
        "ObjectiveStatusCounters": {"Succeeded": 1},
        "LastModifiedTime": int((start + timedelta(minutes=6)).timestamp() * 1000),
        "Tags": {t["Key"]: t["Value"] for t in tags},
    }
    bodies = [
        make.sqs_record(
            _event("SageMaker Training Job State Change", trial_name, trial_detail, start),
            message_id="trial",
        ),
        make.sqs_record(
            _event(
                "SageMaker HyperParameter Tuning Job State Change", tuning_arn, tuning_detail, start
            ),
            message_id="tuning",
        ),
    ]

    assert job_events_app.handler({"Records": bodies}, make.context) == {"batchItemFailures": []}

    trials = TrialRepository.from_table_name("trials", platform.session)
    trial = trials.get("acme", req.job_id, trial_name)
    assert trial is not None and trial.objective_value == 0.2
    models = ModelRepository.from_table_name("models", platform.session)
    version = models.get("acme", req.job_id)
    assert version is not None and version.model_package_arn is not None
    assert version.training_job_name == trial_name
    approval = {
        "ModelPackageGroupName": "acme-models",
        "ModelPackageVersion": version.model_version,
        "ModelPackageArn": version.model_package_arn,
        "ModelApprovalStatus": "Approved",
        "CustomerMetadataProperties": {"job_id": req.job_id},
        "LastModifiedTime": iso_utc(start + timedelta(minutes=30)),
    }
    approved = make.sqs_record(
        _event("SageMaker Model Package State Change", version.model_package_arn, approval, start)
    )

    assert job_events_app.handler({"Records": [approved]}, make.context) == {
        "batchItemFailures": []
    }
    decided = models.get("acme", req.job_id)
    assert decided is not None and decided.approval_status.value == "Approved"
    subjects = sorted(n.subject for n in platform.notifications.list_page("acme").items)
    assert subjects == [f"Model of job {req.job_id} approved", f"Tuning job {req.job_id} completed"]
