"""The retraining handler makes each policy's EventBridge Scheduler schedule match its record:
created enabled, updated on edit, disabled on pause, enabled on resume, deleted; Scheduler's
refusals and the last attempt mark the record FAILED; throttling backs off; unreadable requests
go to the dead-letter queue."""

from __future__ import annotations

import json
from typing import Any
from unittest.mock import MagicMock

import pytest
from botocore.stub import Stubber
from retraining import service as module
from retraining.service import Outcome
from training_common import PolicyStatus, ScheduleState, trigger_input
from training_common.sqs_handler import RetryLaterError


@pytest.fixture(autouse=True)
def _fresh_metrics() -> Any:
    module.metrics.clear_metrics()
    yield
    module.metrics.clear_metrics()


def test_apply_creates_an_enabled_schedule_with_the_exact_target(kit: Any) -> None:
    record, message = kit.send(kit.policy())

    assert kit.service().handle(message) is Outcome.APPLIED

    schedule = kit.schedule(record)
    assert schedule["Name"] == "acme-weekly"
    assert schedule["GroupName"] == kit.group
    assert schedule["State"] == "ENABLED"
    assert schedule["ScheduleExpression"] == "cron(0 3 ? * MON *)"
    assert schedule["ScheduleExpressionTimezone"] == "Europe/Berlin"
    assert schedule["FlexibleTimeWindow"] == {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 15}
    assert schedule["Target"] == {
        "Arn": kit.env["TRAINING_REQUESTS_QUEUE_ARN"],
        "RoleArn": kit.scheduler_role,
        "Input": trigger_input(record),
        "DeadLetterConfig": {"Arn": kit.env["SCHEDULER_DLQ_ARN"]},
        "RetryPolicy": {"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 185},
    }
    trigger = json.loads(schedule["Target"]["Input"])
    assert trigger["token"] == record.token
    assert trigger["scheduled_time"] == "<aws.scheduler.scheduled-time>"
    assert "weekly" in schedule["Description"] and "acme" in schedule["Description"]
    stored = kit.policies.get("acme", "weekly")
    assert stored.schedule_state is ScheduleState.ENABLED
    assert stored.schedule_name == "acme-weekly"
    assert stored.schedule_arn == schedule["Arn"]
    assert stored.applied_request_id == record.request_id
    assert stored.failure_reason is None
    assert module.metrics.metric_set["SchedulesApplied"]["Value"] == [1.0]


def test_a_zero_flexible_window_turns_it_off(kit: Any) -> None:
    record, message = kit.send(kit.policy(flexible_window_minutes=0))

    kit.service().handle(message)

    assert kit.schedule(record)["FlexibleTimeWindow"] == {"Mode": "OFF"}


def test_an_edit_updates_the_existing_schedule(kit: Any) -> None:
    service = kit.service()
    record, first = kit.send(kit.policy())
    service.handle(first)

    edited, second = kit.send(record, schedule_expression="rate(12 hours)", schedule_timezone="UTC")
    assert service.handle(second) is Outcome.APPLIED

    schedule = kit.schedule(edited)
    assert schedule["ScheduleExpression"] == "rate(12 hours)"
    assert schedule["ScheduleExpressionTimezone"] == "UTC"
    assert schedule["State"] == "ENABLED"
    assert schedule["Target"]["Input"] == trigger_input(edited)
    assert kit.policies.get("acme", "weekly").applied_request_id == edited.request_id
    listed = kit.scheduler.list_schedules(GroupName=kit.group)["Schedules"]
    assert [s["Name"] for s in listed] == ["acme-weekly"]


def test_pause_disables_and_resume_enables(kit: Any) -> None:
    service = kit.service()
    record, created = kit.send(kit.policy())
    service.handle(created)

    paused, pause = kit.send(record, status=PolicyStatus.PAUSED)
    assert service.handle(pause) is Outcome.APPLIED
    assert kit.schedule(paused)["State"] == "DISABLED"
    assert kit.policies.get("acme", "weekly").schedule_state is ScheduleState.DISABLED

    resumed, resume = kit.send(paused, status=PolicyStatus.ACTIVE)
    assert service.handle(resume) is Outcome.APPLIED
    assert kit.schedule(resumed)["State"] == "ENABLED"
    assert kit.policies.get("acme", "weekly").schedule_state is ScheduleState.ENABLED


def test_a_policy_created_paused_gets_a_disabled_schedule(kit: Any) -> None:
    record, message = kit.send(kit.policy(status=PolicyStatus.PAUSED))

    kit.service().handle(message)

    assert kit.schedule(record)["State"] == "DISABLED"


def test_delete_deletes_the_schedule_and_marks_the_record_deleted(kit: Any) -> None:
    service = kit.service()
    record, created = kit.send(kit.policy())
    service.handle(created)

    deleting, delete = kit.delete(record)
    assert service.handle(delete) is Outcome.DELETED

    assert kit.scheduler.list_schedules(GroupName=kit.group)["Schedules"] == []
    stored = kit.policies.get("acme", "weekly")
    assert stored.status is PolicyStatus.DELETED
    assert stored.schedule_state is ScheduleState.ABSENT
    assert stored.applied_request_id == deleting.request_id
    assert module.metrics.metric_set["SchedulesDeleted"]["Value"] == [1.0]
    assert service.handle(delete) is Outcome.ALREADY_HANDLED


def test_deleting_a_policy_whose_schedule_is_gone_still_marks_it_deleted(kit: Any) -> None:
    _, delete = kit.delete(kit.policy())

    assert kit.service().handle(delete) is Outcome.DELETED

    assert kit.policies.get("acme", "weekly").status is PolicyStatus.DELETED


def test_a_stale_request_does_nothing(kit: Any) -> None:
    service = kit.service()
    record, old = kit.send(kit.policy())
    latest, _ = kit.send(record, status=PolicyStatus.PAUSED)

    assert service.handle(old) is Outcome.STALE

    assert kit.scheduler.list_schedules(GroupName=kit.group)["Schedules"] == []
    stored = kit.policies.get("acme", "weekly")
    assert stored.schedule_state is ScheduleState.PENDING
    assert stored.request_id == latest.request_id
    assert kit.dead_letters() == []


def test_a_redelivered_apply_is_already_handled(kit: Any) -> None:
    service = kit.service()
    _, message = kit.send(kit.policy())
    service.handle(message)

    assert service.handle(message) is Outcome.ALREADY_HANDLED


def test_scheduler_validation_error_marks_the_record_failed_with_the_reason(kit: Any) -> None:
    _, message = kit.send(kit.policy())
    service = kit.service()
    with Stubber(service.scheduler) as stub:
        stub.add_client_error(
            "create_schedule",
            service_error_code="ValidationException",
            service_message="Invalid Schedule Expression cron(0 3 ? * MON *).",
            http_status_code=400,
        )
        assert service.handle(message) is Outcome.FAILED
        stub.assert_no_pending_responses()

    stored = kit.policies.get("acme", "weekly")
    assert stored.schedule_state is ScheduleState.FAILED
    assert stored.failure_reason.startswith("EventBridge Scheduler refused the policy's schedule")
    assert "Invalid Schedule Expression" in stored.failure_reason
    assert stored.applied_request_id is None
    assert module.metrics.metric_set["SchedulesFailed"]["Value"] == [1.0]
    assert kit.dead_letters() == []


def test_throttling_backs_off_and_the_retry_applies(kit: Any, platform: Any) -> None:
    record, first = kit.send(kit.policy())
    service = kit.service()
    service.sqs = MagicMock(wraps=platform.sqs)
    retry = kit.message(first.body, receive_count=2)
    with Stubber(service.scheduler) as stub:
        stub.add_client_error(
            "create_schedule", service_error_code="ThrottlingException", http_status_code=400
        )
        with pytest.raises(RetryLaterError):
            service.handle(retry)

    service.sqs.change_message_visibility.assert_called_once_with(
        QueueUrl=kit.env["RETRAINING_REQUESTS_QUEUE_URL"],
        ReceiptHandle="rh-1",
        VisibilityTimeout=60,
    )
    assert kit.policies.get("acme", "weekly").schedule_state is ScheduleState.PENDING

    assert service.handle(kit.message(first.body, receive_count=3)) is Outcome.APPLIED
    assert kit.schedule(record)["State"] == "ENABLED"


def test_the_last_receive_marks_the_record_failed_saying_so(kit: Any) -> None:
    _, message = kit.send(kit.policy())
    service = kit.service()
    last = kit.message(message.body, receive_count=5)
    with Stubber(service.scheduler) as stub:
        stub.add_client_error(
            "create_schedule", service_error_code="ThrottlingException", http_status_code=400
        )
        with pytest.raises(RetryLaterError):
            service.handle(last)

    stored = kit.policies.get("acme", "weekly")
    assert stored.schedule_state is ScheduleState.FAILED
    assert "after 5 attempts" in stored.failure_reason
    assert "ThrottlingException" in stored.failure_reason
    assert "dead-letter queue" in stored.failure_reason


def test_an_unexpected_error_is_retried_without_marking_the_record(kit: Any) -> None:
    _, message = kit.send(kit.policy())
    service = kit.service()
    with Stubber(service.scheduler) as stub:
        stub.add_client_error(
            "create_schedule", service_error_code="AccessDeniedException", http_status_code=403
        )
        with pytest.raises(Exception, match="AccessDenied"):
            service.handle(message)

    assert kit.policies.get("acme", "weekly").schedule_state is ScheduleState.PENDING


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "unreadable retraining request"),
        ('{"version": 1, "action": "apply"}', "unreadable retraining request"),
    ],
)
def test_an_unreadable_request_goes_to_the_dead_letter_queue(
    kit: Any, body: str, reason: str
) -> None:
    assert kit.service().handle(kit.message(body)) is Outcome.DEAD_LETTERED

    [parked] = kit.dead_letters()
    assert parked["Body"] == body
    attributes = parked["MessageAttributes"]
    assert attributes["failure_reason"]["StringValue"].startswith(reason)
    assert attributes["handler"]["StringValue"] == "retraining"
    assert module.metrics.metric_set["RequestsDeadLettered"]["Value"] == [1.0]


