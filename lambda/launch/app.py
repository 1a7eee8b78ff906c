"""Lambda entry point of the launch handler (SQS event source, partial batch responses).

Thin on purpose: the logic is ``launch.service.LaunchService``, which the tests call directly.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from training_common import QueueMessage

from .service import LaunchService, logger, metrics, tracer
from .settings import LaunchSettings

# A batch whose every record failed still answers with a partial batch response, so the
# per-message back-off set on each record is what SQS applies.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@functools.cache
def service() -> LaunchService:
    """The service, built once per execution environment from the function's environment."""
    return LaunchService.from_settings(LaunchSettings.from_env(os.environ))


def record_handler(record: SQSRecord) -> str:
    """Process one SQS record; an exception marks it failed in the batch response."""
    return service().handle(QueueMessage.from_lambda_record(record.raw_event)).value


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """Lambda handler: one batch of training requests."""
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
