"""Model package state changes update the version's record; approval or rejection notifies
the tenant exactly once."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from job_events.service import Outcome
from training_common import ModelApprovalStatus


@pytest.fixture
def registered(platform: Any, jobs_kit: Any, sample: Any) -> Any:
    """A completed job whose model is version 1 of acme-models (its notification read)."""
    job = jobs_kit.starting_job()
    jobs_kit.service().handle(sample.completed(job.job_id, sample.T0))
    return jobs_kit.models.get("acme", job.job_id)


def decided(sample: Any, version: Any, status: str, at: str, **detail: Any) -> Any:
    return sample.model_package("acme-models", 1, status, at, job_id=version.job_id, **detail)


def model_notifications(platform: Any) -> list[Any]:
    return [n for n in platform.notifications.list_page("acme").items if n.model_status]


def test_an_approval_updates_the_record_and_notifies_the_tenant_once(
    platform: Any, jobs_kit: Any, sample: Any, registered: Any
) -> None:
    acme, globex = jobs_kit.subscribe("acme"), jobs_kit.subscribe("globex")
    service = jobs_kit.service()
    approval = decided(sample, registered, "Approved", "2023-11-14T23:00:00Z")

    assert service.handle(approval) is Outcome.APPLIED
    assert service.handle(approval) is Outcome.STALE

    version = jobs_kit.models.get("acme", registered.job_id)
    assert version.approval_status is ModelApprovalStatus.APPROVED
    assert version.last_event_time.isoformat().startswith("2023-11-14T23:00:00")
    [notification] = model_notifications(platform)
    assert notification.model_status == "Approved"
    assert notification.notification_id == (
        f"2023-11-14T23:00:00.000Z#{registered.job_id}#model-Approved"
    )
    assert notification.subject == f"Model of job {registered.job_id} approved"
    assert f"https://portal.example.com/models/{registered.job_id}" in notification.message
    delivered = [json.loads(m["Body"]) for m in platform.receive_all(acme)]
    assert [d["Subject"] for d in delivered] == [notification.subject]
    assert delivered[0]["MessageAttributes"]["tenant_id"]["Value"] == "acme"
    assert platform.receive_all(globex) == []


def test_the_creation_event_applies_without_a_notification(
    platform: Any, jobs_kit: Any, sample: Any, registered: Any
) -> None:
    created = decided(sample, registered, "PendingManualApproval", "2023-11-14T22:30:00Z")

    assert jobs_kit.service().handle(created) is Outcome.APPLIED

    version = jobs_kit.models.get("acme", registered.job_id)
    assert version.approval_status is ModelApprovalStatus.PENDING
    assert version.last_event_time is not None
    assert model_notifications(platform) == []


def test_an_out_of_order_event_cannot_undo_a_decision(
    platform: Any, jobs_kit: Any, sample: Any, registered: Any
) -> None:
    service = jobs_kit.service()
    service.handle(decided(sample, registered, "Rejected", "2023-11-14T23:00:00Z"))

    late = decided(sample, registered, "PendingManualApproval", "2023-11-14T22:30:00Z")
    assert service.handle(late) is Outcome.STALE

    assert jobs_kit.models.get("acme", registered.job_id).approval_status is (
        ModelApprovalStatus.REJECTED
    )
    [notification] = model_notifications(platform)
    assert notification.model_status == "Rejected"


def test_an_interrupted_publish_is_finished_by_the_redelivery(
    platform: Any, jobs_kit: Any, sample: Any, registered: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = jobs_kit.subscribe("acme")
    service = jobs_kit.service()
    real_publish = service.sns.publish

    def broken(**_: Any) -> None:
        raise ConnectionError("network blip")

    approval = decided(sample, registered, "Approved", "2023-11-14T23:00:00Z")
    monkeypatch.setattr(service.sns, "publish", broken)
    with pytest.raises(ConnectionError):
        service.handle(approval)
    monkeypatch.setattr(service.sns, "publish", real_publish)

    assert service.handle(approval) is Outcome.STALE
    assert service.handle(approval) is Outcome.STALE

    [notification] = model_notifications(platform)
    assert notification.published is True
    assert len(platform.receive_all(inbox)) == 1


def test_without_metadata_in_the_event_the_package_is_described(
    platform: Any, jobs_kit: Any, sample: Any, registered: Any
) -> None:
    event = sample.model_package("acme-models", 1, "Approved", "2023-11-14T23:00:00Z", job_id=None)

    assert jobs_kit.service().handle(event) is Outcome.APPLIED
    assert jobs_kit.models.get("acme", registered.job_id).approval_status is (
        ModelApprovalStatus.APPROVED
    )


def test_packages_of_other_groups_or_without_a_record_are_ignored(
    platform: Any, jobs_kit: Any, sample: Any, registered: Any
) -> None:
    service = jobs_kit.service()
    foreign = sample.model_package(
        "fraud-detector", 3, "Approved", "2023-11-14T23:00:00Z", job_id=registered.job_id
    )
    assert service.handle(foreign) is Outcome.NOT_PLATFORM_JOB
    globex = sample.model_package(
        "globex-models", 1, "Approved", "2023-11-14T23:00:00Z", job_id=registered.job_id
    )
    assert service.handle(globex) is Outcome.UNKNOWN_JOB, "acme's job id in globex's group"
    missing = sample.model_package(
        "acme-models", 7, "Approved", "2023-11-14T23:00:00Z", job_id="acme-20240101000000-abcdef"
    )
    assert service.handle(missing) is Outcome.UNKNOWN_JOB
    other_package = sample.model_package(
        "acme-models", 2, "Approved", "2023-11-14T23:00:00Z", job_id=registered.job_id
    )
    assert service.handle(other_package) is Outcome.UNKNOWN_JOB, "not the record's ARN"

    assert jobs_kit.models.get("acme", registered.job_id).approval_status is (
        ModelApprovalStatus.PENDING
    )
    assert model_notifications(platform) == []


def test_an_unknown_approval_status_goes_to_the_dead_letter_queue(
    platform: Any, jobs_kit: Any, sample: Any, registered: Any
) -> None:
    event = decided(sample, registered, "Registering", "2023-11-14T23:00:00Z")

    assert jobs_kit.service().handle(event) is Outcome.DEAD_LETTERED

    [parked] = jobs_kit.dead_letters()
    assert parked["MessageAttributes"]["failure_reason"]["StringValue"] == (
        "unknown model approval status 'Registering'"
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            {"detail-type": "SageMaker Model Package State Change", "detail": {}},
            "unreadable state-change event: ",
        ),
        ({"detail-type": "SageMaker Transform Job State Change"}, "unexpected detail-type"),
    ],
)
def test_unreadable_or_unexpected_events_are_dead_lettered_with_the_reason(
    platform: Any, jobs_kit: Any, sample: Any, body: dict[str, Any], reason: str
) -> None:
    message = sample.model_package("acme-models", 1, "Approved", "2023-11-14T23:00:00Z", job_id="x")
    event = json.loads(message.body)
    event.update(body)
    if not event["detail"]:
        event["detail"] = {"ModelApprovalStatus": "Approved"}
    raw = json.dumps(event)

    outcome = jobs_kit.service().handle(
        type(message)(message_id="m-bad", body=raw, receipt_handle="rh")
    )

    assert outcome is Outcome.DEAD_LETTERED
    [parked] = jobs_kit.dead_letters()
    assert parked["Body"] == raw
    assert parked["MessageAttributes"]["failure_reason"]["StringValue"].startswith(reason)


def _without_last_modified(event: Any, envelope_time: str) -> Any:
    """The event as SageMaker may send it: no ``LastModifiedTime``, the envelope at ``time``."""
    body = json.loads(event.body)
    del body["detail"]["LastModifiedTime"]
    body["time"] = envelope_time
    return dataclasses.replace(event, body=json.dumps(body))


def test_an_approval_without_last_modified_time_is_dated_by_its_envelope(
    platform: Any, jobs_kit: Any, sample: Any, registered: Any
) -> None:
    """Dated by CreationTime, the approval would be as old as the creation event: stale."""
    service = jobs_kit.service()
    creation = decided(sample, registered, "PendingManualApproval", "")
    approval = decided(sample, registered, "Approved", "")

    assert service.handle(_without_last_modified(creation, "2023-11-14T22:00:05Z")) is (
        Outcome.APPLIED
    )
    assert service.handle(_without_last_modified(approval, "2023-11-14T23:00:00Z")) is (
        Outcome.APPLIED
    )

    version = jobs_kit.models.get("acme", registered.job_id)
    assert version.approval_status is ModelApprovalStatus.APPROVED
    assert version.last_event_time.isoformat().startswith("2023-11-14T23:00:00")
    [notification] = model_notifications(platform)
    assert notification.model_status == "Approved"
