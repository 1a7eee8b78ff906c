"""Retraining triggers through the launch handler against moto: a warm-started tuning job per
policy and slot, launched once; forged, stale and paused triggers; skipped and failed runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from launch.retraining import FORGED_REASON, PlanOutcome, RetrainingPlanner
from launch.service import DEFERRALS_ATTRIBUTE, LaunchService, Outcome, metrics
from launch.settings import LaunchSettings
from training_common import (
    DataSelection,
    DatasetType,
    DeploymentStatus,
    JobKind,
    JobStatus,
    PolicyStatus,
    QueueMessage,
    RetrainingTrigger,
    RunDecision,
    TenantStatus,
    WarmStartType,
    manifest_key,
    retraining_job_id,
    run_id,
    slot_of,
    trigger_input,
    tuning_job_name,
)


@pytest.fixture(autouse=True)
def clear_metrics() -> Any:
    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


def service(platform: Any, relaunch: Any, **env: str) -> LaunchService:
    return LaunchService.from_settings(
        LaunchSettings.from_env(relaunch.env(**env)), platform.session
    )


def trigger_body(policy: Any, slot: datetime, **overrides: str) -> str:
    data = json.loads(trigger_input(policy))
    data["scheduled_time"] = slot.strftime("%Y-%m-%dT%H:%M:%SZ")
    data.update(overrides)
    return json.dumps(data)


def message(body: str, *, receive_count: int = 1, deferrals: int | None = None) -> QueueMessage:
    attributes = {} if deferrals is None else {DEFERRALS_ATTRIBUTE: str(deferrals)}
    return QueueMessage(
        message_id="m-1",
        body=body,
        receipt_handle="rh-1",
        receive_count=receive_count,
        attributes=attributes,
    )


def now_slot() -> datetime:
    return slot_of(datetime.now(UTC))


def tuning_jobs(platform: Any) -> list[str]:
    return [
        item["HyperParameterTuningJobName"]
        for item in platform.sagemaker.list_hyper_parameter_tuning_jobs()[
            "HyperParameterTuningJobSummaries"
        ]
    ]


def dlq_reasons(platform: Any) -> list[str]:
    messages = platform.receive_all(platform.env["TRAINING_REQUESTS_DLQ_URL"])
    return [
        str(m.get("MessageAttributes", {}).get("failure_reason", {}).get("StringValue", ""))
        for m in messages
    ]


def metric_names() -> set[str]:
    return set(metrics.metric_set)


def test_first_delivery_launches_a_warm_started_tuning_job_with_validation_and_manifest(
    platform: Any, relaunch: Any
) -> None:
    policy = relaunch.policy()
    slot = now_slot()
    job_id = retraining_job_id("acme", "weekly", slot)

    outcome = service(platform, relaunch).handle(message(trigger_body(policy, slot)))

    assert outcome is Outcome.LAUNCHED
    assert "RetrainingRunsLaunched" in metric_names()
    described = platform.sagemaker.describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=tuning_job_name(job_id)
    )
    assert described["WarmStartConfig"] == {
        "ParentHyperParameterTuningJobs": [
            {"HyperParameterTuningJobName": tuning_job_name(relaunch.parent_job_id)}
        ],
        "WarmStartType": "TransferLearning",
    }
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]
        for c in described["TrainingJobDefinition"]["InputDataConfig"]
    }
    key = manifest_key("acme", "weekly", slot)
    assert channels["train"]["S3DataType"] == "ManifestFile"
    assert channels["train"]["S3Uri"] == f"s3://data-bucket/{key}"
    assert channels["validation"] == {
        "S3DataType": "S3Prefix",
        "S3Uri": "s3://data-bucket/tenants/acme/datasets/holdout/",
        "S3DataDistributionType": "FullyReplicated",
    }
    stored = relaunch.s3.get_object(Bucket="data-bucket", Key=key)
    assert stored["ServerSideEncryption"] == "aws:kms"
    assert json.loads(stored["Body"].read()) == [
        {"prefix": "s3://data-bucket/tenants/acme/"},
        "datasets/houses/a.csv",
        "datasets/houses/b.csv",
    ]
    job = platform.jobs.get("acme", job_id)
    assert job is not None and job.status is JobStatus.STARTING
    assert job.kind is JobKind.TUNING and job.dataset_type is DatasetType.MANIFEST_FILE
    assert job.submitted_by == "retraining:weekly" and job.created_at == slot
    assert job.retraining is not None and job.retraining.run_id == run_id("weekly", slot)
    run = relaunch.runs.get("acme", run_id("weekly", slot))
    assert run is not None and run.decision is RunDecision.RUNNING
    assert run.job_id == job_id and run.tuning_job_name == tuning_job_name(job_id)
    assert run.deployed_model_job_id == relaunch.parent_job_id
    assert run.deployed_objective == pytest.approx(0.30)
    assert run.training_objects == 2
    updated = relaunch.policies.get("acme", "weekly")
    assert updated is not None and updated.last_run_slot == slot


def test_duplicate_delivery_of_a_slot_launches_nothing_new(platform: Any, relaunch: Any) -> None:
    policy = relaunch.policy()
    slot = now_slot()
    body = trigger_body(policy, slot)
    launcher = service(platform, relaunch)
    assert launcher.handle(message(body)) is Outcome.LAUNCHED
    # The policy is edited in between: the redelivery still rebuilds the first run's request.
    relaunch.policies.update(
        "acme", "weekly", lambda p: p.model_copy(update={"instance_type": "ml.m5.xlarge"})
    )

    again = launcher.handle(message(body, receive_count=2))
    third = launcher.handle(message(body))

    assert again is Outcome.ALREADY_HANDLED and third is Outcome.ALREADY_HANDLED
    assert tuning_jobs(platform) == [tuning_job_name(retraining_job_id("acme", "weekly", slot))]
    runs = relaunch.runs.list_page("acme", "weekly").items
    assert [r.run_id for r in runs] == [run_id("weekly", slot)]
    jobs = [j for j in platform.jobs.list_page("acme").items if j.retraining is not None]
    assert len(jobs) == 1 and jobs[0].instance_type == "ml.m5.large"


@pytest.mark.parametrize("case", ["wrong-token", "other-tenant", "no-policy"])
def test_forged_trigger_is_dead_lettered_and_nothing_launched(
    platform: Any, relaunch: Any, case: str
) -> None:
    policy = relaunch.policy()
    slot = now_slot()
    overrides = {
        "wrong-token": {"token": "0" * 32},
        "other-tenant": {"tenant_id": "globex"},
        "no-policy": {"policy_id": "nosuch"},
    }[case]

    outcome = service(platform, relaunch).handle(message(trigger_body(policy, slot, **overrides)))

    assert outcome is Outcome.DEAD_LETTERED
    assert tuning_jobs(platform) == []
    assert relaunch.runs.list_page("acme", "weekly").items == []
    assert FORGED_REASON in " ".join(dlq_reasons(platform))


@pytest.mark.parametrize(
    ("offset", "words"),
    [(timedelta(hours=-49), "older than"), (timedelta(minutes=30), "in the future")],
)
def test_stale_or_future_slot_is_dead_lettered(
    platform: Any, relaunch: Any, offset: timedelta, words: str
) -> None:
    policy = relaunch.policy()

    outcome = service(platform, relaunch).handle(message(trigger_body(policy, now_slot() + offset)))

    assert outcome is Outcome.DEAD_LETTERED
    assert words in " ".join(dlq_reasons(platform))
    assert tuning_jobs(platform) == []


def test_unreadable_trigger_is_dead_lettered(platform: Any, relaunch: Any) -> None:
    # The schedule's placeholder not replaced: not a time.
    body = trigger_input(relaunch.policy())

    assert service(platform, relaunch).handle(message(body)) is Outcome.DEAD_LETTERED
    assert "unreadable retraining trigger" in " ".join(dlq_reasons(platform))


def test_trigger_without_retraining_tables_is_dead_lettered(platform: Any, relaunch: Any) -> None:
    policy = relaunch.policy()
    launcher = LaunchService.from_settings(LaunchSettings.from_env(platform.env), platform.session)

    assert launcher.handle(message(trigger_body(policy, now_slot()))) is Outcome.DEAD_LETTERED
    assert "not configured" in " ".join(dlq_reasons(platform))


def test_paused_policy_is_ignored(platform: Any, relaunch: Any) -> None:
    policy = relaunch.policy(status=PolicyStatus.PAUSED)

    outcome = service(platform, relaunch).handle(message(trigger_body(policy, now_slot())))

    assert outcome is Outcome.IGNORED
    assert "RetrainingTriggersIgnored" in metric_names()
    assert relaunch.runs.list_page("acme", "weekly").items == []
    assert tuning_jobs(platform) == []


def test_suspended_tenant_skips_the_run(platform: Any, relaunch: Any, make: Any) -> None:
    policy = relaunch.policy()
    platform.tenants.put(make.tenant(status=TenantStatus.SUSPENDED, max_running_jobs=4))
    slot = now_slot()
    launcher = service(platform, relaunch)

    outcome = launcher.handle(message(trigger_body(policy, slot)))

    assert outcome is Outcome.SKIPPED
    assert "RetrainingRunsSkipped" in metric_names()
    run = relaunch.runs.get("acme", run_id("weekly", slot))
    assert run is not None and run.decision is RunDecision.SKIPPED
    assert run.reason == "tenant suspended" and run.job_id is None
    assert platform.jobs.get("acme", retraining_job_id("acme", "weekly", slot)) is None
    # A redelivery of the skipped slot stays skipped, even once the tenant is active again.
    platform.tenants.put(make.tenant(max_running_jobs=4))
    assert launcher.handle(message(trigger_body(policy, slot))) is Outcome.SKIPPED
    assert tuning_jobs(platform) == []


def test_deployment_not_in_service_skips_the_run(platform: Any, relaunch: Any) -> None:
    policy = relaunch.policy()
    relaunch.deployment(status=DeploymentStatus.DELETED)
    slot = now_slot()

    assert service(platform, relaunch).handle(message(trigger_body(policy, slot))) is (
        Outcome.SKIPPED
    )
    run = relaunch.runs.get("acme", run_id("weekly", slot))
    assert run is not None and "not in service (DELETED)" in (run.reason or "")


def test_no_new_data_skips_the_run(platform: Any, relaunch: Any) -> None:
    policy = relaunch.policy(last_run_slot=datetime.now(UTC) + timedelta(minutes=1))
    slot = now_slot()

    outcome = service(platform, relaunch).handle(message(trigger_body(policy, slot)))

    assert outcome is Outcome.SKIPPED
    run = relaunch.runs.get("acme", run_id("weekly", slot))
    assert run is not None and (run.reason or "").startswith("no new data since ")
    assert tuning_jobs(platform) == []


def test_full_quota_defers_the_trigger_body(platform: Any, relaunch: Any, make: Any) -> None:
    policy = relaunch.policy()
    platform.tenants.put(make.tenant(max_running_jobs=2))
    busy = make.queue(platform, make.request())
    platform.jobs.transition("acme", busy.job_id, JobStatus.STARTING)
    slot = now_slot()
    body = trigger_body(policy, slot)

    outcome = service(platform, relaunch, QUOTA_DEFER_BASE_SECONDS="0").handle(message(body))

    assert outcome is Outcome.DEFERRED
    [resent] = platform.receive_all(platform.env["TRAINING_REQUESTS_QUEUE_URL"])
    assert resent["Body"] == body
    assert resent["MessageAttributes"][DEFERRALS_ATTRIBUTE]["StringValue"] == "1"
    job = platform.jobs.get("acme", retraining_job_id("acme", "weekly", slot))
    assert job is not None and job.status is JobStatus.QUEUED
    # Once the slot is free the deferred trigger launches the recorded job.
    platform.jobs.transition("acme", busy.job_id, JobStatus.COMPLETED)
    assert service(platform, relaunch).handle(message(body, deferrals=1)) is Outcome.LAUNCHED
    assert len(tuning_jobs(platform)) == 1


def test_identical_data_warm_start_reads_the_whole_prefix(platform: Any, relaunch: Any) -> None:
    policy = relaunch.policy(
        warm_start=WarmStartType.IDENTICAL_DATA_AND_ALGORITHM,
        data_selection=DataSelection.WHOLE_PREFIX,
    )
    slot = now_slot()

    assert service(platform, relaunch).handle(message(trigger_body(policy, slot))) is (
        Outcome.LAUNCHED
    )
    described = platform.sagemaker.describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=tuning_job_name(retraining_job_id("acme", "weekly", slot))
    )
    assert described["WarmStartConfig"]["WarmStartType"] == "IdenticalDataAndAlgorithm"
    train = described["TrainingJobDefinition"]["InputDataConfig"][0]["DataSource"]
    assert train["S3DataSource"]["S3DataType"] == "S3Prefix"
    assert train["S3DataSource"]["S3Uri"] == "s3://data-bucket/tenants/acme/datasets/houses/"


def test_launch_rejection_marks_the_run_failed(platform: Any, relaunch: Any, make: Any) -> None:
    policy = relaunch.policy(instance_type="ml.g5.xlarge")  # not in acme's quota
    slot = now_slot()

    outcome = service(platform, relaunch).handle(message(trigger_body(policy, slot)))

    assert outcome is Outcome.REJECTED
    job = platform.jobs.get("acme", retraining_job_id("acme", "weekly", slot))
    assert job is not None and job.status is JobStatus.REJECTED
    run = relaunch.runs.get("acme", run_id("weekly", slot))
    assert run is not None and run.decision is RunDecision.FAILED
    assert run.reason == job.failure_reason and "ml.g5.xlarge" in (run.reason or "")
    assert tuning_jobs(platform) == []


def test_unfinished_warm_start_parent_rejects_the_job(platform: Any, relaunch: Any) -> None:
    platform.jobs.table.update_item(
        Key={"tenant_id": "acme", "job_id": relaunch.parent_job_id},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": "IN_PROGRESS"},
    )
    policy = relaunch.policy()
    slot = now_slot()

    assert service(platform, relaunch).handle(message(trigger_body(policy, slot))) is (
        Outcome.REJECTED
    )
    run = relaunch.runs.get("acme", run_id("weekly", slot))
    assert run is not None and run.decision is RunDecision.FAILED
    assert "has not finished (IN_PROGRESS)" in (run.reason or "")


def test_tampered_manifest_rejects_the_job(platform: Any, relaunch: Any) -> None:
    policy = relaunch.policy()
    slot = now_slot()
    planner = service(platform, relaunch).planner
    assert planner is not None
    planned = planner.plan(RetrainingTrigger.model_validate_json(trigger_body(policy, slot)), slot)
    assert planned.outcome is PlanOutcome.LAUNCH
    relaunch.s3.put_object(
        Bucket="data-bucket",
        Key=manifest_key("acme", "weekly", slot),
        Body=json.dumps([{"prefix": "s3://data-bucket/tenants/globex/"}, "datasets/x.csv"]),
    )

    outcome = service(platform, relaunch).handle(message(trigger_body(policy, slot)))

    assert outcome is Outcome.REJECTED
    assert tuning_jobs(platform) == []
    run = relaunch.runs.get("acme", run_id("weekly", slot))
    assert run is not None and run.decision is RunDecision.FAILED


def test_last_receive_of_a_failing_trigger_fails_job_and_run(platform: Any, relaunch: Any) -> None:
    policy = relaunch.policy()
    slot = now_slot()
    launcher = service(platform, relaunch)

    def broken(**_: Any) -> Any:
        raise RuntimeError("boom")

    launcher.sagemaker = SimpleNamespace(
        create_hyper_parameter_tuning_job=broken, describe_hyper_parameter_tuning_job=broken
    )
    with pytest.raises(RuntimeError):
        launcher.handle(message(trigger_body(policy, slot)))
    with pytest.raises(RuntimeError):
        launcher.handle(message(trigger_body(policy, slot), receive_count=5))

    job = platform.jobs.get("acme", retraining_job_id("acme", "weekly", slot))
    assert job is not None and job.status is JobStatus.FAILED
    run = relaunch.runs.get("acme", run_id("weekly", slot))
    assert run is not None and run.decision is RunDecision.FAILED
    assert "dead-letter queue" in (run.reason or "")


def test_planner_without_warm_start_parent_notes_why(platform: Any, relaunch: Any) -> None:
    policy = relaunch.policy(last_tuning_job_id=None)
    planner = RetrainingPlanner.from_tables(
        session=platform.session,
        policies_table="retraining-policies",
        runs_table="retraining-runs",
        jobs_table="jobs",
        models_table="models",
        deployments_table="deployments",
        tenants_table="tenants",
        data_bucket="data-bucket",
    )
    slot = now_slot()

    planned = planner.plan(RetrainingTrigger.model_validate_json(trigger_body(policy, slot)), slot)

    assert planned.outcome is PlanOutcome.LAUNCH
    assert planned.request is not None and planned.request.tuning is not None
    assert planned.request.tuning.warm_start is None
    assert planner.fail_run("acme", run_id("weekly", slot), "x", job_id="acme-other") is None
    failed = planner.fail_run("acme", run_id("weekly", slot), "SageMaker refused it")
    assert failed is not None and failed.decision is RunDecision.FAILED
    assert planner.fail_run("acme", run_id("weekly", slot), "again") is None


def test_sagemaker_refusal_marks_the_run_failed(platform: Any, relaunch: Any) -> None:
    from botocore.exceptions import ClientError

    policy = relaunch.policy()
    slot = now_slot()
    launcher = service(platform, relaunch)

    def refuse(**_: Any) -> Any:
        raise ClientError(
            {"Error": {"Code": "ValidationException", "Message": "parent not compatible"}},
            "CreateHyperParameterTuningJob",
        )

    launcher.sagemaker = SimpleNamespace(create_hyper_parameter_tuning_job=refuse)

    assert launcher.handle(message(trigger_body(policy, slot))) is Outcome.FAILED
    run = relaunch.runs.get("acme", run_id("weekly", slot))
    assert run is not None and run.decision is RunDecision.FAILED
    assert run.reason == "SageMaker did not accept the job: parent not compatible"
