"""The model registry pages against moto: list, detail, approve/reject, download, every 4xx."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

from botocore.exceptions import ClientError
from portal_app.services import models
from portal_helpers import Platform, model_item, put_model, put_tuning_job
from training_common import (
    JobStatus,
    ModelApprovalStatus,
    ModelRepository,
    Notification,
    NotificationRepository,
    iso_utc,
    new_job_id,
    utc_now,
)

JSON = {"accept": "application/json"}


def _package(platform: Platform, arn: str | None) -> dict[str, object]:
    assert arn
    sagemaker = platform.session.client("sagemaker", region_name=platform.settings.aws_region)
    package: dict[str, object] = sagemaker.describe_model_package(ModelPackageName=arn)
    return package


def _update_calls(platform: Platform, mark: int) -> list[tuple[str, dict[str, object]]]:
    return [(key, p) for _, op, key, p in platform.calls.since(mark) if op == "UpdateModelPackage"]


def test_models_list_shows_metrics_side_by_side_newest_first(platform: Platform) -> None:
    completed, failed, _ = platform.seeded.jobs["acme"]
    put_model(platform, "acme", completed, metrics={"validation:auc": 0.91, "train:auc": 0.97})
    put_model(platform, "acme", failed, metrics={"test:mse": 0.123456789})
    client = platform.client("alice")
    body = client.get("/models", headers=JSON).json()
    assert set(body) == {"items", "next"} and body["next"] is None
    ids = [item["job_id"] for item in body["items"]]
    assert ids == sorted(ids, reverse=True) and {completed, failed} <= set(ids)
    assert {item["tenant_id"] for item in body["items"]} == {"acme"}
    page = client.get("/models")
    assert page.status_code == 200
    header = re.search(r"<thead>(.*?)</thead>", page.text, re.S)
    assert header is not None
    columns = re.findall(r'<th data-metric="([^"]+)">', header.group(1))
    assert {"validation:auc", "train:auc", "test:mse"} <= set(columns)
    assert len(columns) == len(set(columns))  # one column per metric name
    row = re.search(rf'<tr data-model="{failed}">(.*?)</tr>', page.text, re.S)
    assert row is not None
    assert '<td data-metric="test:mse">0.123457</td>' in row.group(1)
    assert '<td data-metric="validation:auc"></td>' in row.group(1)  # not reported: empty cell
    assert f'href="/models/{failed}"' in row.group(1) and f'href="/jobs/{failed}"' in row.group(1)
    assert "tenants/acme/datasets/iris/" in row.group(1)


def test_models_list_is_paginated(platform: Platform) -> None:
    repository = ModelRepository(platform.table(platform.settings.models_table))
    template = put_model(platform, "acme", platform.seeded.jobs["acme"][0])
    before = len(platform.client("alice").get("/models", headers=JSON).json()["items"])
    for _ in range(models.MODELS_PAGE_SIZE + 2 - before):
        repository.put_if_absent(template.model_copy(update={"job_id": new_job_id("acme")}))
    client = platform.client("alice")
    first = client.get("/models", headers=JSON).json()
    assert len(first["items"]) == models.MODELS_PAGE_SIZE and first["next"]
    second = client.get("/models", params={"next": first["next"]}, headers=JSON).json()
    assert len(second["items"]) == 2 and second["next"] is None
    link = re.search(r'<a id="next-page" href="(/models\?next=[^"]+)"', client.get("/models").text)
    assert link is not None
    assert len(re.findall(r"<tr data-model=", client.get(link.group(1)).text)) == 2


def test_model_page_shows_lineage_metrics_decision_form_and_download(platform: Platform) -> None:
    job_id = platform.seeded.jobs["acme"][0]
    model = put_model(platform, "acme", job_id)
    client = platform.client("alice")
    page = client.get(f"/models/{job_id}")
    assert page.status_code == 200
    text = page.text
    assert 'id="model-status" data-testid="model-status">PendingManualApproval<' in text
    assert f'<a href="/jobs/{job_id}" id="lineage-job">' in text
    assert model.model_package_arn and model.model_package_arn in text
    assert "tenants/acme/datasets/iris/" in text and "num_round=100" in text
    assert '<tr data-metric="validation:auc"><td>validation:auc</td><td>0.91</td>' in text
    assert f'id="download-model" href="/models/{job_id}/download"' in text
    assert f'id="approve-model" formaction="/models/{job_id}/approve"' in text
    assert f'id="reject-model" class="danger" formaction="/models/{job_id}/reject"' in text
    assert 'name="comment"' in text
    body = client.get(f"/models/{job_id}", headers=JSON).json()
    assert body["approval_status"] == "PendingManualApproval" and body["decisions"] == []
    job_page = client.get(f"/jobs/{job_id}").text
    assert f'id="model-link" href="/models/{job_id}"' in job_page


def test_approving_updates_the_package_with_tenant_credentials_and_records_who(
    platform: Platform,
) -> None:
    job_id = platform.seeded.jobs["acme"][0]
    model = put_model(platform, "acme", job_id)
    client = platform.client("alice")
    mark = platform.calls.mark()
    response = client.post_form(f"/models/{job_id}/approve", {"comment": "  AUC beats prod  "})
    assert response.status_code == 303
    assert response.headers["location"] == f"/models/{job_id}?notice=decision-recorded"
    ((key, params),) = _update_calls(platform, mark)
    assert platform.calls.tenant_of_key(key) == "acme"
    assert params == {
        "ModelPackageArn": model.model_package_arn,
        "ModelApprovalStatus": "Approved",
        "ApprovalDescription": "AUC beats prod",
    }
    package = _package(platform, model.model_package_arn)
    assert package["ModelApprovalStatus"] == "Approved"
    assert package["ApprovalDescription"] == "AUC beats prod"
    item = model_item(platform, "acme", job_id)
    (decision,) = item["decisions"]
    assert decision["status"] == "Approved" and decision["by"] == "alice@acme.example"
    assert decision["comment"] == "AUC beats prod" and decision["at"]
    # The status itself changes with SageMaker's event (job-events handler), not here.
    assert item["approval_status"] == "PendingManualApproval"
    page = client.get(response.headers["location"]).text
    assert "Your decision was recorded" in page and "waiting for SageMaker" in page
    assert '<tr data-decision="Approved">' in page and "alice@acme.example" in page
    assert 'id="approve-model"' not in page and 'http-equiv="refresh"' in page
    again = client.post_form(f"/models/{job_id}/approve", {"comment": "twice"}, headers=JSON)
    assert again.status_code == 409 and "already decided (Approved)" in again.json()["error"]
    rejected = client.post_form(f"/models/{job_id}/reject", {}, headers=JSON)
    assert rejected.status_code == 409
    assert len(model_item(platform, "acme", job_id)["decisions"]) == 1
    assert len(_update_calls(platform, mark)) == 1


def test_a_refused_update_withdraws_the_decision_so_the_tenant_can_decide_again(
    platform: Platform,
) -> None:
    job_id = platform.seeded.jobs["acme"][0]
    model = put_model(platform, "acme", job_id)
    client = platform.client("alice")
    tenant_sagemaker = platform.app.state.portal.aws.for_tenant("acme").sagemaker
    # (error code SageMaker answers, Accept header, status and message the tenant gets):
    # ConflictException is UpdateModelPackage's one modelled error; any other is a 502.
    refusals = [
        ("ConflictException", JSON, 409, "Another request is changing this resource"),
        ("ConflictException", {}, 409, "Another request is changing this resource"),
        ("InternalFailure", JSON, 502, "An AWS service call failed."),
    ]
    refused: list[str] = []

    def refuse(**_: object) -> None:
        code = refused[-1]
        raise ClientError({"Error": {"Code": code, "Message": "refused"}}, "UpdateModelPackage")

    event = "before-call.sagemaker.UpdateModelPackage"
    tenant_sagemaker.meta.events.register(event, refuse)
    for code, accept, status, message in refusals:
        refused.append(code)
        response = client.post_form(
            f"/models/{job_id}/approve", {"comment": "ship it"}, headers=accept
        )
        assert response.status_code == status, response.text
        assert message in response.text and f"UpdateModelPackage: {code}" in response.text
        item = model_item(platform, "acme", job_id)
        assert "decisions" not in item and item["approval_status"] == "PendingManualApproval"
        assert _package(platform, model.model_package_arn)["ModelApprovalStatus"] == (
            "PendingManualApproval"
        )
    page = client.get(f"/models/{job_id}").text
    assert 'id="approve-model"' in page and 'data-decision="' not in page
    tenant_sagemaker.meta.events.unregister(event, refuse)
    mark = platform.calls.mark()
    again = client.post_form(f"/models/{job_id}/approve", {"comment": "ship it"}, headers=JSON)
    assert again.status_code == 202, again.text
    assert again.json()["decision"]["status"] == "Approved"
    assert len(_update_calls(platform, mark)) == 1
    (decision,) = model_item(platform, "acme", job_id)["decisions"]
    assert decision["status"] == "Approved" and decision["by"] == "alice@acme.example"
    assert _package(platform, model.model_package_arn)["ModelApprovalStatus"] == "Approved"


def test_rejecting_answers_json(platform: Platform) -> None:
    job_id = platform.seeded.jobs["acme"][0]
    model = put_model(platform, "acme", job_id)
    response = platform.client("bob").post_form(
        f"/models/{job_id}/reject", {"comment": "overfits"}, headers=JSON
    )
    assert response.status_code == 202
    body = response.json()
    assert body["job_id"] == job_id
    assert body["decision"]["status"] == "Rejected" and body["decision"]["by"] == "bob@acme.example"
    assert _package(platform, model.model_package_arn)["ModelApprovalStatus"] == "Rejected"


def test_a_registering_or_decided_version_is_409_and_sagemaker_is_not_called(
    platform: Platform,
) -> None:
    registering, decided, _ = platform.seeded.jobs["acme"]
    put_model(platform, "acme", registering, status=ModelApprovalStatus.REGISTERING)
    put_model(platform, "acme", decided, status=ModelApprovalStatus.APPROVED)
    client = platform.client("alice")
    mark = platform.calls.mark()
    response = client.post_form(f"/models/{registering}/approve", {}, headers=JSON)
    assert response.status_code == 409 and "still being registered" in response.json()["error"]
    response = client.post_form(f"/models/{decided}/reject", {}, headers=JSON)
    assert response.status_code == 409 and "already decided (Approved)" in response.json()["error"]
    assert _update_calls(platform, mark) == []
    page = client.get(f"/models/{registering}").text
    assert 'id="approve-model"' not in page and "being registered" in page
    assert model_item(platform, "acme", registering)["approval_status"] == "Registering"


def test_bad_comment_missing_and_malformed_versions(platform: Platform) -> None:
    job_id = platform.seeded.jobs["acme"][0]
    put_model(platform, "acme", job_id)
    client = platform.client("alice")
    long = client.post_form(f"/models/{job_id}/approve", {"comment": "x" * 1001}, headers=JSON)
    assert long.status_code == 400 and "at most 1000 characters" in long.json()["error"]
    unregistered = platform.seeded.jobs["acme"][1]  # a job without a model version
    for path in (
        f"/models/{unregistered}",
        f"/models/{unregistered}/download",
        "/models/not-a-job",
        "/models/acme-20990101000000-zzzzzz",
    ):
        response = client.get(path, headers=JSON)
        assert response.status_code == 404, path
        assert "You have no model version" in response.json()["error"]
    response = client.post_form(f"/models/{unregistered}/approve", {}, headers=JSON)
    assert response.status_code == 404
    assert client.post(f"/models/{job_id}/approve", data={}, headers=JSON).status_code == 403
    assert model_item(platform, "acme", job_id).get("decisions", []) == []


def test_download_redirects_to_a_presigned_get_below_the_job_prefix(platform: Platform) -> None:
    job_id = platform.seeded.jobs["acme"][0]
    model = put_model(platform, "acme", job_id)
    response = platform.client("alice").get(f"/models/{job_id}/download")
    assert response.status_code == 303
    url = urlparse(response.headers["location"])
    assert model.model_artifact_key in url.path
    query = parse_qs(url.query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert platform.calls.tenant_of_key(query["X-Amz-Credential"][0].split("/")[0]) == "acme"
    assert f'filename="{job_id}-model.tar.gz"' in query["response-content-disposition"][0]


def test_download_refuses_an_artifact_outside_the_job_prefix(platform: Platform) -> None:
    job_id, other, _ = platform.seeded.jobs["acme"]
    put_model(
        platform,
        "acme",
        job_id,
        artifact_key=f"tenants/acme/jobs/{other}/output/{other}/output/model.tar.gz",
    )
    dotted = put_tuning_job(platform, "acme", status=JobStatus.COMPLETED)
    put_model(
        platform,
        "acme",
        dotted,
        artifact_key=f"tenants/acme/jobs/{dotted}/../../../globex/model.tar.gz",
    )
    client = platform.client("alice")
    for target in (job_id, dotted):
        response = client.get(f"/models/{target}/download", headers=JSON)
        assert response.status_code == 404 and "location" not in response.headers
        assert "not where it should be" in response.json()["error"]


def test_a_tuning_jobs_model_lists_its_best_training_job(platform: Platform) -> None:
    job_id = put_tuning_job(platform, "acme", trials=3, status=JobStatus.COMPLETED)
    best = f"{job_id}-best"
    repository = ModelRepository(platform.table(platform.settings.models_table))
    model = put_model(platform, "acme", job_id)
    repository.table.update_item(
        Key={"tenant_id": "acme", "job_id": job_id},
        UpdateExpression="SET training_job_name = :n",
        ExpressionAttributeValues={":n": best},
    )
    page = platform.client("alice").get(f"/jobs/{job_id}").text
    assert f'id="model-link" href="/models/{job_id}"' in page
    detail = platform.client("alice").get(f"/models/{job_id}").text
    assert best in detail and (model.model_package_arn or "") in detail


def test_model_notifications_link_to_the_model_page(platform: Platform) -> None:
    job_id = platform.seeded.jobs["acme"][0]
    put_model(platform, "acme", job_id, status=ModelApprovalStatus.APPROVED)
    now = utc_now()
    NotificationRepository(platform.table(platform.settings.notifications_table)).put_if_absent(
        Notification(
            tenant_id="acme",
            notification_id=Notification.make_id(iso_utc(now), job_id) + "#model",
            job_id=job_id,
            status=JobStatus.COMPLETED,
            subject="Model approved",
            message=f"The model of {job_id} is approved.",
            created_at=now,
            model_status="Approved",
        )
    )
    page = platform.client("alice").get("/notifications").text
    assert f'<a href="/models/{job_id}">Model approved</a>' in page
