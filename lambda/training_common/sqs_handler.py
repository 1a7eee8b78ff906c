"""The Lambda entry point every SQS-fed handler shares: Powertools' BatchProcessor with partial
batch responses, logging, tracing and metrics around one service built per execution environment;
and what the services do with a message they can't finish now (:func:`retry_later`) or ever
(:func:`dead_letter`, :func:`exhausted_reason`).

Imported by the handlers only (it needs Powertools); the portal never imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any, NoReturn, Protocol

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from .queues import QueueMessage, backoff_seconds, send_to_dead_letter_queue


class MessageService(Protocol):
    def handle(self, message: QueueMessage) -> Enum: ...


LambdaHandler = Callable[[dict[str, Any], LambdaContext], PartialItemFailureResponse]


def sqs_batch_handler(
    build_service: Callable[[], MessageService],
    *,
    logger: Logger,
    tracer: Tracer,
    metrics: Metrics,
) -> LambdaHandler:
    """A Lambda handler that feeds each SQS record to ``build_service().handle``.

    ``build_service`` is called per record: cache it (``functools.cache``) so that the service
    is built once per execution environment. A record whose handling raises is
    reported in ``batchItemFailures``; a batch whose every record failed still answers with a
    partial batch response (not an exception), so the per-message back-off that the service set
    on each record is what SQS applies.
    """
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

    def record_handler(record: SQSRecord) -> str:
        return str(build_service().handle(QueueMessage.from_lambda_record(record.raw_event)).value)

    @logger.inject_lambda_context
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )

    return handler


# What every queue-fed service does with a message it can't finish now, or can't ever. ---------


class RetryLaterError(Exception):
    """Leave the message on the queue; its visibility timeout holds the back-off."""


def hold_message(
    sqs: Any, queue_url: str | None, message: QueueMessage, seconds: int, logger: Logger
) -> None:
    """Keep ``message`` invisible for ``seconds`` (``ChangeMessageVisibility``); without a queue
    URL, or when the call fails, the queue's own visibility timeout applies."""
    if not queue_url:
        return
    try:
        sqs.change_message_visibility(
            QueueUrl=queue_url, ReceiptHandle=message.receipt_handle, VisibilityTimeout=seconds
        )
    except ClientError:
        logger.exception("Could not set the back-off; the queue's own timeout applies")


def retry_later(
    sqs: Any,
    queue_url: str | None,
    message: QueueMessage,
    *,
    base: int,
    cap: int,
    why: str,
    logger: Logger,
    cause: Exception | None = None,
) -> NoReturn:
    """Hold the message for its back-off (``base * 2 ** (receives - 1)``, at most ``cap``
    seconds) and raise :class:`RetryLaterError`, which leaves it on the queue."""
    delay = backoff_seconds(message.receive_count, base=base, cap=cap)
    hold_message(sqs, queue_url, message, delay, logger)
    logger.warning("Retrying later", why=why, retry_in_seconds=delay)
    raise RetryLaterError(f"{why}: retry in {delay} s") from cause


def dead_letter(
    sqs: Any,
    dlq_url: str,
    message: QueueMessage,
    reason: str,
    *,
    handler: str,
    logger: Logger,
    metrics: Metrics,
    metric: str = "RequestsDeadLettered",
) -> str:
    """Park ``message`` on the dead-letter queue with ``reason``
    (:func:`send_to_dead_letter_queue`), count it and log it; returns the new message's id."""
    dlq_id = send_to_dead_letter_queue(sqs, dlq_url, message, reason=reason, handler=handler)
    metrics.add_metric(name=metric, unit=MetricUnit.Count, value=1)
    logger.error(
        "Message sent to the dead-letter queue",
        reason=reason,
        message_id=message.message_id,
        dlq_message_id=dlq_id,
    )
    return dlq_id


def last_error(error: Exception) -> str:
    """What to tell the tenant about the last attempt's error: the AWS error code, or the
    exception's type (a back-off's own error names the error behind it)."""
    root = error.__cause__ if isinstance(error, RetryLaterError) else error
    if isinstance(root, ClientError):
        return str(root.response.get("Error", {}).get("Code", "")) or type(root).__name__
    return type(root).__name__ if root is not None else type(error).__name__


def exhausted_reason(what: str, message: QueueMessage, error: Exception) -> str:
    """The reason a record gets when the last attempt at its request failed."""
    return (
        f"The platform could not {what} after {message.receive_count} attempts (last error: "
        f"{last_error(error)}); the request went to the dead-letter queue, where the platform "
        "team can inspect and redrive it."
    )
