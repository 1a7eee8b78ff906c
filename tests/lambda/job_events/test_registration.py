"""A completed training job's model is registered once, pending approval, in the tenant's group;
its metric series comes from CloudWatch (moto), and neither a CloudWatch error nor a redelivery
loses or duplicates anything."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from job_events.registry import ModelRegistrar, model_metrics_key
from job_events.service import Outcome
from training_common import (
    MAX_METRIC_POINTS,
    JobStatus,
    ModelApprovalStatus,
    ModelRepository,
    registration_token,
)


def throttled(operation: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, operation
    )


def test_a_completed_training_job_registers_its_model_pending_approval(
    platform: Any, jobs_kit: Any, sample: Any
) -> None:
    job = jobs_kit.starting_job()
    service = jobs_kit.service()

    assert service.handle(sample.completed(job.job_id, sample.T0)) is Outcome.APPLIED

    version = jobs_kit.models.get("acme", job.job_id)
    assert version.approval_status is ModelApprovalStatus.PENDING
    assert version.model_package_arn.endswith(":model-package/acme-models/1")
    assert version.model_version == 1
    assert (version.training_job_name, version.image_uri, version.dataset_key) == (
        job.job_id,
        sample.IMAGE,
        job.dataset_key,
    )
    assert version.model_artifact_key == (
        f"tenants/acme/jobs/{job.job_id}/output/{job.job_id}/output/model.tar.gz"
    )
    assert [(m.name, m.value) for m in version.metrics] == [("validation:rmse", 0.25)]
    package = platform.sagemaker.describe_model_package(ModelPackageName=version.model_package_arn)
    assert package["ModelPackageGroupName"] == "acme-models"
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    assert package["CustomerMetadataProperties"]["job_id"] == job.job_id
    assert package["CustomerMetadataProperties"]["dataset"] == job.dataset_key
    assert package["MetadataProperties"]["GeneratedBy"].endswith(f"training-job/{job.job_id}")
    [container] = package["InferenceSpecification"]["Containers"]
    assert container == {
        "Image": sample.IMAGE,
        "ModelDataUrl": f"s3://artifacts-bucket/{version.model_artifact_key}",
    }
    assert package["InferenceSpecification"]["SupportedContentTypes"] == ["text/csv"]
    statistics = package["ModelMetrics"]["ModelQuality"]["Statistics"]
    key = model_metrics_key("acme", job.job_id)
    assert statistics["S3Uri"] == f"s3://artifacts-bucket/{key}"
    document = json.loads(
        platform.session.client("s3").get_object(Bucket="artifacts-bucket", Key=key)["Body"].read()
    )
    assert document["metrics"] == {"validation:rmse": {"value": 0.25}}
    assert document["job_id"] == job.job_id
    group = platform.sagemaker.describe_model_package_group(ModelPackageGroupName="acme-models")
    tags = platform.sagemaker.list_tags(ResourceArn=group["ModelPackageGroupArn"])["Tags"]
    assert tags == [{"Key": "tenant", "Value": "acme"}]
    [notification] = platform.notifications.list_page("acme").items
    assert "registered as version 1 of your model registry" in notification.message


def test_registration_happens_once_across_redeliveries(
    platform: Any, jobs_kit: Any, sample: Any
) -> None:
    job = jobs_kit.starting_job()
    service = jobs_kit.service()
    service.handle(sample.completed(job.job_id, sample.T0))
    first = jobs_kit.models.get("acme", job.job_id)

    assert service.handle(sample.completed(job.job_id, sample.T0)) is Outcome.STALE
    assert jobs_kit.service().handle(sample.completed(job.job_id, sample.T0)) is Outcome.STALE

    packages = platform.sagemaker.list_model_packages(ModelPackageGroupName="acme-models")
    assert len(packages["ModelPackageSummaryList"]) == 1
    assert jobs_kit.models.get("acme", job.job_id) == first
    assert len(platform.notifications.list_page("acme").items) == 1


def test_an_interrupted_registration_is_finished_with_the_same_client_token(
    platform: Any, jobs_kit: Any, sample: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = jobs_kit.starting_job()
    service = jobs_kit.service()
    real_create = service.sagemaker.create_model_package
    tokens: list[str] = []

    def refused(**request: Any) -> Any:
        tokens.append(request["ClientToken"])
        raise throttled("CreateModelPackage")

    monkeypatch.setattr(service.sagemaker, "create_model_package", refused)
    with pytest.raises(ClientError):
        service.handle(sample.completed(job.job_id, sample.T0))
    pending = jobs_kit.models.get("acme", job.job_id)
    assert pending.approval_status is ModelApprovalStatus.REGISTERING
    assert pending.model_package_arn is None
    [told] = platform.notifications.list_page("acme").items
    assert told.published is True, "the tenant hears of the job before the retry"
    assert "model registry" not in told.message

    def recording(**request: Any) -> Any:
        tokens.append(request["ClientToken"])
        return real_create(**request)

    monkeypatch.setattr(service.sagemaker, "create_model_package", recording)
    assert service.handle(sample.completed(job.job_id, sample.T0)) is Outcome.STALE

    assert tokens == [registration_token(job.job_id)] * 2
    done = jobs_kit.models.get("acme", job.job_id)
    assert done.approval_status is ModelApprovalStatus.PENDING
    assert done.model_package_arn is not None
    [notification] = platform.notifications.list_page("acme").items
    assert notification.notification_id == told.notification_id, "told once"


def test_an_existing_group_is_used_as_it_is(platform: Any, jobs_kit: Any, sample: Any) -> None:
    created = platform.sagemaker.create_model_package_group(
        ModelPackageGroupName="acme-models",
        ModelPackageGroupDescription="onboarded",
        Tags=[{"Key": "tenant", "Value": "acme"}],
    )
    job = jobs_kit.starting_job()

    jobs_kit.service().handle(sample.completed(job.job_id, sample.T0))

    group = platform.sagemaker.describe_model_package_group(ModelPackageGroupName="acme-models")
    assert group["ModelPackageGroupDescription"] == "onboarded", "not re-created"
    assert group["ModelPackageGroupArn"] == created["ModelPackageGroupArn"]
    assert jobs_kit.models.get("acme", job.job_id).model_version == 1


def test_a_group_created_meanwhile_already_exists_and_that_is_fine(platform: Any) -> None:
    """Two first registrations of a tenant race: the loser's create says "already exists"."""
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    registrar = ModelRegistrar(
        sagemaker, None, ModelRepository.from_table_name("models"), "artifacts-bucket"
    )
    with Stubber(sagemaker) as stub:
        stub.add_client_error(
            "describe_model_package_group",
            service_error_code="ValidationException",
            service_message="ModelPackageGroup arn:aws:sagemaker:...:acme-models does not exist.",
            expected_params={"ModelPackageGroupName": "acme-models"},
        )
        stub.add_client_error(
            "create_model_package_group",
            service_error_code="ValidationException",
            service_message="Model Package Group already exists: arn:aws:sagemaker:...",
        )
        assert registrar.ensure_group("acme") == "acme-models"
        assert registrar.ensure_group("acme") == "acme-models", "known: no more calls"
        stub.assert_no_pending_responses()


