"""The retraining handler's logic: one policy request at a time, the schedule made to match.

For each message: read the :class:`~training_common.PolicyRequest` (unreadable -> dead-letter
queue with the reason), find its :class:`~training_common.RetrainingPolicy` (none, or a record
whose status contradicts the action -> dead-letter queue; a ``request_id`` that is not the
record's latest -> ignored as stale: the latest request is on its way), then:

- **apply**: ``CreateSchedule`` named :func:`~training_common.schedule_name` in the platform's
  group (``ConflictException``: it exists, so ``UpdateSchedule`` with the same definition),
  ENABLED for an ACTIVE policy and DISABLED for a PAUSED one, targeting the training-requests
  queue with :func:`~training_common.trigger_input`, Scheduler's retry policy and its
  dead-letter queue. The record then names the schedule and says ENABLED or DISABLED.
- **delete**: ``DeleteSchedule`` (already gone is fine); the record becomes DELETED, ABSENT.

A schedule Scheduler refuses (``ValidationException``, a full quota) marks the record FAILED
with a sentence the tenant can act on; the message is acknowledged. Throttling and Scheduler's
internal errors leave the message on the queue with back-off (``ChangeMessageVisibility``);
anything else raises, so ``BatchProcessor`` reports it and SQS delivers it again. On the last
receive before the dead-letter queue the record says FAILED, and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from botocore.config import Config
from botocore.exceptions import ClientError
from pydantic import ValidationError
from training_common import (
    PolicyAction,
    PolicyRequest,
    PolicyStatus,
    QueueMessage,
    RetrainingPolicy,
    RetrainingPolicyRepository,
    ScheduleState,
    describe_schema_errors,
    new_session,
    schedule_name,
    trigger_input,
)
from training_common.sqs_handler import dead_letter, exhausted_reason, retry_later

from .settings import RetrainingSettings

logger = Logger()
metrics = Metrics()
tracer = Tracer()

HANDLER_NAME = "retraining"
NO_RECORD_REASON = "no retraining policy record for this request"
MISMATCH_REASON = "request does not match its retraining policy record"
SCHEDULER_RETRY_POLICY = {"MaximumEventAgeInSeconds": 86_400, "MaximumRetryAttempts": 185}
"""Scheduler's most patient delivery: a day of retries before the trigger goes to its DLQ."""
RETRYABLE_CODES = frozenset({"ThrottlingException", "InternalServerException"})
"""Scheduler errors worth the back-off: the same request will likely succeed later."""
REFUSED_CODES = frozenset({"ValidationException", "ServiceQuotaExceededException"})
"""Scheduler errors a retry won't fix: the record says FAILED and why."""
APPLIED_STATES = {
    PolicyStatus.ACTIVE: ScheduleState.ENABLED,
    PolicyStatus.PAUSED: ScheduleState.DISABLED,
}


