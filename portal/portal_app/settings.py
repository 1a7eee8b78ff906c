"""The portal's settings: the one place that reads environment variables.

Every value comes from an environment variable of the same name (upper case) that the CDK Portal
stack writes into the instances' environment. A missing or malformed value fails at start-up with
an error that names the variable, never on the first request.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from training_common.pricing import PriceTable, parse_price_overrides
from training_common.retraining import (
    DEFAULT_SCHEDULE,
    DEFAULT_TIMEZONE,
    schedule_expression_problem,
    timezone_problem,
)

ALB_ARN_PATTERN = (
    r"^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}"
    r":loadbalancer/app/[A-Za-z0-9-]+/[0-9a-f]+$"
)

DEFAULT_UPLOAD_CONTENT_TYPES = (
    "text/csv",
    "application/json",
    "application/jsonlines",
    "application/x-parquet",
    "application/x-recordio-protobuf",
    "application/gzip",
    "application/x-tar",
    "application/zip",
    "image/jpeg",
    "image/png",
    "application/octet-stream",
)


class PortalSettings(BaseSettings):
    """What the portal needs to know about its environment (immutable once built)."""

    model_config = SettingsConfigDict(frozen=True, case_sensitive=False, extra="ignore")

    aws_region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    """``AWS_REGION``: region of every AWS call and of the ALB public-key endpoint."""

    alb_arn: str = Field(pattern=ALB_ARN_PATTERN)
    """``ALB_ARN``: the identity header's ``signer`` must equal it."""

    tenants_table: str = Field(min_length=3, max_length=255)
    jobs_table: str = Field(min_length=3, max_length=255)
    notifications_table: str = Field(min_length=3, max_length=255)
    trials_table: str = Field(min_length=3, max_length=255)
    """``TRIALS_TABLE``: the training jobs of each tuning job."""
    models_table: str = Field(min_length=3, max_length=255)
    """``MODELS_TABLE``: the tenant's registered model versions."""
    data_bucket: str = Field(min_length=3, max_length=63)
    artifacts_bucket: str = Field(min_length=3, max_length=63)
    catalog_bucket: str = Field(min_length=3, max_length=63)
    training_requests_queue_url: str = Field(pattern=r"^https?://")
    notifications_topic_arn: str = Field(pattern=r"^arn:aws[a-z-]*:sns:")
    tenant_role_arn: str = Field(pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/")
    user_pool_id: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d_[0-9A-Za-z]+$")
    deployments_table: str = Field(min_length=3, max_length=255)
    """``DEPLOYMENTS_TABLE``: the tenants' deployments (tenant sessions read and write)."""
    api_clients_table: str = Field(min_length=3, max_length=255)
    """``API_CLIENTS_TABLE``: the inference API's clients (tenant sessions only Query; the
    instance role writes and deletes, so no tenant can claim another tenant's client id)."""
    deployment_requests_queue_url: str = Field(pattern=r"^https?://")
    """``DEPLOYMENT_REQUESTS_QUEUE_URL``: where deploy and undeploy requests go."""
    inference_api_url: str = Field(pattern=r"^https?://")
    """``INFERENCE_API_URL``: the inference API's base URL, for the curl examples."""
    oauth_token_url: str = Field(pattern=r"^https?://")
    """``OAUTH_TOKEN_URL``: the user pool's OAuth 2.0 token endpoint (client credentials)."""

    retraining_policies_table: str | None = Field(default=None, min_length=3, max_length=255)
    """``RETRAINING_POLICIES_TABLE``: the tenants' retraining policies (tenant sessions read and
    write their own). Unset: the retraining pages answer 503 (an environment without them)."""
    retraining_runs_table: str | None = Field(default=None, min_length=3, max_length=255)
    """``RETRAINING_RUNS_TABLE``: each policy's runs, the history (tenant sessions read)."""
    retraining_requests_queue_url: str | None = Field(default=None, pattern=r"^https?://")
    """``RETRAINING_REQUESTS_QUEUE_URL``: where the policies' apply and delete requests go."""
    default_schedule: str = DEFAULT_SCHEDULE
    """``DEFAULT_SCHEDULE``: the new-policy form's schedule expression."""
    default_timezone: str = DEFAULT_TIMEZONE
    """``DEFAULT_TIMEZONE``: the new-policy form's time zone (IANA)."""
    flexible_window_minutes: int = Field(default=15, ge=0, le=1440)
    """``FLEXIBLE_WINDOW_MINUTES``: Scheduler's flexible time window of new policies."""

    admin_group: str = "admins"
    """``ADMIN_GROUP``: Cognito group whose members reach ``/admin``."""

    alb_key_relay_function: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$|^arn:aws[a-z-]*:lambda:"
    )
    """``ALB_KEY_RELAY_FUNCTION``: the Lambda function that fetches ALB public keys for the
    portal (the Portal stack sets it, so instances need no internet route); unset: the portal
    fetches them from the regional endpoint itself."""

    tenant_session_seconds: int = Field(default=3600, ge=900, le=43200)
    """``TENANT_SESSION_SECONDS``: lifetime asked of STS for tenant credentials."""

    max_upload_bytes: int = Field(default=5 * 1024**3, ge=1, le=5 * 1024**3)
    """``MAX_UPLOAD_BYTES``: presigned POST ``content-length-range`` ceiling (S3 allows 5 GiB)."""

    upload_content_types: Annotated[tuple[str, ...], NoDecode] = DEFAULT_UPLOAD_CONTENT_TYPES
    """``UPLOAD_CONTENT_TYPES``: comma-separated content types a dataset file may have."""

    presigned_url_seconds: int = Field(default=900, ge=60, le=3600)
    """``PRESIGNED_URL_SECONDS``: lifetime of upload policies and download links."""

    price_overrides: Annotated[dict[str, float], NoDecode] = Field(default_factory=dict)
    """``PRICE_OVERRIDES``: JSON object of instance type to USD per hour, replacing the price
    table's entry of that type for the costs page (``serving.price_overrides``)."""

    port: int = Field(default=8080, ge=1, le=65535)
    """``PORT``: where ``python -m portal_app`` listens (the ALB target group's port)."""

    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")

    @field_validator("upload_content_types", mode="before")
    @classmethod
    def _split_types(cls, value: object) -> object:
        if isinstance(value, str):
            value = tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("upload_content_types")
    @classmethod
    def _check_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one content type is required")
        for item in value:
            if not re.fullmatch(r"[a-z]+/[a-z0-9.+-]+", item):
                raise ValueError(f"{item!r} is not a content type like text/csv")
        return value

    @field_validator("default_schedule")
    @classmethod
    def _check_schedule(cls, value: str) -> str:
        problem = schedule_expression_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("default_timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        problem = timezone_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @property
    def retraining_configured(self) -> bool:
        """True when the retraining tables and queue are set."""
        return bool(
            self.retraining_policies_table
            and self.retraining_runs_table
            and self.retraining_requests_queue_url
        )

    @field_validator("price_overrides", mode="before")
    @classmethod
    def _parse_prices(cls, value: object) -> object:
        if value is None or isinstance(value, str):
            return parse_price_overrides(value)
        if isinstance(value, dict):
            return parse_price_overrides(value)
        return value

    @property
    def price_table(self) -> PriceTable:
        """The on-demand price table with this environment's overrides."""
        return PriceTable(overrides=dict(self.price_overrides))

    @classmethod
    def from_environment(cls) -> PortalSettings:
        """Build the settings from ``os.environ`` (the deployed entry point's only source)."""
        return cls()  # pydantic-settings reads the environment
