"""Lambda entry point of the ALB key relay (invoked synchronously by the portal instances)."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from .service import fetch_public_key

logger = Logger()


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, str]:
    result = fetch_public_key(event, region=os.environ["AWS_REGION"])
    logger.info("ALB key lookup", kid=str(event.get("kid"))[:128], found="pem" in result)
    return result
