"""Tuning job events update the tuning job's record (progress, best job from
DescribeHyperParameterTuningJob) and register the best model; its training jobs' events write
trials, never touching the tuning job's record."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from job_events.service import Outcome
from training_common import (
    JobStateUpdate,
    JobStatus,
    ModelApprovalStatus,
    ObjectiveType,
    objective_key,
)


def trial_event(
    sample: Any, job: Any, name: str, status: str, at_ms: int, auc: float | None, **detail: Any
) -> Any:
    """A training job event of the tuning job's training job ``name``."""
    finals = [{"MetricName": "train:progress", "Value": 100.0, "Timestamp": at_ms}]
    if auc is not None:
        finals.append({"MetricName": "validation:auc", "Value": auc, "Timestamp": at_ms})
    values: dict[str, Any] = {
        "Tags": {"tenant": "acme", "job": job.job_id},
        "TuningJobArn": "arn:aws:sagemaker:us-east-1:123456789012:hyper-parameter-tuning-job/"
        f"{job.tuning_job_name}",
        "HyperParameters": {
            "num_round": "50",
            "eta": "0.2",
            "max_depth": "6",
            "_tuning_objective_metric": "validation:auc",
        },
        "FinalMetricDataList": finals,
        "ModelArtifacts": {
            "S3ModelArtifacts": f"s3://artifacts-bucket/tenants/acme/jobs/{job.job_id}/output/"
            f"{name}/output/model.tar.gz"
        },
    }
    values.update(detail)
    tags = values.pop("Tags")
    return sample.training(name, status, at_ms, tags=tags, **values)


def test_a_running_tuning_job_records_progress_and_the_best_job_so_far(
    platform: Any, jobs_kit: Any, sample: Any
) -> None:
    job = jobs_kit.tuning_job()
    best = jobs_kit.trial_job(job, 1)
    jobs_kit.set_best(job, best, 0.91)
    event = sample.tuning(
        job.tuning_job_name,
        "InProgress",
        sample.T0,
        tags=jobs_kit.tags(job),
        completed=1,
        in_progress=2,
        failed=1,
    )

    assert jobs_kit.service().handle(event) is Outcome.APPLIED

    record = platform.jobs.get("acme", job.job_id)
    assert record.status is JobStatus.IN_PROGRESS
    assert record.tuning_job_arn.endswith(f"hyper-parameter-tuning-job/{job.tuning_job_name}")
    progress = record.tuning_progress
    assert (progress.completed, progress.in_progress, progress.failed) == (1, 2, 1)
    assert (progress.objective_succeeded, progress.objective_pending) == (1, 2)
    assert record.best_training_job.training_job_name == best
    assert record.best_training_job.objective_value == 0.91
    assert record.best_training_job.hyperparameters == {"eta": "0.2", "max_depth": "6"}
    assert jobs_kit.models.get("acme", job.job_id) is None, "registered only when it ends"


