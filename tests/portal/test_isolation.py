"""Tenant isolation, route by route: acme's user tries to reach globex's data on EVERY route.

``CASES`` must name every route the app serves (``test_every_route_has_a_cross_tenant_case``), so
a new route fails the suite until it gets a case here. Each case acts as alice (tenant acme)
against globex's seeded objects and checks both the answer and that nothing of globex's leaked or
changed. Moto doesn't enforce IAM, so the test also checks that every AWS call made while serving
acme used credentials from an AssumeRole tagged ``tenant=acme`` (or the instance role, for the
catalog only).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from portal_helpers import (
    JOB_FORM,
    TUNE_FORM,
    Platform,
    PortalClient,
    api_routes,
    model_item,
    put_model,
    put_tuning_job,
)
from test_retraining_pages import policies, policy_form, put_run, queued_policy_requests
from test_serving_pages import put_in_service
from training_common import (
    JobStatus,
    ModelApprovalStatus,
    RetrainingPolicy,
    RunDecision,
    TuningSpec,
    capture_prefix,
    encode_page_token,
    utc_now,
)

JSON = {"accept": "application/json"}
GLOBEX_DATASET = "tenants/globex/datasets/churn/"


def _globex_job(platform: Platform) -> str:
    return platform.seeded.jobs["globex"][0]


def _globex_jobs_count(platform: Platform) -> int:
    return int(
        platform.table("Jobs").query(
            KeyConditionExpression="tenant_id = :t", ExpressionAttributeValues={":t": "globex"}
        )["Count"]
    )


def _globex_token(**key: str) -> str:
    """A well-formed continuation token for a key in globex's partition."""
    token = encode_page_token({"tenant_id": "globex", **key})
    assert token
    return token


def _refuses_globex_token(c: PortalClient, path: str, token: str) -> None:
    r = c.get(path, params={"next": token}, headers=JSON)
    assert r.status_code == 400, (path, r.status_code)
    assert "page token" in r.json()["error"]


def _globex_model(p: Platform) -> str:
    """globex's model version, pending approval (a real moto model package)."""
    job_id = _globex_job(p)
    put_model(p, "globex", job_id)
    return job_id


def _no_globex(text: str, platform: Platform) -> None:
    assert "globex" not in text.lower(), "acme's page shows globex data"
    assert _globex_job(platform) not in text


def home(c: PortalClient, p: Platform) -> None:
    r = c.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/jobs"


def datasets(c: PortalClient, p: Platform) -> None:
    r = c.get("/datasets", headers=JSON)
    assert r.status_code == 200 and [d["key"] for d in r.json()] == ["tenants/acme/datasets/iris/"]
    _no_globex(c.get("/datasets").text, p)


def upload(c: PortalClient, p: Platform) -> None:
    for name in ("../globex/datasets/churn", "..", "churn/../../globex"):
        r = c.get(
            "/datasets/upload", params={"dataset": name, "content_type": "text/csv"}, headers=JSON
        )
        assert r.status_code == 400, name
    r = c.get(
        "/datasets/upload",
        params={"dataset": "churn", "content_type": "text/csv", "tenant_id": "globex"},
        headers=JSON,
    )
    assert r.status_code == 200
    assert r.json()["fields"]["key"].startswith("tenants/acme/datasets/churn/")


def algorithms(c: PortalClient, p: Platform) -> None:
    r = c.get("/algorithms", headers=JSON)
    assert r.status_code == 200 and {a["id"] for a in r.json()} >= {"xgboost", "linear-learner"}


def jobs_list(c: PortalClient, p: Platform) -> None:
    r = c.get("/jobs", headers=JSON)
    assert r.status_code == 200 and {j["tenant_id"] for j in r.json()["items"]} == {"acme"}
    _no_globex(c.get("/jobs").text, p)
    _refuses_globex_token(
        c, "/jobs", _globex_token(job_id=_globex_job(p), created_at="2020-01-01T00:00:00.000Z")
    )


