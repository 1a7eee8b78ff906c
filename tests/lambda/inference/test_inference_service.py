"""The inference function: tenant-bound invocations, the 4xx it answers itself, SageMaker's
errors mapped, credentials and client lookups cached."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from inference.credentials import TenantCredentials
from inference.directory import ClientDirectory
from inference.service import UNATTRIBUTED_ENDPOINT, InferenceService
from inference.settings import InferenceSettings
from inference_helpers import CLIENTS, ENDPOINTS, INVOKE_ROLE_ARN, Inference, api_client_item
from local.endpoints import score


def body_of(outcome: Any) -> Any:
    return json.loads(outcome.response.body)


def test_acme_client_gets_a_prediction_from_acme_endpoint(inference: Inference) -> None:
    outcome = inference.service.invoke(inference.event(ENDPOINTS["acme"], "1,2,3\n0,0,0\n"))

    assert outcome.response.status == 200
    assert outcome.response.content_type == "text/csv"
    model = "acme-thermostat-model"
    expected = f"{score(model, [1.0, 2.0, 3.0])}\n{score(model, [0.0, 0.0, 0.0])}\n"
    assert outcome.response.body.decode() == expected
    assert outcome.usage.tenant_id == "acme"
    assert outcome.usage.endpoint == ENDPOINTS["acme"]
    assert outcome.response.to_proxy()["isBase64Encoded"] is False


def test_acme_client_cannot_invoke_globex_endpoint(inference: Inference) -> None:
    outcome = inference.service.invoke(inference.event(ENDPOINTS["globex"]))

    assert outcome.response.status == 403
    assert body_of(outcome)["error"] == "forbidden"
    assert "globex-thermostat" in body_of(outcome)["message"]
    assert outcome.usage.tenant_id == "acme"
    assert outcome.usage.endpoint == UNATTRIBUTED_ENDPOINT
    assert inference.runtime.invocations == 0


def test_a_missing_endpoint_is_refused_like_another_tenants(inference: Inference) -> None:
    """No existence oracle: the same status and error for an endpoint that doesn't exist."""
    missing = inference.service.invoke(inference.event("acme-nothing-here"))
    foreign = inference.service.invoke(inference.event(ENDPOINTS["globex"]))

    assert missing.response.status == foreign.response.status == 403
    assert body_of(missing)["message"].replace("acme-nothing-here", "X") == body_of(foreign)[
        "message"
    ].replace("globex-thermostat", "X")


def test_globex_client_reaches_only_globex_endpoint(inference: Inference) -> None:
    own = inference.service.invoke(
        inference.event(ENDPOINTS["globex"], client_id=CLIENTS["globex"])
    )
    other = inference.service.invoke(
        inference.event(ENDPOINTS["acme"], client_id=CLIENTS["globex"])
    )

    assert (own.response.status, other.response.status) == (200, 403)


@pytest.mark.parametrize(
    ("client_id", "scope"),
    [
        ("unknownclient1", "inference/invoke"),
        ("", "inference/invoke"),
        ("Not-A-Client-Id!", "inference/invoke"),
        (CLIENTS["acme"], "openid email"),
    ],
)
def test_an_unknown_client_or_a_token_without_the_scope_is_refused(
    inference: Inference, client_id: str, scope: str
) -> None:
    outcome = inference.service.invoke(
        inference.event(ENDPOINTS["acme"], client_id=client_id, scope=scope)
    )

    assert outcome.response.status == 403
    assert body_of(outcome)["error"] == "forbidden"
    assert outcome.usage.tenant_id is None
    assert outcome.usage.metrics() == []
    assert inference.runtime.invocations == 0


def test_a_client_id_recorded_under_two_tenants_belongs_to_neither(inference: Inference) -> None:
    inference.table.put_item(Item=api_client_item("globex", CLIENTS["acme"]))

    outcome = inference.service.invoke(inference.event(ENDPOINTS["acme"]))

    assert outcome.response.status == 403


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read(
    inference: Inference,
) -> None:
    # Not even valid base64: only the Content-Length header is looked at.
    event = inference.event(
        ENDPOINTS["acme"], "!!!", base64_encoded=True, headers={"Content-Length": "1025"}
    )

    outcome = inference.service.invoke(event)

    assert outcome.response.status == 413
    assert body_of(outcome) == {
        "error": "payload_too_large",
        "message": "the body is 1025 bytes; the limit is 1024",
    }


@pytest.mark.parametrize("encoded", [False, True])
def test_a_body_over_the_limit_is_refused(inference: Inference, encoded: bool) -> None:
    payload = ("1," * 600).rstrip(",")
    body = base64.b64encode(payload.encode()).decode() if encoded else payload

    outcome = inference.service.invoke(
        inference.event(ENDPOINTS["acme"], body, base64_encoded=encoded)
    )

    assert outcome.response.status == 413
    assert body_of(outcome)["error"] == "payload_too_large"
    assert inference.runtime.invocations == 0


@pytest.mark.parametrize("content_type", ["application/xml", "application/octet-stream", None])
def test_a_content_type_not_allowed_is_415(inference: Inference, content_type: str | None) -> None:
    outcome = inference.service.invoke(
        inference.event(ENDPOINTS["acme"], content_type=content_type)
    )

    assert outcome.response.status == 415
    assert body_of(outcome)["error"] == "unsupported_media_type"
    assert "application/json, text/csv, application/jsonlines" in body_of(outcome)["message"]


