"""Lambda entry point of the launch handler (SQS event source, partial batch responses).

Thin on purpose: the logic is ``launch.service.LaunchService``, which the tests call directly.
"""

from __future__ import annotations

import functools
import os

from training_common.sqs_handler import sqs_batch_handler

from .service import LaunchService, logger, metrics, tracer
from .settings import LaunchSettings


@functools.cache
def service() -> LaunchService:
    """The service, from the function's environment (built once per execution environment)."""
    return LaunchService.from_settings(LaunchSettings.from_env(os.environ))


handler = sqs_batch_handler(service, logger=logger, tracer=tracer, metrics=metrics)
