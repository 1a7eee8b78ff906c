"""The pipeline's configuration: every bad value fails at synth with the setting it concerns."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from training_platform.config import ConfigError
from training_platform.pipeline_config import load_pipeline_config, parse_pipeline_config

ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENTS = ROOT / "environments"
CONNECTION = (
    "arn:aws:codeconnections:eu-west-1:111111111111:connection/00000000-0000-4000-8000-000000000000"
)


def pipeline(*stages: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "account": "111111111111",
        "region": "eu-west-1",
        "connection_arn": CONNECTION,
        "repository": "your-org/ai-training-platform",
        "notification_emails": ["ops@example.com"],
        "stages": list(stages) or [{"environment": "dev"}],
    }
    settings.update(overrides)
    return {"pipeline": settings}


def error_of(data: dict[str, Any], environments: Path = ENVIRONMENTS) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_pipeline_config(data, environments=environments, source="pipeline.toml")
    return str(caught.value)


def test_the_committed_pipeline_deploys_dev_staging_production_in_order() -> None:
    config = load_pipeline_config(ENVIRONMENTS / "pipeline.toml")
    assert [e.name for e in config.environments] == ["dev", "staging", "production"]
    assert [config.approval_before(e.name) for e in config.environments] == [False, True, True]
    assert len({(e.account, e.region) for e in config.environments}) == 3
    assert config.pipeline.account not in {e.account for e in config.environments}


def test_unknown_environment_names_the_ones_available() -> None:
    message = error_of(pipeline({"environment": "qa"}))
    assert "pipeline.stages.0.environment: 'qa' has no file qa.toml" in message
    assert "available environments: dev, example, production, regulated, staging" in message


def test_environment_without_account_and_region_is_refused() -> None:
    message = error_of(pipeline({"environment": "example"}))
    assert "pipeline.stages.0.environment: 'example' names no account and region" in message


def test_the_same_account_and_region_twice_is_refused(tmp_path: Path) -> None:
    for name in ("dev", "staging"):
        shutil.copy(ENVIRONMENTS / "dev.toml", tmp_path / f"{name}.toml")
    message = error_of(pipeline({"environment": "dev"}, {"environment": "staging"}), tmp_path)
    assert (
        "pipeline.stages.1.environment: 'staging' deploys to account 222222222222 in eu-west-1, "
        "as 'dev' does" in message
    )


def test_production_without_approval_is_refused() -> None:
    message = error_of(pipeline({"environment": "dev"}, {"environment": "production"}))
    assert "pipeline.stages.1.approval: 'production' is a production environment" in message


def test_an_environment_deployed_twice_is_refused() -> None:
    message = error_of(pipeline({"environment": "dev"}, {"environment": "dev"}))
    assert "pipeline.stages.1.environment: 'dev' is deployed twice" in message


def test_an_invalid_environment_file_is_reported_with_its_own_errors(tmp_path: Path) -> None:
    (tmp_path / "dev.toml").write_text(
        (ENVIRONMENTS / "dev.toml")
        .read_text()
        .replace('vpc_cidr = "10.20.0.0/16"', 'vpc_cidr = "x"')
    )
    message = error_of(pipeline({"environment": "dev"}), tmp_path)
    assert "pipeline.stages.0.environment: 'dev' is invalid" in message
    assert "network.vpc_cidr: 'x' is not an IPv4 network" in message


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"account": "12345"}, "pipeline.account: '12345' is not a 12-digit AWS account id"),
        ({"region": "mars"}, "pipeline.region: 'mars' is not an AWS region"),
        (
            {"connection_arn": "github"},
            "pipeline.connection_arn: 'github' is not a CodeConnections",
        ),
        ({"repository": "no-owner"}, "pipeline.repository: 'no-owner' is not a repository"),
        (
            {"notification_emails": []},
            "pipeline.notification_emails: Tuple should have at least 1 item",
        ),
        ({"stages": []}, "pipeline.stages: Tuple should have at least 1 item"),
        ({"surprise": 1}, "pipeline.surprise: unknown setting; allowed here: account, branch"),
        (
            {"connection_arn": CONNECTION.replace("eu-west-1", "us-east-1")},
            "pipeline.connection_arn: the connection is in 'us-east-1'",
        ),
    ],
)
def test_bad_pipeline_settings_name_the_setting(overrides: dict[str, Any], expected: str) -> None:
    assert expected in error_of(pipeline(**overrides))
