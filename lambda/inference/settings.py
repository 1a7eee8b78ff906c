"""The inference function's configuration, read once from its environment variables."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator
from training_common import settings_from_env

DEFAULT_MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
"""4 MiB: API Gateway passes a binary body base64-encoded (4/3 of its size) inside the Lambda
request, whose limit is 6 MB with the event around it; also under SageMaker's 6 MB."""
DEFAULT_CONTENT_TYPES = (
    "application/json",
    "text/csv",
    "application/jsonlines",
    "application/octet-stream",
)


class InferenceSettings(BaseModel):
    """Everything the inference function needs (environment names in ``from_env``)."""

    model_config = ConfigDict(frozen=True)

    api_clients_table: str
    tenant_invoke_role_arn: str = Field(pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")
    max_payload_bytes: int = Field(default=DEFAULT_MAX_PAYLOAD_BYTES, ge=1, le=10 * 1024 * 1024)
    content_types: tuple[str, ...] = Field(default=DEFAULT_CONTENT_TYPES, min_length=1)
    session_seconds: int = Field(default=3600, ge=900, le=3600)
    """Lifetime of a tenant's invoke credentials. 3600 is the most STS grants when the caller is
    itself a role session (role chaining), as a Lambda function's role is."""
    refresh_margin_seconds: int = Field(default=300, ge=0)
    """A tenant's credentials are replaced this long before they expire."""
    client_cache_seconds: float = Field(default=60.0, ge=0)
    """How long a client id -> tenant answer is reused; bounds how long a deleted client's
    still-valid tokens keep working (the access token itself lives up to 60 minutes)."""
    invoke_timeout_seconds: float = Field(default=25.0, gt=0, le=60)
    """Read timeout of ``InvokeEndpoint``: under API Gateway's 29 s integration timeout, so a
    slow model gets this function's 502 rather than API Gateway's bare 504."""

    @field_validator("content_types", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip().lower() for part in value.split(",") if part.strip())
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> InferenceSettings:
        """Read the settings; ValueError naming every missing or invalid variable."""
        names = {
            "api_clients_table": "API_CLIENTS_TABLE",
            "tenant_invoke_role_arn": "TENANT_INVOKE_ROLE_ARN",
            "max_payload_bytes": "MAX_PAYLOAD_BYTES",
            "content_types": "CONTENT_TYPES",
        }
        return settings_from_env(cls, names, environ)
