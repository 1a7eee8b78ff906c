"""Administration with the instance role: tenants, users and the algorithm catalog."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from boto3.dynamodb.conditions import Attr
from botocore.exceptions import ClientError
from pydantic import ValidationError
from training_common import (
    INSTANCE_TYPE_PATTERN,
    MAX_RUNTIME_LIMIT_SECONDS,
    MAX_TUNING_TRAINING_JOBS,
    CatalogEntry,
    CatalogRepository,
    MetricDefinition,
    Tenant,
    TenantRepository,
    TenantStatus,
    describe_schema_errors,
    is_conditional_check_failure,
    is_tenant_id,
    to_item,
)

from ..errors import BadRequest, Conflict, NotFound
from . import forms

log = logging.getLogger("portal.admin")

TENANT_ATTRIBUTE = "custom:tenant_id"


def list_tenants(tenants: TenantRepository) -> list[Tenant]:
    """Every tenant (a Scan: the table holds one small item per tenant)."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {}
    while True:
        page = tenants.table.scan(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return sorted((Tenant.model_validate(item) for item in items), key=lambda t: t.tenant_id)


def get_tenant(tenants: TenantRepository, tenant_id: str) -> Tenant:
    tenant = tenants.get(tenant_id) if is_tenant_id(tenant_id) else None
    if tenant is None:
        raise NotFound(f"There is no tenant {tenant_id[:40]!r}.")
    return tenant


def tenant_from_form(form: dict[str, str], *, tenant_id: str, base: Tenant | None) -> Tenant:
    """A tenant record from the quota form; BadRequest naming each bad field."""
    instance_types = forms.word_list(form, "allowed_instance_types")
    bad = [t for t in instance_types if not _matches(INSTANCE_TYPE_PATTERN, t)]
    if bad:
        raise BadRequest(f"Not SageMaker instance types: {', '.join(bad)} (e.g. ml.m5.xlarge).")
    email = form.get("notification_email", "").strip() or None
    if email is not None and "@" not in email:
        raise BadRequest("The notification email address is not valid.")
    try:
        return Tenant(
            tenant_id=tenant_id,
            display_name=forms.required(form, "display_name", "Display name"),
            status=base.status if base else TenantStatus.ACTIVE,
            max_running_jobs=forms.integer(
                form, "max_running_jobs", "Maximum running jobs", minimum=0, maximum=1000
            ),
            max_instance_count=forms.integer(
                form, "max_instance_count", "Maximum instances per job", minimum=1, maximum=100
            ),
            allowed_instance_types=instance_types,
            allowed_algorithms=forms.word_list(form, "allowed_algorithms"),
            max_runtime_seconds=forms.integer(
                form,
                "max_runtime_seconds",
                "Maximum runtime (seconds)",
                minimum=60,
                maximum=MAX_RUNTIME_LIMIT_SECONDS,
            ),
            max_tuning_training_jobs=forms.integer(
                form,
                "max_tuning_training_jobs",
                "Maximum training jobs per tuning job",
                minimum=0,
                maximum=MAX_TUNING_TRAINING_JOBS,
            ),
            notification_email=email,
            **({"created_at": base.created_at} if base else {}),
        )
    except ValidationError as error:
        raise BadRequest("The tenant is invalid.", details=describe_schema_errors(error)) from error


def _matches(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None


def create_tenant(tenants: TenantRepository, tenant: Tenant) -> None:
    try:
        tenants.table.put_item(
            Item=to_item(tenant), ConditionExpression=Attr("tenant_id").not_exists()
        )
    except ClientError as error:
        if is_conditional_check_failure(error):
            raise Conflict(f"Tenant {tenant.tenant_id} already exists.") from error
        raise
    log.info("tenant created", extra={"tenant_id": tenant.tenant_id})


def set_status(tenants: TenantRepository, tenant_id: str, status: TenantStatus) -> Tenant:
    tenant = get_tenant(tenants, tenant_id)
    updated = tenant.model_copy(update={"status": status})
    tenants.put(updated)
    log.info("tenant status set", extra={"tenant_id": tenant_id, "status": status.value})
    return updated


def subscribe_notifications(sns: Any, topic_arn: str, tenant_id: str, email: str) -> str:
    """Subscribe ``email`` to the tenant's notifications (SNS filter on ``tenant_id``)."""
    response = sns.subscribe(
        TopicArn=topic_arn,
        Protocol="email",
        Endpoint=email,
        Attributes={"FilterPolicy": json.dumps({"tenant_id": [tenant_id]})},
        ReturnSubscriptionArn=True,
    )
    log.info("notification subscription", extra={"tenant_id": tenant_id})
    return str(response["SubscriptionArn"])


def invite_user(cognito: Any, user_pool_id: str, tenant_id: str, email: str) -> None:
    """Create the Cognito user with its immutable tenant id; Cognito emails the invitation."""
    cognito.admin_create_user(
        UserPoolId=user_pool_id,
        Username=email,
        UserAttributes=[
            {"Name": "email", "Value": email},
            {"Name": "email_verified", "Value": "true"},
            {"Name": TENANT_ATTRIBUTE, "Value": tenant_id},
        ],
        DesiredDeliveryMediums=["EMAIL"],
    )
    log.info("user invited", extra={"tenant_id": tenant_id})


def list_users(cognito: Any, user_pool_id: str) -> list[dict[str, str]]:
    """The first page of users (60), with their tenant and status."""
    response = cognito.list_users(UserPoolId=user_pool_id, Limit=60)
    users = []
    for user in response.get("Users", []):
        attributes = {a["Name"]: a["Value"] for a in user.get("Attributes", [])}
        users.append(
            {
                "username": user["Username"],
                "email": attributes.get("email", ""),
                "tenant_id": attributes.get(TENANT_ATTRIBUTE, ""),
                "status": user.get("UserStatus", ""),
                "enabled": "yes" if user.get("Enabled", True) else "no",
            }
        )
    return users


def catalog_entry_from_form(form: dict[str, str]) -> CatalogEntry:
    """An algorithm entry from the catalog form; BadRequest naming each bad field."""
    metrics = forms.key_values(form, "metric_definitions", "Metric definitions")
    try:
        return CatalogEntry(
            id=forms.required(form, "id", "Algorithm id"),
            name=forms.required(form, "name", "Name"),
            description=form.get("description", "").strip(),
            image_uri=forms.required(form, "image_uri", "Image URI"),
            default_hyperparameters=forms.key_values(
                form, "default_hyperparameters", "Default hyperparameters"
            ),
            metric_definitions=[
                MetricDefinition.model_validate({"Name": name, "Regex": regex})
                for name, regex in metrics.items()
            ],
            supported_instance_types=forms.word_list(form, "supported_instance_types"),
            supports_spot=forms.checkbox(form, "supports_spot"),
            input_content_type=form.get("input_content_type", "").strip()
            or "application/octet-stream",
        )
    except ValidationError as error:
        raise BadRequest(
            "The algorithm entry is invalid.", details=describe_schema_errors(error)
        ) from error


def save_catalog_entry(catalog: CatalogRepository, entry: CatalogEntry) -> None:
    catalog.put(entry)
    log.info("catalog entry saved", extra={"algorithm_id": entry.id})