def test_a_base64_body_is_decoded_and_parameters_of_the_type_ignored(
    inference: Inference,
) -> None:
    body = base64.b64encode(b'{"instances": [[1, 2, 3]]}').decode()

    outcome = inference.service.invoke(
        inference.event(
            ENDPOINTS["acme"],
            body,
            base64_encoded=True,
            content_type="Application/JSON; charset=utf-8",
        )
    )

    assert outcome.response.status == 200
    assert body_of(outcome) == {
        "predictions": [{"score": score("acme-thermostat-model", [1, 2, 3])}]
    }


def test_a_model_error_is_502_with_the_models_message(inference: Inference) -> None:
    outcome = inference.service.invoke(inference.event(ENDPOINTS["acme"], "1,two,3"))

    assert outcome.response.status == 502
    assert body_of(outcome) == {
        "error": "model_error",
        "message": "the model failed: row 1: every value must be a number",
    }
    assert outcome.usage.endpoint == ENDPOINTS["acme"]
    assert outcome.usage.server_error


def test_an_invalid_endpoint_name_is_400(inference: Inference) -> None:
    outcome = inference.service.invoke(inference.event("no_underscores/allowed"))

    assert outcome.response.status == 400
    assert body_of(outcome)["error"] == "invalid_endpoint_name"


def _failing_runtime(code: str, message: str) -> Any:
    """A session hook whose InvokeEndpoint fails with ``code`` (what SageMaker answers)."""

    def hook(session: Any) -> None:
        def fail(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
            error = {"Error": {"Code": code, "Message": message}}
            return AWSResponse("https://runtime.example", 400, {}, None), error

        session.events.register("before-call.sagemaker-runtime.InvokeEndpoint", fail)

    return hook


@pytest.mark.parametrize(
    ("code", "message", "status", "error"),
    [
        ("ThrottlingException", "Rate exceeded", 429, "throttled"),
        ("ServiceUnavailable", "try later", 503, "endpoint_unavailable"),
        ("ModelNotReadyException", "loading", 503, "endpoint_unavailable"),
        (
            "ValidationError",
            "Endpoint acme-thermostat of account 123456789012 not found.",
            503,
            "endpoint_unavailable",
        ),
        ("ValidationError", "Body is malformed", 400, "bad_request"),
        ("InternalFailure", "boom", 502, "endpoint_error"),
    ],
)
def test_sagemaker_errors_are_mapped(
    inference: Inference, code: str, message: str, status: int, error: str
) -> None:
    service = InferenceService.from_settings(
        inference.settings, session=inference.session, session_hook=_failing_runtime(code, message)
    )

    outcome = service.invoke(inference.event(ENDPOINTS["acme"]))

    assert outcome.response.status == status
    assert body_of(outcome)["error"] == error
    assert outcome.usage.endpoint == ENDPOINTS["acme"]


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def test_tenant_credentials_are_cached_until_five_minutes_before_expiry(
    inference: Inference,
) -> None:
    clock = Clock()
    credentials = TenantCredentials(
        inference.session.client("sts"),
        role_arn=INVOKE_ROLE_ARN,
        region="us-east-1",
        session_seconds=3600,
        refresh_margin_seconds=300,
        session_hook=inference.runtime.session_hook,
        clock=clock,
    )

    first = credentials.runtime_for("acme")
    assert credentials.runtime_for("acme") is first
    credentials.runtime_for("globex")
    assert credentials.assumed == 2

    clock.offset = 3600 - 301
    assert credentials.runtime_for("acme") is first
    clock.offset = 3600 - 299
    renewed = credentials.runtime_for("acme")
    assert renewed is not first
    assert credentials.assumed == 3


def test_the_session_carries_the_tenant_tag(inference: Inference) -> None:
    runtime = inference.service.credentials.runtime_for("acme")
    access_key = runtime._request_signer._credentials.access_key

    assert inference.runtime.tags_of(access_key) == {"tenant": "acme"}


def test_many_calls_assume_the_role_once_per_tenant(inference: Inference) -> None:
    for _ in range(5):
        inference.service.invoke(inference.event(ENDPOINTS["acme"]))
        inference.service.invoke(inference.event(ENDPOINTS["globex"], client_id=CLIENTS["globex"]))

    assert inference.service.credentials.assumed == 2
    assert inference.runtime.invocations == 10


def test_the_client_lookup_is_cached_for_its_ttl_only(inference: Inference) -> None:
    now = [0.0]
    directory = ClientDirectory(inference.table, cache_seconds=60, clock=lambda: now[0])
    assert directory.tenant_of(CLIENTS["acme"]) == "acme"

    inference.table.delete_item(Key={"tenant_id": "acme", "client_id": CLIENTS["acme"]})
    now[0] = 59.0
    assert directory.tenant_of(CLIENTS["acme"]) == "acme"
    now[0] = 61.0
    assert directory.tenant_of(CLIENTS["acme"]) is None


def test_settings_name_the_missing_variables() -> None:
    with pytest.raises(ValueError, match=r"API_CLIENTS_TABLE.*TENANT_INVOKE_ROLE_ARN"):
        InferenceSettings.from_env({"MAX_PAYLOAD_BYTES": "10"})
    with pytest.raises(ValueError, match="MAX_PAYLOAD_BYTES"):
        InferenceSettings.from_env(
            {
                "API_CLIENTS_TABLE": "t",
                "TENANT_INVOKE_ROLE_ARN": INVOKE_ROLE_ARN,
                "MAX_PAYLOAD_BYTES": "0",
            }
        )


def test_settings_defaults() -> None:
    settings = InferenceSettings.from_env(
        {"API_CLIENTS_TABLE": "t", "TENANT_INVOKE_ROLE_ARN": INVOKE_ROLE_ARN}
    )

    assert settings.max_payload_bytes == 4 * 1024 * 1024
    assert settings.content_types == (
        "application/json",
        "text/csv",
        "application/jsonlines",
        "application/octet-stream",
    )