def test_a_completed_tuning_job_registers_its_best_model_and_notifies_once(
    platform: Any, jobs_kit: Any, sample: Any
) -> None:
    job = jobs_kit.tuning_job()
    jobs_kit.trial_job(job, 1)
    best = jobs_kit.trial_job(job, 2)
    jobs_kit.set_best(job, best, 0.93)
    inbox = jobs_kit.subscribe("acme")
    service = jobs_kit.service()
    done = sample.tuning(
        job.tuning_job_name,
        "Completed",
        sample.T0,
        tags=jobs_kit.tags(job),
        completed=5,
        failed=1,
    )

    assert service.handle(done) is Outcome.APPLIED
    assert service.handle(done) is Outcome.STALE

    record = platform.jobs.get("acme", job.job_id)
    assert record.status is JobStatus.COMPLETED
    version = jobs_kit.models.get("acme", job.job_id)
    assert version.training_job_name == best
    assert version.approval_status is ModelApprovalStatus.PENDING
    assert version.model_artifact_key == (
        f"tenants/acme/jobs/{job.job_id}/output/{best}/output/model.tar.gz"
    )
    assert version.image_uri == sample.IMAGE
    assert version.objective.name == "validation:auc"
    assert version.objective.type is ObjectiveType.MAXIMIZE
    assert version.objective.value == 0.93
    assert version.hyperparameters == {"num_round": "50", "eta": "0.2", "max_depth": "6"}
    package = platform.sagemaker.describe_model_package(ModelPackageName=version.model_package_arn)
    assert package["CustomerMetadataProperties"]["training_job"] == best
    assert package["CustomerMetadataProperties"]["objective"] == "validation:auc Maximize 0.93"
    assert package["MetadataProperties"]["GeneratedBy"].endswith(f"training-job/{best}")
    packages = platform.sagemaker.list_model_packages(ModelPackageGroupName="acme-models")
    assert len(packages["ModelPackageSummaryList"]) == 1
    [notification] = platform.notifications.list_page("acme").items
    assert notification.subject == f"Tuning job {job.job_id} completed"
    assert "5 completed, 1 failed, 0 stopped early" in notification.message
    assert f"Best training job: {best}, validation:auc = 0.93." in notification.message
    assert "eta=0.2, max_depth=6" in notification.message
    assert len(platform.receive_all(inbox)) == 1


def test_a_stopped_tuning_job_with_a_best_job_registers_it(
    platform: Any, jobs_kit: Any, sample: Any
) -> None:
    job = jobs_kit.tuning_job()
    best = jobs_kit.trial_job(job, 1)
    jobs_kit.set_best(job, best, 0.8)

    jobs_kit.service().handle(
        sample.tuning(job.tuning_job_name, "Stopped", sample.T0, tags=jobs_kit.tags(job))
    )

    assert platform.jobs.get("acme", job.job_id).status is JobStatus.STOPPED
    assert jobs_kit.models.get("acme", job.job_id).training_job_name == best
    [notification] = platform.notifications.list_page("acme").items
    assert notification.subject == f"Tuning job {job.job_id} stopped"


def test_a_failed_tuning_job_registers_nothing_and_says_why(
    platform: Any, jobs_kit: Any, sample: Any
) -> None:
    job = jobs_kit.tuning_job()
    failed = sample.tuning(
        job.tuning_job_name,
        "Failed",
        sample.T0,
        tags=jobs_kit.tags(job),
        failed=2,
        FailureReason="All training jobs failed",
    )

    jobs_kit.set_best(job, "", 0.0)  # no training job succeeded: no BestTrainingJob
    assert jobs_kit.service().handle(failed) is Outcome.APPLIED

    assert jobs_kit.models.get("acme", job.job_id) is None
    [notification] = platform.notifications.list_page("acme").items
    assert "Reason: All training jobs failed." in notification.message
    assert "No training job reported an objective value." in notification.message


def test_an_out_of_order_tuning_event_changes_nothing(
    platform: Any, jobs_kit: Any, sample: Any
) -> None:
    job = jobs_kit.tuning_job()
    jobs_kit.set_best(job, jobs_kit.trial_job(job, 1), 0.9)
    service = jobs_kit.service()
    service.handle(
        sample.tuning(job.tuning_job_name, "Completed", sample.T0 + 60_000, tags=jobs_kit.tags(job))
    )
    before = platform.jobs.get("acme", job.job_id)

    late = sample.tuning(
        job.tuning_job_name, "InProgress", sample.T0, tags=jobs_kit.tags(job), in_progress=2
    )
    assert service.handle(late) is Outcome.STALE

    assert platform.jobs.get("acme", job.job_id) == before


