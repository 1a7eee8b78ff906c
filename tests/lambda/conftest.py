"""Fixtures for the handler tests: fake credentials, and the platform's AWS resources in moto."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from moto import mock_aws
from training_common import new_session

from tests.moto_state import MotoState

# Powertools reads these when the handler modules are imported, during collection.
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "TrainingPlatformTests")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "handlers-tests")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from training_common import (
    CatalogEntry,
    CatalogRepository,
    Job,
    JobRepository,
    MetricDefinition,
    NotificationRepository,
    Tenant,
    TenantRepository,
    TenantStatus,
    TrainingRequest,
    create_tables,
    new_job_id,
)

REGION = "us-east-1"
ACCOUNT = "123456789012"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/sagemaker-training"
KMS_KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/11111111-2222-3333-4444-555555555555"


@pytest.fixture(autouse=True)
def fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test can reach a real account: fake credentials and a fixed region."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_METRICS_NAMESPACE": "TrainingPlatformTests",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture(autouse=True)
def _handler_log_level(caplog: pytest.LogCaptureFixture) -> None:
    """The handlers' Powertools loggers (one logger, named after POWERTOOLS_SERVICE_NAME) log
    at INFO in every test, whatever an earlier test in this worker set: the local simulators
    that the portal tests start turn it down to keep their console quiet."""
    caplog.set_level(logging.INFO, logger=os.environ["POWERTOOLS_SERVICE_NAME"])


@dataclass
class Platform:
    """The moto resources of one test, and the environment the handlers get."""

    session: boto3.Session
    env: dict[str, str]
    tenants: TenantRepository
    jobs: JobRepository
    notifications: NotificationRepository
    catalog: CatalogRepository
    sqs: Any
    sagemaker: Any

    def queue_url(self, name: str) -> str:
        return str(self.sqs.get_queue_url(QueueName=name)["QueueUrl"])

    def receive_all(self, queue_url: str) -> list[dict[str, Any]]:
        """Every message now visible on a queue, with all attributes (deleted after reading)."""
        messages: list[dict[str, Any]] = []
        while True:
            batch = self.sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=10,
                MessageAttributeNames=["All"],
                AttributeNames=["All"],
            ).get("Messages", [])
            if not batch:
                return messages
            messages.extend(batch)
            for message in batch:
                self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


@dataclass(frozen=True)
class _Built:
    env: dict[str, str]
    state: MotoState


@pytest.fixture(scope="session")
def _built_resources() -> _Built:
    """The resources every handler test starts from, created once per worker."""
    with mock_aws():
        session = new_session(region_name=REGION)
        dynamodb = session.client("dynamodb")
        create_tables(
            dynamodb,
            tenants="tenants",
            jobs="jobs",
            notifications="notifications",
            trials="trials",
            models="models",
        )
        s3 = session.client("s3")
        for bucket in ("catalog-bucket", "data-bucket", "artifacts-bucket"):
            s3.create_bucket(Bucket=bucket)
        sqs = session.client("sqs")
        urls = {
            name: sqs.create_queue(QueueName=name)["QueueUrl"]
            for name in (
                "training-requests-dlq",
                "job-events-dlq",
            )
        }
        for name in ("training-requests", "job-events"):
            dlq_arn = sqs.get_queue_attributes(
                QueueUrl=urls[f"{name}-dlq"], AttributeNames=["QueueArn"]
            )["Attributes"]["QueueArn"]
            urls[name] = sqs.create_queue(
                QueueName=name,
                Attributes={
                    "VisibilityTimeout": "30",
                    "RedrivePolicy": json.dumps(
                        {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}
                    ),
                },
            )["QueueUrl"]
        topic_arn = session.client("sns").create_topic(Name="notifications")["TopicArn"]
        env = {
            "TENANTS_TABLE": "tenants",
            "JOBS_TABLE": "jobs",
            "NOTIFICATIONS_TABLE": "notifications",
            "TRIALS_TABLE": "trials",
            "MODELS_TABLE": "models",
            "CATALOG_BUCKET": "catalog-bucket",
            "DATA_BUCKET": "data-bucket",
            "ARTIFACTS_BUCKET": "artifacts-bucket",
            "TRAINING_REQUESTS_QUEUE_URL": urls["training-requests"],
            "TRAINING_REQUESTS_DLQ_URL": urls["training-requests-dlq"],
            "JOB_EVENTS_DLQ_URL": urls["job-events-dlq"],
            "NOTIFICATIONS_TOPIC_ARN": topic_arn,
            "SAGEMAKER_ROLE_ARN": ROLE_ARN,
            "TRAINING_SUBNET_IDS": "subnet-aaa, subnet-bbb",
            "TRAINING_SECURITY_GROUP_IDS": "sg-111",
            "TRAINING_KMS_KEY_ARN": KMS_KEY_ARN,
            "MAX_RECEIVE_COUNT": "5",
            "MAX_QUOTA_DEFERRALS": "3",
            "CATALOG_CACHE_SECONDS": "0",
            "PORTAL_JOB_URL_TEMPLATE": "https://portal.example.com/jobs/{job_id}",
        }
        CatalogRepository(s3, "catalog-bucket", cache_ttl_seconds=0).put(algorithm())
        return _Built(env, MotoState.take())


@pytest.fixture
def platform(fake_aws_credentials: None, _built_resources: _Built) -> Iterator[Platform]:
    """Tables, buckets, queues (each with its DLQ) and the notifications topic, in moto: a copy
    of the built ones in the test's own mock, so what one test writes no other sees."""
    with mock_aws():
        _built_resources.state.restore()
        session = new_session(region_name=REGION)
        sqs = session.client("sqs")
        yield Platform(
            session=session,
            env=dict(_built_resources.env),
            tenants=TenantRepository.from_table_name("tenants", session),
            jobs=JobRepository.from_table_name("jobs", session),
            notifications=NotificationRepository.from_table_name("notifications", session),
            catalog=CatalogRepository(session.client("s3"), "catalog-bucket", cache_ttl_seconds=0),
            sqs=sqs,
            sagemaker=session.client("sagemaker"),
        )


