"""Tuning requests through the launch handler against moto (botocore Stubber for SageMaker's
throttling): launch, idempotency, quota in slots, rejection, back-off, dead-letter."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from launch.service import DEFERRALS_ATTRIBUTE, LaunchService, Outcome
from launch.settings import LaunchSettings
from training_common import Job, JobKind, JobStatus, QueueMessage, tuning_job_name
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


def client_error(code: str, text: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": text}}, "CreateHyperParameterTuningJob")


@pytest.fixture
def tunable(platform: Any, make: Any, tune: Any) -> Any:
    """acme (4 slots) and the tunable xgboost entry in the catalog."""
    platform.tenants.put(make.tenant(max_running_jobs=4))
    platform.catalog.put(tune.algorithm())
    return platform


def tuning_jobs(platform: Any) -> list[dict[str, Any]]:
    summaries: list[dict[str, Any]] = platform.sagemaker.list_hyper_parameter_tuning_jobs()[
        "HyperParameterTuningJobSummaries"
    ]
    return summaries


def back_to_queued(platform: Any, job_id: str) -> None:
    """What a crash between CreateHyperParameterTuningJob and the record's write leaves."""
    platform.jobs.table.update_item(
        Key={"tenant_id": "acme", "job_id": job_id},
        UpdateExpression="SET #s = :q REMOVE tuning_job_arn",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":q": "QUEUED"},
    )


def test_tuning_request_creates_the_tuning_job_and_marks_the_job_starting(
    tunable: Any, make: Any, tune: Any
) -> None:
    req = make.queue(tunable, tune.request())
    name = tuning_job_name(req.job_id)

    assert make_service(tunable).handle(message(req)) is Outcome.LAUNCHED

    described = tunable.sagemaker.describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=name
    )
    config = described["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == "Bayesian"
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 6, "MaxParallelTrainingJobs": 2}
    assert [r["Name"] for r in config["ParameterRanges"]["CategoricalParameterRanges"]] == [
        "booster"
    ]
    definition = described["TrainingJobDefinition"]
    assert definition["EnableNetworkIsolation"] is True
    assert definition["VpcConfig"]["Subnets"] == ["subnet-aaa", "subnet-bbb"]
    assert definition["ResourceConfig"]["VolumeKmsKeyId"] == tunable.env["TRAINING_KMS_KEY_ARN"]
    assert definition["OutputDataConfig"]["S3OutputPath"] == (
        f"s3://artifacts-bucket/tenants/acme/jobs/{req.job_id}/output/"
    )
    assert definition["StaticHyperParameters"] == {
        "num_round": "50",
        "objective": "reg:squarederror",
    }
    tags = tunable.sagemaker.list_tags(ResourceArn=described["HyperParameterTuningJobArn"])["Tags"]
    assert {t["Key"]: t["Value"] for t in tags} == {"tenant": "acme", "job": req.job_id}
    job = tunable.jobs.get("acme", req.job_id)
    assert job.kind is JobKind.TUNING
    assert job.status is JobStatus.STARTING
    assert job.tuning_job_arn == described["HyperParameterTuningJobArn"]
    assert job.tuning_job_arn.endswith(f":hyper-parameter-tuning-job/{name}")
    assert job.training_job_arn is None
    assert job.launch_attempts == 1
    assert tunable.sagemaker.list_training_jobs()["TrainingJobSummaries"] == []


def test_redelivered_request_of_a_started_tuning_job_is_already_handled(
    tunable: Any, make: Any, tune: Any
) -> None:
    req = make.queue(tunable, tune.request())
    service = make_service(tunable)
    assert service.handle(message(req)) is Outcome.LAUNCHED

    assert service.handle(message(req, receive_count=2)) is Outcome.ALREADY_HANDLED
    assert len(tuning_jobs(tunable)) == 1


