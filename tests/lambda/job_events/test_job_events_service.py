"""The job-events handler's logic against moto: apply, ignore, deduplicate, notify."""

from __future__ import annotations

import json
from typing import Any

import pytest
from job_events.service import JobEventsService, Outcome
from job_events.settings import JobEventsSettings
from training_common import Job, JobStatus, QueueMessage

T0 = 1_700_000_000_000  # epoch milliseconds (the sample events' base time)


def make_service(platform: Any) -> JobEventsService:
    return JobEventsService.from_settings(
        JobEventsSettings.from_env(platform.env), platform.session
    )


def starting_job(platform: Any, make: Any) -> Job:
    req = make.queue(platform, make.request())
    platform.jobs.transition("acme", req.job_id, JobStatus.STARTING)
    job: Job = platform.jobs.get("acme", req.job_id)
    return job


def subscribe(platform: Any, tenant: str) -> str:
    """A queue subscribed to the topic with the per-tenant filter policy; returns its URL."""
    url = platform.sqs.create_queue(QueueName=f"inbox-{tenant}")["QueueUrl"]
    arn = platform.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    platform.session.client("sns").subscribe(
        TopicArn=platform.env["NOTIFICATIONS_TOPIC_ARN"],
        Protocol="sqs",
        Endpoint=arn,
        Attributes={"FilterPolicy": json.dumps({"tenant_id": [tenant]})},
    )
    return str(url)


def test_events_update_the_record_and_a_final_state_notifies_the_tenant_once(
    sample: Any, platform: Any, make: Any
) -> None:
    job = starting_job(platform, make)
    acme_inbox, globex_inbox = subscribe(platform, "acme"), subscribe(platform, "globex")
    service = make_service(platform)

    assert service.handle(
        sample.state_change(job.job_id, "InProgress", T0, secondary="Training")
    ) is (Outcome.APPLIED)
    assert service.handle(sample.completed(job.job_id, T0 + 60_000)) is Outcome.APPLIED

    record = platform.jobs.get("acme", job.job_id)
    assert record.status is JobStatus.COMPLETED
    assert record.billable_seconds == 842
    assert [(m.name, m.value) for m in record.final_metrics] == [("validation:rmse", 0.25)]
    assert record.model_artifact_key == (
        f"tenants/acme/jobs/{job.job_id}/output/{job.job_id}/output/model.tar.gz"
    )
    assert [(e.status, e.secondary_status) for e in record.status_history] == [
        (JobStatus.QUEUED, None),
        (JobStatus.STARTING, None),
        (JobStatus.IN_PROGRESS, "Training"),
        (JobStatus.COMPLETED, "Completed"),
    ]
    assert record.last_event_time is not None
    assert record.last_event_time.timestamp() * 1000 == T0 + 60_000
    [notification] = platform.notifications.list_page("acme").items
    assert notification.status is JobStatus.COMPLETED
    assert notification.published is True
    assert notification.notification_id == f"2023-11-14T22:14:20.000Z#{job.job_id}"
    assert f"https://portal.example.com/jobs/{job.job_id}" in notification.message
    [delivered] = platform.receive_all(acme_inbox)
    envelope = json.loads(delivered["Body"])
    assert envelope["MessageAttributes"]["tenant_id"]["Value"] == "acme"
    assert "Download the trained model" in envelope["Message"]
    assert platform.receive_all(globex_inbox) == []


def test_duplicate_final_event_changes_nothing_and_publishes_nothing_more(
    sample: Any, platform: Any, make: Any
) -> None:
    job = starting_job(platform, make)
    inbox = subscribe(platform, "acme")
    service = make_service(platform)
    service.handle(sample.completed(job.job_id, T0))
    before = platform.jobs.get("acme", job.job_id)

    assert service.handle(sample.completed(job.job_id, T0)) is Outcome.STALE

    assert platform.jobs.get("acme", job.job_id) == before
    assert len(platform.notifications.list_page("acme").items) == 1
    assert len(platform.receive_all(inbox)) == 1


