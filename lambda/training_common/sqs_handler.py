"""The Lambda entry point every SQS-fed handler shares: Powertools' BatchProcessor with partial
batch responses, logging, tracing and metrics around one service built per execution environment.

Imported by the handlers only (it needs Powertools); the portal never imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any, Protocol

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from .queues import QueueMessage


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