def job_form(c: PortalClient, p: Platform) -> None:
    r = c.get("/jobs/new")
    assert r.status_code == 200
    assert GLOBEX_DATASET not in r.text and "churn" not in r.text


def submit(c: PortalClient, p: Platform) -> None:
    before = _globex_jobs_count(p)
    r = c.post_form("/jobs", {**JOB_FORM, "dataset_key": GLOBEX_DATASET}, headers=JSON)
    assert r.status_code == 400
    assert "not one of your datasets" in " ".join(r.json()["details"])
    r = c.post_form("/jobs", {**JOB_FORM, "tenant_id": "globex"}, headers=JSON)
    assert r.status_code == 201 and r.json()["job"]["tenant_id"] == "acme"
    assert _globex_jobs_count(p) == before


def job_page(c: PortalClient, p: Platform) -> None:
    r = c.get(f"/jobs/{_globex_job(p)}", headers=JSON)
    assert r.status_code == 404
    assert c.get(f"/jobs/{_globex_job(p)}").status_code == 404
    tuning_job = put_tuning_job(p, "globex", trials=3)
    for headers in (JSON, {}):
        r = c.get(f"/jobs/{tuning_job}", headers=headers)
        assert r.status_code == 404 and "trial" not in r.text.lower()
    # acme's own tuning job page with a token pointing into globex's trials.
    own = put_tuning_job(p, "acme", trials=1)
    _refuses_globex_token(
        c,
        f"/jobs/{own}",
        _globex_token(trial_id=f"{tuning_job}#x", objective_key=f"{tuning_job}#~"),
    )


def job_model(c: PortalClient, p: Platform) -> None:
    r = c.get(f"/jobs/{_globex_job(p)}/model", headers=JSON)
    assert r.status_code == 404 and "location" not in r.headers


def job_stop(c: PortalClient, p: Platform) -> None:
    job_id = _globex_job(p)
    p.table("Jobs").update_item(
        Key={"tenant_id": "globex", "job_id": job_id},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": "IN_PROGRESS"},
    )
    try:
        r = c.post_form(f"/jobs/{job_id}/stop", {}, headers=JSON)
        assert r.status_code == 404
        assert job_id not in [name for name, _ in p.calls.stops]
    finally:
        p.table("Jobs").update_item(
            Key={"tenant_id": "globex", "job_id": job_id},
            UpdateExpression="SET #s = :s",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": "COMPLETED"},
        )
    tuning_job = put_tuning_job(p, "globex", trials=1, status=JobStatus.IN_PROGRESS)
    r = c.post_form(f"/jobs/{tuning_job}/stop", {}, headers=JSON)
    assert r.status_code == 404
    assert p.calls.tuning_stops == [] and p.calls.stops == []


def tune_form(c: PortalClient, p: Platform) -> None:
    r = c.get("/jobs/tune")
    assert r.status_code == 200
    assert GLOBEX_DATASET not in r.text and "churn" not in r.text


def submit_tuning(c: PortalClient, p: Platform) -> None:
    before = _globex_jobs_count(p)
    r = c.post_form("/jobs/tune", {**TUNE_FORM, "dataset_key": GLOBEX_DATASET}, headers=JSON)
    assert r.status_code == 400
    assert "not one of your datasets" in " ".join(r.json()["details"])
    r = c.post_form("/jobs/tune", {**TUNE_FORM, "tenant_id": "globex"}, headers=JSON)
    assert r.status_code == 201 and r.json()["job"]["tenant_id"] == "acme"
    assert _globex_jobs_count(p) == before


def models_list(c: PortalClient, p: Platform) -> None:
    globex = _globex_model(p)
    put_model(p, "acme", p.seeded.jobs["acme"][0])
    r = c.get("/models", headers=JSON)
    assert r.status_code == 200 and r.json()["items"]
    assert {m["tenant_id"] for m in r.json()["items"]} == {"acme"}
    assert globex not in r.text
    _no_globex(c.get("/models").text, p)
    _refuses_globex_token(c, "/models", _globex_token(job_id=globex))


