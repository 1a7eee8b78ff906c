"""Retraining policy pages against moto: create from a deployment, change, history, every 4xx."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from portal_helpers import Platform, PortalClient, put_model, put_tuning_job
from test_serving_pages import put_in_service
from training_common import (
    JobStatus,
    ModelApprovalStatus,
    ObjectiveType,
    RetrainingPolicy,
    RetrainingRun,
    RunDecision,
    run_id,
    utc_now,
)
from training_common.repositories import (
    JobRepository,
    RetrainingPolicyRepository,
    RetrainingRunRepository,
)

JSON = {"accept": "application/json"}
HOLDOUT = "tenants/acme/datasets/iris-holdout/"


def tuned_deployment(
    platform: Platform, tenant_id: str = "acme", deployment_id: str = "thermostat"
) -> str:
    """A deployment IN_SERVICE on the approved model of a completed tuning job whose objective
    was measured on a held-out channel; the job id."""
    job_id = put_tuning_job(platform, tenant_id, status=JobStatus.COMPLETED, trials=3)
    put_model(platform, tenant_id, job_id, status=ModelApprovalStatus.APPROVED)
    platform.table(platform.settings.models_table).update_item(
        Key={"tenant_id": tenant_id, "job_id": job_id},
        UpdateExpression="SET validation_key = :v",
        ExpressionAttributeValues={":v": f"tenants/{tenant_id}/datasets/iris-holdout/"},
    )
    put_in_service(platform, tenant_id, deployment_id, job_id)
    return job_id


def policy_form(**overrides: str) -> dict[str, str]:
    """The new-policy form as the page prefills it for ``thermostat``, plus a name."""
    return {
        "deployment_id": "thermostat",
        "policy_id": "weekly",
        "schedule_expression": "cron(0 3 ? * MON *)",
        "schedule_timezone": "Europe/Berlin",
        "flexible_window_minutes": "15",
        "dataset_prefix": "tenants/acme/datasets/iris/",
        "data_selection": "new",
        "validation_key": HOLDOUT,
        "include_feedback": "on",
        "warm_start": "TransferLearning",
        "margin": "0.01",
        "promotion": "automatic",
        **overrides,
    }


def policies(platform: Platform) -> RetrainingPolicyRepository:
    settings = platform.settings
    assert settings.retraining_policies_table
    return RetrainingPolicyRepository(platform.table(settings.retraining_policies_table))


def runs(platform: Platform) -> RetrainingRunRepository:
    settings = platform.settings
    assert settings.retraining_runs_table
    return RetrainingRunRepository(platform.table(settings.retraining_runs_table))


def queued_policy_requests(platform: Platform) -> list[dict[str, Any]]:
    """The PolicyRequests on the retraining-requests queue (received, so each once)."""
    sqs = platform.session.client("sqs", region_name=platform.settings.aws_region)
    found: list[dict[str, Any]] = []
    while True:
        response = sqs.receive_message(
            QueueUrl=platform.settings.retraining_requests_queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
        )
        messages = response.get("Messages", [])
        if not messages:
            return found
        found.extend(json.loads(m["Body"]) for m in messages)


def put_run(
    platform: Platform,
    policy: RetrainingPolicy,
    slot: datetime,
    decision: RunDecision,
    **fields: Any,
) -> RetrainingRun:
    now = utc_now()
    run = RetrainingRun(
        tenant_id=policy.tenant_id,
        run_id=run_id(policy.policy_id, slot),
        policy_id=policy.policy_id,
        slot=slot,
        deployment_id=policy.deployment_id,
        decision=decision,
        objective_metric=policy.objective_metric,
        objective_type=policy.tuning.objective_type,
        margin=policy.margin,
        created_at=now,
        updated_at=now,
        **fields,
    )
    stored, created = runs(platform).put_if_absent(run)
    assert created
    return stored


def create_policy(platform: Platform, client: PortalClient, **overrides: str) -> RetrainingPolicy:
    response = client.post_form("/retraining", policy_form(**overrides), headers=JSON)
    assert response.status_code == 202, response.text
    policy = policies(platform).get("acme", response.json()["policy_id"])
    assert policy is not None
    return policy


def test_the_deployment_page_links_retraining_and_feedback_and_the_nav_has_retraining(
    platform: Platform,
) -> None:
    tuned_deployment(platform)
    page = platform.client("alice").get("/deployments/thermostat").text
    assert 'href="/deployments/thermostat/retraining/new" id="retrain-deployment"' in page
    assert 'href="/deployments/thermostat/feedback" id="deployment-feedback"' in page
    assert '<a href="/retraining" id="nav-retraining">Retraining</a>' in page


def test_the_form_is_prefilled_from_the_deployed_model_and_its_tuning_job(
    platform: Platform,
) -> None:
    job_id = tuned_deployment(platform)
    client = platform.client("alice")
    page = client.get("/deployments/thermostat/retraining/new")
    assert page.status_code == 200
    text = page.text
    for element, value in {
        "dataset_prefix": "tenants/acme/datasets/iris/",
        "validation_key": HOLDOUT,
        "schedule_expression": "cron(0 3 ? * MON *)",
        "schedule_timezone": "UTC",
    }.items():
        assert re.search(rf'id="{element}"[^>]*value="{re.escape(value)}"', text), element
    assert re.search(r'id="include_feedback"[^>]*checked', text)
    assert '<option value="TransferLearning" selected>' in text
    assert "tenants/acme/feedback/thermostat/labelled/" in text
    assert "more than zero and by at least the margin" in text and "equal score" in text
    assert f'href="/jobs/{job_id}"' in text and "Bayesian" in text
    for element in ("policy_id", "data_selection", "warm_start", "margin", "promotion"):
        assert f'id="{element}"' in text
    assert 'id="submit-policy"' in text
    defaults = client.get("/deployments/thermostat/retraining/new", headers=JSON).json()
    assert defaults["problem"] is None and defaults["defaults"]["validation_key"] == HOLDOUT


def test_creating_a_policy_writes_the_record_then_queues_its_apply_request_as_the_tenant(
    platform: Platform,
) -> None:
    job_id = tuned_deployment(platform)
    client = platform.client("alice")
    mark = platform.calls.mark()
    response = client.post_form("/retraining", {**policy_form(), "tenant_id": "globex"})
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/retraining/weekly?notice=policy-created"
    policy = policies(platform).get("acme", "weekly")
    assert policy is not None and policies(platform).get("globex", "weekly") is None
    assert re.fullmatch(r"[0-9a-f]{32}", policy.token)
    assert re.fullmatch(r"[0-9a-f]{32}", policy.request_id) and policy.token != policy.request_id
    assert policy.schedule_state.value == "PENDING" and policy.status.value == "ACTIVE"
    assert policy.deployment_id == "thermostat" and policy.algorithm_id == "xgboost"
    job = JobRepository(platform.table(platform.settings.jobs_table)).get("acme", job_id)
    assert job is not None and job.tuning is not None
    assert policy.tuning == job.tuning and policy.tuning.warm_start is None
    assert policy.hyperparameters == job.hyperparameters
    assert (policy.instance_type, policy.instance_count) == (job.instance_type, 1)
    assert policy.max_runtime_seconds == job.max_runtime_seconds
    assert policy.last_tuning_job_id == job_id
    assert policy.feedback_prefix == "tenants/acme/feedback/thermostat/labelled/"
    assert policy.validation_key == HOLDOUT and policy.margin == 0.01
    assert policy.schedule_timezone == "Europe/Berlin" and policy.flexible_window_minutes == 15
    assert policy.submitted_by == "alice@acme.example"
    (message,) = queued_policy_requests(platform)
    assert set(message) == {
        "version",
        "action",
        "tenant_id",
        "policy_id",
        "request_id",
        "submitted_by",
        "submitted_at",
    }
    assert message["version"] == 1 and message["action"] == "apply"
    assert (message["tenant_id"], message["policy_id"]) == ("acme", "weekly")
    assert message["request_id"] == policy.request_id
    assert message["submitted_by"] == "alice@acme.example"
    writes = [c for c in platform.calls.since(mark) if c[1] in {"SendMessage", "PutItem"}]
    assert {c[1] for c in writes} == {"SendMessage", "PutItem"}
    assert all(platform.calls.tenant_of_key(key) == "acme" for _, _, key, _ in writes)
    put_item = next(i for i, c in enumerate(writes) if c[1] == "PutItem")
    send = next(i for i, c in enumerate(writes) if c[1] == "SendMessage")
    assert put_item < send  # the record first, then the request
    detail = client.get("/retraining/weekly").text
    assert 'id="policy-status" data-testid="policy-status">ACTIVE<' in detail
    assert 'id="schedule-state" data-testid="schedule-state">PENDING<' in detail
    assert 'http-equiv="refresh"' in detail and policy.token not in detail
    listing = client.get("/retraining")
    assert '<tr data-policy="weekly">' in listing.text
    items = client.get("/retraining", headers=JSON).json()["items"]
    assert [p["policy_id"] for p in items] == ["weekly"] and "token" not in items[0]
    again = client.post_form("/retraining", policy_form(), headers=JSON)
    assert again.status_code == 409 and "already have a retraining policy" in again.json()["error"]


def test_edit_pause_resume_and_delete_each_write_a_new_request_id_and_queue_it(
    platform: Platform,
) -> None:
    tuned_deployment(platform)
    client = platform.client("alice")
    created = create_policy(platform, client)
    queued_policy_requests(platform)
    edit_page = client.get("/retraining/weekly/edit")
    assert edit_page.status_code == 200
    assert re.search(r'id="margin"[^>]*value="0.01"', edit_page.text)
    r = client.post_form(
        "/retraining/weekly/edit",
        policy_form(schedule_expression="rate(12 hours)", margin="0.05", promotion="approval"),
    )
    assert r.status_code == 303 and r.headers["location"].endswith("notice=policy-updated")
    edited = policies(platform).get("acme", "weekly")
    assert edited is not None and edited.schedule_expression == "rate(12 hours)"
    assert edited.margin == 0.05 and edited.promotion.value == "approval"
    assert edited.token == created.token and edited.request_id != created.request_id
    assert edited.schedule_state.value == "PENDING"
    ids = [created.request_id, edited.request_id]
    for action, status in (("pause", "PAUSED"), ("resume", "ACTIVE"), ("delete", "DELETING")):
        r = client.post_form(f"/retraining/weekly/{action}", {}, headers=JSON)
        assert r.status_code == 202, (action, r.text)
        record = policies(platform).get("acme", "weekly")
        assert record is not None and record.status.value == status
        assert record.request_id not in ids and record.token == created.token
        ids.append(record.request_id)
    messages = queued_policy_requests(platform)
    assert [m["action"] for m in messages] == ["apply", "apply", "apply", "delete"]
    assert [m["request_id"] for m in messages] == ids[1:]
    for action in ("pause", "resume", "delete", "edit"):
        busy = client.post_form(f"/retraining/weekly/{action}", policy_form(), headers=JSON)
        assert busy.status_code == 409 and "being deleted" in busy.json()["error"]
    assert queued_policy_requests(platform) == []


def test_pausing_twice_and_resuming_an_active_policy_are_409(platform: Platform) -> None:
    tuned_deployment(platform)
    client = platform.client("alice")
    create_policy(platform, client)
    r = client.post_form("/retraining/weekly/resume", {}, headers=JSON)
    assert r.status_code == 409 and "not paused" in r.json()["error"]
    assert client.post_form("/retraining/weekly/pause", {}).status_code == 303
    r = client.post_form("/retraining/weekly/pause", {}, headers=JSON)
    assert r.status_code == 409 and "already paused" in r.json()["error"]
    page = client.get("/retraining/weekly").text
    assert 'id="resume-policy"' in page and 'id="pause-policy"' not in page


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"schedule_expression": "cron(0 3 * * MON *)"}, "either day-of-month or day-of-week"),
        ({"schedule_expression": "cron(*/5 * ? * * *)"}, "at most once an hour"),
        ({"schedule_expression": "rate(5 minutes)"}, "at most once an hour"),
        ({"schedule_expression": "every monday"}, "expected rate(...) or cron(...)"),
        ({"schedule_timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"validation_key": "iris/holdout"}, "held out of the training data"),
        ({"validation_key": "tenants/globex/datasets/churn/"}, "not one of your datasets"),
        ({"dataset_prefix": "../../globex/datasets/churn"}, "not one of your datasets"),
        (
            {"warm_start": "IdenticalDataAndAlgorithm", "data_selection": "all"},
            "IdenticalDataAndAlgorithm needs the same data every run",
        ),
        ({"warm_start": "IdenticalDataAndAlgorithm"}, "needs the same data every run"),
        ({"warm_start": "Telepathy"}, "Warm start must be one of"),
        ({"margin": "-0.1"}, "Margin must be zero or more"),
        ({"margin": "a lot"}, "Margin must be a number"),
        ({"promotion": "yolo"}, "Promotion must be one of automatic, approval"),
        ({"policy_id": "Weekly-Policy"}, "Policy name must be 3 to 32"),
        ({"policy_id": ""}, "Policy name is required"),
        ({"flexible_window_minutes": "2000"}, "between 0 and 1440"),
    ],
)
def test_a_bad_policy_is_400_with_the_reason_and_writes_and_queues_nothing(
    platform: Platform, overrides: dict[str, str], message: str
) -> None:
    tuned_deployment(platform)
    client = platform.client("alice")
    response = client.post_form("/retraining", policy_form(**overrides), headers=JSON)
    assert response.status_code == 400, response.text
    body = response.json()
    assert message in " ".join([body["error"], *body.get("details", [])])
    page = client.post_form("/retraining", policy_form(**overrides))
    assert page.status_code == 400 and 'data-testid="form-errors"' in page.text
    assert 'id="policy-form"' in page.text  # the form again, with what was typed
    assert policies(platform).list_page("acme").items == []
    assert queued_policy_requests(platform) == []


def test_identical_warm_start_without_feedback_on_the_whole_prefix_is_accepted(
    platform: Platform,
) -> None:
    tuned_deployment(platform)
    client = platform.client("alice")
    form = policy_form(warm_start="IdenticalDataAndAlgorithm", data_selection="all")
    del form["include_feedback"]
    response = client.post_form("/retraining", form, headers=JSON)
    assert response.status_code == 202, response.text
    assert response.json()["feedback_prefix"] is None


def test_an_edit_that_breaks_the_rules_is_400_and_changes_nothing(platform: Platform) -> None:
    tuned_deployment(platform)
    client = platform.client("alice")
    created = create_policy(platform, client)
    queued_policy_requests(platform)
    r = client.post_form(
        "/retraining/weekly/edit", policy_form(schedule_timezone="Nowhere/Town"), headers=JSON
    )
    assert r.status_code == 400 and "unknown time zone" in " ".join(r.json()["details"])
    page = client.post_form("/retraining/weekly/edit", policy_form(validation_key="iris/x"))
    assert page.status_code == 400 and "held out of the training data" in page.text
    assert policies(platform).get("acme", "weekly") == created
    assert queued_policy_requests(platform) == []


def test_the_quota_applies_to_the_runs_a_policy_would_launch(platform: Platform) -> None:
    tuned_deployment(platform)
    platform.table(platform.settings.tenants_table).update_item(
        Key={"tenant_id": "acme"},
        UpdateExpression="SET max_runtime_seconds = :r",
        ExpressionAttributeValues={":r": 600},
    )
    r = platform.client("alice").post_form("/retraining", policy_form(), headers=JSON)
    assert r.status_code == 400 and "your quota allows at most 600 s" in " ".join(
        r.json()["details"]
    )
    assert queued_policy_requests(platform) == []


def test_a_model_without_a_tuning_job_can_not_be_retrained(platform: Platform) -> None:
    approved = platform.seeded.approved_models["acme"]
    put_in_service(platform, "acme", "thermostat", approved)
    client = platform.client("alice")
    page = client.get("/deployments/thermostat/retraining/new")
    assert page.status_code == 200
    assert 'id="retraining-unavailable"' in page.text and "needs a tuned model" in page.text
    assert 'id="submit-policy"' not in page.text
    r = client.post_form("/retraining", policy_form(), headers=JSON)
    assert r.status_code == 400 and "needs a tuned model" in r.json()["error"]
    assert queued_policy_requests(platform) == []
    for path in ("/deployments/nope/retraining/new", "/retraining/nope", "/retraining/Bad_Name"):
        assert client.get(path, headers=JSON).status_code == 404
    r = client.post_form("/retraining", policy_form(deployment_id="nope"), headers=JSON)
    assert r.status_code == 404


def test_a_request_that_never_reached_the_queue_leaves_the_policy_failed_with_a_reason(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    tuned_deployment(platform)
    client = platform.client("alice")
    create_policy(platform, client)
    sqs = platform.app.state.portal.aws.for_tenant("acme").sqs

    def refuse(**_: Any) -> None:
        raise sqs.exceptions.QueueDoesNotExist({"Error": {"Code": "QueueDoesNotExist"}}, "Send")

    monkeypatch.setattr(sqs, "send_message", refuse)
    r = client.post_form("/retraining/weekly/delete", {}, headers=JSON)
    assert 400 <= r.status_code < 600 and r.status_code != 500
    record = policies(platform).get("acme", "weekly")
    assert record is not None and record.schedule_state.value == "FAILED"
    assert record.status.value == "ACTIVE"  # the delete never left: the policy stays usable
    assert record.failure_reason == "The portal could not queue the request; save the policy again."


def test_the_history_shows_each_run_its_decision_reason_and_objectives(
    platform: Platform,
) -> None:
    deployed = tuned_deployment(platform)
    client = platform.client("alice")
    policy = create_policy(platform, client)
    monday = datetime(2026, 11, 2, 3, 0, tzinfo=UTC)
    job1 = "acme-20261102030000-aaaaaa"
    job2 = "acme-20261109030000-bbbbbb"
    put_run(
        platform,
        policy,
        monday,
        RunDecision.REJECTED,
        job_id=job1,
        reason="Rejected, no improvement: validation:auc 0.9 vs 0.91 deployed.",
        best_objective=0.9,
        deployed_objective=0.91,
        deployed_model_job_id=deployed,
    )
    put_run(
        platform,
        policy,
        monday + timedelta(days=7),
        RunDecision.PROMOTED,
        job_id=job2,
        reason="Promoted: validation:auc 0.95 vs 0.91 deployed.",
        best_objective=0.95,
        deployed_objective=0.91,
        deployed_model_job_id=deployed,
    )
    put_run(
        platform,
        policy,
        monday + timedelta(days=14),
        RunDecision.SKIPPED,
        reason="no new data since 2026-11-09T03:00:00Z",
    )
    page = client.get("/retraining/weekly").text
    rows = re.findall(r'<tr data-run="([^"]+)">', page)
    assert rows == [
        run_id("weekly", monday + timedelta(days=14)),
        run_id("weekly", monday + timedelta(days=7)),
        run_id("weekly", monday),
    ]  # newest first
    assert re.findall(r'data-decision="([A-Z]+)"', page) == ["SKIPPED", "PROMOTED", "REJECTED"]
    assert "Rejected, no improvement: validation:auc 0.9 vs 0.91 deployed." in page
    assert "no new data since 2026-11-09T03:00:00Z" in page
    assert "<td data-best>0.95</td>" in page and "<td data-best>0.9</td>" in page
    assert f'href="/jobs/{job2}" data-job' in page and f'href="/models/{job2}" data-model' in page
    assert f'href="/models/{deployed}"' in page
    body = client.get("/retraining/weekly", headers=JSON).json()
    assert [r["decision"] for r in body["runs"]] == ["SKIPPED", "PROMOTED", "REJECTED"]
    assert body["runs"][1]["best_objective"] == 0.95 and "token" not in body


def test_the_history_is_paginated_newest_first(platform: Platform) -> None:
    tuned_deployment(platform)
    client = platform.client("alice")
    policy = create_policy(platform, client)
    start = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)
    slots = [start + timedelta(days=7 * n) for n in range(30)]
    for slot in slots:
        put_run(platform, policy, slot, RunDecision.REJECTED, reason=f"run of {slot:%Y-%m-%d}")
    first = client.get("/retraining/weekly", headers=JSON).json()
    assert len(first["runs"]) == 25 and first["next"]
    assert first["runs"][0]["run_id"] == run_id("weekly", slots[-1])
    page = client.get("/retraining/weekly").text
    assert 'id="next-page"' in page
    second = client.get("/retraining/weekly", params={"next": first["next"]}, headers=JSON).json()
    assert [r["run_id"] for r in second["runs"]] == [run_id("weekly", s) for s in slots[4::-1]]
    assert second["next"] is None
    html = client.get("/retraining/weekly", params={"next": first["next"]}).text
    assert 'id="first-page"' in html and "run of 2026-01-05" in html
    other = runs(platform).list_page("acme", "other").items
    assert other == []


def test_policies_list_is_paginated_and_objective_direction_shows(platform: Platform) -> None:
    tuned_deployment(platform)
    client = platform.client("alice")
    policy = create_policy(platform, client)
    for n in range(51):
        policies(platform).put_if_absent(policy.model_copy(update={"policy_id": f"p{n:03d}"}))
    first = client.get("/retraining", headers=JSON).json()
    assert len(first["items"]) == 50 and first["next"]
    second = client.get("/retraining", params={"next": first["next"]}, headers=JSON).json()
    assert [p["policy_id"] for p in second["items"]] == ["p050", "weekly"]
    assert policy.tuning.objective_type == ObjectiveType.MAXIMIZE
    assert "maximize <code>validation:auc</code>" in client.get("/retraining/weekly").text


def test_an_environment_without_retraining_answers_503_not_500(platform: Platform) -> None:
    from dataclasses import replace

    from portal_app.app import create_app
    from portal_app.aws import AwsClients

    unset = platform.settings.model_copy(
        update={
            "retraining_policies_table": None,
            "retraining_runs_table": None,
            "retraining_requests_queue_url": None,
        }
    )
    app = create_app(unset, key_fetcher=platform.signer.key_fetcher, aws=AwsClients(unset))
    client = replace(platform, settings=unset, app=app).client("alice")
    tuned_deployment(platform)
    for path in ("/retraining", "/retraining/weekly", "/deployments/thermostat/retraining/new"):
        r = client.get(path, headers=JSON)
        assert r.status_code == 503 and "not set up" in r.json()["error"], path
    r = client.post_form("/retraining", policy_form(), headers=JSON)
    assert r.status_code == 503
    assert client.get("/deployments/thermostat").status_code == 200