def algorithm(**overrides: Any) -> CatalogEntry:
    """The catalog entry the tests use (``xgboost``)."""
    values: dict[str, Any] = {
        "id": "xgboost",
        "name": "XGBoost",
        "description": "Gradient boosted trees",
        "image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/xgboost:1.7-1",
        "default_hyperparameters": {"num_round": "100", "objective": "reg:squarederror"},
        "metric_definitions": [MetricDefinition(name="validation:rmse", regex="rmse=([0-9.]+)")],
        "supported_instance_types": ["ml.m5.large", "ml.m5.xlarge", "ml.g5.xlarge"],
        "supports_spot": True,
        "input_content_type": "text/csv",
    }
    values.update(overrides)
    return CatalogEntry.model_validate(values)


def tenant(tenant_id: str = "acme", **overrides: Any) -> Tenant:
    """An ACTIVE tenant with a small quota."""
    values: dict[str, Any] = {
        "tenant_id": tenant_id,
        "display_name": tenant_id.title(),
        "status": TenantStatus.ACTIVE,
        "max_running_jobs": 2,
        "max_instance_count": 2,
        "allowed_instance_types": ["ml.m5.large", "ml.m5.xlarge"],
        "allowed_algorithms": [],
        "max_runtime_seconds": 7200,
    }
    values.update(overrides)
    return Tenant.model_validate(values)


def request(tenant_id: str = "acme", **overrides: Any) -> TrainingRequest:
    """A valid training request for ``tenant_id``."""
    values: dict[str, Any] = {
        "tenant_id": tenant_id,
        "job_id": new_job_id(tenant_id),
        "algorithm_id": "xgboost",
        "dataset_key": f"tenants/{tenant_id}/datasets/houses/",
        "hyperparameters": {"num_round": "50"},
        "instance_type": "ml.m5.large",
        "instance_count": 1,
        "max_runtime_seconds": 3600,
        "use_spot": False,
        "submitted_by": "alice@example.com",
        "submitted_at": datetime.now(UTC),
    }
    values.update(overrides)
    return TrainingRequest.model_validate(values)


def queue(platform: Platform, req: TrainingRequest) -> TrainingRequest:
    """What the portal does: write the QUEUED job record (the message is built by the test)."""
    platform.jobs.create(Job.from_request(req))
    return req