def model_page(c: PortalClient, p: Platform) -> None:
    globex = _globex_model(p)
    for headers in (JSON, {}):
        r = c.get(f"/models/{globex}", headers=headers)
        assert r.status_code == 404 and "globex-models" not in r.text


def model_download(c: PortalClient, p: Platform) -> None:
    globex = _globex_model(p)
    r = c.get(f"/models/{globex}/download", headers=JSON)
    assert r.status_code == 404 and "location" not in r.headers


def model_decision(action: str) -> Callable[[PortalClient, Platform], None]:
    """acme can neither approve nor reject globex's version: 404, nothing sent, nothing kept."""

    def case(c: PortalClient, p: Platform) -> None:
        globex = _globex_model(p)
        before = model_item(p, "globex", globex)
        mark = p.calls.mark()
        r = c.post_form(f"/models/{globex}/{action}", {"comment": "mine now"}, headers=JSON)
        assert r.status_code == 404
        assert not [call for call in p.calls.since(mark) if call[1] == "UpdateModelPackage"]
        assert model_item(p, "globex", globex) == before
        sagemaker = p.session.client("sagemaker", region_name=p.settings.aws_region)
        package = sagemaker.describe_model_package(ModelPackageName=before["model_package_arn"])
        assert package["ModelApprovalStatus"] == "PendingManualApproval"

    return case


def notifications(c: PortalClient, p: Platform) -> None:
    r = c.get("/notifications", headers=JSON)
    assert r.status_code == 200 and {n["tenant_id"] for n in r.json()["items"]} == {"acme"}
    _no_globex(c.get("/notifications").text, p)
    _refuses_globex_token(
        c, "/notifications", _globex_token(notification_id=f"2020-01-01#{_globex_job(p)}")
    )


def notification_read(c: PortalClient, p: Platform) -> None:
    table = p.table("Notifications")
    globex = table.query(
        KeyConditionExpression="tenant_id = :t", ExpressionAttributeValues={":t": "globex"}
    )["Items"][0]
    r = c.post_form(
        "/notifications/read", {"notification_id": globex["notification_id"]}, headers=JSON
    )
    assert r.status_code == 404
    after = table.get_item(
        Key={"tenant_id": "globex", "notification_id": globex["notification_id"]}
    )["Item"]
    assert after["read"] is False


def _globex_deployment(p: Platform) -> str:
    """globex's deployment IN_SERVICE on its approved model version."""
    job_id = _globex_job(p)
    put_model(p, "globex", job_id, status=ModelApprovalStatus.APPROVED)
    put_in_service(p, "globex", "churn", job_id)
    return "churn"


def _globex_deployment_item(p: Platform) -> dict[str, Any]:
    item: dict[str, Any] = p.table("Deployments").get_item(
        Key={"tenant_id": "globex", "deployment_id": "churn"}
    )["Item"]
    return item


def _queued_deployments(p: Platform) -> list[str]:
    sqs = p.session.client("sqs", region_name=p.settings.aws_region)
    response = sqs.receive_message(
        QueueUrl=p.settings.deployment_requests_queue_url, MaxNumberOfMessages=10
    )
    return [m["Body"] for m in response.get("Messages", [])]


def deployments_list(c: PortalClient, p: Platform) -> None:
    _globex_deployment(p)
    r = c.get("/deployments", headers=JSON)
    assert r.status_code == 200 and r.json()["items"] == []
    _no_globex(c.get("/deployments").text, p)
    _refuses_globex_token(c, "/deployments", _globex_token(deployment_id="churn"))


def deployment_form(c: PortalClient, p: Platform) -> None:
    globex = _globex_deployment(p)
    r = c.get(f"/deployments/new?model={_globex_job(p)}")
    assert r.status_code == 200 and _globex_job(p) not in r.text and globex not in r.text


