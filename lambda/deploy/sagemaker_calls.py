"""Idempotent SageMaker calls: describe first, create when missing, and count SageMaker's
"already exists" answer as success (a redelivered request, or a race with one)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

NOT_FOUND_CODES = frozenset({"ResourceNotFound", "ResourceNotFoundException"})
RETRYABLE_CODES = frozenset(
    {"ThrottlingException", "ResourceLimitExceeded", "LimitExceededException"}
)
_ARN = re.compile(r"arn:aws[a-zA-Z-]*:[^\s'\"]+")


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def error_text(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message", ""))


def is_not_found(error: ClientError) -> bool:
    """SageMaker says "not found" as ResourceNotFound, or as a ValidationException that says
    "Could not find" (models, endpoint configurations, endpoints, processing jobs)."""
    code = error_code(error)
    return code in NOT_FOUND_CODES or (
        code == "ValidationException" and "could not find" in error_text(error).lower()
    )


def is_already_there(error: ClientError) -> bool:
    code = error_code(error)
    text = error_text(error).lower()
    return code in {"ResourceInUse", "ResourceInUseException"} or (
        code == "ValidationException" and ("already exist" in text or "existing" in text)
    )


def without_arns(text: str) -> str:
    """A SageMaker message fit for the tenant: ARNs (account ids, role names) replaced."""
    return _ARN.sub("<arn>", text)


def describe_or_none(describe: Callable[..., Any], **name: str) -> dict[str, Any] | None:
    """The describe response, or None when the resource does not exist."""
    try:
        return dict(describe(**name))
    except ClientError as error:
        if is_not_found(error):
            return None
        raise


def ensure(
    describe: Callable[..., Any],
    create: Callable[..., Any],
    name: dict[str, str],
    request: dict[str, Any],
) -> bool:
    """Create the resource ``request`` describes unless it exists; True when this call made it."""
    if describe_or_none(describe, **name) is not None:
        return False
    try:
        create(**request)
    except ClientError as error:
        if is_already_there(error):
            return False
        raise
    return True


def delete_if_present(delete: Callable[..., Any], **name: str) -> bool:
    """Delete the resource; False when it was already gone."""
    try:
        delete(**name)
    except ClientError as error:
        if is_not_found(error):
            return False
        raise
    return True
