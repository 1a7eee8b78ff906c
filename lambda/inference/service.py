"""The inference function's logic: one API Gateway proxy event to one ``InvokeEndpoint`` call.

API Gateway has already checked the caller's access token (Cognito user-pool authorizer, scope
``inference/invoke``). This code then:

1. maps the token's ``client_id`` to its tenant (:class:`inference.directory.ClientDirectory`;
   no tenant -> 403);
2. refuses what SageMaker would refuse later and more expensively: a content type outside
   ``CONTENT_TYPES`` (415) and a body over ``MAX_PAYLOAD_BYTES`` (413, judged from
   ``Content-Length`` before the body is decoded, then from the decoded size);
3. invokes the endpoint with the tenant's credentials
   (:class:`inference.credentials.TenantCredentials`); IAM refuses an endpoint that isn't
   tagged with the tenant, whether it belongs to another tenant or doesn't exist (403 either
   way: no existence oracle);
4. maps SageMaker's errors: ``ModelError`` 502 with the model's message, throttling 429, an
   endpoint not in service 503, anything else 502.

Every error is JSON ``{"error": <code>, "message": <what is wrong>}``. Each call yields a
:class:`Usage` (tenant, endpoint, status, latency) for the metrics and one access log line.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from training_common import INFERENCE_SCOPE, new_session
from training_common.ids import SAGEMAKER_NAME_PATTERN

from .credentials import SessionHook, TenantCredentials
from .directory import ClientDirectory
from .settings import InferenceSettings

logger = Logger()

UNATTRIBUTED_ENDPOINT = "-"
"""The ``endpoint`` dimension of a call that never reached an endpoint of the tenant (refused
here, or by IAM): the path's name is the caller's input, and as a dimension value it would let a
client mint any number of custom metrics."""
_ENDPOINT_RE = re.compile(SAGEMAKER_NAME_PATTERN)
_THROTTLING = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"}
)
_DENIED = frozenset({"AccessDeniedException", "AccessDenied"})
_UNAVAILABLE = frozenset({"ServiceUnavailable", "ModelNotReadyException"})
_TEXT_TYPES = ("application/json", "application/jsonlines", "text/")
MAX_ACCEPT_LENGTH = 1024
"""SageMaker's limit on ``Accept``."""


@dataclass(frozen=True)
class Usage:
    """What the metrics and the access log record about one call."""

    tenant_id: str | None
    endpoint: str
    """The endpoint invoked, or :data:`UNATTRIBUTED_ENDPOINT`."""
    status: int
    latency_ms: float
    error: str | None = None

    @property
    def client_error(self) -> bool:
        return 400 <= self.status < 500

    @property
    def server_error(self) -> bool:
        return self.status >= 500

    def metrics(self) -> list[tuple[str, str, float]]:
        """(name, unit, value) of the call's metrics: ``Invocations``, ``ClientErrors``,
        ``ServerErrors`` (0 or 1 each, so Sum counts and Average is a rate) and ``Latency``;
        none for a call of no known tenant (usage is per tenant; the access log has it)."""
        if self.tenant_id is None:
            return []
        return [
            ("Invocations", "Count", 1.0),
            ("ClientErrors", "Count", float(self.client_error)),
            ("ServerErrors", "Count", float(self.server_error)),
            ("Latency", "Milliseconds", self.latency_ms),
        ]


@dataclass(frozen=True)
class ApiResponse:
    """A Lambda proxy integration response."""

    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)

    def to_proxy(self) -> dict[str, Any]:
        """The dict API Gateway expects; a body that isn't text goes base64-encoded."""
        text = self.content_type.startswith(_TEXT_TYPES)
        return {
            "statusCode": self.status,
            "headers": {
                "Content-Type": self.content_type,
                "Cache-Control": "no-store",
                **self.headers,
            },
            "body": self.body.decode("utf-8")
            if text
            else base64.b64encode(self.body).decode("ascii"),
            "isBase64Encoded": not text,
        }


@dataclass(frozen=True)
class Outcome:
    response: ApiResponse
    usage: Usage