def deploy(c: PortalClient, p: Platform) -> None:
    _globex_deployment(p)
    before = _globex_deployment_item(p)
    form = {"deployment_id": "churn", "kind": "realtime", "instance_type": "ml.m5.large"}
    form |= {"instance_count": "1", "tenant_id": "globex"}
    # globex's model version, under acme: refused before anything is written or sent.
    r = c.post_form("/deployments", {**form, "model_job_id": _globex_job(p)}, headers=JSON)
    assert r.status_code == 400 and _queued_deployments(p) == []
    # acme's own version under the same name: acme's deployment, globex's stays as it was.
    own = p.seeded.approved_models["acme"]
    r = c.post_form("/deployments", {**form, "model_job_id": own}, headers=JSON)
    assert r.status_code == 202 and r.json()["tenant_id"] == "acme"
    assert r.json()["endpoint_name"] == "acme-churn"
    assert _globex_deployment_item(p) == before


def deployment_page(c: PortalClient, p: Platform) -> None:
    globex = _globex_deployment(p)
    for headers in (JSON, {}):
        r = c.get(f"/deployments/{globex}", headers=headers)
        assert r.status_code == 404 and "globex" not in r.text.lower()


def deployment_change(action: str) -> Callable[[PortalClient, Platform], None]:
    """acme can neither redeploy nor undeploy globex's deployment: 404, nothing kept or sent."""

    def case(c: PortalClient, p: Platform) -> None:
        globex = _globex_deployment(p)
        before = _globex_deployment_item(p)
        r = c.post_form(
            f"/deployments/{globex}/{action}", {"model_job_id": _globex_job(p)}, headers=JSON
        )
        assert r.status_code == 404
        assert _globex_deployment_item(p) == before and _queued_deployments(p) == []

    return case


def _globex_client(p: Platform) -> str:
    """globex's API client: a Cognito app client and its record (test side, not the portal)."""
    cognito = p.session.client("cognito-idp", region_name=p.settings.aws_region)
    client_id: str = cognito.create_user_pool_client(
        UserPoolId=p.settings.user_pool_id, ClientName="globex-churn-backend", GenerateSecret=True
    )["UserPoolClient"]["ClientId"]
    p.table("ApiClients").put_item(
        Item={
            "tenant_id": "globex",
            "client_id": client_id,
            "name": "churn-backend",
            "created_by": "gina@globex.example",
            "created_at": "2024-01-01T00:00:00.000Z",
        }
    )
    return client_id


def clients_list(c: PortalClient, p: Platform) -> None:
    globex = _globex_client(p)
    r = c.get("/clients", headers=JSON)
    assert r.status_code == 200 and r.json() == []
    assert globex not in c.get("/clients").text


def client_create(c: PortalClient, p: Platform) -> None:
    r = c.post_form("/clients", {"name": "fleet", "tenant_id": "globex"}, headers=JSON)
    assert r.status_code == 201 and r.json()["tenant_id"] == "acme"
    globex_clients = p.table("ApiClients").query(
        KeyConditionExpression="tenant_id = :t", ExpressionAttributeValues={":t": "globex"}
    )["Items"]
    assert globex_clients == []


def client_delete(c: PortalClient, p: Platform) -> None:
    globex = _globex_client(p)
    r = c.post_form(f"/clients/{globex}/delete", {}, headers=JSON)
    assert r.status_code == 404
    cognito = p.session.client("cognito-idp", region_name=p.settings.aws_region)
    cognito.describe_user_pool_client(UserPoolId=p.settings.user_pool_id, ClientId=globex)
    assert p.table("ApiClients").get_item(Key={"tenant_id": "globex", "client_id": globex})["Item"]


def costs(c: PortalClient, p: Platform) -> None:
    _globex_deployment(p)
    r = c.get("/costs", headers=JSON)
    assert r.status_code == 200 and r.json()["deployments"] == []
    assert {j["job_id"].split("-")[0] for j in r.json()["jobs"]} == {"acme"}
    _no_globex(c.get("/costs").text, p)
    _refuses_globex_token(
        c, "/costs", _globex_token(job_id=_globex_job(p), created_at="2020-01-01T00:00:00.000Z")
    )