def test_a_tuning_event_whose_name_is_not_the_records_is_ignored(
    platform: Any, jobs_kit: Any, sample: Any
) -> None:
    job = jobs_kit.tuning_job()
    other = sample.tuning(
        "tune-0000000000000000000000000ff", "Completed", sample.T0, tags=jobs_kit.tags(job)
    )

    assert jobs_kit.service().handle(other) is Outcome.NOT_PLATFORM_JOB
    assert platform.jobs.get("acme", job.job_id).status is JobStatus.STARTING


def test_tuning_events_for_unknown_or_untagged_jobs_are_ignored(
    platform: Any, jobs_kit: Any, sample: Any
) -> None:
    service = jobs_kit.service()
    unknown = {"tenant": "acme", "job": "acme-20240101000000-abcdef"}

    assert (
        service.handle(sample.tuning("tune-abc", "InProgress", sample.T0, tags=unknown))
        is Outcome.UNKNOWN_JOB
    )
    assert (
        service.handle(sample.tuning("tune-abc", "InProgress", sample.T0, tags={}))
        is Outcome.NOT_PLATFORM_JOB
    )
    assert platform.jobs.get("acme", "acme-20240101000000-abcdef") is None


def test_an_unknown_tuning_status_is_dead_lettered(
    platform: Any, jobs_kit: Any, sample: Any
) -> None:
    job = jobs_kit.tuning_job()

    outcome = jobs_kit.service().handle(
        sample.tuning(job.tuning_job_name, "Hibernating", sample.T0, tags=jobs_kit.tags(job))
    )

    assert outcome is Outcome.DEAD_LETTERED
    [parked] = jobs_kit.dead_letters()
    assert parked["MessageAttributes"]["failure_reason"]["StringValue"] == (
        "unknown SageMaker tuning job status 'Hibernating'"
    )


def test_a_tuning_jobs_training_job_event_writes_a_trial_only(
    platform: Any, jobs_kit: Any, sample: Any
) -> None:
    job = jobs_kit.tuning_job()
    name = f"{job.tuning_job_name}-001-0a1b2c3d"
    service = jobs_kit.service()

    assert service.handle(trial_event(sample, job, name, "Completed", sample.T0, 0.87)) is (
        Outcome.APPLIED
    )

    trial = jobs_kit.trials.get("acme", job.job_id, name)
    assert trial.status == "Completed"
    assert trial.objective_value == 0.87
    assert trial.objective_key == objective_key(job.job_id, 0.87, ObjectiveType.MAXIMIZE)
    assert trial.hyperparameters == {"eta": "0.2", "max_depth": "6"}
    assert trial.final_metrics == {"train:progress": 100.0, "validation:auc": 0.87}
    assert trial.model_artifact_key == (
        f"tenants/acme/jobs/{job.job_id}/output/{name}/output/model.tar.gz"
    )
    parent = platform.jobs.get("acme", job.job_id)
    assert parent.status is JobStatus.STARTING, "the tuning job's events own its record"
    assert parent.status_history == job.status_history
    assert platform.notifications.list_page("acme").items == []
    assert jobs_kit.models.get("acme", job.job_id) is None


def test_trials_list_best_first_and_a_stale_trial_event_changes_nothing(
    platform: Any, jobs_kit: Any, sample: Any
) -> None:
    job = jobs_kit.tuning_job()
    service = jobs_kit.service()
    names = [f"{job.tuning_job_name}-00{n}-0000000{n}" for n in (1, 2, 3)]
    for name, auc in zip(names, (0.8, 0.95, None), strict=True):
        service.handle(trial_event(sample, job, name, "Completed", sample.T0 + 60_000, auc))

    late = trial_event(
        sample, job, names[1], "InProgress", sample.T0, None, SecondaryStatus="Training"
    )
    assert service.handle(late) is Outcome.STALE
    assert (
        service.handle(trial_event(sample, job, names[1], "Completed", sample.T0 + 60_000, 0.95))
        is Outcome.STALE
    )

    page = jobs_kit.trials.best_first("acme", job.job_id)
    assert [t.training_job_name for t in page.items] == [names[1], names[0], names[2]]
    assert page.items[0].status == "Completed"


