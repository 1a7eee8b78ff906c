"""Lambda entry point of the inference function (API Gateway REST, Lambda proxy integration).

Thin on purpose: the logic is ``inference.service.InferenceService``, which the tests and the
local inference API call directly. Here: the service built once per execution environment, the
access log (``service.logger``), tracing, and the usage metrics.

Metrics are EMF in ``TrainingPlatform/Inference`` with exactly the dimensions ``tenant`` and
``endpoint`` (no Powertools ``service`` dimension: CloudWatch matches a metric by its whole
dimension set, and the portal's usage view and the deploy handler's alarms ask for these two).
"""

from __future__ import annotations

import functools
import os
from typing import Any

from aws_lambda_powertools import Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from training_common import INFERENCE_METRICS_NAMESPACE

from .service import InferenceService, Usage, logger
from .settings import InferenceSettings

tracer = Tracer()
metrics = Metrics(namespace=INFERENCE_METRICS_NAMESPACE, service="")


@functools.cache
def service() -> InferenceService:
    """The service, from the function's environment (built once per execution environment)."""
    return InferenceService.from_settings(InferenceSettings.from_env(os.environ))


def record_usage(target: Metrics, usage: Usage) -> None:
    """The call's :meth:`Usage.metrics` with the dimensions ``tenant`` and ``endpoint``."""
    values = usage.metrics()
    if not values or usage.tenant_id is None:
        return
    target.add_dimension(name="tenant", value=usage.tenant_id)
    target.add_dimension(name="endpoint", value=usage.endpoint)
    for name, unit, value in values:
        target.add_metric(name=name, unit=MetricUnit(unit), value=value)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    outcome = service().invoke(event)
    record_usage(metrics, outcome.usage)
    return outcome.response.to_proxy()