GLOBEX_POLICY = "churnweekly"


def _globex_policy(p: Platform) -> RetrainingPolicy:
    """globex's policy on its deployment (with one run), written as the portal would."""
    deployment = _globex_deployment(p)
    job = p.table("Jobs").get_item(Key={"tenant_id": "globex", "job_id": _globex_job(p)})["Item"]
    now = utc_now()
    policy = RetrainingPolicy(
        tenant_id="globex",
        policy_id=GLOBEX_POLICY,
        deployment_id=deployment,
        algorithm_id="xgboost",
        dataset_prefix=GLOBEX_DATASET,
        validation_key="tenants/globex/datasets/holdout/",
        tuning=TuningSpec.model_validate(
            {
                "objective_metric": "validation:auc",
                "objective_type": "Maximize",
                "ranges": [{"name": "eta", "type": "Continuous", "min_value": 0.1, "max_value": 1}],
                "max_training_jobs": 2,
                "max_parallel_training_jobs": 1,
            }
        ),
        instance_type=str(job["instance_type"]),
        instance_count=1,
        max_runtime_seconds=3600,
        request_id="1" * 32,
        token="2" * 32,
        created_at=now,
        updated_at=now,
        submitted_by="gina@globex.example",
    )
    stored, _ = policies(p).put_if_absent(policy)
    put_run(p, stored, now.replace(second=0, microsecond=0), RunDecision.REJECTED, reason="x")
    return stored


def _globex_unchanged(p: Platform, before: RetrainingPolicy) -> None:
    assert policies(p).get("globex", GLOBEX_POLICY) == before
    assert policies(p).get("acme", GLOBEX_POLICY) is None
    assert queued_policy_requests(p) == []


def retraining_list(c: PortalClient, p: Platform) -> None:
    _globex_policy(p)
    r = c.get("/retraining", headers=JSON)
    assert r.status_code == 200 and r.json()["items"] == []
    _no_globex(c.get("/retraining").text, p)
    assert GLOBEX_POLICY not in c.get("/retraining").text
    _refuses_globex_token(c, "/retraining", _globex_token(policy_id=GLOBEX_POLICY))


def retraining_form(c: PortalClient, p: Platform) -> None:
    globex = _globex_deployment(p)
    for headers in (JSON, {}):
        r = c.get(f"/deployments/{globex}/retraining/new", headers=headers)
        assert r.status_code == 404 and "globex" not in r.text.lower()


def retraining_create(c: PortalClient, p: Platform) -> None:
    before = _globex_policy(p)
    form = policy_form(deployment_id=before.deployment_id, policy_id=GLOBEX_POLICY)
    form |= {"tenant_id": "globex", "dataset_prefix": GLOBEX_DATASET}
    r = c.post_form("/retraining", form, headers=JSON)
    assert r.status_code == 404
    _globex_unchanged(p, before)


def retraining_policy(c: PortalClient, p: Platform) -> None:
    globex = _globex_policy(p)
    for headers in (JSON, {}):
        r = c.get(f"/retraining/{GLOBEX_POLICY}", headers=headers)
        assert r.status_code == 404 and "globex" not in r.text.lower()
        assert "data-run" not in r.text
    # acme's own policy with a token pointing into globex's runs.
    own = globex.model_copy(
        update={
            "tenant_id": "acme",
            "policy_id": "acmeweekly",
            "dataset_prefix": "tenants/acme/datasets/iris/",
            "validation_key": "tenants/acme/datasets/holdout/",
        }
    )
    policies(p).put_if_absent(own)
    _refuses_globex_token(
        c, "/retraining/acmeweekly", _globex_token(run_id=f"{GLOBEX_POLICY}#2020-01-01")
    )


def retraining_edit_form(c: PortalClient, p: Platform) -> None:
    _globex_policy(p)
    for headers in (JSON, {}):
        r = c.get(f"/retraining/{GLOBEX_POLICY}/edit", headers=headers)
        assert r.status_code == 404 and "globex" not in r.text.lower()