def test_a_request_without_its_record_goes_to_the_dead_letter_queue(kit: Any) -> None:
    _, message = kit.send(kit.policy())
    kit.policies.table.delete_item(Key={"tenant_id": "acme", "policy_id": "weekly"})

    assert kit.service().handle(message) is Outcome.DEAD_LETTERED

    [parked] = kit.dead_letters()
    assert parked["MessageAttributes"]["failure_reason"]["StringValue"] == (
        "no retraining policy record for this request"
    )


def test_an_apply_for_a_policy_being_deleted_is_dead_lettered(kit: Any) -> None:
    record, _ = kit.delete(kit.policy())
    forged = kit.message(
        json.dumps(
            {
                "version": 1,
                "action": "apply",
                "tenant_id": "acme",
                "policy_id": "weekly",
                "request_id": record.request_id,
                "submitted_by": "mallory",
                "submitted_at": "2026-12-04T10:00:00Z",
            }
        )
    )

    assert kit.service().handle(forged) is Outcome.DEAD_LETTERED

    assert kit.scheduler.list_schedules(GroupName=kit.group)["Schedules"] == []
    assert kit.policies.get("acme", "weekly").status is PolicyStatus.DELETING


def test_the_lambda_handler_applies_a_batch_from_its_environment(
    kit: Any, make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from retraining import app

    for name, value in kit.env.items():
        monkeypatch.setenv(name, value)
    app.service.cache_clear()
    record, message = kit.send(kit.policy())
    event = {"Records": [make.sqs_record(message.body), make.sqs_record("{}", message_id="m-2")]}

    try:
        response = app.handler(event, make.context)
    finally:
        app.service.cache_clear()

    assert response == {"batchItemFailures": []}
    assert kit.schedule(record)["State"] == "ENABLED"
    assert len(kit.dead_letters()) == 1