def sqs_record(
    body: str,
    *,
    receive_count: int = 1,
    attributes: dict[str, str] | None = None,
    message_id: str = "m-1",
    receipt_handle: str = "rh-1",
) -> dict[str, Any]:
    """One record of a Lambda SQS event."""
    return {
        "messageId": message_id,
        "receiptHandle": receipt_handle,
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": "1700000000000",
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": "1700000000000",
        },
        "messageAttributes": {
            name: {"stringValue": value, "dataType": "String"}
            for name, value in (attributes or {}).items()
        },
        "md5OfBody": "0",
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:training-requests",
        "awsRegion": REGION,
    }


def receive_live(platform: Platform, queue_name: str) -> dict[str, Any]:
    """Receive one message from a moto queue and return it as a Lambda SQS record."""
    message = platform.sqs.receive_message(
        QueueUrl=platform.queue_url(queue_name),
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
        MaxNumberOfMessages=1,
    )["Messages"][0]
    record = sqs_record(
        message["Body"],
        receive_count=int(message["Attributes"]["ApproximateReceiveCount"]),
        message_id=message["MessageId"],
        receipt_handle=message["ReceiptHandle"],
        attributes={
            name: value["StringValue"]
            for name, value in message.get("MessageAttributes", {}).items()
        },
    )
    record["eventSourceARN"] = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue_name}"
    return record


class FakeLambdaContext:
    """The attributes Powertools reads from the Lambda context."""

    function_name = "test-function"
    memory_limit_in_mb = 512
    invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:test-function"
    aws_request_id = "00000000-0000-0000-0000-000000000000"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


@pytest.fixture
def make() -> SimpleNamespace:
    """Factories for test data, so test modules need not import this conftest."""
    return SimpleNamespace(
        algorithm=algorithm,
        tenant=tenant,
        request=request,
        queue=queue,
        sqs_record=sqs_record,
        receive_live=receive_live,
        context=FakeLambdaContext(),
    )


# Retraining (issue 12): the policies and runs tables, and record factories -------------------


def retraining_policy(tenant_id: str = "acme", **overrides: Any) -> Any:
    """An ACTIVE retraining policy of ``tenant_id`` for deployment ``thermostat`` (weekly,
    maximise validation:auc, automatic promotion), as the portal writes it."""
    from training_common import RetrainingPolicy, new_request_id, new_trigger_token

    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "tenant_id": tenant_id,
        "policy_id": "weekly",
        "deployment_id": "thermostat",
        "algorithm_id": "xgboost",
        "schedule_expression": "cron(0 3 ? * MON *)",
        "schedule_timezone": "Europe/Berlin",
        "flexible_window_minutes": 15,
        "dataset_prefix": f"tenants/{tenant_id}/datasets/houses/",
        "validation_key": f"tenants/{tenant_id}/datasets/holdout/",
        "hyperparameters": {"num_round": "50"},
        "tuning": {
            "objective_metric": "validation:auc",
            "objective_type": "Maximize",
            "strategy": "Bayesian",
            "ranges": [
                {"name": "eta", "type": "Continuous", "min_value": 0.01, "max_value": 0.5},
                {"name": "max_depth", "type": "Integer", "min_value": 2, "max_value": 10},
            ],
            "max_training_jobs": 6,
            "max_parallel_training_jobs": 2,
        },
        "instance_type": "ml.m5.large",
        "instance_count": 1,
        "max_runtime_seconds": 3600,
        "request_id": new_request_id(),
        "token": new_trigger_token(),
        "created_at": now,
        "updated_at": now,
        "submitted_by": "alice@example.com",
    }
    values.update(overrides)
    return RetrainingPolicy.model_validate(values)


@pytest.fixture
def retraining(platform: Platform) -> SimpleNamespace:
    """The ``retraining-policies`` and ``retraining-runs`` tables in moto (env
    ``RETRAINING_POLICIES_TABLE``, ``RETRAINING_RUNS_TABLE``), their repositories and
    ``policy(tenant_id="acme", **overrides)``, a policy record factory (not stored)."""
    from training_common import RetrainingPolicyRepository, RetrainingRunRepository

    create_tables(
        platform.session.client("dynamodb"),
        retraining_policies="retraining-policies",
        retraining_runs="retraining-runs",
    )
    return SimpleNamespace(
        env={
            "RETRAINING_POLICIES_TABLE": "retraining-policies",
            "RETRAINING_RUNS_TABLE": "retraining-runs",
        },
        policies=RetrainingPolicyRepository.from_table_name(
            "retraining-policies", platform.session
        ),
        runs=RetrainingRunRepository.from_table_name("retraining-runs", platform.session),
        policy=retraining_policy,
    )