def test_out_of_order_event_is_ignored_and_the_final_state_stays(
    sample: Any, platform: Any, make: Any
) -> None:
    job = starting_job(platform, make)
    service = make_service(platform)
    service.handle(sample.completed(job.job_id, T0 + 60_000))

    late = sample.state_change(job.job_id, "InProgress", T0, secondary="Downloading")
    assert service.handle(late) is Outcome.STALE

    record = platform.jobs.get("acme", job.job_id)
    assert record.status is JobStatus.COMPLETED
    assert record.secondary_status == "Completed"
    assert [e.status for e in record.status_history][-1] is JobStatus.COMPLETED


def test_a_newer_event_cannot_overwrite_a_final_state(
    sample: Any, platform: Any, make: Any
) -> None:
    job = starting_job(platform, make)
    service = make_service(platform)
    service.handle(sample.state_change(job.job_id, "Stopped", T0, FailureReason=None))

    assert service.handle(sample.state_change(job.job_id, "Failed", T0 + 1_000)) is Outcome.STALE
    assert platform.jobs.get("acme", job.job_id).status is JobStatus.STOPPED


def test_failed_job_notification_carries_the_failure_reason(
    sample: Any, platform: Any, make: Any
) -> None:
    job = starting_job(platform, make)
    make_service(platform).handle(
        sample.state_change(job.job_id, "Failed", T0, FailureReason="AlgorithmError: out of memory")
    )

    record = platform.jobs.get("acme", job.job_id)
    assert record.failure_reason == "AlgorithmError: out of memory"
    [notification] = platform.notifications.list_page("acme").items
    assert notification.subject == f"Training job {job.job_id} failed"
    assert "Reason: AlgorithmError: out of memory." in notification.message


