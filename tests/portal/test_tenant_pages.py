"""Tenant pages against moto: datasets, uploads, job submission, stop, download, CSRF, errors."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

from portal_helpers import JOB_FORM, Platform

JSON = {"accept": "application/json"}


def test_job_submission_writes_queued_record_and_message_with_tenant_credentials(
    platform: Platform,
) -> None:
    client = platform.client("alice")
    mark = platform.calls.mark()
    response = client.post_form("/jobs", JOB_FORM)
    assert response.status_code == 303
    job_id = response.headers["location"].split("/")[2].split("?")[0]
    assert job_id.startswith("acme-")
    item = platform.table("Jobs").get_item(Key={"tenant_id": "acme", "job_id": job_id})["Item"]
    assert item["status"] == "QUEUED"
    assert item["hyperparameters"] == {"num_round": "10", "objective": "binary:logistic"}
    assert item["submitted_by"] == "alice@acme.example"
    sqs = platform.session.client("sqs")
    messages = sqs.receive_message(
        QueueUrl=platform.settings.training_requests_queue_url, MaxNumberOfMessages=10
    )["Messages"]
    body = json.loads(messages[0]["Body"])
    assert body["version"] == 1 and body["job_id"] == job_id and body["tenant_id"] == "acme"
    assert body["dataset_key"] == "tenants/acme/datasets/iris/"
    writes = [c for c in platform.calls.since(mark) if c[1] in {"PutItem", "SendMessage"}]
    assert {c[1] for c in writes} == {"PutItem", "SendMessage"}
    for _, _, key, _ in writes:
        assert platform.calls.tenant_of_key(key) == "acme"
    assume = platform.calls.assume_params[-1]
    assert assume["Tags"] == [{"Key": "tenant", "Value": "acme"}]
    assert assume["TransitiveTagKeys"] == ["tenant"]
    assert assume["RoleArn"] == platform.settings.tenant_role_arn


def test_tenant_credentials_are_cached_per_tenant(platform: Platform) -> None:
    alice, bob, gina = (platform.client(u) for u in ("alice", "bob", "gina"))
    for client in (alice, bob, alice, gina, gina):
        assert client.get("/jobs", headers=JSON).status_code == 200
    tenants = [p["Tags"][0]["Value"] for p in platform.calls.assume_params]
    assert tenants == ["acme", "globex"]


def test_tenant_clients_are_created_on_first_use_and_kept(platform: Platform) -> None:
    client = platform.client("alice")
    assert client.get("/jobs", headers=JSON).status_code == 200
    tenant_aws = platform.app.state.portal.aws.for_tenant("acme")
    created = set(vars(tenant_aws))
    # the jobs page reads DynamoDB only: no S3, SQS or SageMaker client was set up for it
    assert {"jobs", "_dynamodb"} <= created and not {"s3", "sqs", "sagemaker"} & created
    assert tenant_aws.sagemaker is tenant_aws.sagemaker
    assert tenant_aws.jobs.table.meta.client is tenant_aws.models.table.meta.client
    assert client.post_form("/jobs", JOB_FORM, headers=JSON).status_code == 201
    assert "sqs" in vars(tenant_aws)


def test_bad_job_forms_are_400_with_what_is_wrong(platform: Platform) -> None:
    client = platform.client("alice")
    cases = {
        "instance_count": ("zero", "Instance count must be a whole number"),
        "max_runtime_seconds": ("999999999", "Maximum runtime (seconds) must be between"),
        "hyperparameters": ("no equals sign", "line 1 is not of the form key=value"),
        "algorithm_id": ("", "Algorithm is required"),
    }
    for field, (value, message) in cases.items():
        response = client.post_form("/jobs", {**JOB_FORM, field: value}, headers=JSON)
        assert response.status_code == 400, field
        assert message in response.json()["error"], response.json()
    page = client.post_form("/jobs", {**JOB_FORM, "instance_count": "zero"})
    assert page.status_code == 400
    assert "Instance count must be a whole number" in page.text
    assert 'name="csrf_token"' in page.text  # the form comes back to fix and resubmit


def test_quota_and_catalog_problems_are_all_listed(platform: Platform) -> None:
    client = platform.client("gina")  # globex: ml.m5.large only, 1 instance, xgboost only, 2 h
    form = {
        **JOB_FORM,
        "algorithm_id": "linear-learner",
        "dataset_key": "tenants/globex/datasets/churn/",
        "instance_type": "ml.m5.xlarge",
        "instance_count": "2",
        "max_runtime_seconds": "7201",
        "use_spot": "on",
    }
    response = client.post_form("/jobs", form, headers=JSON)
    assert response.status_code == 400
    details = " ".join(response.json()["details"])
    for fragment in ("not enabled for your tenant", "ml.m5.xlarge", "at most 1", "7200", "spot"):
        assert fragment in details
    assert (
        platform.table("Jobs").query(
            KeyConditionExpression="tenant_id = :t", ExpressionAttributeValues={":t": "globex"}
        )["Count"]
        == 1
    )  # only the seeded job


def test_full_running_quota_queues_the_job_with_a_note(platform: Platform) -> None:
    platform.table("Tenants").update_item(
        Key={"tenant_id": "acme"},
        UpdateExpression="SET max_running_jobs = :z",
        ExpressionAttributeValues={":z": 0},
    )
    response = platform.client("alice").post_form("/jobs", JOB_FORM, headers=JSON)
    assert response.status_code == 201
    assert "the most your quota allows" in response.json()["note"]
    assert response.json()["job"]["status"] == "QUEUED"


def test_suspended_tenant_cannot_submit(platform: Platform) -> None:
    platform.table("Tenants").update_item(
        Key={"tenant_id": "acme"},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": "SUSPENDED"},
    )
    response = platform.client("alice").post_form("/jobs", JOB_FORM, headers=JSON)
    assert response.status_code == 400
    assert "suspended" in " ".join(response.json()["details"])


def test_csrf_missing_wrong_or_from_another_user_is_403(platform: Platform) -> None:
    alice = platform.client("alice")
    assert alice.post("/jobs", data=JOB_FORM, headers=JSON).status_code == 403
    token = alice.csrf()
    wrong = token[:-4] + "0000" if not token.endswith("0000") else token[:-4] + "1111"
    response = alice.post("/jobs", data={**JOB_FORM, "csrf_token": wrong}, headers=JSON)
    assert response.status_code == 403
    assert "doesn't match" in response.json()["error"]
    bob = platform.client("bob")
    bob.cookies.set("__Host-portal-csrf", token, domain="testserver.local")
    response = bob.post("/jobs", data={**JOB_FORM, "csrf_token": token}, headers=JSON)
    assert response.status_code == 403
    assert "another user" in response.json()["error"]
    # The header form of the token works for scripted clients.
    header = alice.post("/jobs", data=JOB_FORM, headers={**JSON, "x-csrf-token": token})
    assert header.status_code == 201


def test_csrf_cookie_is_host_only_secure_and_strict(platform: Platform) -> None:
    response = platform.client("alice").get("/jobs")
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("__Host-portal-csrf=")
    for attribute in ("HttpOnly", "Path=/", "SameSite=strict", "Secure"):
        assert attribute.lower() in cookie.lower()


def test_dataset_list_and_presigned_upload_limited_to_the_tenant_prefix(
    platform: Platform,
) -> None:
    client = platform.client("alice")
    listed = client.get("/datasets", headers=JSON).json()
    assert [d["key"] for d in listed] == ["tenants/acme/datasets/iris/"]
    post = client.get(
        "/datasets/upload",
        params={"dataset": "readings", "content_type": "text/csv"},
        headers=JSON,
    ).json()
    fields = post["fields"]
    assert fields["key"] == "tenants/acme/datasets/readings/${filename}"
    policy = json.loads(__import__("base64").b64decode(fields["policy"]))
    conditions = policy["conditions"]
    assert ["starts-with", "$key", "tenants/acme/datasets/readings/"] in conditions
    assert ["content-length-range", 1, platform.settings.max_upload_bytes] in conditions
    assert {"Content-Type": "text/csv"} in conditions
    assert platform.calls.tenant_of_key(fields["x-amz-credential"].split("/")[0]) == "acme"
    for bad in (
        {"dataset": "../globex", "content_type": "text/csv"},
        {"dataset": "ok", "content_type": "text/html"},
        {"dataset": "", "content_type": "text/csv"},
    ):
        response = client.get("/datasets/upload", params=bad, headers=JSON)
        assert response.status_code == 400, bad
        assert response.json()["error"]


def test_upload_page_renders_an_html_form_posting_to_s3(platform: Platform) -> None:
    page = platform.client("alice").get(
        "/datasets/upload", params={"dataset": "readings", "content_type": "text/csv"}
    )
    assert page.status_code == 200
    assert 'enctype="multipart/form-data"' in page.text
    assert 'name="success_action_redirect"' in page.text
    assert "https://testserver/datasets?notice=uploaded" in page.text


def test_job_page_history_metrics_and_model_download(platform: Platform) -> None:
    client = platform.client("alice")
    completed = platform.seeded.jobs["acme"][0]
    page = client.get(f"/jobs/{completed}")
    assert page.status_code == 200
    for fragment in ("COMPLETED", "validation:auc", "0.913", "IN_PROGRESS", "Download the model"):
        assert fragment in page.text
    download = client.get(f"/jobs/{completed}/model")
    assert download.status_code == 303
    url = urlparse(download.headers["location"])
    assert url.path.startswith(f"/tenants/acme/jobs/{completed}/output/") or (
        f"tenants/acme/jobs/{completed}/output/" in url.path
    )
    query = parse_qs(url.query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert platform.calls.tenant_of_key(query["X-Amz-Credential"][0].split("/")[0]) == "acme"
    failed = platform.seeded.jobs["acme"][1]
    response = client.get(f"/jobs/{failed}/model", headers=JSON)
    assert response.status_code == 409
    assert "no model" in response.json()["error"]


def test_stop_running_job_calls_sagemaker_with_tenant_credentials(platform: Platform) -> None:
    client = platform.client("alice")
    job_id = client.post_form("/jobs", JOB_FORM, headers=JSON).json()["job"]["job_id"]
    response = client.post_form(f"/jobs/{job_id}/stop", {}, headers=JSON)
    assert response.status_code == 409  # QUEUED: nothing to stop in SageMaker yet
    platform.table("Jobs").update_item(
        Key={"tenant_id": "acme", "job_id": job_id},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": "IN_PROGRESS"},
    )
    response = client.post_form(f"/jobs/{job_id}/stop", {})
    assert response.status_code == 303
    assert platform.calls.stops[-1][0] == job_id
    assert platform.calls.tenant_of_key(platform.calls.stops[-1][1]) == "acme"


def test_notifications_list_and_mark_read(platform: Platform) -> None:
    client = platform.client("alice")
    items = client.get("/notifications", headers=JSON).json()["items"]
    stored = platform.table("Notifications").query(
        KeyConditionExpression="tenant_id = :t", ExpressionAttributeValues={":t": "acme"}
    )["Count"]
    assert len(items) == stored >= 3 and not any(item["read"] for item in items)
    target = items[0]["notification_id"]
    response = client.post_form("/notifications/read", {"notification_id": target})
    assert response.status_code == 303
    after = {
        i["notification_id"]: i["read"]
        for i in client.get("/notifications", headers=JSON).json()["items"]
    }
    assert after[target] is True
    assert sum(after.values()) == 1


def test_unknown_paths_methods_and_aws_errors_are_4xx_or_5xx_pages(platform: Platform) -> None:
    client = platform.client("alice")
    assert client.get("/nowhere", headers=JSON).status_code == 404
    assert client.delete("/jobs", headers=JSON).status_code == 405
    assert client.get("/jobs/not-a-job", headers=JSON).status_code == 404
    tenant_aws = platform.app.state.portal.aws.for_tenant("acme")

    def throttle(**_: object) -> None:
        from botocore.exceptions import ClientError

        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow"}}, "Query")

    tenant_aws.jobs.table.meta.client.meta.events.register("before-call.dynamodb.Query", throttle)
    response = client.get("/jobs", headers=JSON)
    assert response.status_code == 503
    assert "throttling" in response.json()["error"]
    page = client.get("/jobs")
    assert page.status_code == 503 and "throttling" in page.text


def test_health_needs_no_identity_and_touches_nothing(platform: Platform) -> None:
    mark = platform.calls.mark()
    response = platform.client(None).get("/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert platform.calls.since(mark) == []
