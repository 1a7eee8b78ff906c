"""Fixtures for the inference function: the ApiClients table, two tenants' endpoints and the
simulated SageMaker runtime (``portal/local/endpoints.py``), which plays the tenant invoke role's
``aws:ResourceTag/tenant`` condition that moto doesn't evaluate."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from inference.service import InferenceService
from inference.settings import InferenceSettings
from inference_helpers import (
    CLIENTS,
    ENDPOINTS,
    INVOKE_ROLE_ARN,
    REGION,
    Inference,
    api_client_item,
    create_api_clients_table,
)
from local.endpoints import SimulatedRuntime, create_endpoint
from moto import mock_aws
from training_common import new_session


@pytest.fixture
def inference(fake_aws_credentials: None) -> Iterator[Inference]:
    with mock_aws():
        session = new_session(region_name=REGION)
        table = create_api_clients_table(session, "api-clients")
        for tenant_id, client_id in CLIENTS.items():
            table.put_item(Item=api_client_item(tenant_id, client_id))
        sagemaker = session.client("sagemaker")
        for tenant_id, endpoint in ENDPOINTS.items():
            create_endpoint(
                sagemaker, tenant_id=tenant_id, deployment_id="thermostat", endpoint_name=endpoint
            )
        runtime = SimulatedRuntime(sagemaker)
        env = {
            "API_CLIENTS_TABLE": "api-clients",
            "TENANT_INVOKE_ROLE_ARN": INVOKE_ROLE_ARN,
            "MAX_PAYLOAD_BYTES": "1024",
            "CONTENT_TYPES": "application/json, text/csv, application/jsonlines",
        }
        settings = InferenceSettings.from_env(env)
        service = InferenceService.from_settings(
            settings, session=session, session_hook=runtime.session_hook
        )
        yield Inference(session, settings, table, sagemaker, runtime, service, env)
