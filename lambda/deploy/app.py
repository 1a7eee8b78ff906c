"""Lambda entry point of the deploy handler (SQS event source, partial batch responses).

Thin on purpose: the logic is ``deploy.service.DeployService``, which the tests call directly.
"""

from __future__ import annotations

import functools
import os

from training_common.sqs_handler import sqs_batch_handler

from .service import DeployService, logger, metrics, tracer
from .settings import DeploySettings


@functools.cache
def service() -> DeployService:
    """The service, from the function's environment (built once per execution environment)."""
    return DeployService.from_settings(DeploySettings.from_env(os.environ))


handler = sqs_batch_handler(service, logger=logger, tracer=tracer, metrics=metrics)