def retraining_change(action: str) -> Callable[[PortalClient, Platform], None]:
    """acme can neither edit, pause, resume nor delete globex's policy: 404, nothing written
    or queued."""

    def case(c: PortalClient, p: Platform) -> None:
        before = _globex_policy(p)
        form = policy_form(deployment_id=before.deployment_id, policy_id=GLOBEX_POLICY)
        r = c.post_form(f"/retraining/{GLOBEX_POLICY}/{action}", form, headers=JSON)
        assert r.status_code == 404, (action, r.status_code)
        _globex_unchanged(p, before)

    return case


def _globex_capture(p: Platform) -> str:
    """globex's deployment with data capture and one captured request."""
    globex = _globex_deployment(p)
    prefix = capture_prefix("globex", "globex-churn")
    p.table("Deployments").update_item(
        Key={"tenant_id": "globex", "deployment_id": globex},
        UpdateExpression="SET capture_prefix = :p",
        ExpressionAttributeValues={":p": prefix},
    )
    now = utc_now()
    line = (
        '{"captureData":{"endpointInput":{"data":"9,9,9","encoding":"CSV",'
        '"observedContentType":"text/csv"}},"eventMetadata":{"inferenceTime":"'
        + now.strftime("%Y-%m-%dT%H:%M:%SZ")
        + '"}}'
    )
    p.session.client("s3", region_name=p.settings.aws_region).put_object(
        Bucket=p.settings.data_bucket,
        Key=f"{prefix}globex-churn/AllTraffic/{now:%Y/%m/%d/%H}/capture.jsonl",
        Body=line.encode(),
    )
    return globex


def _globex_feedback_keys(p: Platform) -> list[str]:
    s3 = p.session.client("s3", region_name=p.settings.aws_region)
    listed = s3.list_objects_v2(Bucket=p.settings.data_bucket, Prefix="tenants/globex/feedback/")
    return [o["Key"] for o in listed.get("Contents", [])]


def feedback_page(c: PortalClient, p: Platform) -> None:
    globex = _globex_capture(p)
    for headers in (JSON, {}):
        r = c.get(f"/deployments/{globex}/feedback", headers=headers)
        assert r.status_code == 404 and "globex" not in r.text.lower()


def feedback_export(c: PortalClient, p: Platform) -> None:
    globex = _globex_capture(p)
    now = utc_now()
    form = {
        "start": (now - timedelta(hours=2)).isoformat(),
        "end": (now + timedelta(minutes=1)).isoformat(),
        "tenant_id": "globex",
    }
    r = c.post_form(f"/deployments/{globex}/feedback/export", form, headers=JSON)
    assert r.status_code == 404 and "9,9,9" not in r.text
    assert _globex_feedback_keys(p) == []
    s3 = p.session.client("s3", region_name=p.settings.aws_region)
    acme = s3.list_objects_v2(Bucket=p.settings.data_bucket, Prefix="tenants/acme/feedback/")
    assert acme["KeyCount"] == 0


def feedback_download(c: PortalClient, p: Platform) -> None:
    """acme gets no presigned URL for globex's export, whatever file it names."""
    globex = _globex_capture(p)
    s3 = p.session.client("s3", region_name=p.settings.aws_region)
    name = "20261201000000-20261202000000/inputs.csv"
    s3.put_object(
        Bucket=p.settings.data_bucket,
        Key=f"tenants/globex/feedback/{globex}/{name}",
        Body=b"9,9,9\n",
    )
    for file in (name, f"../../globex/feedback/{globex}/{name}"):
        r = c.get(
            f"/deployments/{globex}/feedback/download",
            params={"file": file},
            headers=JSON,
        )
        assert r.status_code == 404 and "location" not in r.headers


def feedback_labelled(c: PortalClient, p: Platform) -> None:
    globex = _globex_capture(p)
    r = c.post_form(
        f"/deployments/{globex}/feedback/labelled",
        {"tenant_id": "globex"},
        files={"file": ("labels.csv", b"1,2,3\n", "text/csv")},
        headers=JSON,
    )
    assert r.status_code == 404
    assert _globex_feedback_keys(p) == []


