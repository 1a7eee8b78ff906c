"""The Lambda entry point: proxy responses, EMF usage metrics with exactly the dimensions
``tenant`` and ``endpoint``, one access log line per request."""

from __future__ import annotations

import json
from typing import Any

import pytest
from inference import app
from inference_helpers import CLIENTS, ENDPOINTS, Inference


def emf_of(output: str) -> list[dict[str, Any]]:
    """The EMF lines Powertools printed."""
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [line for line in lines if "_aws" in line]


def access_log(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The access log records (Powertools keeps the extra keys on the record)."""
    return [vars(record) for record in caplog.records if record.getMessage() == "inference request"]


def counts(line: dict[str, Any]) -> tuple[float, float, float]:
    """(Invocations, ClientErrors, ServerErrors) of one EMF line (Powertools writes lists)."""
    return tuple(line[name][0] for name in ("Invocations", "ClientErrors", "ServerErrors"))


@pytest.fixture
def handler(inference: Inference, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(app, "service", lambda: inference.service)
    # Powertools' Metrics instances share one metric set per process: other handlers' tests
    # (deploy, job-events) may have left metrics in it that they never flushed.
    app.metrics.clear_metrics()
    return app.handler


def test_a_prediction_emits_usage_metrics_for_tenant_and_endpoint(
    inference: Inference,
    handler: Any,
    make: Any,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    response = handler(inference.event(ENDPOINTS["acme"], "1,2"), make.context)

    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "text/csv"
    emf, logs = emf_of(capsys.readouterr().out), access_log(caplog)
    assert len(emf) == 1
    directive = emf[0]["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "TrainingPlatform/Inference"
    assert directive["Dimensions"] == [["tenant", "endpoint"]]
    assert {m["Name"]: m["Unit"] for m in directive["Metrics"]} == {
        "Invocations": "Count",
        "ClientErrors": "Count",
        "ServerErrors": "Count",
        "Latency": "Milliseconds",
    }
    assert (emf[0]["tenant"], emf[0]["endpoint"]) == ("acme", ENDPOINTS["acme"])
    assert counts(emf[0]) == (1, 0, 0)
    assert emf[0]["Latency"][0] > 0
    assert len(logs) == 1
    assert logs[0]["tenant"] == "acme"
    assert logs[0]["status"] == 200
    assert logs[0]["client_id"] == CLIENTS["acme"]


def test_a_refused_call_counts_as_a_client_error_of_no_endpoint(
    inference: Inference,
    handler: Any,
    make: Any,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    response = handler(inference.event(ENDPOINTS["globex"]), make.context)

    assert response["statusCode"] == 403
    assert json.loads(response["body"])["error"] == "forbidden"
    emf, logs = emf_of(capsys.readouterr().out), access_log(caplog)
    assert (emf[0]["tenant"], emf[0]["endpoint"]) == ("acme", "-")
    assert counts(emf[0]) == (1, 1, 0)
    assert logs[0]["endpoint"] == ENDPOINTS["globex"]
    assert logs[0]["error"] == "forbidden"


def test_a_model_error_counts_as_a_server_error_of_the_endpoint(
    inference: Inference,
    handler: Any,
    make: Any,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    response = handler(inference.event(ENDPOINTS["acme"], "x"), make.context)

    assert response["statusCode"] == 502
    emf = emf_of(capsys.readouterr().out)
    assert emf[0]["endpoint"] == ENDPOINTS["acme"]
    assert counts(emf[0]) == (1, 0, 1)


def test_an_unknown_client_emits_no_usage_but_logs_the_request(
    inference: Inference,
    handler: Any,
    make: Any,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    response = handler(inference.event(ENDPOINTS["acme"], client_id="someoneelse1"), make.context)

    assert response["statusCode"] == 403
    emf, logs = emf_of(capsys.readouterr().out), access_log(caplog)
    assert emf == []
    assert logs[0]["client_id"] == "someoneelse1"
    assert logs[0]["status"] == 403


def test_a_binary_answer_is_returned_base64_encoded(inference: Inference) -> None:
    from inference.service import ApiResponse

    proxy = ApiResponse(200, b"\x00\xff", "application/octet-stream").to_proxy()

    assert proxy["isBase64Encoded"] is True
    assert proxy["body"] == "AP8="