def test_a_throttled_group_creation_is_retried_by_sqs(platform: Any) -> None:
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    registrar = ModelRegistrar(
        sagemaker, None, ModelRepository.from_table_name("models"), "artifacts-bucket"
    )
    with Stubber(sagemaker) as stub:
        stub.add_client_error(
            "describe_model_package_group", service_error_code="ThrottlingException"
        )
        with pytest.raises(ClientError, match="ThrottlingException"):
            registrar.ensure_group("acme")


def test_a_model_sagemaker_refuses_is_dead_lettered_with_the_reason_after_notifying(
    platform: Any, jobs_kit: Any, sample: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = jobs_kit.starting_job()
    service = jobs_kit.service()

    def invalid(**_: Any) -> Any:
        raise ClientError(
            {"Error": {"Code": "ValidationException", "Message": "Image is not valid"}},
            "CreateModelPackage",
        )

    monkeypatch.setattr(service.sagemaker, "create_model_package", invalid)

    assert service.handle(sample.completed(job.job_id, sample.T0)) is Outcome.DEAD_LETTERED

    assert platform.jobs.get("acme", job.job_id).status is JobStatus.COMPLETED
    [parked] = jobs_kit.dead_letters()
    reason = parked["MessageAttributes"]["failure_reason"]["StringValue"]
    assert reason == (
        f"cannot register the model: SageMaker refused the model package of job {job.job_id}: "
        "Image is not valid"
    )
    [notification] = platform.notifications.list_page("acme").items
    assert notification.published is True


def _seed_metrics(platform: Any, job_id: str, start: datetime, minutes: int) -> None:
    cloudwatch = platform.session.client("cloudwatch")
    for batch in range(0, minutes, 500):
        cloudwatch.put_metric_data(
            Namespace="/aws/sagemaker/TrainingJobs",
            MetricData=[
                {
                    "MetricName": "validation:rmse",
                    "Dimensions": [{"Name": "Host", "Value": f"{job_id}/algo-1"}],
                    "Timestamp": start + timedelta(minutes=minute),
                    "Value": 1.0 / (minute + 1),
                }
                for minute in range(batch, min(minutes, batch + 500))
            ],
        )


def _recent_start() -> tuple[datetime, int]:
    """A training start ten minutes ago (whole seconds) and the event time, in epoch ms, nine
    minutes after it: CloudWatch keeps one-minute data of recent jobs only."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    return start, int(start.timestamp() * 1000) + 540_000


def test_running_and_final_events_refresh_the_metric_series_from_cloudwatch(
    platform: Any, jobs_kit: Any, sample: Any
) -> None:
    job = jobs_kit.starting_job()
    start, at_ms = _recent_start()
    _seed_metrics(platform, job.job_id, start, 5)
    service = jobs_kit.service()

    service.handle(
        sample.state_change(
            job.job_id,
            "InProgress",
            at_ms,
            secondary="Training",
            TrainingStartTime=int(start.timestamp() * 1000),
        )
    )

    series = {s.name: s for s in platform.jobs.get("acme", job.job_id).metric_series}
    assert set(series) == {"validation:rmse", "train:rmse"}
    assert [round(p.value, 3) for p in series["validation:rmse"].points] == [
        1.0,
        0.5,
        0.333,
        0.25,
        0.2,
    ]
    assert series["train:rmse"].points == []
    assert series["validation:rmse"].points[0].at == start


def test_a_long_job_keeps_at_most_max_metric_points_per_metric(
    platform: Any, jobs_kit: Any, sample: Any
) -> None:
    job = jobs_kit.starting_job()
    start = datetime.fromtimestamp((sample.T0 - 540_000) / 1000, UTC)
    minutes = 2 * MAX_METRIC_POINTS + 30
    _seed_metrics(platform, job.job_id, start, minutes)
    end_ms = int((start + timedelta(minutes=minutes)).timestamp() * 1000)

    jobs_kit.service().handle(sample.completed(job.job_id, end_ms))

    [rmse] = [
        s
        for s in platform.jobs.get("acme", job.job_id).metric_series
        if s.name == "validation:rmse"
    ]
    assert 0 < len(rmse.points) <= MAX_METRIC_POINTS
    assert [p.at for p in rmse.points] == sorted(p.at for p in rmse.points)


def test_a_cloudwatch_error_does_not_lose_the_event(
    platform: Any, jobs_kit: Any, sample: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = jobs_kit.starting_job()
    service = jobs_kit.service()

    def denied(**_: Any) -> Any:
        raise ClientError(
            {"Error": {"Code": "AccessDenied", "Message": "not allowed"}}, "GetMetricData"
        )

    monkeypatch.setattr(service.cloudwatch, "get_metric_data", denied)

    outcome = service.handle(sample.completed(job.job_id, sample.T0))

    assert outcome is Outcome.APPLIED
    record = platform.jobs.get("acme", job.job_id)
    assert record.status is JobStatus.COMPLETED
    assert record.metric_series == []
    assert jobs_kit.models.get("acme", job.job_id).model_package_arn is not None
    assert len(platform.notifications.list_page("acme").items) == 1


def _refusing(code: str, operation: str) -> Any:
    def refuse(**_: Any) -> Any:
        raise ClientError({"Error": {"Code": code, "Message": f"{code} says no"}}, operation)

    return refuse


@pytest.mark.parametrize(
    ("method", "code"),
    [
        ("create_model_package", "ConflictException"),
        ("create_model_package_group", "AccessDeniedException"),
    ],
)
def test_any_registration_error_notifies_the_tenant_before_sqs_retries(
    platform: Any,
    jobs_kit: Any,
    sample: Any,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    code: str,
) -> None:
    """Should every attempt fail and the event dead-letter, the tenant has still been told."""
    job = jobs_kit.starting_job()
    service = jobs_kit.service()
    monkeypatch.setattr(service.sagemaker, method, _refusing(code, method))

    with pytest.raises(ClientError, match=code):
        service.handle(sample.completed(job.job_id, sample.T0))
    with pytest.raises(ClientError, match=code):
        service.handle(sample.completed(job.job_id, sample.T0))

    assert platform.jobs.get("acme", job.job_id).status is JobStatus.COMPLETED
    [notification] = platform.notifications.list_page("acme").items
    assert notification.published is True
    assert jobs_kit.dead_letters() == []


def test_an_s3_error_writing_the_model_metrics_notifies_before_the_retry(
    platform: Any, jobs_kit: Any, sample: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = jobs_kit.starting_job()
    service = jobs_kit.service()
    denied = _refusing("KMS.AccessDeniedException", "PutObject")
    monkeypatch.setattr(service.s3, "put_object", denied)

    with pytest.raises(ClientError, match="KMS"):
        service.handle(sample.completed(job.job_id, sample.T0))

    [notification] = platform.notifications.list_page("acme").items
    assert notification.published is True


@pytest.mark.parametrize(
    ("method", "reason"),
    [
        (
            "create_model_package",
            "cannot register the model: SageMaker refused the model package of job {job_id}: "
            "ResourceLimitExceeded says no",
        ),
        (
            "create_model_package_group",
            "cannot register the model: SageMaker's model package group quota is reached: "
            "ResourceLimitExceeded says no",
        ),
    ],
)
def test_a_full_quota_dead_letters_the_event_with_the_reason_after_notifying(
    platform: Any,
    jobs_kit: Any,
    sample: Any,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    reason: str,
) -> None:
    """Retrying within the queue's few receives won't raise a quota: park it, redrive later."""
    job = jobs_kit.starting_job()
    service = jobs_kit.service()
    monkeypatch.setattr(service.sagemaker, method, _refusing("ResourceLimitExceeded", method))

    assert service.handle(sample.completed(job.job_id, sample.T0)) is Outcome.DEAD_LETTERED

    [parked] = jobs_kit.dead_letters()
    assert parked["MessageAttributes"]["failure_reason"]["StringValue"] == reason.format(
        job_id=job.job_id
    )
    [notification] = platform.notifications.list_page("acme").items
    assert notification.published is True
