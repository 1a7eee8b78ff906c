"""The deployment pipeline's configuration: ``environments/pipeline.toml``.

The pipeline lives in a tooling account and deploys, in order, environments that each have their
own file in ``environments/`` with their own account and region. Every problem fails synth with a
message that names the setting, like the platform's configuration (:mod:`training_platform.config`).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from training_platform.config import (
    _ACCOUNT,
    _REGION,
    ConfigError,
    EmailAddress,
    PlatformConfig,
    _format_error,
    load_config,
)

_CONNECTION_ARN = re.compile(
    r"^arn:aws[a-z-]*:(codeconnections|codestar-connections):(?P<region>[a-z0-9-]+):"
    r"(?P<account>\d{12}):connection/[0-9a-f-]{36}$"
)
_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9-]{1,19}$")


def _account(value: str) -> str:
    if not _ACCOUNT.match(value):
        raise ValueError(f"{value!r} is not a 12-digit AWS account id")
    return value


def _region(value: str) -> str:
    if not _REGION.match(value):
        raise ValueError(f"{value!r} is not an AWS region such as 'eu-west-1'")
    return value


def _connection(value: str) -> str:
    if not _CONNECTION_ARN.match(value):
        raise ValueError(
            f"{value!r} is not a CodeConnections connection ARN such as "
            "'arn:aws:codeconnections:eu-west-1:111111111111:connection/<uuid>'"
        )
    return value


def _repository(value: str) -> str:
    if not _REPOSITORY.match(value):
        raise ValueError(f"{value!r} is not a repository 'owner/name'")
    return value


def _stage_name(value: str) -> str:
    if not _STAGE_NAME.match(value):
        raise ValueError(
            f"{value!r} is not an environment name: 2-20 lowercase letters, digits or hyphens"
        )
    return value


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class StageSettings(_Settings):
    """One environment the pipeline deploys: ``environments/<environment>.toml``."""

    environment: Annotated[str, AfterValidator(_stage_name)]
    # A person approves, after reading the stage's template diff, before it deploys.
    approval: bool = False


class PipelineSettings(_Settings):
    account: Annotated[str, AfterValidator(_account)]
    region: Annotated[str, AfterValidator(_region)]
    connection_arn: Annotated[str, AfterValidator(_connection)]
    repository: Annotated[str, AfterValidator(_repository)]
    branch: str = Field(default="main", min_length=1, max_length=255)
    notification_emails: tuple[EmailAddress, ...] = Field(min_length=1)
    stages: tuple[StageSettings, ...] = Field(min_length=1)


class PipelineConfig(_Settings):
    """The pipeline and, in deployment order, the validated configuration of each stage."""

    name: str = "pipeline"
    pipeline: PipelineSettings
    environments: tuple[PlatformConfig, ...] = ()

    def approval_before(self, environment: str) -> bool:
        return next(s.approval for s in self.pipeline.stages if s.environment == environment)


def is_pipeline_file(data: dict[str, Any]) -> bool:
    """Whether a parsed environment file describes the pipeline rather than a platform."""
    return "pipeline" in data


def parse_pipeline_config(  # noqa: C901 - one flat list of cross-setting rules
    data: dict[str, Any], *, environments: Path, source: str = "pipeline configuration"
) -> PipelineConfig:
    """Validate the pipeline settings and load every stage's environment file from
    ``environments``; raise ConfigError naming every bad setting."""
    try:
        settings = PipelineConfig.model_validate(data)
    except ValidationError as exc:
        lines = [
            line
            for error in exc.errors()
            for line in _format_error(error, PipelineConfig).splitlines()
        ]
        raise ConfigError(
            f"invalid settings in {source}:\n" + "\n".join(f"  - {line}" for line in lines)
        ) from None
    problems: list[str] = []
    loaded: list[PlatformConfig] = []
    seen_names: set[str] = set()
    seen_targets: dict[tuple[str, str], str] = {}
    available = sorted(p.stem for p in environments.glob("*.toml") if p.stem != "pipeline")
    connection = _CONNECTION_ARN.match(settings.pipeline.connection_arn)
    if connection and connection["region"] != settings.pipeline.region:
        problems.append(
            f"pipeline.connection_arn: the connection is in {connection['region']!r} but the "
            f"pipeline runs in {settings.pipeline.region!r}; create it in the pipeline's region"
        )
    for index, stage in enumerate(settings.pipeline.stages):
        where = f"pipeline.stages.{index}.environment"
        if stage.environment in seen_names:
            problems.append(f"{where}: {stage.environment!r} is deployed twice")
            continue
        seen_names.add(stage.environment)
        path = environments / f"{stage.environment}.toml"
        if not path.is_file():
            problems.append(
                f"{where}: {stage.environment!r} has no file {path.name} in {environments}; "
                f"available environments: {', '.join(available) or 'none'}"
            )
            continue
        try:
            config = load_config(path)
        except ConfigError as error:
            problems.append(f"{where}: {stage.environment!r} is invalid: {error}")
            continue
        if config.account is None or config.region is None:
            problems.append(
                f"{where}: {stage.environment!r} names no account and region; a pipeline "
                "deploys only to environments bound to an account and region"
            )
            continue
        target = (config.account, config.region)
        if target in seen_targets:
            problems.append(
                f"{where}: {stage.environment!r} deploys to account {config.account} in "
                f"{config.region}, as {seen_targets[target]!r} does; give each environment "
                "its own account or region"
            )
        seen_targets[target] = stage.environment
        if config.production and not stage.approval:
            problems.append(
                f"pipeline.stages.{index}.approval: {stage.environment!r} is a production "
                "environment; set approval = true (a person approves its change first)"
            )
        loaded.append(config)
    if problems:
        raise ConfigError(
            f"invalid settings in {source}:\n" + "\n".join(f"  - {line}" for line in problems)
        )
    return settings.model_copy(update={"environments": tuple(loaded)})


def load_pipeline_config(path: Path) -> PipelineConfig:
    """Read ``path`` (``environments/pipeline.toml``) and the environment files it names."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    data.setdefault("name", path.stem)
    return parse_pipeline_config(data, environments=path.parent, source=str(path))
