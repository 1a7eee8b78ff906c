"""AWS access: the instance role for platform data, assumed-role sessions for tenant data.

The instance role reads the algorithm catalog and does the administrators' work (tenants table,
Cognito, SNS subscriptions, catalog writes); for tenant pages it also creates and deletes the
inference API's app clients and their ApiClients records (which no tenant session may write)
and reads CloudWatch usage and alarms, always for the session's tenant only. Everything else
that touches a tenant's data goes through a session from ``sts:AssumeRole`` on the tenant role,
tagged ``tenant=<id>``; that role's policies use ``${aws:PrincipalTag/tenant}``, so AWS itself
confines the session to the tenant.

boto3 clients are thread-safe; Table resources are used here only for stateless item calls, which
is safe in practice because they delegate to the (thread-safe) client. Sessions and resources are
created under a lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config
from training_common import (
    CatalogRepository,
    JobRepository,
    ModelRepository,
    NotificationRepository,
    TenantRepository,
    TrialRepository,
    new_session,
)
from training_common.repositories import (
    ApiClientRepository,
    DeploymentRepository,
    RetrainingPolicyRepository,
    RetrainingRunRepository,
)

from .settings import PortalSettings

REFRESH_MARGIN_SECONDS = 300
"""Tenant credentials are replaced this long before STS says they expire."""

_BOTO_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=3)
# Presigned URLs must be SigV4: S3 refuses SigV2 for SSE-KMS objects.
_S3_CONFIG = _BOTO_CONFIG.merge(Config(signature_version="s3v4"))

SessionHook = Callable[[boto3.Session], None]
"""Called with every new session (instance or tenant); the local runner uses it to register
botocore event handlers (moto has no StopTrainingJob)."""


@dataclass(frozen=True)
class TenantAws:
    """Clients and repositories acting for one tenant, with credentials that expire."""

    tenant_id: str
    session: boto3.Session
    expires_at: float
    s3: Any
    sqs: Any
    sagemaker: Any
    tenants: TenantRepository
    jobs: JobRepository
    notifications: NotificationRepository
    trials: TrialRepository
    """The training jobs of the tenant's tuning jobs (``TRIALS_TABLE``)."""
    models: ModelRepository
    """The tenant's registered model versions (``MODELS_TABLE``)."""
    deployments: DeploymentRepository
    """The tenant's deployments (``DEPLOYMENTS_TABLE``): read, and the portal's PENDING write."""
    api_clients: ApiClientRepository
    """The tenant's API clients (``API_CLIENTS_TABLE``): Query and GetItem only; the writes go
    through :attr:`AwsClients.api_client_records` (the instance role)."""
    retraining_policies: RetrainingPolicyRepository | None = None
    """The tenant's retraining policies (``RETRAINING_POLICIES_TABLE``; None when unset)."""
    retraining_runs: RetrainingRunRepository | None = None
    """The runs of the tenant's policies (``RETRAINING_RUNS_TABLE``; None when unset)."""


