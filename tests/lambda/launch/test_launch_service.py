"""The launch handler's logic against moto: launch, validate, defer, back off, dead-letter."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from launch.service import DEFERRALS_ATTRIBUTE, LaunchService, Outcome
from launch.settings import LaunchSettings
from training_common import Job, JobStatus, QueueMessage, TenantStatus
from training_common.sqs_handler import RetryLaterError


def make_service(platform: Any, **env: str) -> LaunchService:
    return LaunchService.from_settings(
        LaunchSettings.from_env({**platform.env, **env}), platform.session
    )


def message(req: Any, *, receive_count: int = 1, deferrals: int | None = None) -> QueueMessage:
    attributes = {} if deferrals is None else {DEFERRALS_ATTRIBUTE: str(deferrals)}
    return QueueMessage(
        message_id="m-1",
        body=req.to_message_body(),
        receipt_handle="rh-1",
        receive_count=receive_count,
        attributes=attributes,
    )


def client_error(
    code: str, text: str = "slow down", operation: str = "CreateTrainingJob"
) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": text}}, operation)


def test_valid_request_creates_an_isolated_training_job_and_marks_the_job_starting(
    platform: Any, make: Any
) -> None:
    platform.tenants.put(make.tenant())
    req = make.queue(platform, make.request())

    outcome = make_service(platform).handle(message(req))

    assert outcome is Outcome.LAUNCHED
    described = platform.sagemaker.describe_training_job(TrainingJobName=req.job_id)
    assert described["EnableNetworkIsolation"] is True
    assert described["VpcConfig"] == {
        "SecurityGroupIds": ["sg-111"],
        "Subnets": ["subnet-aaa", "subnet-bbb"],
    }
    assert described["ResourceConfig"]["VolumeKmsKeyId"] == platform.env["TRAINING_KMS_KEY_ARN"]
    assert described["OutputDataConfig"] == {
        "S3OutputPath": f"s3://artifacts-bucket/tenants/acme/jobs/{req.job_id}/output/",
        "KmsKeyId": platform.env["TRAINING_KMS_KEY_ARN"],
    }
    assert described["CheckpointConfig"]["S3Uri"] == (
        f"s3://artifacts-bucket/tenants/acme/jobs/{req.job_id}/checkpoints/"
    )
    source = described["InputDataConfig"][0]["DataSource"]["S3DataSource"]
    assert source["S3Uri"] == "s3://data-bucket/tenants/acme/datasets/houses/"
    assert described["RoleArn"] == platform.env["SAGEMAKER_ROLE_ARN"]
    assert described["HyperParameters"] == {"num_round": "50", "objective": "reg:squarederror"}
    assert described["AlgorithmSpecification"]["TrainingImage"].endswith("/xgboost:1.7-1")
    assert described["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}
    tags = platform.sagemaker.list_tags(ResourceArn=described["TrainingJobArn"])["Tags"]
    assert {t["Key"]: t["Value"] for t in tags} == {"tenant": "acme", "job": req.job_id}
    job = platform.jobs.get("acme", req.job_id)
    assert job.status is JobStatus.STARTING
    assert job.training_job_arn == described["TrainingJobArn"]
    assert job.launch_attempts == 1
    assert [entry.status for entry in job.status_history] == [JobStatus.QUEUED, JobStatus.STARTING]


def test_redelivered_request_for_a_created_job_does_not_create_it_again(
    platform: Any, make: Any
) -> None:
    platform.tenants.put(make.tenant())
    req = make.queue(platform, make.request())
    service = make_service(platform)
    assert service.handle(message(req)) is Outcome.LAUNCHED

    assert service.handle(message(req, receive_count=2)) is Outcome.ALREADY_HANDLED
    assert len(platform.sagemaker.list_training_jobs()["TrainingJobSummaries"]) == 1


def test_job_created_before_a_crash_is_marked_starting_on_redelivery_without_a_second_create(
    platform: Any, make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform.tenants.put(make.tenant())
    req = make.queue(platform, make.request())
    service = make_service(platform)
    service.handle(message(req))
    # Simulate the crash: the record went back to QUEUED's view of the world.
    platform.jobs.table.update_item(
        Key={"tenant_id": "acme", "job_id": req.job_id},
        UpdateExpression="SET #s = :q",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":q": "QUEUED"},
    )
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(service.sagemaker, "create_training_job", lambda **kw: calls.append(kw))

    assert service.handle(message(req, receive_count=2)) is Outcome.LAUNCHED
    assert calls == []
    assert platform.jobs.get("acme", req.job_id).status is JobStatus.STARTING


def test_name_already_in_use_counts_as_created(
    platform: Any, make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform.tenants.put(make.tenant())
    req = make.queue(platform, make.request())
    service = make_service(platform)
    service.handle(message(req))
    platform.jobs.table.update_item(
        Key={"tenant_id": "acme", "job_id": req.job_id},
        UpdateExpression="SET #s = :q",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":q": "QUEUED"},
    )

    def already_exists(**_: Any) -> None:
        raise client_error(
            "ValidationException",
            "Training job names must be unique within an AWS account and region, and a "
            "training job with this name already exists (arn:aws:sagemaker:...)",
        )

    monkeypatch.setattr(service.sagemaker, "create_training_job", already_exists)
    assert service.handle(message(req)) is Outcome.LAUNCHED
    job = platform.jobs.get("acme", req.job_id)
    assert job.status is JobStatus.STARTING
    assert job.training_job_arn and job.training_job_arn.endswith(f"training-job/{req.job_id}")


def test_name_in_use_that_describe_cannot_find_leaves_the_arn_unset(
    platform: Any, make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform.tenants.put(make.tenant())
    req = make.queue(platform, make.request())
    service = make_service(platform)

    def already_exists(**_: Any) -> None:
        raise client_error("ValidationException", "a training job with this name already exists")

    def not_found(**_: Any) -> None:
        raise client_error("ValidationException", "Requested resource not found.")

    monkeypatch.setattr(service.sagemaker, "create_training_job", already_exists)
    monkeypatch.setattr(service.sagemaker, "describe_training_job", not_found)
    assert service.handle(message(req)) is Outcome.LAUNCHED

    job = platform.jobs.get("acme", req.job_id)
    assert job.status is JobStatus.STARTING
    assert job.training_job_arn is None, "no empty ARN on the record"
    raw = platform.jobs.table.get_item(Key={"tenant_id": "acme", "job_id": req.job_id})["Item"]
    assert "training_job_arn" not in raw


FORGED_FIELDS = {
    "algorithm_id": "lightgbm",
    "dataset_key": "tenants/acme/datasets/other/",
    "hyperparameters": {"num_round": "5000"},
    "instance_type": "ml.m5.xlarge",
    "instance_count": 2,
    "max_runtime_seconds": 7200,
    "use_spot": True,
}


@pytest.mark.parametrize("field", sorted(FORGED_FIELDS))
def test_a_request_that_differs_from_its_record_is_parked_and_the_record_kept(
    platform: Any, make: Any, field: str
) -> None:
    """A tenant session can send to the queue: a message naming a queued job (another
    tenant's, say) with parameters of its own choosing launches nothing and cancels nothing."""
    platform.tenants.put(make.tenant())
    req = make.queue(platform, make.request())
    forged = req.model_copy(update={field: FORGED_FIELDS[field]})
    service = make_service(platform)

    assert service.handle(message(forged)) is Outcome.DEAD_LETTERED

    [parked] = platform.receive_all(platform.env["TRAINING_REQUESTS_DLQ_URL"])
    assert parked["MessageAttributes"]["failure_reason"]["StringValue"] == (
        "request does not match its job record"
    )
    assert platform.sagemaker.list_training_jobs()["TrainingJobSummaries"] == []
    job = platform.jobs.get("acme", req.job_id)
    assert (job.status, job.failure_reason, job.launch_attempts) == (JobStatus.QUEUED, None, 0)
    assert service.handle(message(req)) is Outcome.LAUNCHED, "the real request still runs"


def test_a_request_matching_its_record_with_other_metadata_launches(
    platform: Any, make: Any
) -> None:
    """Only what shapes the job must match: who sent it and when are not compared."""
    platform.tenants.put(make.tenant())
    req = make.queue(platform, make.request())
    resent = req.model_copy(update={"submitted_by": "bob@example.com"})

    assert make_service(platform).handle(message(resent)) is Outcome.LAUNCHED


def test_spot_request_sets_spot_training_and_a_wait_time(platform: Any, make: Any) -> None:
    platform.tenants.put(make.tenant())
    req = make.queue(platform, make.request(use_spot=True, max_runtime_seconds=1800))

    make_service(platform).handle(message(req))

    described = platform.sagemaker.describe_training_job(TrainingJobName=req.job_id)
    assert described["EnableManagedSpotTraining"] is True
    assert described["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 1800,
        "MaxWaitTimeInSeconds": 3600,
    }


REJECTIONS = {
    "tenant-unknown": ({}, {"tenant_id": "ghost"}, "is not registered on the platform"),
    "tenant-suspended": (
        {"status": TenantStatus.SUSPENDED},
        {},
        "Your tenant account is suspended",
    ),
    "algorithm-unknown": (
        {},
        {"algorithm_id": "no-such-algo"},
        "'no-such-algo' is not in the catalog",
    ),
    "algorithm-not-allowed": (
        {"allowed_algorithms": ["resnet"]},
        {},
        "Algorithm 'xgboost' is not enabled for your tenant; enabled: resnet",
    ),
    "instance-type-not-in-quota": (
        {},
        {"instance_type": "ml.g5.xlarge"},
        "Instance type ml.g5.xlarge is not in your quota; allowed: ml.m5.large, ml.m5.xlarge",
    ),
    "instance-type-not-supported": (
        {"allowed_instance_types": ["ml.m5.large", "ml.c5.large"]},
        {"instance_type": "ml.c5.large"},
        "Algorithm 'xgboost' does not run on ml.c5.large",
    ),
    "instance-count": (
        {},
        {"instance_count": 3},
        "3 instances requested; your quota allows at most 2 per job",
    ),
    "runtime": (
        {},
        {"max_runtime_seconds": 86400},
        "maximum runtime of 86400 s was requested; your quota allows at most 7200 s",
    ),
    "spot-unsupported": (
        {},
        {"use_spot": True, "algorithm_id": "no-spot"},
        "'no-spot' does not support managed spot training",
    ),
    "reserved-hyperparameter": (
        {},
        {"hyperparameters": {"sagemaker_program": "evil.py"}},
        "remove sagemaker_program",
    ),
}


@pytest.mark.parametrize(
    ("tenant_overrides", "request_overrides", "reason"), REJECTIONS.values(), ids=REJECTIONS.keys()
)
def test_invalid_request_is_rejected_with_a_readable_reason_and_nothing_is_created(
    platform: Any,
    make: Any,
    tenant_overrides: dict[str, Any],
    request_overrides: dict[str, Any],
    reason: str,
) -> None:
    platform.tenants.put(make.tenant(**tenant_overrides))
    platform.catalog.put(make.algorithm(id="no-spot", supports_spot=False))
    tenant_id = request_overrides.pop("tenant_id", "acme")
    req = make.queue(platform, make.request(tenant_id, **request_overrides))

    outcome = make_service(platform).handle(message(req))

    assert outcome is Outcome.REJECTED
    job = platform.jobs.get(tenant_id, req.job_id)
    assert job.status is JobStatus.REJECTED
    assert reason in (job.failure_reason or "")
    assert platform.sagemaker.list_training_jobs()["TrainingJobSummaries"] == []


@pytest.mark.parametrize(
    "dataset_key",
    [
        "tenants/globex/datasets/secret/",
        "tenants/acme-corp/datasets/houses/",
        "tenants/acme/datasets/../../globex/datasets/secret/",
        "tenants/acme/models/houses/",
    ],
)
def test_dataset_outside_the_tenants_prefix_is_rejected(
    platform: Any, make: Any, dataset_key: str
) -> None:
    platform.tenants.put(make.tenant())
    platform.tenants.put(make.tenant("globex"))
    req = make.queue(platform, make.request(dataset_key=dataset_key))

    assert make_service(platform).handle(message(req)) is Outcome.REJECTED

    job = platform.jobs.get("acme", req.job_id)
    assert job.status is JobStatus.REJECTED
    assert f"The dataset '{dataset_key}' is not one of your datasets" in (job.failure_reason or "")
    assert platform.sagemaker.list_training_jobs()["TrainingJobSummaries"] == []


def running_job(platform: Any, make: Any) -> None:
    other = make.request()
    job = Job.from_request(other).model_copy(update={"status": JobStatus.IN_PROGRESS})
    platform.jobs.create(job)


def test_full_quota_defers_the_request_with_a_delay_and_a_counter(platform: Any, make: Any) -> None:
    platform.tenants.put(make.tenant(max_running_jobs=1))
    running_job(platform, make)
    req = make.queue(platform, make.request())

    outcome = make_service(platform, QUOTA_DEFER_BASE_SECONDS="0").handle(message(req))

    assert outcome is Outcome.DEFERRED
    [resent] = platform.receive_all(platform.env["TRAINING_REQUESTS_QUEUE_URL"])
    assert json.loads(resent["Body"]) == json.loads(req.to_message_body())
    assert resent["MessageAttributes"][DEFERRALS_ATTRIBUTE]["StringValue"] == "1"
    job = platform.jobs.get("acme", req.job_id)
    assert job.status is JobStatus.QUEUED
    assert job.launch_attempts == 1
    assert platform.sagemaker.list_training_jobs()["TrainingJobSummaries"] == []


def test_deferral_delay_grows_and_stays_within_the_sqs_limit(
    platform: Any, make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform.tenants.put(make.tenant(max_running_jobs=1))
    running_job(platform, make)
    req = make.queue(platform, make.request())
    service = make_service(platform, MAX_QUOTA_DEFERRALS="50")
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(service.sqs, "send_message", lambda **kw: sent.append(kw))

    for deferrals in (0, 1, 2, 10):
        assert service.handle(message(req, deferrals=deferrals)) is Outcome.DEFERRED

    assert [call["DelaySeconds"] for call in sent] == [60, 120, 240, 900]
    assert [call["MessageAttributes"][DEFERRALS_ATTRIBUTE]["StringValue"] for call in sent] == [
        "1",
        "2",
        "3",
        "11",
    ]


def test_request_deferred_too_often_is_rejected_with_the_reason(platform: Any, make: Any) -> None:
    platform.tenants.put(make.tenant(max_running_jobs=1))
    running_job(platform, make)
    req = make.queue(platform, make.request())

    outcome = make_service(platform).handle(message(req, deferrals=3))

    assert outcome is Outcome.REJECTED
    job = platform.jobs.get("acme", req.job_id)
    assert job.status is JobStatus.REJECTED
    assert "You already have 1 running job(s), the most your quota allows (1)" in job.failure_reason
    assert "waited through 3 checks" in job.failure_reason
    assert platform.receive_all(platform.env["TRAINING_REQUESTS_QUEUE_URL"]) == []


@pytest.mark.parametrize("code", ["ThrottlingException", "ResourceLimitExceeded"])
def test_sagemaker_throttling_leaves_the_message_with_exponential_back_off(
    platform: Any, make: Any, code: str
) -> None:
    platform.tenants.put(make.tenant())
    req = make.queue(platform, make.request())
    service = make_service(platform)
    visibility: list[dict[str, Any]] = []
    service.sqs.change_message_visibility = lambda **kw: visibility.append(kw)

    with Stubber(service.sagemaker) as stubber:
        # A redelivery first checks whether the job exists, then creates it.
        stubber.add_client_error("describe_training_job", service_error_code="ValidationException")
        stubber.add_client_error(
            "create_training_job", service_error_code=code, http_status_code=400
        )
        with pytest.raises(RetryLaterError, match=code):
            service.handle(message(req, receive_count=3))
        stubber.assert_no_pending_responses()

    assert visibility == [
        {
            "QueueUrl": platform.env["TRAINING_REQUESTS_QUEUE_URL"],
            "ReceiptHandle": "rh-1",
            "VisibilityTimeout": 120,
        }
    ]
    assert platform.jobs.get("acme", req.job_id).status is JobStatus.QUEUED


def test_last_attempt_marks_the_job_failed_saying_it_went_to_the_dead_letter_queue(
    platform: Any, make: Any
) -> None:
    platform.tenants.put(make.tenant())
    req = make.queue(platform, make.request())
    service = make_service(platform)
    service.sqs.change_message_visibility = lambda **kw: None

    with Stubber(service.sagemaker) as stubber:
        stubber.add_client_error("describe_training_job", service_error_code="ValidationException")
        stubber.add_client_error(
            "create_training_job", service_error_code="ThrottlingException", http_status_code=400
        )
        with pytest.raises(RetryLaterError):
            service.handle(message(req, receive_count=5))

    job = platform.jobs.get("acme", req.job_id)
    assert job.status is JobStatus.FAILED
    assert "after 5 attempts (last error: ThrottlingException)" in job.failure_reason
    assert "went to the dead-letter queue" in job.failure_reason


def test_unexpected_error_before_the_last_attempt_keeps_the_job_queued(
    platform: Any, make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform.tenants.put(make.tenant())
    req = make.queue(platform, make.request())
    service = make_service(platform)

    def denied(**_: Any) -> None:
        raise client_error("AccessDeniedException", "not authorized")

    monkeypatch.setattr(service.sagemaker, "create_training_job", denied)
    with pytest.raises(ClientError):
        service.handle(message(req, receive_count=4))
    assert platform.jobs.get("acme", req.job_id).status is JobStatus.QUEUED


def test_sagemaker_validation_error_fails_the_job_without_leaking_arns(
    platform: Any, make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform.tenants.put(make.tenant())
    req = make.queue(platform, make.request())
    service = make_service(platform)

    def invalid(**_: Any) -> None:
        raise client_error(
            "ValidationException",
            "Could not assume role arn:aws:iam::123456789012:role/sagemaker-training.",
        )

    monkeypatch.setattr(service.sagemaker, "create_training_job", invalid)
    assert service.handle(message(req)) is Outcome.FAILED
    job = platform.jobs.get("acme", req.job_id)
    assert job.status is JobStatus.FAILED
    assert job.failure_reason == "SageMaker did not accept the job: Could not assume role <arn>"


def test_request_without_a_job_record_goes_to_the_dead_letter_queue(
    platform: Any, make: Any
) -> None:
    platform.tenants.put(make.tenant())
    req = make.request()

    assert make_service(platform).handle(message(req)) is Outcome.DEAD_LETTERED

    [parked] = platform.receive_all(platform.env["TRAINING_REQUESTS_DLQ_URL"])
    assert (
        parked["MessageAttributes"]["failure_reason"]["StringValue"]
        == "no job record for this request"
    )
    assert platform.sagemaker.list_training_jobs()["TrainingJobSummaries"] == []


def test_settings_name_the_missing_variables(platform: Any) -> None:
    env = {k: v for k, v in platform.env.items() if k not in {"SAGEMAKER_ROLE_ARN", "JOBS_TABLE"}}
    with pytest.raises(ValueError, match=r"JOBS_TABLE: Field required.*SAGEMAKER_ROLE_ARN"):
        LaunchSettings.from_env(env)


def test_a_forged_unreadable_body_naming_another_job_leaves_it_queued(
    platform: Any, make: Any
) -> None:
    """A tenant session can send the queue anything: a broken body that names a queued job but
    not its submission time (which only the job's own tenant can read) fails nothing."""
    platform.tenants.put(make.tenant())
    req = make.queue(platform, make.request())
    forged = {"tenant_id": "acme", "job_id": req.job_id, "instance_count": "many"}
    service = make_service(platform)

    outcome = service.handle(
        QueueMessage(
            message_id="m-forged", body=json.dumps(forged), receipt_handle="rh", receive_count=1
        )
    )

    assert outcome is Outcome.DEAD_LETTERED
    job = platform.jobs.get("acme", req.job_id)
    assert job.status is JobStatus.QUEUED and job.failure_reason is None


def test_a_mismatched_request_failing_its_last_attempt_leaves_the_record_alone(
    platform: Any, make: Any
) -> None:
    platform.tenants.put(make.tenant())
    req = make.queue(platform, make.request())
    forged = req.model_copy(update={"instance_count": 2})
    service = make_service(platform)
    read = service.jobs.get
    calls: list[str] = []

    def first_read_fails(tenant_id: str, job_id: str) -> Job | None:
        calls.append(job_id)
        if len(calls) == 1:  # the launch's read fails, before the request is compared
            raise RuntimeError("DynamoDB unavailable")
        return read(tenant_id, job_id)

    service.jobs.get = first_read_fails  # type: ignore[method-assign]

    with pytest.raises(RuntimeError):
        service.handle(message(forged, receive_count=5))

    assert len(calls) == 2  # the last attempt read the record, and saw it isn't this request's
    job = platform.jobs.get("acme", req.job_id)
    assert job.status is JobStatus.QUEUED and job.failure_reason is None
