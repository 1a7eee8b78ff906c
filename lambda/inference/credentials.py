"""Tenant-bound credentials: ``sts:AssumeRole`` of the tenant invoke role with the session tag
``tenant=<id>``, cached per tenant until shortly before they expire.

The invoke role allows only ``sagemaker:InvokeEndpoint`` on endpoints whose ``tenant`` tag is
the session's (``aws:ResourceTag/tenant`` = ``${aws:PrincipalTag/tenant}``), so which endpoints
a client reaches is decided by IAM, not by this code comparing names.
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
from training_common import new_session

SessionHook = Callable[[boto3.Session], None]
"""Called with every session this module creates, before any client is made from it (the local
runner registers the simulated SageMaker runtime on it)."""


@dataclass(frozen=True)
class TenantRuntime:
    """A ``sagemaker-runtime`` client acting for one tenant, and when its credentials expire."""

    tenant_id: str
    runtime: Any
    expires_at: float


class TenantCredentials:
    """One runtime client per tenant, renewed ``refresh_margin_seconds`` before expiry.

    Thread-safe: the local API serves concurrent requests with one instance; a lock per tenant
    keeps concurrent first requests from assuming the role more than once.
    """

    def __init__(
        self,
        sts: Any,
        *,
        role_arn: str,
        region: str,
        session_seconds: int = 3600,
        refresh_margin_seconds: int = 300,
        runtime_config: Config | None = None,
        endpoint_url: str | None = None,
        session_hook: SessionHook | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sts = sts
        self._role_arn = role_arn
        self._region = region
        self._session_seconds = session_seconds
        self._margin = refresh_margin_seconds
        self._config = runtime_config
        self._endpoint_url = endpoint_url
        self._hook = session_hook
        self._clock = clock
        self._cache: dict[str, TenantRuntime] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self.assumed = 0
        """How many times the role was assumed (the tests read it)."""

    def runtime_for(self, tenant_id: str) -> Any:
        """The tenant's ``sagemaker-runtime`` client (assumes the role when none is fresh)."""
        cached = self._cache.get(tenant_id)
        if cached is not None and self._fresh(cached):
            return cached.runtime
        with self._locks_lock:
            lock = self._locks.setdefault(tenant_id, threading.Lock())
        with lock:
            cached = self._cache.get(tenant_id)
            if cached is None or not self._fresh(cached):
                cached = self._assume(tenant_id)
                self._cache[tenant_id] = cached
            return cached.runtime

    def _fresh(self, cached: TenantRuntime) -> bool:
        return cached.expires_at - self._margin > self._clock()

    def _assume(self, tenant_id: str) -> TenantRuntime:
        response = self._sts.assume_role(
            RoleArn=self._role_arn,
            RoleSessionName=f"inference-{tenant_id}"[:64],
            DurationSeconds=self._session_seconds,
            Tags=[{"Key": "tenant", "Value": tenant_id}],
        )
        self.assumed += 1
        credentials = response["Credentials"]
        expiration = credentials["Expiration"]
        if isinstance(expiration, datetime):
            expires_at = expiration.astimezone(UTC).timestamp()
        else:
            expires_at = self._clock() + self._session_seconds
        session = new_session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
            region_name=self._region,
        )
        if self._hook is not None:
            self._hook(session)
        runtime = session.client(
            "sagemaker-runtime",
            region_name=self._region,
            endpoint_url=self._endpoint_url,
            config=self._config,
        )
        return TenantRuntime(tenant_id=tenant_id, runtime=runtime, expires_at=expires_at)
