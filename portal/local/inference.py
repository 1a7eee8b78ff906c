"""The local inference API: API Gateway, the Cognito user-pool authorizer and Cognito's OAuth 2.0
token endpoint on 127.0.0.1, in front of the same ``lambda/inference`` code that runs in AWS.

- ``POST /oauth2/token``: the client credentials grant. The client authenticates with HTTP Basic
  or ``client_id``/``client_secret`` form fields, checked against moto's
  ``DescribeUserPoolClient`` (secret, ``client_credentials`` flow, allowed scopes, access token
  validity); the answer is an HS256 JWT access token with ``client_id``, ``scope``,
  ``token_use=access`` and ``exp``, signed with a key that lives in this process only.
- ``POST /v1/endpoints/{endpoint}/invocations``: what the authorizer does in AWS (401
  ``{"message": "Unauthorized"}`` for a missing, expired or invalid token or one without the
  ``inference/invoke`` scope; 413 over API Gateway's own 10 MB ceiling), then an API
  Gateway-shaped proxy event to :class:`inference.service.InferenceService`, and its answer.

Usage metrics go to moto's CloudWatch (``PutMetricData``, batched once a second) with the
dimensions the Lambda's EMF lines carry, so the portal's usage view works locally. SageMaker is
:class:`local.endpoints.SimulatedRuntime`.

A threaded ``http.server`` on purpose: each request is a few hundred microseconds of Python, so
an ASGI stack would add more than it saves, and the handler code is synchronous (boto3).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import secrets
import threading
import time
import urllib.parse
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import boto3
import jwt
from botocore.exceptions import ClientError
from inference.service import InferenceService, Usage
from inference.service import logger as inference_logger
from inference.settings import DEFAULT_CONTENT_TYPES, DEFAULT_MAX_PAYLOAD_BYTES, InferenceSettings
from training_common import (
    INFERENCE_METRICS_NAMESPACE,
    INFERENCE_RESOURCE_SERVER,
    INFERENCE_SCOPE,
)

from .common import ACCOUNT, REGION, Loop
from .endpoints import SimulatedRuntime

log = logging.getLogger("local.inference")

LOCAL_INVOKE_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/inference-tenant-invoke"
API_GATEWAY_MAX_BYTES = 10 * 1024 * 1024
"""API Gateway refuses a larger request before any integration runs."""
INVOCATIONS_PREFIX = "/v1/endpoints/"
INVOCATIONS_SUFFIX = "/invocations"
TOKEN_PATH = "/oauth2/token"  # noqa: S105 - a URL path, not a secret
MAX_VERIFIED_TOKENS = 10_000
_UNIT_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}
_DRAIN_LIMIT = 64 * 1024
"""An early answer reads (and drops) a body up to this size to keep the connection; a larger one
closes the connection instead."""


def ensure_invoke_role(iam: Any, role_arn: str = LOCAL_INVOKE_ROLE_ARN) -> str:
    """The tenant invoke role in moto (moto checks no policy; the simulated runtime plays it)."""
    name = role_arn.rsplit("/", 1)[-1]
    try:
        return str(iam.get_role(RoleName=name)["Role"]["Arn"])
    except ClientError:
        document = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                    "Action": ["sts:AssumeRole", "sts:TagSession"],
                }
            ],
        }
        return str(
            iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(document))["Role"][
                "Arn"
            ]
        )


def ensure_resource_server(cognito: Any, user_pool_id: str) -> None:
    """The user pool's ``inference`` resource server with the ``invoke`` scope, which app
    clients name in ``AllowedOAuthScopes`` (the Portal stack declares it in AWS)."""
    try:
        cognito.describe_resource_server(
            UserPoolId=user_pool_id, Identifier=INFERENCE_RESOURCE_SERVER
        )
    except ClientError:
        cognito.create_resource_server(
            UserPoolId=user_pool_id,
            Identifier=INFERENCE_RESOURCE_SERVER,
            Name="Inference API",
            Scopes=[
                {
                    "ScopeName": INFERENCE_SCOPE.split("/", 1)[1],
                    "ScopeDescription": "Invoke the tenant's endpoints",
                }
            ],
        )


class TokenError(Exception):
    """An OAuth 2.0 error answer of the token endpoint."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error