def test_a_trial_artifact_outside_the_jobs_prefix_is_not_recorded(
    platform: Any, jobs_kit: Any, sample: Any
) -> None:
    job = jobs_kit.tuning_job()
    name = f"{job.tuning_job_name}-001-0a1b2c3d"
    event = trial_event(
        sample,
        job,
        name,
        "Completed",
        sample.T0,
        0.9,
        ModelArtifacts={"S3ModelArtifacts": "s3://artifacts-bucket/tenants/globex/model.tar.gz"},
    )

    jobs_kit.service().handle(event)

    assert jobs_kit.trials.get("acme", job.job_id, name).model_artifact_key is None


def test_trial_events_of_unknown_or_foreign_tuning_jobs_are_ignored(
    platform: Any, jobs_kit: Any, sample: Any
) -> None:
    job = jobs_kit.tuning_job()
    plain = jobs_kit.starting_job()
    service = jobs_kit.service()
    name = f"{job.tuning_job_name}-001-0a1b2c3d"

    unknown = trial_event(
        sample,
        job,
        name,
        "InProgress",
        sample.T0,
        None,
        Tags={"tenant": "acme", "job": "acme-20240101000000-abcdef"},
    )
    assert service.handle(unknown) is Outcome.UNKNOWN_JOB
    of_a_training_job = trial_event(
        sample,
        job,
        name,
        "InProgress",
        sample.T0,
        None,
        Tags={"tenant": "acme", "job": plain.job_id},
    )
    assert service.handle(of_a_training_job) is Outcome.NOT_PLATFORM_JOB
    foreign = trial_event(
        sample,
        job,
        name,
        "InProgress",
        sample.T0,
        None,
        TuningJobArn="arn:aws:sagemaker:us-east-1:123456789012:hyper-parameter-tuning-job/other",
    )
    assert service.handle(foreign) is Outcome.NOT_PLATFORM_JOB
    assert jobs_kit.trials.in_launch_order("acme", job.job_id).items == []


def _finished_without_best(platform: Any, job: Any, status: JobStatus, at_ms: int) -> None:
    """The record as an earlier delivery of the final event left it: final, no best job (the
    tuning job did not report it yet when that delivery described it)."""
    update = JobStateUpdate(status=status, event_time=datetime.fromtimestamp(at_ms / 1000, UTC))
    assert platform.jobs.apply_state_update("acme", job.job_id, update) is not None


@pytest.mark.parametrize(
    ("sagemaker_status", "status"),
    [("Completed", JobStatus.COMPLETED), ("Stopped", JobStatus.STOPPED)],
)
def test_a_redelivered_final_event_describes_the_tuning_job_for_its_best_job(
    platform: Any, jobs_kit: Any, sample: Any, sagemaker_status: str, status: JobStatus
) -> None:
    """A stale final event still registers the best model when the record lacks its best job."""
    job = jobs_kit.tuning_job()
    best = jobs_kit.trial_job(job, 1)
    jobs_kit.set_best(job, best, 0.9)
    _finished_without_best(platform, job, status, sample.T0)
    final = sample.tuning(
        job.tuning_job_name, sagemaker_status, sample.T0, tags=jobs_kit.tags(job), completed=3
    )

    assert jobs_kit.service().handle(final) is Outcome.STALE

    version = jobs_kit.models.get("acme", job.job_id)
    assert version.training_job_name == best
    assert version.objective.value == 0.9
    assert version.model_package_arn is not None
    assert jobs_kit.dead_letters() == []
    [notification] = platform.notifications.list_page("acme").items
    assert f"Best training job: {best}" in notification.message
    record = platform.jobs.get("acme", job.job_id)
    assert record.best_training_job is not None  # the job page shows it too
    assert record.best_training_job.training_job_name == best