def test_tuning_job_created_before_a_crash_is_found_on_redelivery_without_a_second_create(
    tunable: Any, make: Any, tune: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    req = make.queue(tunable, tune.request())
    service = make_service(tunable)
    service.handle(message(req))
    back_to_queued(tunable, req.job_id)
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(
        service.sagemaker, "create_hyper_parameter_tuning_job", lambda **kw: calls.append(kw)
    )

    assert service.handle(message(req, receive_count=2)) is Outcome.LAUNCHED

    assert calls == []
    job = tunable.jobs.get("acme", req.job_id)
    assert job.status is JobStatus.STARTING
    assert job.tuning_job_arn == tuning_jobs(tunable)[0]["HyperParameterTuningJobArn"]
    assert job.launch_attempts == 2


def test_duplicate_delivery_whose_create_finds_the_name_taken_counts_as_created(
    tunable: Any, make: Any, tune: Any
) -> None:
    req = make.queue(tunable, tune.request())
    service = make_service(tunable)
    service.handle(message(req))
    back_to_queued(tunable, req.job_id)

    # A first receive does not look first: moto answers ResourceInUse ("already exists").
    assert service.handle(message(req)) is Outcome.LAUNCHED

    assert len(tuning_jobs(tunable)) == 1
    job = tunable.jobs.get("acme", req.job_id)
    assert job.status is JobStatus.STARTING
    assert job.tuning_job_arn == tuning_jobs(tunable)[0]["HyperParameterTuningJobArn"]


def running(platform: Any, req: Any) -> None:
    platform.jobs.create(Job.from_request(req).model_copy(update={"status": JobStatus.IN_PROGRESS}))


def test_tuning_job_waits_while_its_parallel_jobs_do_not_fit_the_free_slots(
    tunable: Any, make: Any, tune: Any
) -> None:
    running(tunable, make.request())
    running(tunable, make.request())
    # 2 of 4 slots taken; this tuning job runs 3 training jobs at once.
    req = make.queue(tunable, tune.request(spec={"max_parallel_training_jobs": 3}))

    outcome = make_service(tunable, QUOTA_DEFER_BASE_SECONDS="0").handle(message(req))

    assert outcome is Outcome.DEFERRED
    [resent] = tunable.receive_all(tunable.env["TRAINING_REQUESTS_QUEUE_URL"])
    assert json.loads(resent["Body"]) == json.loads(req.to_message_body())
    assert resent["MessageAttributes"][DEFERRALS_ATTRIBUTE]["StringValue"] == "1"
    job = tunable.jobs.get("acme", req.job_id)
    assert job.status is JobStatus.QUEUED
    assert job.launch_attempts == 1
    assert tuning_jobs(tunable) == []


def test_running_tuning_job_holds_its_parallel_slots_against_a_training_request(
    tunable: Any, make: Any, tune: Any
) -> None:
    running(tunable, tune.request(spec={"max_parallel_training_jobs": 4}))
    req = make.queue(tunable, make.request())

    outcome = make_service(tunable, QUOTA_DEFER_BASE_SECONDS="0").handle(message(req))

    assert outcome is Outcome.DEFERRED
    assert tunable.sagemaker.list_training_jobs()["TrainingJobSummaries"] == []


def test_tuning_job_deferred_too_often_is_rejected_with_the_reason(
    tunable: Any, make: Any, tune: Any
) -> None:
    running(tunable, make.request())
    req = make.queue(tunable, tune.request(spec={"max_parallel_training_jobs": 4}))

    outcome = make_service(tunable).handle(message(req, deferrals=3))

    assert outcome is Outcome.REJECTED
    reason = tunable.jobs.get("acme", req.job_id).failure_reason
    assert "Your running jobs take 1 of the 4 slots" in reason
    assert "runs up to 4 training jobs at once" in reason
    assert "waited through 3 checks" in reason
    assert tuning_jobs(tunable) == []


REJECTIONS = {
    "parallel-jobs-above-the-quota": (
        {"max_training_jobs": 10, "max_parallel_training_jobs": 5},
        "5 parallel training jobs requested; your quota allows at most 4 running at once",
    ),
    "range-out-of-bounds": (
        {
            "ranges": [
                {"name": "eta", "type": "Continuous", "min_value": 0.01, "max_value": 5.0},
            ]
        },
        "The range of 'eta' (0.01 to 5) leaves the allowed 0.001 to 1",
    ),
    "objective-unknown": (
        {"objective_metric": "validation:auc"},
        "'validation:auc' is not a metric algorithm 'xgboost' reports; choose one of "
        "validation:rmse",
    ),
    "range-not-tunable": (
        {"ranges": [{"name": "gamma", "type": "Continuous", "min_value": 0, "max_value": 1}]},
        "Hyperparameter 'gamma' can't be tuned for 'xgboost'",
    ),
    "too-many-training-jobs": (
        {"max_training_jobs": 80},
        "80 training jobs requested for the tuning job; your quota allows at most 50",
    ),
}


@pytest.mark.parametrize(("spec", "reason"), REJECTIONS.values(), ids=REJECTIONS.keys())
def test_invalid_tuning_request_is_rejected_at_once_and_nothing_is_created(
    tunable: Any, make: Any, tune: Any, spec: dict[str, Any], reason: str
) -> None:
    req = make.queue(tunable, tune.request(spec=spec))

    assert make_service(tunable).handle(message(req)) is Outcome.REJECTED

    job = tunable.jobs.get("acme", req.job_id)
    assert job.status is JobStatus.REJECTED
    assert reason in (job.failure_reason or "")
    assert tuning_jobs(tunable) == []
    assert tunable.receive_all(tunable.env["TRAINING_REQUESTS_QUEUE_URL"]) == []


def test_algorithm_without_tunable_hyperparameters_rejects_tuning(
    platform: Any, make: Any, tune: Any
) -> None:
    platform.tenants.put(make.tenant(max_running_jobs=4))  # catalog: the plain xgboost entry
    req = make.queue(platform, tune.request())

    assert make_service(platform).handle(message(req)) is Outcome.REJECTED

    reason = platform.jobs.get("acme", req.job_id).failure_reason
    assert "lists no tunable hyperparameters or metrics in the catalog" in reason
    assert tuning_jobs(platform) == []


@pytest.mark.parametrize("code", ["ThrottlingException", "ResourceLimitExceeded"])
def test_throttled_tuning_job_stays_on_the_queue_with_back_off(
    tunable: Any, make: Any, tune: Any, code: str
) -> None:
    req = make.queue(tunable, tune.request())
    service = make_service(tunable)
    visibility: list[dict[str, Any]] = []
    service.sqs.change_message_visibility = lambda **kw: visibility.append(kw)

    with Stubber(service.sagemaker) as stubber:
        stubber.add_client_error(
            "describe_hyper_parameter_tuning_job",
            service_error_code="ResourceNotFound",
            expected_params={"HyperParameterTuningJobName": tuning_job_name(req.job_id)},
        )
        stubber.add_client_error(
            "create_hyper_parameter_tuning_job", service_error_code=code, http_status_code=400
        )
        with pytest.raises(RetryLaterError, match=code):
            service.handle(message(req, receive_count=3))
        stubber.assert_no_pending_responses()

    assert visibility == [
        {
            "QueueUrl": tunable.env["TRAINING_REQUESTS_QUEUE_URL"],
            "ReceiptHandle": "rh-1",
            "VisibilityTimeout": 120,
        }
    ]
    assert tunable.jobs.get("acme", req.job_id).status is JobStatus.QUEUED


def test_last_attempt_marks_the_tuning_job_failed_saying_it_went_to_the_dead_letter_queue(
    tunable: Any, make: Any, tune: Any
) -> None:
    req = make.queue(tunable, tune.request())
    service = make_service(tunable)
    service.sqs.change_message_visibility = lambda **kw: None

    with Stubber(service.sagemaker) as stubber:
        stubber.add_client_error(
            "describe_hyper_parameter_tuning_job", service_error_code="ResourceNotFound"
        )
        stubber.add_client_error(
            "create_hyper_parameter_tuning_job",
            service_error_code="ResourceLimitExceeded",
            http_status_code=400,
        )
        with pytest.raises(RetryLaterError):
            service.handle(message(req, receive_count=5))

    job = tunable.jobs.get("acme", req.job_id)
    assert job.status is JobStatus.FAILED
    assert "after 5 attempts (last error: ResourceLimitExceeded)" in job.failure_reason
    assert "went to the dead-letter queue" in job.failure_reason


def test_sagemaker_validation_error_fails_the_tuning_job_without_leaking_arns(
    tunable: Any, make: Any, tune: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    req = make.queue(tunable, tune.request())
    service = make_service(tunable)

    def invalid(**_: Any) -> None:
        raise client_error(
            "ValidationException",
            "The objective metric validation:rmse is not defined for "
            "arn:aws:sagemaker:us-east-1:123456789012:algorithm/xgboost.",
        )

    monkeypatch.setattr(service.sagemaker, "create_hyper_parameter_tuning_job", invalid)
    assert service.handle(message(req)) is Outcome.FAILED

    job = tunable.jobs.get("acme", req.job_id)
    assert job.status is JobStatus.FAILED
    assert job.failure_reason == (
        "SageMaker did not accept the job: The objective metric validation:rmse is not defined "
        "for <arn>"
    )
    assert job.tuning_job_arn is None


def test_request_that_disagrees_with_its_job_record_is_parked_and_the_record_kept(
    tunable: Any, make: Any, tune: Any
) -> None:
    """The record says training (one slot); a message claiming a tuning job for it is not run,
    and the record stays QUEUED (a forged message must not cancel the job)."""
    training = make.queue(tunable, make.request())
    forged = tune.request(job_id=training.job_id)

    assert make_service(tunable).handle(message(forged)) is Outcome.DEAD_LETTERED

    [parked] = tunable.receive_all(tunable.env["TRAINING_REQUESTS_DLQ_URL"])
    assert parked["MessageAttributes"]["failure_reason"]["StringValue"] == (
        "request does not match its job record"
    )
    job = tunable.jobs.get("acme", training.job_id)
    assert job.status is JobStatus.QUEUED
    assert job.failure_reason is None
    assert tuning_jobs(tunable) == []
    assert tunable.sagemaker.list_training_jobs()["TrainingJobSummaries"] == []


def test_a_tuning_request_with_another_search_than_its_record_is_parked(
    tunable: Any, make: Any, tune: Any
) -> None:
    """Same kind and slots, but more training jobs than the record holds: not launched."""
    req = make.queue(tunable, tune.request())
    forged = req.model_copy(update={"tuning": tune.spec(max_training_jobs=50)})

    assert make_service(tunable).handle(message(forged)) is Outcome.DEAD_LETTERED

    assert tunable.jobs.get("acme", req.job_id).status is JobStatus.QUEUED
    assert tuning_jobs(tunable) == []
    assert make_service(tunable).handle(message(req)) is Outcome.LAUNCHED, "the real one runs"