def test_interrupted_publish_is_finished_by_the_redelivery_exactly_once(
    sample: Any, platform: Any, make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = starting_job(platform, make)
    inbox = subscribe(platform, "acme")
    service = make_service(platform)
    real_publish = service.sns.publish

    def broken(**_: Any) -> None:
        raise ConnectionError("network blip")

    monkeypatch.setattr(service.sns, "publish", broken)
    with pytest.raises(ConnectionError):
        service.handle(sample.completed(job.job_id, T0))
    [pending] = platform.notifications.list_page("acme").items
    assert pending.published is False

    monkeypatch.setattr(service.sns, "publish", real_publish)
    assert service.handle(sample.completed(job.job_id, T0)) is Outcome.STALE
    assert service.handle(sample.completed(job.job_id, T0)) is Outcome.STALE

    [done] = platform.notifications.list_page("acme").items
    assert done.published is True
    assert len(platform.receive_all(inbox)) == 1


def test_event_for_an_unknown_job_is_ignored_without_creating_a_record(
    sample: Any, platform: Any
) -> None:
    outcome = make_service(platform).handle(
        sample.state_change("acme-20240101000000-abcdef", "InProgress", T0)
    )

    assert outcome is Outcome.UNKNOWN_JOB
    assert platform.jobs.get("acme", "acme-20240101000000-abcdef") is None


def test_event_for_a_job_without_a_tenant_tag_is_ignored(
    sample: Any, platform: Any, make: Any
) -> None:
    job = starting_job(platform, make)

    outcome = make_service(platform).handle(
        sample.state_change(job.job_id, "Completed", T0, tenant=None)
    )

    assert outcome is Outcome.NOT_PLATFORM_JOB
    assert platform.jobs.get("acme", job.job_id).status is JobStatus.STARTING


def test_artifacts_outside_the_jobs_prefix_are_not_recorded(
    sample: Any, platform: Any, make: Any
) -> None:
    job = starting_job(platform, make)
    make_service(platform).handle(
        sample.state_change(
            job.job_id,
            "Completed",
            T0,
            ModelArtifacts={"S3ModelArtifacts": "s3://artifacts-bucket/tenants/globex/x.tar.gz"},
        )
    )
    record = platform.jobs.get("acme", job.job_id)
    assert record.status is JobStatus.COMPLETED
    assert record.model_artifact_key is None
    # Nothing to register: the event waits on the dead-letter queue for an operator.
    [parked] = platform.receive_all(platform.env["JOB_EVENTS_DLQ_URL"])
    assert parked["MessageAttributes"]["failure_reason"]["StringValue"] == (
        f"cannot register the model: job {job.job_id} completed without a model artifact "
        "under its prefix"
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{not json", "unreadable state-change event: "),
        (
            json.dumps({"detail-type": "x"}),
            "unreadable state-change event: version: Field",
        ),
    ],
)
def test_unreadable_event_goes_to_the_dead_letter_queue_with_its_reason(
    platform: Any, body: str, reason: str
) -> None:
    outcome = make_service(platform).handle(
        QueueMessage(message_id="m-bad", body=body, receipt_handle="rh")
    )

    assert outcome is Outcome.DEAD_LETTERED
    [parked] = platform.receive_all(platform.env["JOB_EVENTS_DLQ_URL"])
    assert parked["Body"] == body
    assert parked["MessageAttributes"]["failure_reason"]["StringValue"].startswith(reason)
    assert parked["MessageAttributes"]["handler"]["StringValue"] == "job_events"
    assert parked["MessageAttributes"]["source_message_id"]["StringValue"] == "m-bad"


def test_unknown_sagemaker_status_goes_to_the_dead_letter_queue(
    sample: Any, platform: Any, make: Any
) -> None:
    job = starting_job(platform, make)
    outcome = make_service(platform).handle(sample.state_change(job.job_id, "Hibernating", T0))

    assert outcome is Outcome.DEAD_LETTERED
    [parked] = platform.receive_all(platform.env["JOB_EVENTS_DLQ_URL"])
    assert (
        "unknown SageMaker training job status 'Hibernating'"
        in (parked["MessageAttributes"]["failure_reason"]["StringValue"])
    )
    assert platform.jobs.get("acme", job.job_id).status is JobStatus.STARTING


def test_a_final_state_is_counted_for_the_operators_dashboard(
    sample: Any, platform: Any, make: Any
) -> None:
    """The Observability stack's failed-jobs alarm reads TrainingJobsFailed (service=job_events)."""
    from job_events import service as module

    module.metrics.clear_metrics()
    job = starting_job(platform, make)
    service = make_service(platform)
    service.handle(sample.state_change(job.job_id, "Failed", T0, FailureReason="AlgorithmError"))
    service.handle(sample.state_change(job.job_id, "Failed", T0, FailureReason="AlgorithmError"))

    counted = module.metrics.metric_set
    assert counted["TrainingJobsFailed"]["Value"] == [1.0], "a duplicate is not counted twice"
    assert "TrainingJobsCompleted" not in counted
    module.metrics.clear_metrics()


def test_a_later_event_of_the_same_final_status_is_not_counted_again(
    sample: Any, platform: Any, make: Any
) -> None:
    """A newer Failed event still applies (it may add details), but the job failed once."""
    from job_events import service as module

    module.metrics.clear_metrics()
    job = starting_job(platform, make)
    service = make_service(platform)
    failed = sample.state_change(job.job_id, "Failed", T0, FailureReason="AlgorithmError")
    again = sample.state_change(job.job_id, "Failed", T0 + 60_000, FailureReason="AlgorithmError")

    assert service.handle(failed) is Outcome.APPLIED
    assert service.handle(again) is Outcome.APPLIED

    counted = module.metrics.metric_set
    assert counted["TrainingJobsFailed"]["Value"] == [1.0]
    assert sum(counted["EventsApplied"]["Value"]) == 2
    module.metrics.clear_metrics()