def test_a_tuning_job_completed_without_a_successful_training_job_registers_nothing(
    platform: Any, jobs_kit: Any, sample: Any
) -> None:
    """A normal outcome: the tenant is told, nothing is registered, nothing dead-letters."""
    job = jobs_kit.tuning_job()
    jobs_kit.set_best(job, "", 0.0)  # no BestTrainingJob
    done = sample.tuning(
        job.tuning_job_name, "Completed", sample.T0, tags=jobs_kit.tags(job), failed=6
    )
    service = jobs_kit.service()

    assert service.handle(done) is Outcome.APPLIED
    assert service.handle(done) is Outcome.STALE

    assert platform.jobs.get("acme", job.job_id).status is JobStatus.COMPLETED
    assert jobs_kit.models.get("acme", job.job_id) is None
    assert jobs_kit.dead_letters() == []
    [notification] = platform.notifications.list_page("acme").items
    assert "No training job reported an objective value." in notification.message


def test_a_trial_event_without_a_tuning_job_arn_is_routed_by_its_job_tag(
    platform: Any, jobs_kit: Any, sample: Any
) -> None:
    job = jobs_kit.tuning_job()
    name = f"{job.tuning_job_name.upper()}-002-0a1b2c3d"
    event = trial_event(sample, job, name, "Completed", sample.T0, 0.88, TuningJobArn=None)

    assert jobs_kit.service().handle(event) is Outcome.APPLIED

    trial = jobs_kit.trials.get("acme", job.job_id, name)
    assert trial.objective_value == 0.88
    assert platform.jobs.get("acme", job.job_id).status is JobStatus.STARTING


def test_a_job_tagged_training_job_not_named_after_the_tuning_job_is_no_trial(
    platform: Any, jobs_kit: Any, sample: Any
) -> None:
    job = jobs_kit.tuning_job()
    plain = jobs_kit.starting_job()
    service = jobs_kit.service()
    stranger = trial_event(
        sample,
        job,
        "someone-elses-job-001-0a1b2c3d",
        "Completed",
        sample.T0,
        0.99,
        TuningJobArn=None,
    )
    of_a_training_job = trial_event(
        sample,
        job,
        f"{job.tuning_job_name}-001-0a1b2c3d",
        "Completed",
        sample.T0,
        0.99,
        TuningJobArn=None,
        Tags={"tenant": "acme", "job": plain.job_id},
    )

    assert service.handle(stranger) is Outcome.NOT_PLATFORM_JOB
    assert service.handle(of_a_training_job) is Outcome.NOT_PLATFORM_JOB

    assert jobs_kit.trials.in_launch_order("acme", job.job_id).items == []
    assert jobs_kit.trials.in_launch_order("acme", plain.job_id).items == []
    assert platform.jobs.get("acme", plain.job_id).status is JobStatus.STARTING


def test_a_newer_final_tuning_event_is_not_counted_as_a_second_completion(
    platform: Any, jobs_kit: Any, sample: Any
) -> None:
    from job_events import service as module

    module.metrics.clear_metrics()
    job = jobs_kit.tuning_job()
    jobs_kit.set_best(job, jobs_kit.trial_job(job, 1), 0.9)
    service = jobs_kit.service()
    tags = jobs_kit.tags(job)

    assert (
        service.handle(
            sample.tuning(job.tuning_job_name, "Completed", sample.T0, tags=tags, completed=5)
        )
        is Outcome.APPLIED
    )
    assert (
        service.handle(
            sample.tuning(
                job.tuning_job_name, "Completed", sample.T0 + 60_000, tags=tags, completed=6
            )
        )
        is Outcome.APPLIED
    )

    assert platform.jobs.get("acme", job.job_id).tuning_progress.completed == 6
    assert module.metrics.metric_set["TuningJobsCompleted"]["Value"] == [1.0]
    module.metrics.clear_metrics()
