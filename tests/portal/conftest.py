"""Fixtures for the portal tests: moto in process, the seeded platform, signed identities."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import portal_helpers  # noqa: F401 - puts portal/ on sys.path first
import pytest
from local.metrics import LocalMetrics
from local.signin import EcSigner
from local.stack import ALB_ARN, REGION, Seeded, create_resources, seed
from moto import mock_aws
from portal_app.app import create_app
from portal_app.aws import AwsClients
from portal_app.settings import PortalSettings
from portal_helpers import AwsCalls, Platform
from training_common import new_session

from tests.moto_state import MotoState


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


@dataclass(frozen=True)
class _Built:
    settings: PortalSettings
    seeded: Seeded
    state: MotoState


@pytest.fixture(scope="session")
def _built_platform() -> _Built:
    """The local stack, created and seeded once per worker (half a second of moto calls)."""
    with mock_aws():
        session = new_session(region_name=REGION)
        settings = create_resources(session)
        seeded = seed(settings, session, tuning_job=False)
        return _Built(settings, seeded, MotoState.take())


@pytest.fixture
def platform(_built_platform: _Built) -> Iterator[Platform]:
    """A platform of the test's own: a fresh mock holding a copy of the built one."""
    with mock_aws():
        _built_platform.state.restore()
        session = new_session(region_name=REGION)
        settings = _built_platform.settings.model_copy(deep=True)
        seeded = copy.deepcopy(_built_platform.seeded)
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
