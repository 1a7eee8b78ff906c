"""Moto set-up of the retraining handler's tests: the policies table, the retraining-requests
queue and its DLQ, the scheduler's DLQ, the schedule group, and what the portal writes."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from retraining.service import RetrainingService
from retraining.settings import RetrainingSettings
from training_common import (
    PolicyAction,
    PolicyRequest,
    PolicyStatus,
    QueueMessage,
    RetrainingPolicy,
    ScheduleState,
    new_request_id,
)

ACCOUNT = "123456789012"
GROUP = "tp-test-retraining"
SCHEDULER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/tp-test-scheduler"


def _arn(sqs: Any, url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


@pytest.fixture
def kit(platform: Any, retraining: Any) -> SimpleNamespace:
    """The service factory, the portal's writes and the queues' contents."""
    sqs = platform.sqs
    dlq = sqs.create_queue(QueueName="retraining-requests-dlq")["QueueUrl"]
    queue = sqs.create_queue(QueueName="retraining-requests")["QueueUrl"]
    scheduler_dlq = sqs.create_queue(QueueName="scheduler-dlq")["QueueUrl"]
    scheduler = platform.session.client("scheduler")
    scheduler.create_schedule_group(Name=GROUP)
    env = {
        **retraining.env,
        "DEAD_LETTER_QUEUE_URL": dlq,
        "RETRAINING_REQUESTS_QUEUE_URL": queue,
        "SCHEDULE_GROUP": GROUP,
        "SCHEDULER_ROLE_ARN": SCHEDULER_ROLE,
        "TRAINING_REQUESTS_QUEUE_ARN": _arn(sqs, platform.queue_url("training-requests")),
        "SCHEDULER_DLQ_ARN": _arn(sqs, scheduler_dlq),
        "MAX_RECEIVE_COUNT": "5",
        "RETRY_BACKOFF_BASE_SECONDS": "30",
        "RETRY_BACKOFF_MAX_SECONDS": "900",
    }

    def service() -> RetrainingService:
        return RetrainingService.from_settings(RetrainingSettings.from_env(env), platform.session)

    def send(
        policy: RetrainingPolicy, action: PolicyAction = PolicyAction.APPLY, **changes: Any
    ) -> tuple[RetrainingPolicy, QueueMessage]:
        """What the portal does: write the record with a new request id (and ``changes``),
        then the request; the message as the handler receives it (first receive)."""
        request_id = new_request_id()
        stored = retraining.policies.get(policy.tenant_id, policy.policy_id)
        fields = {
            **changes,
            "request_id": request_id,
            "schedule_state": ScheduleState.PENDING,
            "updated_at": datetime.now(UTC),
        }
        if stored is None:
            record = policy.model_copy(update=fields)
            assert retraining.policies.put_if_absent(record)[1]
        else:
            updated = retraining.policies.update(
                policy.tenant_id,
                policy.policy_id,
                lambda current: current.model_copy(update=fields),
            )
            assert updated is not None
            record = updated
        request = PolicyRequest(
            action=action,
            tenant_id=policy.tenant_id,
            policy_id=policy.policy_id,
            request_id=request_id,
            submitted_by="alice@example.com",
            submitted_at=datetime.now(UTC),
        )
        return record, message(request.to_message_body())

    def delete(policy: RetrainingPolicy) -> tuple[RetrainingPolicy, QueueMessage]:
        return send(policy, PolicyAction.DELETE, status=PolicyStatus.DELETING)

    def message(body: str, receive_count: int = 1) -> QueueMessage:
        return QueueMessage(
            message_id="m-1", body=body, receipt_handle="rh-1", receive_count=receive_count
        )

    def schedule(policy: RetrainingPolicy) -> dict[str, Any]:
        found: dict[str, Any] = scheduler.get_schedule(
            Name=f"{policy.tenant_id}-{policy.policy_id}", GroupName=GROUP
        )
        return found

    return SimpleNamespace(
        env=env,
        group=GROUP,
        scheduler_role=SCHEDULER_ROLE,
        scheduler=scheduler,
        service=service,
        send=send,
        delete=delete,
        message=message,
        schedule=schedule,
        policies=retraining.policies,
        policy=retraining.policy,
        dead_letters=lambda: platform.receive_all(dlq),
    )
