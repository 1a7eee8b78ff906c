"""The admin area: tenants, users (Cognito + SNS) and the catalog, with the instance role."""

from __future__ import annotations

import json
import re

from portal_helpers import Platform

JSON = {"accept": "application/json"}
TENANT_FORM = {
    "tenant_id": "initech",
    "display_name": "Initech Sensors",
    "max_running_jobs": "2",
    "max_instance_count": "2",
    "allowed_instance_types": "ml.m5.large, ml.m5.xlarge",
    "allowed_algorithms": "xgboost",
    "max_runtime_seconds": "3600",
    "max_tuning_training_jobs": "20",
    "notification_email": "ops@initech.example",
}


def _subscriptions(platform: Platform) -> list[dict[str, str]]:
    sns = platform.session.client("sns")
    subs = sns.list_subscriptions_by_topic(TopicArn=platform.settings.notifications_topic_arn)
    return [
        {
            **sub,
            **sns.get_subscription_attributes(SubscriptionArn=sub["SubscriptionArn"])["Attributes"],
        }
        for sub in subs["Subscriptions"]
    ]


def test_admin_onboards_a_tenant_and_subscribes_its_email(platform: Platform) -> None:
    admin = platform.client("admin")
    response = admin.post_form("/admin/tenants", TENANT_FORM)
    assert response.status_code == 303
    item = platform.table("Tenants").get_item(Key={"tenant_id": "initech"})["Item"]
    assert item["status"] == "ACTIVE" and item["allowed_algorithms"] == ["xgboost"]
    assert item["max_tuning_training_jobs"] == 20
    subs = _subscriptions(platform)
    assert [s["Endpoint"] for s in subs] == ["ops@initech.example"]
    assert json.loads(subs[0]["FilterPolicy"]) == {"tenant_id": ["initech"]}
    again = admin.post_form("/admin/tenants", TENANT_FORM, headers=JSON)
    assert again.status_code == 409
    listed = admin.get("/admin/tenants", headers=JSON).json()
    assert [t["tenant_id"] for t in listed] == ["acme", "globex", "initech"]
    # Admin calls run with the instance role, never with a tenant session.
    assert platform.calls.assume_params == []


def test_bad_tenant_forms_are_400_naming_the_field(platform: Platform) -> None:
    admin = platform.client("admin")
    cases = {
        "tenant_id": ("Bad_ID", "tenant_id"),
        "allowed_instance_types": ("m5.large", "Not SageMaker instance types"),
        "max_instance_count": ("0", "Maximum instances per job must be between"),
        "notification_email": ("nobody", "notification email"),
    }
    for field, (value, message) in cases.items():
        response = admin.post_form("/admin/tenants", {**TENANT_FORM, field: value}, headers=JSON)
        assert response.status_code == 400, field
        body = response.json()
        assert message in body["error"] + " ".join(body.get("details", [])), body
    tuning_cases = {
        "501": "Maximum training jobs per tuning job must be between 0 and 500.",
        "-1": "Maximum training jobs per tuning job must be between 0 and 500.",
        "many": "Maximum training jobs per tuning job must be a whole number, not 'many'.",
        "": "Maximum training jobs per tuning job must be a whole number, not ''.",
    }
    for value, message in tuning_cases.items():
        response = admin.post_form(
            "/admin/tenants", {**TENANT_FORM, "max_tuning_training_jobs": value}, headers=JSON
        )
        assert response.status_code == 400, value
        assert response.json()["error"] == message
    assert "Item" not in platform.table("Tenants").get_item(Key={"tenant_id": "initech"})


def test_admin_sets_the_tuning_quota_that_the_tune_form_shows(platform: Platform) -> None:
    admin = platform.client("admin")
    page = admin.get("/admin/tenants/acme").text
    field = re.search(r'<input type="number" name="max_tuning_training_jobs"[^>]*>', page)
    assert field is not None and 'value="50"' in field.group(0)  # the default
    form = {**TENANT_FORM, "display_name": "Acme Smart Devices", "max_tuning_training_jobs": "12"}
    form.pop("tenant_id")
    assert admin.post_form("/admin/tenants/acme", form).status_code == 303
    item = platform.table("Tenants").get_item(Key={"tenant_id": "acme"})["Item"]
    assert item["max_tuning_training_jobs"] == 12
    assert admin.get("/admin/tenants/acme", headers=JSON).json()["max_tuning_training_jobs"] == 12
    listed = admin.get("/admin/tenants").text
    row = re.search(r'<tr data-tenant="acme">(.*?)</tr>', listed, re.S)
    assert row is not None
    assert '<td data-quota="max_tuning_training_jobs">12</td>' in row.group(1)
    tune = platform.client("alice").get("/jobs/tune").text
    quota = re.search(r'id="tuning-quota">(.*?)</p>', tune, re.S)
    assert quota is not None and "12 training jobs per tuning job" in " ".join(
        quota.group(1).split()
    )
    # 0 switches tuning off for the tenant: the launch-time check refuses any tuning job.
    assert (
        admin.post_form(
            "/admin/tenants/acme", {**form, "max_tuning_training_jobs": "0"}
        ).status_code
        == 303
    )
    item = platform.table("Tenants").get_item(Key={"tenant_id": "acme"})["Item"]
    assert item["max_tuning_training_jobs"] == 0


