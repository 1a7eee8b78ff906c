"""Fixtures for the portal tests: moto in process, the seeded platform, signed identities."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import portal_helpers  # noqa: F401 - puts portal/ on sys.path first
import pytest
from local.metrics import LocalMetrics
from local.signin import EcSigner
from local.stack import ALB_ARN, REGION
from portal_app.app import create_app
from portal_app.aws import AwsClients
from portal_helpers import AwsCalls, BuiltStack, Platform


@pytest.fixture(autouse=True)
def _fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture(scope="session")
def _built_stack() -> BuiltStack:
    """The local stack, created and seeded once per worker."""
    return BuiltStack.build(tuning_job=False)


@pytest.fixture
def platform(_built_stack: BuiltStack) -> Iterator[Platform]:
    """A platform of the test's own: a fresh mock holding a copy of the built stack."""
    with _built_stack.restored() as (settings, seeded, session):
        signer = EcSigner(ALB_ARN, kid="alb-test-key")
        calls = AwsCalls()
        metrics = LocalMetrics()

        def hook(portal_session: boto3.Session) -> None:
            calls.hook(portal_session)
            metrics.session_hook(portal_session)

        aws = AwsClients(settings, session_hook=hook)
        app = create_app(settings, key_fetcher=signer.key_fetcher, aws=aws)
        yield Platform(settings, seeded, session, signer, calls, app, metrics)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "browser: drives Debian's Chromium through the local portal (-m browser)"
    )