class TokenIssuer:
    """Cognito's token endpoint for the client credentials grant, and the authorizer's check of
    the tokens it issues."""

    def __init__(
        self,
        cognito: Any,
        user_pool_id: str,
        *,
        key: bytes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cognito = cognito
        self.user_pool_id = user_pool_id
        self.clock = clock
        """When tokens are issued (the tests turn it back to issue expired ones)."""
        self._verified: dict[str, tuple[float, dict[str, str]]] = {}
        """Tokens already verified, with their expiry: API Gateway caches an authorizer's
        answer too, and an HS256 check is most of what this API spends on a request."""
        self.issuer = f"https://cognito-idp.{REGION}.amazonaws.com/{user_pool_id}"
        self._key = key or secrets.token_bytes(32)

    def issue(self, form: dict[str, str], authorization: str | None) -> dict[str, Any]:
        """The token response for a ``/oauth2/token`` request; TokenError when refused."""
        if form.get("grant_type") != "client_credentials":
            raise TokenError(400, "unsupported_grant_type", "only client_credentials is served")
        client_id, secret = self._client_credentials(form, authorization)
        try:
            client = self.cognito.describe_user_pool_client(
                UserPoolId=self.user_pool_id, ClientId=client_id
            )["UserPoolClient"]
        except ClientError:
            raise TokenError(401, "invalid_client", "unknown client or wrong secret") from None
        expected = str(client.get("ClientSecret") or "")
        if not expected or not hmac.compare_digest(expected.encode(), secret.encode()):
            raise TokenError(401, "invalid_client", "unknown client or wrong secret")
        if "client_credentials" not in (client.get("AllowedOAuthFlows") or []):
            raise TokenError(400, "unauthorized_client", "the client may not use this grant")
        allowed = list(client.get("AllowedOAuthScopes") or [])
        requested = form.get("scope", "").split() or allowed
        if not requested or any(scope not in allowed for scope in requested):
            raise TokenError(400, "invalid_scope", "a requested scope is not allowed")
        lifetime = _access_token_seconds(client)
        now = int(self.clock())
        claims = {
            "sub": client_id,
            "client_id": client_id,
            "token_use": "access",
            "scope": " ".join(requested),
            "iss": self.issuer,
            "iat": now,
            "auth_time": now,
            "exp": now + lifetime,
            "jti": str(uuid.uuid4()),
            "version": 2,
        }
        token = jwt.encode(claims, self._key, algorithm="HS256")
        return {"access_token": token, "expires_in": lifetime, "token_type": "Bearer"}

    @staticmethod
    def _client_credentials(form: dict[str, str], authorization: str | None) -> tuple[str, str]:
        if authorization and authorization[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise TokenError(401, "invalid_client", "malformed Basic credentials") from None
            client_id, _, secret = decoded.partition(":")
            return urllib.parse.unquote(client_id), urllib.parse.unquote(secret)
        if form.get("client_id") and form.get("client_secret"):
            return form["client_id"], form["client_secret"]
        raise TokenError(401, "invalid_client", "client authentication is required")

    def claims(self, authorization: str | None) -> dict[str, str] | None:
        """The authorizer: the token's claims (as strings, the way API Gateway passes them to
        the integration), or None for a missing, expired or invalid token, or one without the
        inference scope."""
        if not authorization:
            return None
        token = authorization.strip()
        if token[:7].lower() == "bearer ":
            token = token[7:].strip()
        cached = self._verified.get(token)
        if cached is not None:
            if cached[0] > time.time():
                return cached[1]
            self._verified.pop(token, None)
            return None
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                issuer=self.issuer,
                options={"require": ["exp", "client_id", "scope", "token_use"]},
            )
        except jwt.PyJWTError:
            return None
        if claims.get("token_use") != "access":
            return None
        if INFERENCE_SCOPE not in str(claims.get("scope", "")).split():
            return None
        verified = {name: str(value) for name, value in claims.items()}
        if len(self._verified) >= MAX_VERIFIED_TOKENS:
            self._verified.clear()
        self._verified[token] = (float(claims["exp"]), verified)
        return verified


def _access_token_seconds(client: dict[str, Any]) -> int:
    validity = client.get("AccessTokenValidity")
    if not validity:
        return 3600
    unit = (client.get("TokenValidityUnits") or {}).get("AccessToken", "hours")
    return int(validity) * _UNIT_SECONDS.get(str(unit), 3600)


class CloudWatchUsage:
    """The usage metrics of the local API, to moto's CloudWatch once every ``flush_seconds``:
    per tenant and endpoint, counts as sums and latencies as ``Values``/``Counts``."""

    def __init__(self, cloudwatch: Any, *, flush_seconds: float = 1.0) -> None:
        self.cloudwatch = cloudwatch
        self.flush_seconds = flush_seconds
        self._pending: list[Usage] = []
        self._lock = threading.Lock()
        self._loop = Loop("usage-metrics", self.flush, flush_seconds)

    def start(self) -> CloudWatchUsage:
        self._loop.start()
        return self

    def stop(self) -> None:
        self._loop.stop()
        self.flush()

    def record(self, usage: Usage) -> None:
        if usage.tenant_id is not None:
            with self._lock:
                self._pending.append(usage)

    def flush(self) -> int:
        """Write what was recorded since the last flush; how many calls it covered."""
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return 0
        sums: dict[tuple[str, str, str, str], float] = defaultdict(float)
        latencies: dict[tuple[str, str], dict[float, int]] = defaultdict(lambda: defaultdict(int))
        for usage in pending:
            tenant = str(usage.tenant_id)
            for name, unit, value in usage.metrics():
                if name == "Latency":
                    latencies[(tenant, usage.endpoint)][round(value, 1)] += 1
                else:
                    sums[(tenant, usage.endpoint, name, unit)] += value
        now = datetime.now(UTC)
        data: list[dict[str, Any]] = []
        for (tenant, endpoint, name, unit), total in sums.items():
            data.append(_datum(name, unit, tenant, endpoint, now, Value=total))
        for (tenant, endpoint), counts in latencies.items():
            items = sorted(counts.items())
            for start in range(0, len(items), 150):  # PutMetricData: at most 150 values a datum
                chunk = items[start : start + 150]
                data.append(
                    _datum(
                        "Latency",
                        "Milliseconds",
                        tenant,
                        endpoint,
                        now,
                        Values=[value for value, _ in chunk],
                        Counts=[float(count) for _, count in chunk],
                    )
                )
        for start in range(0, len(data), 1000):
            self.cloudwatch.put_metric_data(
                Namespace=INFERENCE_METRICS_NAMESPACE, MetricData=data[start : start + 1000]
            )
        return len(pending)


def _datum(
    name: str, unit: str, tenant: str, endpoint: str, at: datetime, **values: Any
) -> dict[str, Any]:
    return {
        "MetricName": name,
        "Unit": unit,
        "Timestamp": at,
        "Dimensions": [
            {"Name": "tenant", "Value": tenant},
            {"Name": "endpoint", "Value": endpoint},
        ],
        **values,
    }


class LocalInferenceApi:
    """The local inference API on 127.0.0.1 (``start()``/``stop()`` or a ``with`` block).

    ``session`` holds the platform's (moto) credentials; ``endpoint_url`` is moto_server's URL,
    or None for moto in process. ``user_pool_id`` is the portal's user pool, whose app clients
    the portal creates; ``api_clients_table`` is ``API_CLIENTS_TABLE``. ``url`` is the API's
    base (``<url>/v1/endpoints/<endpoint>/invocations``) and ``token_url`` the token endpoint.
    """

    def __init__(
        self,
        session: boto3.Session,
        endpoint_url: str | None,
        *,
        user_pool_id: str,
        api_clients_table: str,
        tenant_invoke_role_arn: str = LOCAL_INVOKE_ROLE_ARN,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        content_types: tuple[str, ...] = DEFAULT_CONTENT_TYPES,
        runtime: SimulatedRuntime | None = None,
        port: int = 0,
        usage_metrics: bool = True,
        access_log: bool = False,
    ) -> None:
        self.session = session
        self.endpoint_url = endpoint_url
        self.settings = InferenceSettings(
            api_clients_table=api_clients_table,
            tenant_invoke_role_arn=tenant_invoke_role_arn,
            max_payload_bytes=max_payload_bytes,
            content_types=content_types,
        )
        self.runtime = runtime or SimulatedRuntime.for_moto(session, endpoint_url)
        self.user_pool_id = user_pool_id
        self._port = port
        self._usage_metrics = usage_metrics
        self._access_log = access_log
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.usage: CloudWatchUsage | None = None
        self.service: InferenceService | None = None
        self.tokens: TokenIssuer | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the local inference API is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def token_url(self) -> str:
        return self.url + TOKEN_PATH

    def invocations_url(self, endpoint: str) -> str:
        return f"{self.url}{INVOCATIONS_PREFIX}{urllib.parse.quote(endpoint)}{INVOCATIONS_SUFFIX}"

    def start(self) -> LocalInferenceApi:
        def client(service: str) -> Any:
            return self.session.client(service, region_name=REGION, endpoint_url=self.endpoint_url)

        ensure_invoke_role(client("iam"), self.settings.tenant_invoke_role_arn)
        cognito = client("cognito-idp")
        ensure_resource_server(cognito, self.user_pool_id)
        self.tokens = TokenIssuer(cognito, self.user_pool_id)
        self.service = InferenceService.from_settings(
            self.settings,
            session=self.session,
            region=REGION,
            endpoint_url=self.endpoint_url,
            session_hook=self.runtime.session_hook,
        )
        if not self._access_log:
            inference_logger.setLevel(logging.WARNING)
        if self._usage_metrics:
            self.usage = CloudWatchUsage(client("cloudwatch")).start()
        self._server = _Server(("127.0.0.1", self._port), _Handler)
        self._server.api = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="local-inference-api",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self.usage is not None:
            self.usage.stop()
            self.usage = None

    def __enter__(self) -> LocalInferenceApi:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def proxy_event(
        self, endpoint: str, headers: dict[str, str], body: bytes, claims: dict[str, str]
    ) -> dict[str, Any]:
        """The event API Gateway's Lambda proxy integration sends for this request. A body that
        isn't UTF-8 text, or is ``application/octet-stream`` (a binary media type of the API),
        arrives base64-encoded."""
        content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        encoded = content_type == "application/octet-stream"
        text = ""
        if not encoded:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                encoded = True
        path = f"{INVOCATIONS_PREFIX}{endpoint}{INVOCATIONS_SUFFIX}"
        return {
            "resource": f"{INVOCATIONS_PREFIX}{{endpoint}}{INVOCATIONS_SUFFIX}",
            "path": path,
            "httpMethod": "POST",
            "headers": headers,
            "multiValueHeaders": {name: [value] for name, value in headers.items()},
            "queryStringParameters": None,
            "pathParameters": {"endpoint": endpoint},
            "stageVariables": None,
            "requestContext": {
                "resourcePath": f"{INVOCATIONS_PREFIX}{{endpoint}}{INVOCATIONS_SUFFIX}",
                "httpMethod": "POST",
                "path": f"/v1{path}",
                "stage": "v1",
                "requestId": str(uuid.uuid4()),
                "accountId": ACCOUNT,
                "identity": {"sourceIp": "127.0.0.1"},
                "authorizer": {"claims": claims},
            },
            "body": base64.b64encode(body).decode("ascii") if encoded else text,
            "isBase64Encoded": encoded,
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    api: LocalInferenceApi


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path == TOKEN_PATH:
            self._token()
        elif path.startswith(INVOCATIONS_PREFIX) and path.endswith(INVOCATIONS_SUFFIX):
            endpoint = urllib.parse.unquote(
                path[len(INVOCATIONS_PREFIX) : -len(INVOCATIONS_SUFFIX)]
            )
            self._invoke(endpoint)
        else:
            self._early(403, {"message": "Missing Authentication Token"})

    def do_GET(self) -> None:
        self._early(403, {"message": "Missing Authentication Token"})

    def _length(self) -> int | None:
        value = self.headers.get("content-length")
        if value is None:
            return 0
        return int(value) if value.strip().isdigit() else None

    def _early(self, status: int, body: dict[str, Any]) -> None:
        """Answer without using the body: drop a small one, close the connection on a big one."""
        length = self._length()
        if length is not None and length <= _DRAIN_LIMIT:
            self.rfile.read(length)
        else:
            self.close_connection = True
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        lines = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}"]
        lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body)}")
        for name, value in (headers or {}).items():
            if name.lower() not in ("content-type", "content-length"):
                lines.append(f"{name}: {value}")
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + body)  # one write: no Nagle/delayed-ACK stall between parts

    def _token(self) -> None:
        api = self.server.api
        length = self._length()
        if length is None or length > _DRAIN_LIMIT:
            self._early(400, {"error": "invalid_request", "error_description": "body too large"})
            return
        raw = self.rfile.read(length).decode("utf-8", errors="replace")
        form = {key: values[0] for key, values in urllib.parse.parse_qs(raw).items()}
        assert api.tokens is not None
        try:
            answer = api.tokens.issue(form, self.headers.get("authorization"))
        except TokenError as error:
            body = {"error": error.error, "error_description": str(error)}
            self._send(error.status, json.dumps(body).encode(), "application/json")
            return
        self._send(
            200, json.dumps(answer).encode(), "application/json", {"Cache-Control": "no-store"}
        )

    def _invoke(self, endpoint: str) -> None:
        api = self.server.api
        assert api.tokens is not None and api.service is not None
        claims = api.tokens.claims(self.headers.get("authorization"))
        if claims is None:
            self._early(401, {"message": "Unauthorized"})
            return
        length = self._length()
        if length is None:
            self._early(411, {"message": "Length Required"})
            return
        if length > API_GATEWAY_MAX_BYTES:
            self._early(413, {"message": "Request Too Long"})
            return
        body = self.rfile.read(length)
        headers = {name.lower(): value for name, value in self.headers.items()}
        headers.pop("authorization", None)
        outcome = api.service.invoke(api.proxy_event(endpoint, headers, body, claims))
        if api.usage is not None:
            api.usage.record(outcome.usage)
        proxy = outcome.response.to_proxy()
        payload = (
            base64.b64decode(proxy["body"])
            if proxy["isBase64Encoded"]
            else str(proxy["body"]).encode("utf-8")
        )
        headers_out = dict(proxy["headers"])
        content_type = headers_out.pop("Content-Type", "application/json")
        self._send(int(proxy["statusCode"]), payload, content_type, headers_out)
