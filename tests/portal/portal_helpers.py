"""Helpers for the portal tests: signed identities, an AWS call recorder, a signed-in client."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "portal"))

from local.signin import EcSigner
from local.stack import REGION, Seeded
from portal_app.settings import PortalSettings

USERS: dict[str, dict[str, Any]] = {
    "alice": {
        "sub": "sub-alice",
        "username": "alice",
        "email": "alice@acme.example",
        "custom:tenant_id": "acme",
        "cognito:groups": [],
    },
    "bob": {
        "sub": "sub-bob",
        "username": "bob",
        "email": "bob@acme.example",
        "custom:tenant_id": "acme",
        "cognito:groups": [],
    },
    "gina": {
        "sub": "sub-gina",
        "username": "gina",
        "email": "gina@globex.example",
        "custom:tenant_id": "globex",
        "cognito:groups": [],
    },
    "admin": {
        "sub": "sub-admin",
        "username": "admin",
        "email": "admin@platform.example",
        "cognito:groups": ["admins"],
    },
}


@dataclass
class AwsCalls:
    """Every AWS call the portal makes, with the access key that signed it."""

    instance_key: str = ""
    calls: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)
    assume_params: list[dict[str, Any]] = field(default_factory=list)
    assumed_keys: list[str] = field(default_factory=list)
    stops: list[tuple[str, str]] = field(default_factory=list)

    def mark(self) -> int:
        return len(self.calls)

    def since(self, mark: int) -> list[tuple[str, str, str, dict[str, Any]]]:
        return self.calls[mark:]

    def tenant_of_key(self, access_key: str) -> str | None:
        for params, key in zip(self.assume_params, self.assumed_keys, strict=True):
            if key == access_key:
                return str(params["Tags"][0]["Value"])
        return None

    def hook(self, session: boto3.Session) -> None:
        key = session.get_credentials().access_key
        if not self.instance_key:
            self.instance_key = key

        def record(params: dict[str, Any], model: Any, **_: Any) -> None:
            self.calls.append((model.service_model.service_name, model.name, key, dict(params)))

        def assume_params(params: dict[str, Any], **_: Any) -> None:
            self.assume_params.append(params)

        def assumed(parsed: dict[str, Any], **_: Any) -> None:
            self.assumed_keys.append(parsed["Credentials"]["AccessKeyId"])

        def stop(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
            self.stops.append((json.loads(params["body"])["TrainingJobName"], key))
            return AWSResponse("https://sagemaker.test/", 200, {}, None), {}

        session.events.register("provide-client-params.*.*", record)
        session.events.register("provide-client-params.sts.AssumeRole", assume_params)
        session.events.register("after-call.sts.AssumeRole", assumed)
        session.events.register("before-call.sagemaker.StopTrainingJob", stop)


@dataclass
class Platform:
    settings: PortalSettings
    seeded: Seeded
    session: boto3.Session
    signer: EcSigner
    calls: AwsCalls
    app: Any

    def token(self, user: str, **overrides: Any) -> str:
        return self.signer.sign({**USERS[user], **overrides})

    def client(self, user: str | None) -> PortalClient:
        return PortalClient(self, user)

    def table(self, name: str) -> Any:
        return self.session.resource("dynamodb", region_name=REGION).Table(name)


class PortalClient(TestClient):
    """A TestClient signed in as ``user`` (a fresh ALB header on every request)."""

    def __init__(self, platform: Platform, user: str | None) -> None:
        super().__init__(platform.app, base_url="https://testserver", follow_redirects=False)
        self.platform = platform
        self.user = user

    def request(self, method: str, url: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        headers = dict(kwargs.pop("headers", None) or {})
        if self.user is not None:
            headers.setdefault("x-amzn-oidc-data", self.platform.token(self.user))
        return super().request(method, url, headers=headers, **kwargs)

    def csrf(self) -> str:
        page = self.get(
            "/jobs" if USERS[self.user or "admin"].get("custom:tenant_id") else "/admin/tenants"
        )
        assert page.status_code == 200, page.text
        token = self.cookies.get("__Host-portal-csrf")
        assert token and re.fullmatch(r"[0-9a-f]{16}\.[0-9a-f]{32}", token)
        return token

    def post_form(self, url: str, data: dict[str, str], **kwargs: Any) -> Any:
        return self.post(url, data={"csrf_token": self.csrf(), **data}, **kwargs)


JOB_FORM = {
    "algorithm_id": "xgboost",
    "dataset_key": "tenants/acme/datasets/iris/",
    "hyperparameters": "num_round=10\nobjective=binary:logistic",
    "instance_type": "ml.m5.large",
    "instance_count": "1",
    "max_runtime_seconds": "3600",
}


def api_routes(app: Any) -> set[tuple[str, str]]:
    """Every (method, path) the app serves, through included routers (FastAPI nests them).

    Routers are included without an extra prefix, so each APIRoute's path is its full path.
    """
    from fastapi.routing import APIRoute

    found: set[tuple[str, str]] = set()

    def walk(routes: list[Any]) -> None:
        for route in routes:
            if isinstance(route, APIRoute):
                found.update((method, route.path) for method in route.methods)
            elif hasattr(route, "original_router"):
                walk(route.original_router.routes)

    walk(app.routes)
    assert ("GET", "/health") in found, "route discovery broke: /health not found"
    return found
