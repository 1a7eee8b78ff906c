"""training_common: key layout, status machine, validation, models (the portal relies on them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from boto3.dynamodb.conditions import Key
from pydantic import ValidationError
from training_common import (
    FINAL_STATUSES,
    JOBS_RUNNING_INDEX,
    Job,
    JobAlreadyExistsError,
    JobStateUpdate,
    JobStatus,
    ProblemCode,
    TrainingRequest,
    allowed_predecessors,
    backoff_seconds,
    can_transition,
    describe_schema_errors,
    from_sagemaker_status,
    is_job_id_of_tenant,
    is_tenant_dataset_key,
    iso_utc,
    model_artifact_key,
    new_job_id,
    utc_now,
    validate_request,
)


def test_job_id_is_a_valid_sagemaker_name_within_46_characters() -> None:
    job_id = new_job_id("a" * 24, datetime(2024, 5, 1, 12, 0, tzinfo=UTC))
    assert len(job_id) == 46
    assert job_id.startswith("aaaaaaaaaaaaaaaaaaaaaaaa-20240501120000-")
    assert is_job_id_of_tenant(job_id, "a" * 24)
    assert not is_job_id_of_tenant(job_id, "a" * 23)
    with pytest.raises(ValueError, match="invalid tenant id"):
        new_job_id("Bad_Tenant")


def test_timestamps_have_a_fixed_width_so_string_order_is_time_order() -> None:
    early = iso_utc(datetime(2024, 1, 1, 0, 0, 0, tzinfo=UTC))
    later = iso_utc(datetime(2024, 1, 1, 0, 0, 0, 500_000, tzinfo=UTC))
    assert (early, later) == ("2024-01-01T00:00:00.000Z", "2024-01-01T00:00:00.500Z")
    assert early < later


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("tenants/acme/datasets/houses/", True),
        ("tenants/acme/datasets/houses/train.csv", True),
        ("tenants/acme/datasets/", False),
        ("tenants/acme-corp/datasets/houses/", False),
        ("tenants/acme/datasets/../../globex/datasets/x/", False),
        ("tenants/acme/datasets//x", False),
        ("tenants/globex/datasets/houses/", False),
    ],
)
def test_dataset_keys_must_stay_under_the_tenants_datasets_prefix(key: str, ok: bool) -> None:
    assert is_tenant_dataset_key("acme", key) is ok


def test_model_artifact_key_follows_sagemakers_output_layout() -> None:
    assert model_artifact_key("acme", "acme-1") == (
        "tenants/acme/jobs/acme-1/output/acme-1/output/model.tar.gz"
    )


def test_sagemaker_statuses_map_to_job_statuses() -> None:
    assert [from_sagemaker_status(s) for s in ("InProgress", "Completed", "Failed")] == [
        JobStatus.IN_PROGRESS,
        JobStatus.COMPLETED,
        JobStatus.FAILED,
    ]
    assert from_sagemaker_status("Stopping") is JobStatus.STOPPING
    assert from_sagemaker_status("Stopped") is JobStatus.STOPPED
    with pytest.raises(ValueError, match="unknown SageMaker"):
        from_sagemaker_status("Pending")


@pytest.mark.parametrize("final", sorted(FINAL_STATUSES))
def test_a_final_state_is_never_overwritten(final: JobStatus) -> None:
    assert [s for s in JobStatus if can_transition(final, s)] == [final]


def test_starting_and_rejected_come_only_from_queued() -> None:
    assert allowed_predecessors(JobStatus.STARTING) == {JobStatus.QUEUED, JobStatus.STARTING}
    assert allowed_predecessors(JobStatus.REJECTED) == {JobStatus.QUEUED, JobStatus.REJECTED}
    assert not can_transition(JobStatus.IN_PROGRESS, JobStatus.STARTING)
    assert not can_transition(JobStatus.STOPPING, JobStatus.IN_PROGRESS)


def test_all_problems_are_reported_and_quota_alone_is_transient(make: Any) -> None:
    tenant = make.tenant(max_running_jobs=1)
    req = make.request(instance_count=5)

    result = validate_request(req, tenant=tenant, algorithm=make.algorithm(), running_jobs=1)

    assert result.codes == {ProblemCode.INSTANCE_COUNT_TOO_HIGH, ProblemCode.RUNNING_JOBS_LIMIT}
    assert not result.ok and not result.only_transient
    quota_only = validate_request(
        make.request(), tenant=tenant, algorithm=make.algorithm(), running_jobs=1
    )
    assert quota_only.only_transient
    assert quota_only.reason == (
        "You already have 1 running job(s), the most your quota allows (1); "
        "the job will start when one finishes."
    )
    assert validate_request(
        make.request(), tenant=tenant, algorithm=make.algorithm(), running_jobs=0
    ).ok


def test_request_schema_errors_name_the_field(make: Any) -> None:
    body = make.request().model_dump(mode="json") | {"job_id": "globex-20240101000000-abcdef"}
    with pytest.raises(ValidationError) as error:
        TrainingRequest.model_validate(body)
    assert describe_schema_errors(error.value) == [
        "Value error, job_id must start with the tenant id"
    ]
    with pytest.raises(ValidationError) as error:
        TrainingRequest.model_validate(make.request().model_dump(mode="json") | {"extra": 1})
    assert describe_schema_errors(error.value) == ["extra: Extra inputs are not permitted"]


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_seconds(n, base=30, cap=900) for n in (1, 2, 3, 6, 100)] == [
        30,
        60,
        120,
        900,
        900,
    ]


def test_job_records_round_trip_and_job_ids_are_unique(platform: Any, make: Any) -> None:
    req = make.request(hyperparameters={"eta": "0.1"})
    job = Job.from_request(req)
    platform.jobs.create(job)

    assert platform.jobs.get("acme", req.job_id) == job
    with pytest.raises(JobAlreadyExistsError):
        platform.jobs.create(job)
    assert [j.job_id for j in platform.jobs.list_page("acme").items] == [req.job_id]


def test_repositories_of_one_session_share_one_dynamodb_client(platform: Any) -> None:
    from training_common import JobRepository, TenantRepository, new_session

    jobs = JobRepository.from_table_name("jobs", platform.session)
    tenants = TenantRepository.from_table_name("tenants", platform.session)
    other = JobRepository.from_table_name("jobs", new_session(region_name="us-east-1"))
    assert jobs.table.meta.client is tenants.table.meta.client
    assert other.table.meta.client is not jobs.table.meta.client
    assert (jobs.table.name, tenants.table.name) == ("jobs", "tenants")


def test_running_jobs_are_counted_per_tenant(platform: Any, make: Any) -> None:
    for status in (JobStatus.STARTING, JobStatus.IN_PROGRESS, JobStatus.COMPLETED):
        job = Job.from_request(make.request()).model_copy(update={"status": status})
        platform.jobs.create(job)
    platform.jobs.create(
        Job.from_request(make.request("globex")).model_copy(
            update={"status": JobStatus.IN_PROGRESS}
        )
    )
    assert platform.jobs.count_running("acme") == 2
    assert platform.jobs.count_running("globex") == 1


def test_only_running_jobs_are_in_the_sparse_index_that_counts_slots(
    platform: Any, make: Any
) -> None:
    """The quota check reads the Running index: a job enters it when it starts and leaves it
    in a final state, so the cost follows the running jobs, not the tenant's history."""
    req = make.request()
    platform.jobs.create(Job.from_request(req))
    index = {"IndexName": JOBS_RUNNING_INDEX, "KeyConditionExpression": Key("tenant_id").eq("acme")}

    assert platform.jobs.table.query(**index)["Items"] == []  # QUEUED holds no slot
    platform.jobs.transition("acme", req.job_id, JobStatus.STARTING)
    [entry] = platform.jobs.table.query(**index)["Items"]
    assert entry["job_id"] == req.job_id and entry["status"] == "STARTING"
    started = entry["running_since"]
    update = JobStateUpdate(status=JobStatus.IN_PROGRESS, event_time=utc_now())
    platform.jobs.apply_state_update("acme", req.job_id, update)
    [entry] = platform.jobs.table.query(**index)["Items"]
    assert entry["running_since"] == started  # the first start, kept
    assert platform.jobs.count_running("acme") == 1

    done = JobStateUpdate(status=JobStatus.COMPLETED, event_time=utc_now())
    platform.jobs.apply_state_update("acme", req.job_id, done)

    assert platform.jobs.table.query(**index)["Items"] == []
    assert (
        "running_since"
        not in platform.jobs.table.get_item(Key={"tenant_id": "acme", "job_id": req.job_id})["Item"]
    )
    assert platform.jobs.count_running("acme") == 0
