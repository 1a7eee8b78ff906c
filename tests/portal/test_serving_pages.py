"""Deployments, API clients and usage pages against moto: the happy paths and every 4xx."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from portal_helpers import Platform, PortalClient, put_model
from training_common import (
    AlarmKind,
    Deployment,
    DeploymentChange,
    DeploymentStatus,
    EndpointKind,
    ModelApprovalStatus,
    RealtimeCapacity,
    ServiceInterval,
    alarm_name,
    utc_now,
)
from training_common.repositories import DeploymentRepository

JSON = {"accept": "application/json"}


def _form(platform: Platform, **overrides: str) -> dict[str, str]:
    return {
        "deployment_id": "thermostat",
        "model_job_id": platform.seeded.approved_models["acme"],
        "kind": "realtime",
        "instance_type": "ml.m5.large",
        "instance_count": "1",
        **overrides,
    }


def _messages(platform: Platform) -> list[dict[str, Any]]:
    sqs = platform.session.client("sqs", region_name=platform.settings.aws_region)
    response = sqs.receive_message(
        QueueUrl=platform.settings.deployment_requests_queue_url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=0,
    )
    return [json.loads(m["Body"]) for m in response.get("Messages", [])]


def _repository(platform: Platform) -> DeploymentRepository:
    return DeploymentRepository(platform.table(platform.settings.deployments_table))


def put_in_service(
    platform: Platform, tenant_id: str, deployment_id: str, job_id: str, *, hours: float = 2
) -> Deployment:
    """A deployment IN_SERVICE for ``hours`` on one ml.m5.large, as the handlers leave it."""
    now = utc_now()
    start = now - timedelta(hours=hours)
    endpoint = f"{tenant_id}-{deployment_id}"
    record = Deployment(
        tenant_id=tenant_id,
        deployment_id=deployment_id,
        endpoint_name=endpoint,
        status=DeploymentStatus.IN_SERVICE,
        kind=EndpointKind.REALTIME,
        realtime=RealtimeCapacity(instance_type="ml.m5.large", instance_count=1),
        request_id="0" * 32,
        model_job_id=job_id,
        model_version=1,
        serving_model_job_id=job_id,
        serving_model_version=1,
        history=[
            DeploymentChange(status=DeploymentStatus.PENDING, at=start, model_job_id=job_id),
            DeploymentChange(status=DeploymentStatus.IN_SERVICE, at=start, model_version=1),
        ],
        service_intervals=[
            ServiceInterval(
                kind=EndpointKind.REALTIME,
                instance_type="ml.m5.large",
                instance_count=1,
                start=start,
            )
        ],
        alarm_names=[alarm_name("tp-local", endpoint, kind) for kind in AlarmKind],
        created_at=start,
        updated_at=start,
        submitted_by=f"seed@{tenant_id}.example",
    )
    platform.table(platform.settings.deployments_table).put_item(
        Item={**json.loads(record.model_dump_json(exclude_none=True)), "revision": 0}
    )
    return record


def test_approved_model_page_offers_deploy_and_the_form_lists_approved_versions_only(
    platform: Platform,
) -> None:
    approved = platform.seeded.approved_models["acme"]
    pending_job = platform.seeded.jobs["acme"][0]
    put_model(platform, "acme", pending_job)
    client = platform.client("alice")
    page = client.get(f"/models/{approved}").text
    assert f'id="deploy-model" href="/deployments/new?model={approved}"' in page
    assert 'id="deploy-model"' not in client.get(f"/models/{pending_job}").text
    form = client.get(f"/deployments/new?model={approved}")
    assert form.status_code == 200
    assert f'<option value="{approved}" selected>' in form.text
    assert pending_job not in form.text
    assert 'value="serverless"' in form.text  # acme may use serverless
    globex = platform.client("gina").get("/deployments/new").text
    assert "no approved model version" in globex  # globex has none


def test_deploy_writes_the_pending_record_and_queues_the_request_as_the_tenant(
    platform: Platform,
) -> None:
    client = platform.client("alice")
    mark = platform.calls.mark()
    response = client.post_form("/deployments", {**_form(platform), "tenant_id": "globex"})
    assert response.status_code == 303
    assert response.headers["location"] == "/deployments/thermostat?notice=deploy-requested"
    record = _repository(platform).get("acme", "thermostat")
    assert record is not None and record.status == DeploymentStatus.PENDING
    assert record.endpoint_name == "acme-thermostat"
    assert record.submitted_by == "alice@acme.example"
    (message,) = _messages(platform)
    assert message["tenant_id"] == "acme" and message["action"] == "deploy"
    assert message["request_id"] == record.request_id
    assert message["realtime"] == {"instance_type": "ml.m5.large", "instance_count": 1}
    sends = [c for c in platform.calls.since(mark) if c[1] in {"SendMessage", "PutItem"}]
    assert sends and all(platform.calls.tenant_of_key(key) == "acme" for _, _, key, _ in sends)
    page = client.get(response.headers["location"]).text
    assert 'data-testid="deployment-status">PENDING<' in page and 'http-equiv="refresh"' in page
    assert "/v1/endpoints/acme-thermostat/invocations" in page
    assert client.get("/deployments", headers=JSON).json()["items"][0]["status"] == "PENDING"
    again = client.post_form("/deployments", _form(platform), headers=JSON)
    assert again.status_code == 409 and "already have a deployment" in again.json()["error"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"deployment_id": "X"}, "Deployment name must be 3 to 32"),
        ({"deployment_id": ""}, "Deployment name is required"),
        ({"instance_count": "many"}, "Instance count must be a whole number"),
        ({"instance_count": "0"}, "Instance count must be between 1 and 20"),
        ({"instance_count": "3"}, "your quota allows 2 endpoint instances"),
        ({"instance_type": "ml.p4d.24xlarge"}, "not in your endpoint quota"),
        ({"instance_type": "not a type"}, "The capacity is invalid"),
        ({"kind": "batch"}, "Kind must be one of realtime, serverless"),
        ({"kind": "serverless", "memory_mb": "1500", "max_concurrency": "1"}, "must be one of"),
        ({"kind": "serverless", "memory_mb": "2048", "max_concurrency": "50"}, "at most 10"),
        ({"model_job_id": "globex-20240101000000-abcdef"}, "no model version of a job"),
        ({"model_job_id": ""}, "Model version is required"),
    ],
)
def test_a_bad_deploy_form_is_400_with_the_reason_and_queues_nothing(
    platform: Platform, overrides: dict[str, str], message: str
) -> None:
    client = platform.client("alice")
    response = client.post_form("/deployments", _form(platform, **overrides), headers=JSON)
    assert response.status_code == 400, response.text
    body = response.json()
    assert message in " ".join([body["error"], *body.get("details", [])])
    page = client.post_form("/deployments", _form(platform, **overrides))
    assert page.status_code == 400 and 'data-testid="form-errors"' in page.text
    assert message.split(" ")[0] in page.text
    assert _repository(platform).get("acme", "thermostat") is None
    assert _messages(platform) == []


def test_a_version_not_approved_and_serverless_where_the_vpc_is_required_are_refused(
    platform: Platform,
) -> None:
    pending = platform.seeded.jobs["acme"][0]
    put_model(platform, "acme", pending)
    r = platform.client("alice").post_form(
        "/deployments", _form(platform, model_job_id=pending), headers=JSON
    )
    assert r.status_code == 400 and "only approved versions" in " ".join(r.json()["details"])
    globex_job = platform.seeded.jobs["globex"][0]
    put_model(platform, "globex", globex_job, status=ModelApprovalStatus.APPROVED)
    gina = platform.client("gina")
    form = gina.get("/deployments/new").text
    assert 'value="serverless"' not in form and "serverless is not available" in form
    r = gina.post_form(
        "/deployments",
        {
            "deployment_id": "churn",
            "model_job_id": globex_job,
            "kind": "serverless",
            "memory_mb": "2048",
            "max_concurrency": "2",
        },
        headers=JSON,
    )
    assert r.status_code == 400
    assert "serverless inference does not support" in " ".join(r.json()["details"])


def test_a_request_that_never_reached_the_queue_leaves_no_pending_record(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = platform.client("alice")
    sqs = platform.app.state.portal.aws.for_tenant("acme").sqs

    def refuse(**_: Any) -> None:
        raise sqs.exceptions.QueueDoesNotExist({"Error": {"Code": "QueueDoesNotExist"}}, "Send")

    monkeypatch.setattr(sqs, "send_message", refuse)
    response = client.post_form("/deployments", _form(platform), headers=JSON)
    assert 400 <= response.status_code < 600 and response.status_code != 500
    record = _repository(platform).get("acme", "thermostat")
    assert record is not None and record.status == DeploymentStatus.FAILED
    assert record.failure_reason == "The portal could not queue the request; try again."


def test_deployment_page_shows_usage_alarms_cost_and_the_change_buttons(
    platform: Platform,
) -> None:
    approved = platform.seeded.approved_models["acme"]
    second = platform.seeded.jobs["acme"][0]
    put_model(platform, "acme", second, status=ModelApprovalStatus.APPROVED)
    record = put_in_service(platform, "acme", "thermostat", approved, hours=2)
    dimensions = [
        {"Name": "tenant", "Value": "acme"},
        {"Name": "endpoint", "Value": "acme-thermostat"},
    ]
    platform.metrics.put(
        "TrainingPlatform/Inference",
        [
            {"MetricName": "Invocations", "Dimensions": dimensions, "Value": 40.0},
            {"MetricName": "ClientErrors", "Dimensions": dimensions, "Value": 3.0},
            {"MetricName": "ServerErrors", "Dimensions": dimensions, "Value": 1.0},
            {
                "MetricName": "Latency",
                "Dimensions": dimensions,
                "Values": [4.0, 6.0, 90.0],
                "Counts": [20.0, 19.0, 1.0],
            },
            # globex's figures for an endpoint of the same name never count for acme
            {
                "MetricName": "Invocations",
                "Dimensions": [{"Name": "tenant", "Value": "globex"}, dimensions[1]],
                "Value": 1000.0,
            },
        ],
    )
    cloudwatch = platform.session.client("cloudwatch", region_name=platform.settings.aws_region)
    for index, name in enumerate(record.alarm_names):
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            Namespace="TrainingPlatform/Monitoring",
            MetricName="Violations",
            Statistic="Maximum",
            Period=3600,
            EvaluationPeriods=1,
            Threshold=0,
            ComparisonOperator="GreaterThanThreshold",
            Tags=[{"Key": "tenant", "Value": "acme" if index else "globex"}],
        )
    cloudwatch.set_alarm_state(
        AlarmName=record.alarm_names[3], StateValue="ALARM", StateReason="drift in f1"
    )
    client = platform.client("alice")
    body = client.get("/deployments/thermostat", headers=JSON).json()
    assert body["usage"] == {
        "hours": 24,
        "requests": 40,
        "client_errors": 3,
        "server_errors": 1,
        "p50_ms": 4.0,
        "p99_ms": 90.0,
    }
    # the first alarm is tagged globex: never shown on acme's page
    assert [a["name"] for a in body["alarms"]] == record.alarm_names[1:]
    assert {a["name"]: a["state"] for a in body["alarms"]}[record.alarm_names[3]] == "ALARM"
    assert body["cost"]["usd"] == pytest.approx(2 * 0.115, rel=0.01)
    page = client.get("/deployments/thermostat").text
    assert '<td data-usage="requests">40</td>' in page
    assert '<td data-usage="p99">90.0 ms</td>' in page
    assert "drift in f1" in page and record.alarm_names[0] not in page
    assert 'id="undeploy"' in page and 'id="redeploy"' in page
    assert f'<option value="{second}">' in page and f'<option value="{approved}">' not in page


def test_redeploy_and_undeploy_queue_their_requests_and_refuse_a_busy_deployment(
    platform: Platform,
) -> None:
    approved = platform.seeded.approved_models["acme"]
    second = platform.seeded.jobs["acme"][0]
    put_model(platform, "acme", second, status=ModelApprovalStatus.APPROVED)
    put_in_service(platform, "acme", "thermostat", approved)
    client = platform.client("alice")
    same = client.post_form(
        "/deployments/thermostat/redeploy", {"model_job_id": approved}, headers=JSON
    )
    assert same.status_code == 400 and "already serves" in same.json()["error"]
    r = client.post_form("/deployments/thermostat/redeploy", {"model_job_id": second})
    assert r.status_code == 303 and r.headers["location"].endswith("notice=redeploy-requested")
    record = _repository(platform).get("acme", "thermostat")
    assert record is not None and record.status == DeploymentStatus.PENDING
    assert record.model_job_id == second and record.serving_model_job_id == approved
    (message,) = _messages(platform)
    assert message["model_job_id"] == second and message["realtime"]["instance_count"] == 1
    busy = client.post_form("/deployments/thermostat/undeploy", {}, headers=JSON)
    assert busy.status_code == 409 and "PENDING" in busy.json()["error"]
    busy = client.post_form(
        "/deployments/thermostat/redeploy", {"model_job_id": approved}, headers=JSON
    )
    assert busy.status_code == 409
    put_in_service(platform, "acme", "thermostat", approved)
    r = client.post_form("/deployments/thermostat/undeploy", {}, headers=JSON)
    assert r.status_code == 202 and r.json()["status"] == "UNDEPLOYING"
    assert [m["action"] for m in _messages(platform)] == ["undeploy"]
    for path in ("/deployments/nope", "/deployments/Bad_Name"):
        assert client.get(path, headers=JSON).status_code == 404


def _pool_client(platform: Platform, client_id: str) -> dict[str, Any]:
    cognito = platform.session.client("cognito-idp", region_name=platform.settings.aws_region)
    found: dict[str, Any] = cognito.describe_user_pool_client(
        UserPoolId=platform.settings.user_pool_id, ClientId=client_id
    )["UserPoolClient"]
    return found


def test_creating_a_client_shows_its_secret_once_and_records_it_for_the_tenant(
    platform: Platform,
) -> None:
    client = platform.client("alice")
    mark = platform.calls.mark()
    response = client.post_form("/clients", {"name": "thermostat-fleet", "tenant_id": "globex"})
    assert response.status_code == 201
    found = re.search(r'<code id="client-id">([0-9a-z]+)</code>', response.text)
    secret = re.search(r'<code id="client-secret">([^<]+)</code>', response.text)
    assert found and secret
    client_id = found.group(1)
    pool_client = _pool_client(platform, client_id)
    assert pool_client["ClientSecret"] == secret.group(1)
    assert pool_client["AllowedOAuthFlows"] == ["client_credentials"]
    assert pool_client["AllowedOAuthScopes"] == ["inference/invoke"]
    assert pool_client["AccessTokenValidity"] == 60
    assert pool_client["ClientName"] == "acme-thermostat-fleet"
    creates = [c for c in platform.calls.since(mark) if c[1] == "CreateUserPoolClient"]
    assert [c[2] for c in creates] == [platform.calls.instance_key]  # the instance role
    item = platform.table(platform.settings.api_clients_table).get_item(
        Key={"tenant_id": "acme", "client_id": client_id}
    )["Item"]
    assert item["name"] == "thermostat-fleet" and item["created_by"] == "alice@acme.example"
    assert "secret" not in json.dumps(item, default=str).lower()
    listing = client.get("/clients")
    assert client_id in listing.text and secret.group(1) not in listing.text
    assert [c["client_id"] for c in client.get("/clients", headers=JSON).json()] == [client_id]
    assert platform.client("gina").get("/clients", headers=JSON).json() == []
    twice = client.post_form("/clients", {"name": "thermostat-fleet"}, headers=JSON)
    assert twice.status_code == 409
    as_json = client.post_form("/clients", {"name": "backend"}, headers=JSON)
    assert as_json.status_code == 201 and as_json.json()["client_secret"]
    assert as_json.json()["token_url"].endswith("/oauth2/token")


@pytest.mark.parametrize("name", ["", " ", "-leading", "x" * 65, "semi;colon"])
def test_a_bad_client_name_is_400_and_creates_nothing(platform: Platform, name: str) -> None:
    client = platform.client("alice")
    r = client.post_form("/clients", {"name": name}, headers=JSON)
    assert r.status_code == 400 and "Client name" in r.json()["error"]
    page = client.post_form("/clients", {"name": name})
    assert page.status_code == 400 and 'data-testid="form-errors"' in page.text
    cognito = platform.session.client("cognito-idp", region_name=platform.settings.aws_region)
    listed = cognito.list_user_pool_clients(
        UserPoolId=platform.settings.user_pool_id, MaxResults=60
    )
    assert listed["UserPoolClients"] == []


def test_deleting_a_client_removes_the_app_client_and_its_record(platform: Platform) -> None:
    client: PortalClient = platform.client("alice")
    created = client.post_form("/clients", {"name": "fleet"}, headers=JSON).json()
    r = client.post_form(f"/clients/{created['client_id']}/delete", {})
    assert r.status_code == 303 and r.headers["location"] == "/clients?notice=client-deleted"
    cognito = platform.session.client("cognito-idp", region_name=platform.settings.aws_region)
    with pytest.raises(cognito.exceptions.ResourceNotFoundException):
        _pool_client(platform, created["client_id"])
    assert client.get("/clients", headers=JSON).json() == []
    for client_id in (created["client_id"], "NOT-AN-ID"):
        r = client.post_form(f"/clients/{client_id}/delete", {}, headers=JSON)
        assert r.status_code == 404
