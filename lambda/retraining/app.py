"""Lambda entry point of the retraining handler (SQS event source, partial batch responses).

Thin on purpose: the logic is ``retraining.service.RetrainingService``, which the tests (and the
local runner) call directly.
"""

from __future__ import annotations

import functools
import os

from training_common.sqs_handler import sqs_batch_handler

from .service import RetrainingService, logger, metrics, tracer
from .settings import RetrainingSettings


@functools.cache
def service() -> RetrainingService:
    """The service, from the function's environment (built once per execution environment)."""
    return RetrainingService.from_settings(RetrainingSettings.from_env(os.environ))


handler = sqs_batch_handler(service, logger=logger, tracer=tracer, metrics=metrics)
