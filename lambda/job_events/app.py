"""Lambda entry point of the job-events handler (SQS event source, partial batch responses).

Thin on purpose: the logic is ``job_events.service.JobEventsService``, which tests call.
"""

from __future__ import annotations

import functools
import os

from training_common.sqs_handler import sqs_batch_handler

from .service import JobEventsService, logger, metrics, tracer
from .settings import JobEventsSettings


@functools.cache
def service() -> JobEventsService:
    """The service, from the function's environment (built once per execution environment)."""
    return JobEventsService.from_settings(JobEventsSettings.from_env(os.environ))


handler = sqs_batch_handler(service, logger=logger, tracer=tracer, metrics=metrics)