def test_admin_edits_quota_and_suspends_then_reactivates(platform: Platform) -> None:
    admin = platform.client("admin")
    form = {**TENANT_FORM, "display_name": "Acme Smart Devices", "max_running_jobs": "7"}
    form.pop("tenant_id")
    assert admin.post_form("/admin/tenants/acme", form).status_code == 303
    item = platform.table("Tenants").get_item(Key={"tenant_id": "acme"})["Item"]
    assert item["max_running_jobs"] == 7 and item["status"] == "ACTIVE"
    assert admin.post_form("/admin/tenants/acme/status", {"status": "SUSPENDED"}).status_code == 303
    page = admin.get("/admin/tenants/acme")
    assert "SUSPENDED" in page.text and "Reactivate" in page.text
    assert admin.post_form("/admin/tenants/acme/status", {"status": "ACTIVE"}).status_code == 303
    bad = admin.post_form("/admin/tenants/acme/status", {"status": "DELETED"}, headers=JSON)
    assert bad.status_code == 400 and "ACTIVE or SUSPENDED" in bad.json()["error"]
    missing = admin.get("/admin/tenants/nobody-here", headers=JSON)
    assert missing.status_code == 404


def test_admin_invites_a_user_into_a_tenant(platform: Platform) -> None:
    admin = platform.client("admin")
    response = admin.post_form(
        "/admin/users", {"tenant_id": "globex", "email": "new@globex.example", "subscribe": "on"}
    )
    assert response.status_code == 303
    cognito = platform.session.client("cognito-idp")
    user = cognito.admin_get_user(
        UserPoolId=platform.settings.user_pool_id, Username="new@globex.example"
    )
    attributes = {a["Name"]: a["Value"] for a in user["UserAttributes"]}
    assert attributes["custom:tenant_id"] == "globex"
    assert attributes["email"] == "new@globex.example"
    subs = _subscriptions(platform)
    assert json.loads(subs[0]["FilterPolicy"]) == {"tenant_id": ["globex"]}
    page = admin.get("/admin/users")
    assert "new@globex.example" in page.text
    unknown = admin.post_form(
        "/admin/users", {"tenant_id": "nobody-here", "email": "x@y.example"}, headers=JSON
    )
    assert unknown.status_code == 404
    twice = admin.post_form(
        "/admin/users", {"tenant_id": "globex", "email": "new@globex.example"}, headers=JSON
    )
    assert twice.status_code == 409


def test_admin_creates_and_edits_catalog_entries(platform: Platform) -> None:
    admin = platform.client("admin")
    form = {
        "id": "forecaster",
        "name": "Demand forecaster",
        "image_uri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/forecaster:1.0.0",
        "default_hyperparameters": "horizon=24\ncontext=168",
        "metric_definitions": "test:rmse=rmse=([0-9.]+)",
        "supported_instance_types": "ml.m5.large",
        "supports_spot": "on",
        "input_content_type": "text/csv",
    }
    assert admin.post_form("/admin/algorithms", form).status_code == 303
    body = (
        platform.session.client("s3")
        .get_object(Bucket=platform.settings.catalog_bucket, Key="algorithms/forecaster.json")[
            "Body"
        ]
        .read()
    )
    entry = json.loads(body)
    assert entry["default_hyperparameters"] == {"horizon": "24", "context": "168"}
    assert entry["metric_definitions"] == [{"Name": "test:rmse", "Regex": "rmse=([0-9.]+)"}]
    assert entry["supports_spot"] is True
    edit = admin.get("/admin/algorithms/forecaster")
    assert edit.status_code == 200 and "horizon=24" in edit.text
    assert admin.get("/admin/algorithms/new").status_code == 200
    assert admin.get("/admin/algorithms/nope-nope", headers=JSON).status_code == 404
    bad = admin.post_form("/admin/algorithms", {**form, "id": "Bad Id"}, headers=JSON)
    assert bad.status_code == 400 and any("id" in d for d in bad.json()["details"])
    # A tenant sees the new entry (acme's allow-list is empty = whole catalog).
    tenant_view = platform.client("alice").get("/algorithms", headers=JSON).json()
    assert "forecaster" in {a["id"] for a in tenant_view}


def test_admin_without_tenant_has_no_tenant_pages(platform: Platform) -> None:
    admin = platform.client("admin")
    assert admin.get("/").headers["location"] == "/admin/tenants"
    response = admin.get("/jobs", headers=JSON)
    assert response.status_code == 403 and "no tenant" in response.json()["error"]