def admin_only(method: str, path: str, data: dict[str, str] | None = None) -> Callable[..., None]:
    """A tenant user (even acme's) is refused with 403 and nothing changes."""

    def case(c: PortalClient, p: Platform) -> None:
        tenants_before = p.table("Tenants").scan()["Items"]
        if method == "GET":
            r = c.get(path, headers=JSON)
        else:
            r = c.post_form(path, data or {}, headers=JSON)
        assert r.status_code == 403, (method, path, r.status_code)
        assert "admins" in r.json()["error"]
        assert p.table("Tenants").scan()["Items"] == tenants_before

    return case


CASES: dict[tuple[str, str], Callable[[PortalClient, Platform], None]] = {
    ("GET", "/"): home,
    ("GET", "/datasets"): datasets,
    ("GET", "/datasets/upload"): upload,
    ("GET", "/algorithms"): algorithms,
    ("GET", "/jobs"): jobs_list,
    ("GET", "/jobs/new"): job_form,
    ("POST", "/jobs"): submit,
    ("GET", "/jobs/{job_id}"): job_page,
    ("GET", "/jobs/{job_id}/model"): job_model,
    ("POST", "/jobs/{job_id}/stop"): job_stop,
    ("GET", "/jobs/tune"): tune_form,
    ("POST", "/jobs/tune"): submit_tuning,
    ("GET", "/models"): models_list,
    ("GET", "/models/{job_id}"): model_page,
    ("GET", "/models/{job_id}/download"): model_download,
    ("POST", "/models/{job_id}/approve"): model_decision("approve"),
    ("POST", "/models/{job_id}/reject"): model_decision("reject"),
    ("GET", "/notifications"): notifications,
    ("POST", "/notifications/read"): notification_read,
    ("GET", "/deployments"): deployments_list,
    ("GET", "/deployments/new"): deployment_form,
    ("POST", "/deployments"): deploy,
    ("GET", "/deployments/{deployment_id}"): deployment_page,
    ("POST", "/deployments/{deployment_id}/redeploy"): deployment_change("redeploy"),
    ("POST", "/deployments/{deployment_id}/undeploy"): deployment_change("undeploy"),
    ("GET", "/clients"): clients_list,
    ("POST", "/clients"): client_create,
    ("POST", "/clients/{client_id}/delete"): client_delete,
    ("GET", "/costs"): costs,
    ("GET", "/retraining"): retraining_list,
    ("GET", "/deployments/{deployment_id}/retraining/new"): retraining_form,
    ("POST", "/retraining"): retraining_create,
    ("GET", "/retraining/{policy_id}"): retraining_policy,
    ("GET", "/retraining/{policy_id}/edit"): retraining_edit_form,
    ("POST", "/retraining/{policy_id}/edit"): retraining_change("edit"),
    ("POST", "/retraining/{policy_id}/pause"): retraining_change("pause"),
    ("POST", "/retraining/{policy_id}/resume"): retraining_change("resume"),
    ("POST", "/retraining/{policy_id}/delete"): retraining_change("delete"),
    ("GET", "/deployments/{deployment_id}/feedback"): feedback_page,
    ("POST", "/deployments/{deployment_id}/feedback/export"): feedback_export,
    ("POST", "/deployments/{deployment_id}/feedback/labelled"): feedback_labelled,
    ("GET", "/deployments/{deployment_id}/feedback/download"): feedback_download,
    ("GET", "/admin"): admin_only("GET", "/admin"),
    ("GET", "/admin/tenants"): admin_only("GET", "/admin/tenants"),
    ("POST", "/admin/tenants"): admin_only(
        "POST", "/admin/tenants", {"tenant_id": "evil", "display_name": "x"}
    ),
    ("GET", "/admin/tenants/{tenant_id}"): admin_only("GET", "/admin/tenants/globex"),
    ("POST", "/admin/tenants/{tenant_id}"): admin_only(
        "POST", "/admin/tenants/acme", {"max_running_jobs": "999"}
    ),
    ("POST", "/admin/tenants/{tenant_id}/status"): admin_only(
        "POST", "/admin/tenants/globex/status", {"status": "SUSPENDED"}
    ),
    ("GET", "/admin/users"): admin_only("GET", "/admin/users"),
    ("POST", "/admin/users"): admin_only(
        "POST", "/admin/users", {"tenant_id": "globex", "email": "spy@acme.example"}
    ),
    ("GET", "/admin/algorithms"): admin_only("GET", "/admin/algorithms"),
    ("GET", "/admin/algorithms/{algorithm_id}"): admin_only("GET", "/admin/algorithms/xgboost"),
    ("POST", "/admin/algorithms"): admin_only(
        "POST", "/admin/algorithms", {"id": "xgboost", "name": "evil", "image_uri": "evil"}
    ),
}

