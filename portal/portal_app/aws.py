"""AWS access: the instance role for platform data, assumed-role sessions for tenant data.

The instance role reads the algorithm catalog and does the administrators' work (tenants table,
Cognito, SNS subscriptions, catalog writes); for tenant pages it also creates and deletes the
inference API's app clients and their ApiClients records (which no tenant session may write)
and reads CloudWatch usage and alarms, always for the session's tenant only. Everything else
that touches a tenant's data goes through a session from ``sts:AssumeRole`` on the tenant role,
tagged ``tenant=<id>``; that role's policies use ``${aws:PrincipalTag/tenant}``, so AWS itself
confines the session to the tenant.

boto3 clients are thread-safe; Table resources are used here only for stateless item calls, which
is safe in practice because they delegate to the (thread-safe) client. Sessions are not: clients
and resources are created under a lock, each on first use.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cached_property, partial
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


class TenantAws:
    """Clients and repositories acting for one tenant, with credentials that expire.

    Each client is created on first use (under :class:`AwsClients`' creation lock), then kept
    with the credentials: a page that reads one table doesn't set up S3, SQS and SageMaker
    clients (botocore builds a client's class and event handlers each time, 3 to 10 ms apiece)
    every time a tenant's credentials are renewed. Two requests racing to the first use may
    each build one; either is kept, both work.
    """

    def __init__(
        self,
        tenant_id: str,
        session: boto3.Session,
        expires_at: float,
        settings: PortalSettings,
        client: Callable[[str], Any],
        resource: Callable[[str], Any],
    ) -> None:
        self.tenant_id = tenant_id
        self.session = session
        self.expires_at = expires_at
        self._settings = settings
        self._client = client
        self._resource = resource

    @cached_property
    def s3(self) -> Any:
        return self._client("s3")

    @cached_property
    def sqs(self) -> Any:
        return self._client("sqs")

    @cached_property
    def sagemaker(self) -> Any:
        return self._client("sagemaker")

    @cached_property
    def _dynamodb(self) -> Any:
        return self._resource("dynamodb")

    @cached_property
    def tenants(self) -> TenantRepository:
        return TenantRepository(self._dynamodb.Table(self._settings.tenants_table))

    @cached_property
    def jobs(self) -> JobRepository:
        return JobRepository(self._dynamodb.Table(self._settings.jobs_table))

    @cached_property
    def notifications(self) -> NotificationRepository:
        return NotificationRepository(self._dynamodb.Table(self._settings.notifications_table))

    @cached_property
    def trials(self) -> TrialRepository:
        """The training jobs of the tenant's tuning jobs (``TRIALS_TABLE``)."""
        return TrialRepository(self._dynamodb.Table(self._settings.trials_table))

    @cached_property
    def models(self) -> ModelRepository:
        """The tenant's registered model versions (``MODELS_TABLE``)."""
        return ModelRepository(self._dynamodb.Table(self._settings.models_table))

    @cached_property
    def deployments(self) -> DeploymentRepository:
        """The tenant's deployments (``DEPLOYMENTS_TABLE``): read, and the portal's PENDING
        write."""
        return DeploymentRepository(self._dynamodb.Table(self._settings.deployments_table))

    @cached_property
    def api_clients(self) -> ApiClientRepository:
        """The tenant's API clients (``API_CLIENTS_TABLE``): Query and GetItem only; the writes
        go through :attr:`AwsClients.api_client_records` (the instance role)."""
        return ApiClientRepository(self._dynamodb.Table(self._settings.api_clients_table))

    @cached_property
    def retraining_policies(self) -> RetrainingPolicyRepository | None:
        """The tenant's retraining policies (``RETRAINING_POLICIES_TABLE``; None when unset)."""
        table = self._settings.retraining_policies_table
        return RetrainingPolicyRepository(self._dynamodb.Table(table)) if table else None

    @cached_property
    def retraining_runs(self) -> RetrainingRunRepository | None:
        """The runs of the tenant's policies (``RETRAINING_RUNS_TABLE``; None when unset)."""
        table = self._settings.retraining_runs_table
        return RetrainingRunRepository(self._dynamodb.Table(table)) if table else None


class AwsClients:
    """Factory and cache of every AWS client the portal uses (each created on first use)."""

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
        """Guards the tenant cache (held while credentials are fetched)."""
        self._create_lock = threading.Lock()
        """Guards client and resource creation: taken inside ``_lock``, never the other way."""
        self._tenant_cache: dict[str, TenantAws] = {}
        self.instance_session = base_session or new_session(region_name=settings.aws_region)
        if session_hook:
            session_hook(self.instance_session)

    @cached_property
    def sts(self) -> Any:
        return self._client(self.instance_session, "sts")

    @cached_property
    def instance_s3(self) -> Any:
        return self._client(self.instance_session, "s3")

    @cached_property
    def cognito(self) -> Any:
        return self._client(self.instance_session, "cognito-idp")

    @cached_property
    def sns(self) -> Any:
        return self._client(self.instance_session, "sns")

    @cached_property
    def instance_lambda(self) -> Any:
        return self._client(self.instance_session, "lambda")

    @cached_property
    def cloudwatch(self) -> Any:
        """Usage metrics and alarm states (always for the session's tenant: services/usage)."""
        return self._client(self.instance_session, "cloudwatch")

    @cached_property
    def _instance_dynamodb(self) -> Any:
        return self._resource(self.instance_session, "dynamodb")

    @cached_property
    def admin_tenants(self) -> TenantRepository:
        return TenantRepository(self._instance_dynamodb.Table(self.settings.tenants_table))

    @cached_property
    def api_client_records(self) -> ApiClientRepository:
        """The ApiClients table as the instance role: the only writer (services/clients)."""
        return ApiClientRepository(self._instance_dynamodb.Table(self.settings.api_clients_table))

    @cached_property
    def catalog(self) -> CatalogRepository:
        return CatalogRepository(self.instance_s3, self.settings.catalog_bucket, 30.0)

    def _client(self, session: boto3.Session, service: str) -> Any:
        with self._create_lock:  # a boto3 Session is not thread-safe
            return session.client(
                service,
                region_name=self.settings.aws_region,
                endpoint_url=self.endpoint_url,
                config=_S3_CONFIG if service == "s3" else _BOTO_CONFIG,
            )

    def _resource(self, session: boto3.Session, service: str) -> Any:
        with self._create_lock:
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
        return TenantAws(
            tenant_id=tenant_id,
            session=session,
            expires_at=expires_at,
            settings=self.settings,
            client=partial(self._client, session),
            resource=partial(self._resource, session),
        )

    def lookup_groups(self, username: str) -> frozenset[str]:
        """The user's Cognito groups (instance role: ``cognito-idp:AdminListGroupsForUser``)."""
        response = self.cognito.admin_list_groups_for_user(
            UserPoolId=self.settings.user_pool_id, Username=username, Limit=60
        )
        return frozenset(group["GroupName"] for group in response.get("Groups", []))