class ApiError(Exception):
    """An error answer: HTTP status, the ``error`` code and the message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> ApiResponse:
        body = json.dumps({"error": self.code, "message": self.message}).encode()
        return ApiResponse(self.status, body, "application/json")


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """A header's value, case-insensitively (API Gateway keeps the client's spelling)."""
    if not headers:
        return None
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, item in headers.items():
        if key.lower() == lowered:
            return item
    return None


def media_type(value: str | None) -> str | None:
    """``text/csv; charset=utf-8`` -> ``text/csv`` (lower case), None for none."""
    if not value:
        return None
    return value.split(";", 1)[0].strip().lower() or None


def _claims(event: Mapping[str, Any]) -> Mapping[str, Any]:
    context = event.get("requestContext") or {}
    authorizer = context.get("authorizer") or {}
    claims = authorizer.get("claims") or {}
    return claims if isinstance(claims, Mapping) else {}


class InferenceService:
    """Client -> tenant -> tenant-bound ``InvokeEndpoint``; the handler and the local API call
    :meth:`invoke`."""

    def __init__(
        self,
        settings: InferenceSettings,
        *,
        directory: ClientDirectory,
        credentials: TenantCredentials,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.settings = settings
        self.directory = directory
        self.credentials = credentials
        self._content_types = frozenset(settings.content_types)
        self._clock = clock

    @classmethod
    def from_settings(
        cls,
        settings: InferenceSettings,
        *,
        session: boto3.Session | None = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        session_hook: SessionHook | None = None,
    ) -> InferenceService:
        """The service on ``session`` (default: the function's role), against AWS or, with
        ``endpoint_url``, moto_server."""
        session = session or new_session(region_name=region)
        if session_hook is not None:
            session_hook(session)
        region = region or session.region_name
        config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=3)
        table = session.resource(
            "dynamodb", region_name=region, endpoint_url=endpoint_url, config=config
        ).Table(settings.api_clients_table)
        sts = session.client("sts", region_name=region, endpoint_url=endpoint_url, config=config)
        runtime_config = Config(
            # One retry: a throttled call that waits out a full back-off would only hold the
            # API Gateway connection open; the caller gets 429 and retries itself.
            retries={"mode": "standard", "max_attempts": 2},
            connect_timeout=3,
            read_timeout=settings.invoke_timeout_seconds,
        )
        return cls(
            settings,
            directory=ClientDirectory(table, cache_seconds=settings.client_cache_seconds),
            credentials=TenantCredentials(
                sts,
                role_arn=settings.tenant_invoke_role_arn,
                region=str(region),
                session_seconds=settings.session_seconds,
                refresh_margin_seconds=settings.refresh_margin_seconds,
                runtime_config=runtime_config,
                endpoint_url=endpoint_url,
                session_hook=session_hook,
            ),
        )

    def invoke(self, event: Mapping[str, Any]) -> Outcome:
        """Answer one API Gateway proxy event; never raises for a caller's mistake, and logs one
        access line."""
        started = self._clock()
        state: dict[str, Any] = {"tenant_id": None, "endpoint": UNATTRIBUTED_ENDPOINT}
        client_id = str(_claims(event).get("client_id") or "")
        try:
            response = self._invoke(event, client_id, state)
        except ApiError as error:
            response = error.response()
            state["error"] = error.code
        except (ClientError, BotoCoreError):
            # The client lookup or STS failed: the platform's fault, not the caller's.
            logger.exception("inference dependency failed", client_id=client_id)
            response = ApiError(500, "internal_error", "the request could not be served").response()
            state["error"] = "internal_error"
        usage = Usage(
            tenant_id=state["tenant_id"],
            endpoint=state["endpoint"],
            status=response.status,
            latency_ms=round((self._clock() - started) * 1000, 3),
            error=state.get("error"),
        )
        context = event.get("requestContext") or {}
        logger.info(
            "inference request",
            request_id=context.get("requestId"),
            client_id=client_id or None,
            tenant=usage.tenant_id,
            endpoint=(event.get("pathParameters") or {}).get("endpoint"),
            status=usage.status,
            error=usage.error,
            latency_ms=usage.latency_ms,
            request_bytes=state.get("request_bytes"),
            response_bytes=len(response.body),
            content_type=state.get("content_type"),
        )
        return Outcome(response, usage)

    def _invoke(
        self, event: Mapping[str, Any], client_id: str, state: dict[str, Any]
    ) -> ApiResponse:
        claims = _claims(event)
        scopes = str(claims.get("scope") or "").split()
        if not client_id or INFERENCE_SCOPE not in scopes:
            raise ApiError(403, "forbidden", f"the access token lacks the {INFERENCE_SCOPE} scope")
        tenant_id = self.directory.tenant_of(client_id)
        if tenant_id is None:
            raise ApiError(403, "forbidden", "this client is not registered with any tenant")
        state["tenant_id"] = tenant_id
        endpoint = str((event.get("pathParameters") or {}).get("endpoint") or "")
        if not _ENDPOINT_RE.fullmatch(endpoint):
            raise ApiError(
                400, "invalid_endpoint_name", "an endpoint name is 1-63 letters, digits and '-'"
            )
        headers = event.get("headers") or {}
        content_type = media_type(_header(headers, "content-type"))
        state["content_type"] = content_type
        if content_type not in self._content_types:
            allowed = ", ".join(self.settings.content_types)
            raise ApiError(
                415,
                "unsupported_media_type",
                f"Content-Type {content_type or '(none)'} is not accepted; use one of {allowed}",
            )
        body = self._body(event, headers, state)
        request: dict[str, Any] = {
            "EndpointName": endpoint,
            "Body": body,
            "ContentType": _header(headers, "content-type") or content_type,
        }
        accept = _header(headers, "accept")
        if accept and len(accept) <= MAX_ACCEPT_LENGTH:
            request["Accept"] = accept
        runtime = self.credentials.runtime_for(tenant_id)
        try:
            answer = runtime.invoke_endpoint(**request)
        except ClientError as error:
            raise self._sagemaker_error(error, endpoint, state) from None
        except BotoCoreError as error:
            state["endpoint"] = endpoint
            raise ApiError(
                502, "endpoint_error", f"endpoint {endpoint} did not answer: {error}"
            ) from None
        state["endpoint"] = endpoint
        payload = answer["Body"].read()
        return ApiResponse(
            200,
            payload,
            str(answer.get("ContentType") or "application/octet-stream"),
            {"X-Invoked-Production-Variant": str(answer.get("InvokedProductionVariant", ""))},
        )

    def _body(
        self, event: Mapping[str, Any], headers: Mapping[str, str], state: dict[str, Any]
    ) -> bytes:
        limit = self.settings.max_payload_bytes
        declared = _header(headers, "content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            state["request_bytes"] = int(declared)
            raise self._too_large(int(declared))
        raw = event.get("body") or ""
        # Refused before decoding: base64 takes 4 characters for 3 bytes, and a character of
        # text is at least one byte, so a longer string can't come out under the limit.
        if len(raw) > (limit * 4 // 3 + 4 if event.get("isBase64Encoded") else limit):
            raise self._too_large(len(raw))
        if event.get("isBase64Encoded"):
            try:
                body = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                raise ApiError(400, "bad_request", "the body is not valid base64") from None
        else:
            body = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
        state["request_bytes"] = len(body)
        if len(body) > limit:
            raise self._too_large(len(body))
        return body

    def _too_large(self, size: int) -> ApiError:
        return ApiError(
            413,
            "payload_too_large",
            f"the body is {size} bytes; the limit is {self.settings.max_payload_bytes}",
        )

    @staticmethod
    def _sagemaker_error(error: ClientError, endpoint: str, state: dict[str, Any]) -> ApiError:
        info = error.response.get("Error", {})
        code = str(info.get("Code", ""))
        message = str(info.get("Message", ""))
        if code in _DENIED:
            return ApiError(
                403,
                "forbidden",
                f"this client may not invoke endpoint {endpoint} "
                "(it is not one of the tenant's endpoints)",
            )
        state["endpoint"] = endpoint
        if code == "ModelError":
            original = error.response.get("OriginalMessage") or message
            return ApiError(502, "model_error", f"the model failed: {original}")
        if code in _THROTTLING:
            return ApiError(429, "throttled", f"endpoint {endpoint} is busy; retry with back-off")
        if code in _UNAVAILABLE or (
            code == "ValidationError" and ("not found" in message or "not in service" in message)
        ):
            # IAM let the call through, so the endpoint carries the tenant's tag: telling the
            # tenant that its endpoint isn't serving reveals nothing about anyone else.
            return ApiError(503, "endpoint_unavailable", f"endpoint {endpoint} is not in service")
        if code == "ValidationError":
            return ApiError(400, "bad_request", message or "SageMaker refused the request")
        return ApiError(502, "endpoint_error", f"endpoint {endpoint} failed: {code} {message}")
