"""The local inference API: the token endpoint, the authorizer's 401s, and the inference code
behind them, over real HTTP on 127.0.0.1 against moto in process."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
import portal_helpers  # noqa: F401 - puts portal/ on sys.path first
import pytest
from local.endpoints import create_endpoint, score
from local.inference import LocalInferenceApi
from local.stack import REGION
from moto import mock_aws
from training_common import INFERENCE_METRICS_NAMESPACE, INFERENCE_SCOPE, new_session


@dataclass
class Api:
    api: LocalInferenceApi
    secrets: dict[str, tuple[str, str]]
    """tenant -> (client id, client secret)"""
    cloudwatch: Any

    def token(self, tenant: str) -> str:
        client_id, secret = self.secrets[tenant]
        response = httpx.post(
            self.api.token_url,
            data={"grant_type": "client_credentials", "scope": INFERENCE_SCOPE},
            auth=(client_id, secret),
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def invoke(
        self, endpoint: str, body: bytes | str, token: str | None, content_type: str = "text/csv"
    ) -> httpx.Response:
        headers = {"content-type": content_type}
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        return httpx.post(self.api.invocations_url(endpoint), content=body, headers=headers)


def _api_clients_table(session: Any) -> None:
    session.client("dynamodb").create_table(
        TableName="ApiClients",
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


@pytest.fixture
def api() -> Iterator[Api]:
    with mock_aws():
        session = new_session(region_name=REGION)
        _api_clients_table(session)
        cognito = session.client("cognito-idp")
        pool_id = cognito.create_user_pool(PoolName="portal-users")["UserPool"]["Id"]
        local = LocalInferenceApi(
            session,
            None,
            user_pool_id=pool_id,
            api_clients_table="ApiClients",
            max_payload_bytes=1024,
        ).start()
        table = session.resource("dynamodb").Table("ApiClients")
        sagemaker = session.client("sagemaker")
        secrets = {}
        for tenant in ("acme", "globex"):
            client = cognito.create_user_pool_client(
                UserPoolId=pool_id,
                ClientName=f"{tenant}-fleet",
                GenerateSecret=True,
                AllowedOAuthFlows=["client_credentials"],
                AllowedOAuthFlowsUserPoolClient=True,
                AllowedOAuthScopes=[INFERENCE_SCOPE],
                AccessTokenValidity=60,
                TokenValidityUnits={"AccessToken": "minutes"},
            )["UserPoolClient"]
            secrets[tenant] = (client["ClientId"], client["ClientSecret"])
            table.put_item(
                Item={
                    "tenant_id": tenant,
                    "client_id": client["ClientId"],
                    "name": f"{tenant} fleet",
                    "created_by": f"admin@{tenant}.example",
                    "created_at": "2025-01-01T00:00:00.000Z",
                }
            )
            create_endpoint(
                sagemaker,
                tenant_id=tenant,
                deployment_id="thermostat",
                endpoint_name=f"{tenant}-thermostat",
            )
        try:
            yield Api(local, secrets, session.client("cloudwatch"))
        finally:
            local.stop()


def test_acme_client_gets_a_prediction_with_client_credentials(api: Api) -> None:
    response = api.invoke("acme-thermostat", "0.5,1.5\n", api.token("acme"))

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv"
    assert response.text == f"{score('acme-thermostat-model', [0.5, 1.5])}\n"


def test_the_token_answer_is_an_oauth_client_credentials_answer(api: Api) -> None:
    client_id, secret = api.secrets["acme"]
    response = httpx.post(
        api.api.token_url,
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )

    assert response.status_code == 200
    assert response.json()["token_type"] == "Bearer"
    assert response.json()["expires_in"] == 3600


def test_globex_client_on_acme_endpoint_is_403(api: Api) -> None:
    response = api.invoke("acme-thermostat", "1,2", api.token("globex"))

    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"


def test_a_missing_token_is_401(api: Api) -> None:
    response = api.invoke("acme-thermostat", "1,2", None)

    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}


def test_an_expired_token_is_401(api: Api) -> None:
    assert api.api.tokens is not None
    api.api.tokens.clock = lambda: time.time() - 7200
    expired = api.token("acme")

    assert api.invoke("acme-thermostat", "1,2", expired).status_code == 401


def test_a_token_signed_by_anyone_else_is_401(api: Api) -> None:
    token = api.token("acme")
    header, payload, _signature = token.split(".")
    forged = f"{header}.{payload}.{'A' * 43}"

    assert api.invoke("acme-thermostat", "1,2", forged).status_code == 401


@pytest.mark.parametrize("secret", ["wrong-secret", ""])
def test_a_wrong_secret_at_the_token_endpoint_is_401(api: Api, secret: str) -> None:
    client_id, _ = api.secrets["acme"]
    response = httpx.post(
        api.api.token_url, data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_a_scope_the_client_does_not_have_is_refused(api: Api) -> None:
    response = httpx.post(
        api.api.token_url,
        data={"grant_type": "client_credentials", "scope": "admin/everything"},
        auth=api.secrets["acme"],
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_an_oversize_payload_is_413(api: Api) -> None:
    response = api.invoke("acme-thermostat", "1," * 1000 + "1", api.token("acme"))

    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


def test_a_content_type_not_allowed_is_415(api: Api) -> None:
    response = api.invoke("acme-thermostat", "<x/>", api.token("acme"), "application/xml")

    assert response.status_code == 415


def test_usage_reaches_cloudwatch_with_tenant_and_endpoint(api: Api) -> None:
    token = api.token("acme")
    for _ in range(3):
        assert api.invoke("acme-thermostat", "1,2", token).status_code == 200
    assert api.invoke("acme-thermostat", "1,x", token).status_code == 502
    assert api.api.usage is not None
    api.api.usage.flush()

    metrics = api.cloudwatch.list_metrics(Namespace=INFERENCE_METRICS_NAMESPACE)["Metrics"]
    names = {m["MetricName"] for m in metrics}
    assert names == {"Invocations", "ClientErrors", "ServerErrors", "Latency"}
    for metric in metrics:
        assert {d["Name"]: d["Value"] for d in metric["Dimensions"]} == {
            "tenant": "acme",
            "endpoint": "acme-thermostat",
        }
    stats = api.cloudwatch.get_metric_statistics(
        Namespace=INFERENCE_METRICS_NAMESPACE,
        MetricName="Invocations",
        Dimensions=[
            {"Name": "tenant", "Value": "acme"},
            {"Name": "endpoint", "Value": "acme-thermostat"},
        ],
        StartTime=time.time() - 600,
        EndTime=time.time() + 60,
        Period=3600,
        Statistics=["Sum"],
    )["Datapoints"]
    assert sum(point["Sum"] for point in stats) == 4


def test_requests_are_captured_like_sagemaker_data_capture(api: Api) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(
        Bucket="platform-data", CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    prefix = "tenants/acme/monitoring/acme-capture/capture/"
    create_endpoint(
        boto3.client("sagemaker", region_name=REGION),
        tenant_id="acme",
        deployment_id="capture",
        endpoint_name="acme-capture",
        capture_uri=f"s3://platform-data/{prefix}",
    )
    response = api.invoke("acme-capture", "0.5,1.5\n2,3\n", api.token("acme"))
    assert response.status_code == 200
    assert api.invoke("acme-thermostat", "1,2", api.token("acme")).status_code == 200  # no capture

    listed = s3.list_objects_v2(Bucket="platform-data", Prefix="tenants/")["Contents"]
    assert len(listed) == 1
    key = listed[0]["Key"]
    assert re.fullmatch(
        re.escape(prefix) + r"acme-capture/AllTraffic/\d{4}/\d{2}/\d{2}/\d{2}/"
        r"\d{2}-\d{2}-\d{3}-[0-9a-f-]{36}\.jsonl",
        key,
    ), key
    lines = s3.get_object(Bucket="platform-data", Key=key)["Body"].read().decode().splitlines()
    record = json.loads(lines[0])
    assert record["eventVersion"] == "0"
    assert record["captureData"]["endpointInput"] == {
        "observedContentType": "text/csv",
        "mode": "INPUT",
        "data": "0.5,1.5\n2,3\n",
        "encoding": "CSV",
    }
    assert record["captureData"]["endpointOutput"]["data"] == response.text
    assert record["captureData"]["endpointOutput"]["encoding"] == "CSV"
    assert record["eventMetadata"]["eventId"] in key
    assert record["eventMetadata"]["inferenceTime"].endswith("Z")
