"""Helpers of the inference function tests (a name of its own: every test folder has a
``conftest``): the ApiClients table, two tenants' endpoints and the
simulated SageMaker runtime (``portal/local/endpoints.py``), which plays the tenant invoke role's
``aws:ResourceTag/tenant`` condition that moto doesn't evaluate."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "portal"))

from inference.service import InferenceService
from inference.settings import InferenceSettings
from local.endpoints import SimulatedRuntime

REGION = "us-east-1"
INVOKE_ROLE_ARN = "arn:aws:iam::123456789012:role/inference-tenant-invoke"
CLIENTS = {"acme": "acmefleet0001", "globex": "globexfleet0001"}
ENDPOINTS = {"acme": "acme-thermostat", "globex": "globex-thermostat"}


def create_api_clients_table(session: boto3.Session, name: str) -> Any:
    """``API_CLIENTS_TABLE`` with the contract's keys: tenant_id + client_id, index ByClientId."""
    session.client("dynamodb").create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "tenant_id", "KeyType": "HASH"},
            {"AttributeName": "client_id", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "tenant_id", "AttributeType": "S"},
            {"AttributeName": "client_id", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "ByClientId",
                "KeySchema": [{"AttributeName": "client_id", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return session.resource("dynamodb").Table(name)


def api_client_item(tenant_id: str, client_id: str) -> dict[str, str]:
    return {
        "tenant_id": tenant_id,
        "client_id": client_id,
        "name": f"{tenant_id} fleet",
        "created_by": f"admin@{tenant_id}.example",
        "created_at": "2025-01-01T00:00:00.000Z",
    }


@dataclass
class Inference:
    session: boto3.Session
    settings: InferenceSettings
    table: Any
    sagemaker: Any
    runtime: SimulatedRuntime
    service: InferenceService
    env: dict[str, str]

    def event(
        self,
        endpoint: str,
        body: str = "1.0,2.0,3.0",
        *,
        client_id: str = CLIENTS["acme"],
        content_type: str | None = "text/csv",
        scope: str = "inference/invoke",
        base64_encoded: bool = False,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """An API Gateway proxy event of ``POST /v1/endpoints/{endpoint}/invocations``."""
        all_headers = {"Host": "api.example.com", **(headers or {})}
        if content_type is not None:
            all_headers["Content-Type"] = content_type
        return {
            "resource": "/v1/endpoints/{endpoint}/invocations",
            "path": f"/v1/endpoints/{endpoint}/invocations",
            "httpMethod": "POST",
            "headers": all_headers,
            "pathParameters": {"endpoint": endpoint},
            "requestContext": {
                "requestId": "req-1",
                "stage": "v1",
                "authorizer": {
                    "claims": {"client_id": client_id, "scope": scope, "token_use": "access"}
                },
            },
            "body": body,
            "isBase64Encoded": base64_encoded,
        }