NOT_TENANT_DATA = {("GET", "/health")}
"""Routes that serve no tenant data at all (checked in test_tenant_pages)."""


def test_every_route_has_a_cross_tenant_case(platform: Platform) -> None:
    served = api_routes(platform.app) - {("HEAD", path) for _, path in api_routes(platform.app)}
    missing = served - set(CASES) - NOT_TENANT_DATA
    assert not missing, f"routes without a cross-tenant case in test_isolation.CASES: {missing}"
    stale = set(CASES) - served
    assert not stale, f"cases for routes that no longer exist: {stale}"


@pytest.mark.parametrize("route", sorted(CASES), ids=lambda r: f"{r[0]} {r[1]}")
def test_acme_cannot_reach_globex(platform: Platform, route: tuple[str, str]) -> None:
    client = platform.client("alice")
    mark = platform.calls.mark()
    CASES[route](client, platform)
    _only_acme_credentials(platform, platform.calls.since(mark))


def _only_acme_credentials(platform: Platform, calls: list[tuple[str, str, str, Any]]) -> None:
    settings = platform.settings
    for service, operation, key, params in calls:
        if key == platform.calls.instance_key:
            # The instance role reads the catalog, assumes the tenant role and nothing else
            # while serving a tenant user.
            allowed = (
                (service == "s3" and params.get("Bucket") == settings.catalog_bucket)
                or (service == "sts" and operation == "AssumeRole")
                or _instance_serving_call(platform, service, operation, params)
            )
            assert allowed, f"instance role used for {service}:{operation} {params}"
        else:
            assert platform.calls.tenant_of_key(key) == "acme", (service, operation, params)
    for params in platform.calls.assume_params:
        assert params["Tags"] == [{"Key": "tenant", "Value": "acme"}]


def _instance_serving_call(
    platform: Platform, service: str, operation: str, params: dict[str, Any]
) -> bool:
    """The instance role's serving calls, each for acme only: API clients (Cognito app clients
    named for acme, ApiClients items under acme), usage metrics with acme's dimension, alarms."""
    settings = platform.settings
    if service == "cognito-idp" and operation == "CreateUserPoolClient":
        return str(params["ClientName"]).startswith("acme-")
    if service == "cognito-idp" and operation in {"DeleteUserPoolClient"}:
        return True  # only after the record was found under acme (services/clients.delete)
    if service == "dynamodb" and params.get("TableName") == settings.api_clients_table:
        if operation == "Query":  # ByClientId: is this new client id recorded anywhere?
            return params.get("IndexName") == "ByClientId"
        key = params.get("Item") or params.get("Key") or {}
        return operation in {"PutItem", "DeleteItem"} and key.get("tenant_id") == "acme"
    if service == "cloudwatch" and operation == "GetMetricData":
        return all(
            {"Name": "tenant", "Value": "acme"} in q["MetricStat"]["Metric"]["Dimensions"]
            for q in params["MetricDataQueries"]
        )
    return service == "cloudwatch" and operation in {"DescribeAlarms", "ListTagsForResource"}