class Outcome(StrEnum):
    """What the handler did with one message (the message is acknowledged in every case)."""

    APPLIED = "APPLIED"
    DELETED = "DELETED"
    FAILED = "FAILED"
    STALE = "STALE"
    ALREADY_HANDLED = "ALREADY_HANDLED"
    DEAD_LETTERED = "DEAD_LETTERED"


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def error_message(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message", "")) or error_code(error)


def flexible_time_window(minutes: int) -> dict[str, Any]:
    """Scheduler's ``FlexibleTimeWindow``: OFF for 0, else FLEXIBLE within ``minutes``."""
    if minutes <= 0:
        return {"Mode": "OFF"}
    return {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": minutes}


def schedule_request(settings: RetrainingSettings, policy: RetrainingPolicy) -> dict[str, Any]:
    """The ``CreateSchedule`` / ``UpdateSchedule`` arguments that make the policy's schedule."""
    state = APPLIED_STATES[policy.status]
    return {
        "Name": schedule_name(policy.tenant_id, policy.policy_id),
        "GroupName": settings.schedule_group,
        "Description": (
            f"Retraining policy {policy.policy_id} of tenant {policy.tenant_id} "
            f"(deployment {policy.deployment_id})"
        )[:512],
        "ScheduleExpression": policy.schedule_expression,
        "ScheduleExpressionTimezone": policy.schedule_timezone,
        "FlexibleTimeWindow": flexible_time_window(policy.flexible_window_minutes),
        "State": state.value,
        "ActionAfterCompletion": "NONE",
        "Target": {
            "Arn": settings.training_requests_queue_arn,
            "RoleArn": settings.scheduler_role_arn,
            "Input": trigger_input(policy),
            "DeadLetterConfig": {"Arn": settings.scheduler_dlq_arn},
            "RetryPolicy": dict(SCHEDULER_RETRY_POLICY),
        },
    }


def refusal_reason(error: ClientError) -> str:
    """The sentence the tenant reads when Scheduler refuses the schedule."""
    if error_code(error) == "ServiceQuotaExceededException":
        return (
            "The platform has reached EventBridge Scheduler's quota of schedules, so this "
            "policy's schedule could not be created; the platform team has to raise the quota. "
            f"(Scheduler said: {error_message(error)})"
        )
    return (
        "EventBridge Scheduler refused the policy's schedule: "
        f"{error_message(error)}. Edit the schedule expression or time zone and save again."
    )


@dataclass
class RetrainingService:
    """Carries out policy requests; the clients and the repository are injected.

    ``scheduler`` is a boto3 EventBridge Scheduler client (moto's works: the local runner
    passes one of its ``moto_server``)."""

    settings: RetrainingSettings
    policies: RetrainingPolicyRepository
    scheduler: Any
    sqs: Any

    @classmethod
    def from_settings(
        cls, settings: RetrainingSettings, session: boto3.Session | None = None
    ) -> RetrainingService:
        """Build the service with boto3 clients from ``session`` (default: a new session)."""
        session = session or new_session()
        retries = Config(retries={"mode": "standard", "max_attempts": 3})
        return cls(
            settings=settings,
            policies=RetrainingPolicyRepository.from_table_name(
                settings.retraining_policies_table, session
            ),
            scheduler=session.client("scheduler", config=retries),
            sqs=session.client("sqs"),
        )

    @tracer.capture_method
    def handle(self, message: QueueMessage) -> Outcome:
        """Process one message; raises to leave it on the queue for another attempt."""
        try:
            return self._handle(message)
        except Exception as error:
            if message.receive_count >= self.settings.max_receive_count:
                self._mark_exhausted(message, error)
            raise

    def _handle(self, message: QueueMessage) -> Outcome:
        try:
            request = PolicyRequest.model_validate_json(message.body)
        except ValidationError as error:
            reason = "unreadable retraining request: " + "; ".join(describe_schema_errors(error))
            return self._dead_letter(message, reason)
        with logger.append_context_keys(
            tenant_id=request.tenant_id,
            policy_id=request.policy_id,
            action=request.action.value,
            request_id=request.request_id,
        ):
            try:
                record = self.policies.get(request.tenant_id, request.policy_id)
            except ValidationError as error:
                reason = "unreadable retraining policy record: " + "; ".join(
                    describe_schema_errors(error)
                )
                return self._dead_letter(message, reason)
            if record is None:
                return self._dead_letter(message, NO_RECORD_REASON)
            if record.request_id != request.request_id:
                logger.info("Request is not the record's latest; ignored")
                metrics.add_metric(name="RequestsStale", unit=MetricUnit.Count, value=1)
                return Outcome.STALE
            if request.action == PolicyAction.DELETE:
                return self._delete(message, record)
            return self._apply(message, record)

    # Apply -------------------------------------------------------------------------------

    def _apply(self, message: QueueMessage, record: RetrainingPolicy) -> Outcome:
        expected = APPLIED_STATES.get(record.status)
        if expected is None:
            # An apply for a record being deleted: anyone who can send to the queue could
            # forge one; the portal never sends it.
            logger.warning("Apply request for a policy that is not active or paused")
            return self._dead_letter(message, MISMATCH_REASON)
        if record.applied_request_id == record.request_id and record.schedule_state == expected:
            logger.info("Request already applied", schedule_state=expected.value)
            return Outcome.ALREADY_HANDLED
        request = schedule_request(self.settings, record)
        try:
            arn = self._create_or_update(request)
        except ClientError as error:
            code = error_code(error)
            if code in REFUSED_CODES:
                return self._refused(record, error)
            if code in RETRYABLE_CODES:
                self._back_off(message, f"EventBridge Scheduler answered {code}", error)
            raise
        name = str(request["Name"])

        def change(current: RetrainingPolicy) -> RetrainingPolicy | None:
            if current.request_id != record.request_id:
                return None  # edited meanwhile: the newer request applies its own version
            return current.model_copy(
                update={
                    "schedule_name": name,
                    "schedule_arn": arn,
                    "schedule_state": expected,
                    "applied_request_id": record.request_id,
                    "failure_reason": None,
                }
            )

        if self.policies.update(record.tenant_id, record.policy_id, change) is None:
            logger.info("Record changed while the schedule was applied; the newer request wins")
        metrics.add_metric(name="SchedulesApplied", unit=MetricUnit.Count, value=1)
        logger.info("Schedule applied", schedule=name, state=expected.value)
        return Outcome.APPLIED

    def _create_or_update(self, request: dict[str, Any]) -> str:
        """Create the schedule, or update it when it exists; its ARN."""
        try:
            response = self.scheduler.create_schedule(**request)
        except ClientError as error:
            if error_code(error) != "ConflictException":
                raise
            # UpdateSchedule replaces the whole definition: the same arguments make it match.
            response = self.scheduler.update_schedule(**request)
        return str(response["ScheduleArn"])

    def _refused(self, record: RetrainingPolicy, error: ClientError) -> Outcome:
        reason = refusal_reason(error)
        self._record_failure(record, reason)
        metrics.add_metric(name="SchedulesFailed", unit=MetricUnit.Count, value=1)
        logger.warning("Scheduler refused the schedule", code=error_code(error), reason=reason)
        return Outcome.FAILED

    def _record_failure(self, record: RetrainingPolicy, reason: str) -> None:
        def change(current: RetrainingPolicy) -> RetrainingPolicy | None:
            if current.request_id != record.request_id:
                return None
            return current.model_copy(
                update={"schedule_state": ScheduleState.FAILED, "failure_reason": reason}
            )

        self.policies.update(record.tenant_id, record.policy_id, change)

    # Delete ------------------------------------------------------------------------------

    def _delete(self, message: QueueMessage, record: RetrainingPolicy) -> Outcome:
        if record.status == PolicyStatus.DELETED:
            logger.info("Policy already deleted")
            return Outcome.ALREADY_HANDLED
        if record.status != PolicyStatus.DELETING:
            logger.warning("Delete request for a policy not being deleted")
            return self._dead_letter(message, MISMATCH_REASON)
        name = schedule_name(record.tenant_id, record.policy_id)
        try:
            self.scheduler.delete_schedule(Name=name, GroupName=self.settings.schedule_group)
        except ClientError as error:
            code = error_code(error)
            if code in RETRYABLE_CODES:
                self._back_off(message, f"EventBridge Scheduler answered {code}", error)
            if code != "ResourceNotFoundException":
                raise
            logger.info("Schedule already absent", schedule=name)

        def change(current: RetrainingPolicy) -> RetrainingPolicy | None:
            if current.request_id != record.request_id:
                return None
            return current.model_copy(
                update={
                    "status": PolicyStatus.DELETED,
                    "schedule_state": ScheduleState.ABSENT,
                    "schedule_arn": None,
                    "applied_request_id": record.request_id,
                    "failure_reason": None,
                }
            )

        self.policies.update(record.tenant_id, record.policy_id, change)
        metrics.add_metric(name="SchedulesDeleted", unit=MetricUnit.Count, value=1)
        logger.info("Schedule deleted", schedule=name)
        return Outcome.DELETED

    # Queue -------------------------------------------------------------------------------

    def _back_off(self, message: QueueMessage, why: str, cause: Exception | None = None) -> None:
        retry_later(
            self.sqs,
            self.settings.requests_queue_url,
            message,
            base=self.settings.backoff_base_seconds,
            cap=self.settings.backoff_max_seconds,
            why=why,
            logger=logger,
            cause=cause,
        )

    def _dead_letter(self, message: QueueMessage, reason: str) -> Outcome:
        dead_letter(
            self.sqs,
            self.settings.dead_letter_queue_url,
            message,
            reason,
            handler=HANDLER_NAME,
            logger=logger,
            metrics=metrics,
        )
        return Outcome.DEAD_LETTERED

    def _mark_exhausted(self, message: QueueMessage, error: Exception) -> None:
        """Last attempt failed: SQS moves the message to the DLQ; the record says so."""
        try:
            request = PolicyRequest.model_validate_json(message.body)
        except ValidationError:
            return
        what = "delete the schedule" if request.action == PolicyAction.DELETE else "apply it"
        reason = exhausted_reason(what, message, error)
        try:
            record = self.policies.get(request.tenant_id, request.policy_id)
            if record is None or record.request_id != request.request_id:
                return
            self._record_failure(record, reason)
        except Exception:
            logger.exception("Could not record the exhausted request")
            return
        metrics.add_metric(name="SchedulesFailed", unit=MetricUnit.Count, value=1)
        logger.error("Last attempt failed; message goes to the dead-letter queue", reason=reason)