class AwsClients:
    """Factory and cache of every AWS client the portal uses."""

    def __init__(
        self,
        settings: PortalSettings,
        *,
        endpoint_url: str | None = None,
        base_session: boto3.Session | None = None,
        session_hook: SessionHook | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.endpoint_url = endpoint_url
        self.session_hook = session_hook
        self.clock = clock
        self._lock = threading.Lock()
        self._tenant_cache: dict[str, TenantAws] = {}
        self.instance_session = base_session or new_session(region_name=settings.aws_region)
        if session_hook:
            session_hook(self.instance_session)
        self.sts = self._client(self.instance_session, "sts")
        self.instance_s3 = self._client(self.instance_session, "s3")
        self.cognito = self._client(self.instance_session, "cognito-idp")
        self.sns = self._client(self.instance_session, "sns")
        self.instance_lambda = self._client(self.instance_session, "lambda")
        self.cloudwatch = self._client(self.instance_session, "cloudwatch")
        """Usage metrics and alarm states (always for the session's tenant: services/usage)."""
        dynamodb = self._resource(self.instance_session, "dynamodb")
        self.admin_tenants = TenantRepository(dynamodb.Table(settings.tenants_table))
        self.api_client_records = ApiClientRepository(dynamodb.Table(settings.api_clients_table))
        """The ApiClients table as the instance role: the only writer (services/clients)."""
        self.catalog = CatalogRepository(self.instance_s3, settings.catalog_bucket, 30.0)

    def _client(self, session: boto3.Session, service: str) -> Any:
        return session.client(
            service,
            region_name=self.settings.aws_region,
            endpoint_url=self.endpoint_url,
            config=_S3_CONFIG if service == "s3" else _BOTO_CONFIG,
        )

    def _resource(self, session: boto3.Session, service: str) -> Any:
        return session.resource(
            service,
            region_name=self.settings.aws_region,
            endpoint_url=self.endpoint_url,
            config=_BOTO_CONFIG,
        )

    def for_tenant(self, tenant_id: str) -> TenantAws:
        """Clients acting as ``tenant_id`` (cached until shortly before the credentials expire)."""
        with self._lock:
            cached = self._tenant_cache.get(tenant_id)
            if cached is not None and cached.expires_at - REFRESH_MARGIN_SECONDS > self.clock():
                return cached
            fresh = self._assume(tenant_id)
            self._tenant_cache[tenant_id] = fresh
            return fresh

    def _assume(self, tenant_id: str) -> TenantAws:
        response = self.sts.assume_role(
            RoleArn=self.settings.tenant_role_arn,
            RoleSessionName=f"portal-{tenant_id}"[:64],
            DurationSeconds=self.settings.tenant_session_seconds,
            Tags=[{"Key": "tenant", "Value": tenant_id}],
            TransitiveTagKeys=["tenant"],
        )
        credentials = response["Credentials"]
        expiration = credentials["Expiration"]
        if isinstance(expiration, datetime):
            expires_at = expiration.astimezone(UTC).timestamp()
        else:
            expires_at = self.clock() + self.settings.tenant_session_seconds
        session = new_session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
            region_name=self.settings.aws_region,
        )
        if self.session_hook:
            self.session_hook(session)
        dynamodb = self._resource(session, "dynamodb")
        policies_table = self.settings.retraining_policies_table
        runs_table = self.settings.retraining_runs_table
        return TenantAws(
            tenant_id=tenant_id,
            session=session,
            expires_at=expires_at,
            s3=self._client(session, "s3"),
            sqs=self._client(session, "sqs"),
            sagemaker=self._client(session, "sagemaker"),
            tenants=TenantRepository(dynamodb.Table(self.settings.tenants_table)),
            jobs=JobRepository(dynamodb.Table(self.settings.jobs_table)),
            notifications=NotificationRepository(dynamodb.Table(self.settings.notifications_table)),
            trials=TrialRepository(dynamodb.Table(self.settings.trials_table)),
            models=ModelRepository(dynamodb.Table(self.settings.models_table)),
            deployments=DeploymentRepository(dynamodb.Table(self.settings.deployments_table)),
            api_clients=ApiClientRepository(dynamodb.Table(self.settings.api_clients_table)),
            retraining_policies=(
                RetrainingPolicyRepository(dynamodb.Table(policies_table))
                if policies_table
                else None
            ),
            retraining_runs=(
                RetrainingRunRepository(dynamodb.Table(runs_table)) if runs_table else None
            ),
        )

    def lookup_groups(self, username: str) -> frozenset[str]:
        """The user's Cognito groups (instance role: ``cognito-idp:AdminListGroupsForUser``)."""
        response = self.cognito.admin_list_groups_for_user(
            UserPoolId=self.settings.user_pool_id, Username=username, Limit=60
        )
        return frozenset(group["GroupName"] for group in response.get("Groups", []))
