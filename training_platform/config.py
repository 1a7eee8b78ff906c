"""The typed, frozen configuration of one deployment environment, and its validation.

One TOML file per environment lives in ``environments/``. ``load_config`` reads it, validates every
setting and returns a frozen :class:`PlatformConfig` that ``app.py`` passes down to the stacks as
constructor arguments. Nothing below ``app.py`` reads environment variables or CDK context.

A bad value fails here, at synth time, with a :class:`ConfigError` whose lines each name the
setting, the bad value and what is allowed, never twenty minutes into a deployment.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
)  # fmt: skip

_ENV_NAME = re.compile(r"^[a-z][a-z0-9-]{1,19}$")
_ACCOUNT = re.compile(r"^\d{12}$")
_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")
_ACM_ARN = re.compile(
    r"^arn:aws(-[a-z]+)*:acm:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):certificate/[0-9a-f-]{36}$"
)
_INSTANCE_TYPE = re.compile(
    r"^(?P<family>[a-z]+\d+[a-z-]*)\.(?P<size>nano|micro|small|medium|large|\d*xlarge|metal)$"
)
_TAG_KEY = re.compile(r"^[\w .:/=+\-@]{1,128}$")
_TAG_VALUE = re.compile(r"^[\w .:/=+\-@]{0,256}$")
_HTTPS_ORIGIN = re.compile(
    r"^https://(?=.{1,253}(:|$))([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}(:\d{1,5})?$"
)

# A DNS host name: lowercase labels of letters, digits and hyphens, at least two labels.
_DOMAIN_NAME = re.compile(r"^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
# Cognito's hosted domain prefix (<prefix>.auth.<region>.amazoncognito.com).
_COGNITO_PREFIX = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_COGNITO_RESERVED = ("aws", "amazon", "cognito")

# Amazon EFS moves files to Infrequent Access after one of these periods without access (days).
EFS_IA_AFTER_DAYS = (1, 7, 14, 30, 60, 90, 180, 270, 365)


class ConfigError(ValueError):
    """The environment configuration is invalid; the message lists every problem."""


def _cidr(value: str, *, smallest_prefix: int, largest_prefix: int) -> str:
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except ValueError as exc:
        raise ValueError(
            f"{value!r} is not an IPv4 network in CIDR notation ({exc}); "
            f"expected for example '10.20.0.0/16'"
        ) from None
    if not smallest_prefix <= network.prefixlen <= largest_prefix:
        raise ValueError(
            f"{value!r} has prefix /{network.prefixlen}; "
            f"allowed prefixes are /{smallest_prefix} to /{largest_prefix}"
        )
    if not network.is_private:
        raise ValueError(f"{value!r} is not a private (RFC 1918) range")
    return str(network)


def _vpc_cidr(value: str) -> str:
    # VPCs accept /16 to /28; below /24 there is no room for public and private subnets in 3 AZs.
    return _cidr(value, smallest_prefix=16, largest_prefix=22)


def _vpn_cidr(value: str) -> str:
    # AWS Client VPN requires a client range between /12 and /22.
    return _cidr(value, smallest_prefix=12, largest_prefix=22)


def _acm_arn(value: str) -> str:
    if not _ACM_ARN.match(value):
        raise ValueError(
            f"{value!r} is not an ACM certificate ARN; expected "
            "'arn:aws:acm:<region>:<12-digit account>:certificate/<uuid>'"
        )
    return value


def _instance_type(value: str) -> str:
    if not _INSTANCE_TYPE.match(value):
        raise ValueError(
            f"{value!r} is not an EC2 instance type; expected '<family>.<size>' "
            "such as 't4g.small' or 'm7i.large'"
        )
    return value


def _tags(value: dict[str, str]) -> dict[str, str]:
    for key, tag_value in value.items():
        if key.lower().startswith("aws:") or not _TAG_KEY.match(key):
            raise ValueError(
                f"tag key {key!r} is not allowed; keys are 1-128 letters, digits, spaces or "
                "'_.:/=+-@' and must not start with 'aws:'"
            )
        if not _TAG_VALUE.match(tag_value):
            raise ValueError(
                f"tag {key!r} has value {tag_value!r}; values are 0-256 letters, digits, "
                "spaces or '_.:/=+-@'"
            )
    return value


def _https_origin(value: str) -> str:
    if not _HTTPS_ORIGIN.match(value):
        raise ValueError(
            f"{value!r} is not an https origin; expected 'https://<lowercase host name>' with an "
            "optional ':<port>', no path, no trailing slash and no wildcard, such as "
            "'https://portal.example.com'"
        )
    return value


def _domain_name(value: str) -> str:
    if not _DOMAIN_NAME.match(value):
        raise ValueError(
            f"{value!r} is not a DNS host name; expected lowercase labels of letters, digits and "
            "hyphens with at least one dot and no trailing dot, such as 'portal.example.com'"
        )
    return value


def _cognito_prefix(value: str) -> str:
    if not _COGNITO_PREFIX.match(value):
        raise ValueError(
            f"{value!r} is not a Cognito domain prefix; expected 1-63 lowercase letters, digits "
            "and hyphens, not starting or ending with a hyphen"
        )
    reserved = [word for word in _COGNITO_RESERVED if word in value]
    if reserved:
        raise ValueError(
            f"{value!r} contains the reserved word {reserved[0]!r}; Cognito refuses domain "
            f"prefixes containing {', '.join(map(repr, _COGNITO_RESERVED))}"
        )
    return value


def _days(low: int, high: int) -> Any:
    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"{value} days is out of range; allowed: {low} to {high}")
        return value

    return AfterValidator(check)


def _efs_ia_after_days(value: int) -> int:
    if value not in EFS_IA_AFTER_DAYS:
        raise ValueError(
            f"{value} is not an EFS Infrequent Access transition period; allowed: "
            f"{', '.join(map(str, EFS_IA_AFTER_DAYS))} (days)"
        )
    return value


VpcCidr = Annotated[str, AfterValidator(_vpc_cidr)]
VpnCidr = Annotated[str, AfterValidator(_vpn_cidr)]
AcmCertificateArn = Annotated[str, AfterValidator(_acm_arn)]
InstanceTypeName = Annotated[str, AfterValidator(_instance_type)]
Tags = Annotated[dict[str, str], AfterValidator(_tags)]
HttpsOrigin = Annotated[str, AfterValidator(_https_origin)]
DomainName = Annotated[str, AfterValidator(_domain_name)]
CognitoDomainPrefix = Annotated[str, AfterValidator(_cognito_prefix)]


def is_graviton(instance_type: str) -> bool:
    """True for AWS Graviton (arm64) instance families: t4g, m7g, c7gn, r8gd, ..."""
    match = _INSTANCE_TYPE.match(instance_type)
    if match is None:
        raise ValueError(f"{instance_type!r} is not an EC2 instance type")
    family = match["family"]
    suffix = re.sub(r"^[a-z]+\d+", "", family)
    return "g" in suffix


class _Settings(BaseModel):
    """Base of every settings section: frozen, and unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class NetworkSettings(_Settings):
    vpc_cidr: VpcCidr = "10.20.0.0/16"
    az_count: int = Field(default=2, ge=2, le=3)
    nat_gateways: int = Field(default=1, ge=0, le=3)
    availability_zones: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _nat_within_azs(self) -> NetworkSettings:
        if self.nat_gateways > self.az_count:
            raise ValueError(
                f"nat_gateways is {self.nat_gateways} but az_count is {self.az_count}; "
                f"allowed is 0 to {self.az_count} (at most one NAT gateway per AZ)"
            )
        if self.availability_zones is not None and len(self.availability_zones) != self.az_count:
            raise ValueError(
                f"availability_zones lists {len(self.availability_zones)} zones but az_count is "
                f"{self.az_count}; list exactly az_count zones"
            )
        return self


class VpnSettings(_Settings):
    client_cidr: VpnCidr = "10.100.0.0/22"
    server_certificate_arn: AcmCertificateArn | None = None
    client_root_certificate_arn: AcmCertificateArn | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> VpnSettings:
        if (self.server_certificate_arn is None) != (self.client_root_certificate_arn is None):
            raise ValueError(
                "server_certificate_arn and client_root_certificate_arn must be set together "
                "(mutual TLS needs both) or both left out (no Client VPN endpoint)"
            )
        return self

    @property
    def enabled(self) -> bool:
        return self.server_certificate_arn is not None


class BastionSettings(_Settings):
    instance_type: InstanceTypeName = "t4g.nano"


class DataLakeSettings(_Settings):
    """Storage classes, version history, backups and browser uploads of the DataLake stack."""

    # AWS Backup keeps each recovery point this long (daily backups of EFS and two buckets).
    backup_retention_days: Annotated[int, _days(7, 36500)] = 35
    # S3 deletes an object version this long after a newer version replaced it.
    noncurrent_version_expiration_days: Annotated[int, _days(1, 3650)] = 90
    # S3 moves objects to Intelligent-Tiering this long after they are written (0: at once).
    intelligent_tiering_after_days: Annotated[int, _days(0, 3650)] = 0
    # EFS moves a file to Infrequent Access after this long without access.
    efs_ia_after_days: Annotated[int, AfterValidator(_efs_ia_after_days)] = 30
    # Browser origins allowed to POST presigned uploads to the tenant data bucket; none: no CORS.
    cors_allowed_origins: tuple[HttpsOrigin, ...] = ()

    @model_validator(mode="after")
    def _unique_origins(self) -> DataLakeSettings:
        duplicates = sorted(
            {o for o in self.cors_allowed_origins if self.cors_allowed_origins.count(o) > 1}
        )
        if duplicates:
            raise ValueError(
                f"cors_allowed_origins lists {', '.join(map(repr, duplicates))} more than once; "
                "list each origin once"
            )
        return self


class TrainingSettings(_Settings):
    max_receive_count: int = Field(default=5, ge=2, le=20)
    launch_concurrency: int = Field(default=5, ge=1, le=100)
    events_concurrency: int = Field(default=5, ge=1, le=100)
    max_algorithm_images: int = Field(default=50, ge=1, le=1000)


# SageMaker instance types: ml.<family>.<size> (ml.m5.large, ml.g5.2xlarge).
_ML_INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
# SageMaker Model Monitor schedules: hourly or daily cron expressions, or NOW (one run).
_MONITORING_SCHEDULE = re.compile(r"^cron\([0-9*?/, -]+( [0-9A-Za-z*?/,#L-]+){5}\)$")
API_GATEWAY_MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
LAMBDA_MAX_REQUEST_BYTES = 6 * 1024 * 1024
"""A synchronous Lambda invocation carries at most 6 MB: a larger payload limit would fail in
Lambda instead of with a clear 413."""
LAMBDA_EVENT_ENVELOPE_BYTES = 256 * 1024
"""Room for the proxy event around the body (headers, request context, claims)."""
MAX_PRICE_USD_PER_HOUR = 1000.0


def _ml_instance_type(value: str) -> str:
    if not _ML_INSTANCE_TYPE.match(value):
        raise ValueError(
            f"{value!r} is not a SageMaker instance type; expected 'ml.<family>.<size>' such "
            "as 'ml.m5.large'"
        )
    return value


def _monitoring_schedule(value: str) -> str:
    if not _MONITORING_SCHEDULE.match(value):
        raise ValueError(
            f"{value!r} is not a Model Monitor schedule; expected a cron expression of six "
            "fields such as 'cron(0 * ? * * *)' (hourly) or 'cron(0 0 ? * * *)' (daily)"
        )
    return value


def _price_overrides(value: dict[str, float]) -> dict[str, float]:
    for instance_type, price in value.items():
        if not _ML_INSTANCE_TYPE.match(instance_type):
            raise ValueError(
                f"{instance_type!r} is not a SageMaker instance type such as 'ml.m5.large'"
            )
        if not 0 <= price <= MAX_PRICE_USD_PER_HOUR:
            raise ValueError(
                f"the price of {instance_type} is {price} USD per hour; allowed: 0 to "
                f"{MAX_PRICE_USD_PER_HOUR:g}"
            )
    return value


MlInstanceTypeName = Annotated[str, AfterValidator(_ml_instance_type)]


class ServingSettings(_Settings):
    """Tenant endpoints, their monitoring and the inference API (the deploy handler's and the
    inference function's environment, the API stage's throttling, the portal's cost view)."""

    # The model-latency alarm of every endpoint: p99 ModelLatency above this (milliseconds).
    model_latency_alarm_ms: int = Field(default=1000, ge=1, le=60_000)
    # Share of requests and responses a real-time endpoint captures for Model Monitor.
    capture_sampling_percentage: int = Field(default=100, ge=1, le=100)
    # Instance type of the data-quality baseline and monitoring processing jobs.
    monitoring_instance_type: MlInstanceTypeName = "ml.m5.large"
    # When Model Monitor runs over the captured data (hourly by default).
    monitoring_schedule: Annotated[str, AfterValidator(_monitoring_schedule)] = "cron(0 * ? * * *)"
    # Blue/green updates keep the old fleet this long, watching the rollback alarms.
    blue_green_bake_seconds: int = Field(default=600, ge=0, le=3600)
    # Largest request body the inference API accepts (413 above it).
    # 4 MiB by default: a binary body reaches the function base64-encoded (4/3 of its size).
    max_payload_bytes: int = Field(default=4 * 1024 * 1024, ge=1, le=API_GATEWAY_MAX_PAYLOAD_BYTES)
    # The API stage's steady-state requests per second and burst, over all clients.
    api_throttle_rate: float = Field(default=100.0, gt=0, le=10_000)
    api_throttle_burst: int = Field(default=200, ge=1, le=5000)
    # Concurrent executions reserved for (and capping) the inference function.
    inference_concurrency: int = Field(default=100, ge=1, le=1000)
    # Requests one client IP may make in any 5-minute window before the API's WAF blocks it.
    api_waf_rate_limit: int = Field(default=10_000, ge=10, le=2_000_000_000)
    # USD per hour by SageMaker instance type, replacing the portal's price table entries.
    price_overrides: Annotated[dict[str, float], AfterValidator(_price_overrides)] = Field(
        default_factory=dict
    )

    @model_validator(mode="after")
    def _limits(self) -> ServingSettings:
        # The body travels inside the synchronous Lambda request (6 MB with its envelope).
        # A binary body (application/octet-stream) arrives base64-encoded: 4/3 of its size.
        largest = (LAMBDA_MAX_REQUEST_BYTES - LAMBDA_EVENT_ENVELOPE_BYTES) * 3 // 4
        if self.max_payload_bytes > largest:
            raise ValueError(
                f"max_payload_bytes is {self.max_payload_bytes}; allowed: at most {largest} "
                "(the inference function receives the body inside Lambda's 6 MB request limit, "
                "base64-encoded when binary, less room for the event around it)"
            )
        if self.api_throttle_burst < self.api_throttle_rate:
            raise ValueError(
                f"api_throttle_burst {self.api_throttle_burst} is below api_throttle_rate "
                f"{self.api_throttle_rate:g}; allowed: a burst of at least one second's rate"
            )
        return self


# Retraining schedules (training_common.retraining's schedule_expression_problem and
# timezone_problem apply the same rules to each policy; the CDK app does not import the Lambda
# package, which needs boto3, so the rules are repeated here and tests/test_config.py checks that
# both agree on the same expressions).
DEFAULT_RETRAINING_SCHEDULE = "cron(0 3 ? * MON *)"
_SCHEDULE_GROUP = re.compile(r"^[0-9a-zA-Z._-]{1,64}$")
_RATE = re.compile(r"^rate\((?P<value>[1-9][0-9]{0,3}) (?P<unit>minutes?|hours?|days?)\)$")
_CRON = re.compile(r"^cron\((?P<fields>[^()]+)\)$")
_CRON_MINUTE = re.compile(r"^[0-5]?[0-9]$")
MAX_FLEXIBLE_WINDOW_MINUTES = 1440  # EventBridge Scheduler's MaximumWindowInMinutes (0: off)


def schedule_expression_problem(expression: str) -> str | None:
    """Why ``expression`` is not a retraining schedule, or None: ``rate(...)`` of at least an
    hour, or a six-field ``cron(...)`` with one number in the minutes field."""
    rate = _RATE.fullmatch(expression)
    if rate:
        value, unit = int(rate["value"]), rate["unit"]
        if (value == 1) != (not unit.endswith("s")):
            return f"write rate({value} {unit.rstrip('s') if value == 1 else unit + 's'})"
        if unit.startswith("minute") and value < 60:
            return "a retraining schedule runs at most once an hour: use 60 minutes or more"
        return None
    cron = _CRON.fullmatch(expression)
    if cron:
        fields = cron["fields"].split()
        if len(fields) != 6:
            return (
                "a cron expression has six fields: "
                "minutes hours day-of-month month day-of-week year"
            )
        if not _CRON_MINUTE.fullmatch(fields[0]):
            return "the minutes field must be one number (0-59): a policy runs at most once an hour"
        if fields[2] != "?" and fields[4] != "?":
            return "give either day-of-month or day-of-week, and ? for the other"
        return None
    return "expected rate(...) or cron(...), for example " + DEFAULT_RETRAINING_SCHEDULE


def timezone_problem(name: str) -> str | None:
    """Why ``name`` is not an IANA time zone, or None."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin or UTC"
    return None


def _retraining_schedule(value: str) -> str:
    problem = schedule_expression_problem(value)
    if problem:
        raise ValueError(f"{value!r} is not a retraining schedule: {problem}")
    return value


def _timezone(value: str) -> str:
    problem = timezone_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _schedule_group(value: str) -> str:
    if not _SCHEDULE_GROUP.match(value) or value == "default":
        raise ValueError(
            f"{value!r} is not an EventBridge Scheduler schedule group name for the platform; "
            "expected 1-64 letters, digits, '.', '_' or '-', and not 'default' (the account's "
            "own group)"
        )
    return value


class RetrainingSettings(_Settings):
    """Continuous retraining: the platform's EventBridge Scheduler group, and the defaults the
    portal's policy form offers (a tenant may change them per policy)."""

    # The schedule group that holds every tenant's retraining schedules; unset:
    # '<environment name>-retraining'.
    schedule_group: Annotated[str, AfterValidator(_schedule_group)] | None = None
    # When a new policy runs, unless the tenant chooses otherwise (weekly, Mondays 03:00).
    default_schedule: Annotated[str, AfterValidator(_retraining_schedule)] = (
        DEFAULT_RETRAINING_SCHEDULE
    )
    # The IANA time zone of the default schedule.
    default_timezone: Annotated[str, AfterValidator(_timezone)] = "UTC"
    # Scheduler's flexible time window of a new policy (0: the run starts at the slot).
    flexible_window_minutes: int = Field(default=15, ge=0, le=MAX_FLEXIBLE_WINDOW_MINUTES)


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", re.IGNORECASE)


def _email(value: str) -> str:
    if not _EMAIL.match(value):
        raise ValueError(f"{value!r} is not an email address such as 'ops@example.com'")
    return value


EmailAddress = Annotated[str, AfterValidator(_email)]


class ObservabilitySettings(_Settings):
    """Who hears about trouble, what counts as trouble, and the monthly budget."""

    # Email addresses subscribed to the operators' topic (each confirms its subscription once).
    alarm_emails: tuple[EmailAddress, ...] = ()
    # Monthly cost budget in USD for resources tagged platform=ai-training-platform.
    monthly_budget_usd: float = Field(default=1000.0, gt=0, le=10_000_000)
    # Alarm when the oldest message of a work queue has waited longer than this.
    queue_age_alarm_minutes: int = Field(default=30, ge=5, le=1440)
    # Alarm when this many training and tuning jobs (together) fail within one hour.
    failed_jobs_per_hour: int = Field(default=5, ge=1, le=1000)
    # Alarm when more than this percentage of portal requests end in a 5xx.
    portal_5xx_percent: float = Field(default=5.0, gt=0, le=100)


class PortalSettings(_Settings):
    """The tenants' portal: its DNS name and certificate, sign-in, fleet size and WAF limits."""

    # The portal's public host name (tenants open https://<domain_name>/); DNS points it at the ALB.
    domain_name: DomainName
    # An issued ACM certificate for domain_name in the environment's region; unset: the stack
    # requests one with DNS validation (deployment waits until the validation record exists).
    certificate_arn: AcmCertificateArn | None = None
    # Cognito's hosted sign-in domain: https://<prefix>.auth.<region>.amazoncognito.com.
    cognito_domain_prefix: CognitoDomainPrefix
    # Cognito Plus feature plan with threat protection enforced (adaptive authentication,
    # compromised-credential checks); billed per monthly active user.
    threat_protection: bool = False
    instance_type: InstanceTypeName = "t4g.small"
    min_capacity: int = Field(default=2, ge=1, le=20)
    max_capacity: int = Field(default=4, ge=1, le=50)
    # Target tracking keeps the fleet's average CPU near this.
    target_cpu_percent: int = Field(default=50, ge=10, le=90)
    # Requests one client IP may make in any 5-minute window before WAF blocks it.
    waf_rate_limit: int = Field(default=1000, ge=10, le=2_000_000_000)

    @model_validator(mode="after")
    def _capacity(self) -> PortalSettings:
        # Target tracking (portal.target_cpu_percent) needs room to scale: CloudFormation
        # refuses a scaling policy on a group whose MaxSize is not above its MinSize.
        if self.min_capacity >= self.max_capacity:
            raise ValueError(
                f"min_capacity {self.min_capacity} is not below max_capacity "
                f"{self.max_capacity}; allowed: min_capacity < max_capacity (target tracking "
                "scales between them)"
            )
        return self


NagPackName = Literal["AwsSolutions", "NIST.800.53.R5", "HIPAA.Security", "PCI.DSS.321"]
"""The cdk-nag packs an environment may run at synth, by the names their reports carry."""
DEFAULT_NAG_PACKS: tuple[NagPackName, ...] = ("AwsSolutions", "NIST.800.53.R5")


def _packs(value: tuple[str, ...]) -> tuple[str, ...]:
    if not value:
        raise ValueError("list at least one pack; the default is " + ", ".join(DEFAULT_NAG_PACKS))
    if len(set(value)) != len(value):
        raise ValueError(f"{list(value)} names a pack twice")
    return value


class ComplianceSettings(_Settings):
    """Which cdk-nag packs check every template at synth (an unacknowledged finding fails it)."""

    packs: Annotated[tuple[NagPackName, ...], AfterValidator(_packs)] = DEFAULT_NAG_PACKS


class PlatformConfig(_Settings):
    """Everything that differs between two deployments of the platform."""

    name: str
    production: bool = False
    account: str | None = None
    region: str | None = None
    removal_policy: Literal["retain", "destroy"] = "retain"
    log_retention_days: int = 365
    tags: Tags = Field(default_factory=dict)
    network: NetworkSettings = Field(default_factory=NetworkSettings)
    vpn: VpnSettings = Field(default_factory=VpnSettings)
    bastion: BastionSettings = Field(default_factory=BastionSettings)
    data_lake: DataLakeSettings = Field(default_factory=DataLakeSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    portal: PortalSettings
    serving: ServingSettings = Field(default_factory=ServingSettings)
    retraining: RetrainingSettings = Field(default_factory=RetrainingSettings)
    compliance: ComplianceSettings = Field(default_factory=ComplianceSettings)

    @model_validator(mode="after")
    def _consistent(self) -> PlatformConfig:  # noqa: C901 - one flat list of cross-field rules
        problems: list[str] = []
        if not _ENV_NAME.match(self.name):
            problems.append(
                f"name: {self.name!r} is not allowed; use 2-20 lowercase letters, digits or "
                "hyphens, starting with a letter (it becomes part of stack and resource names)"
            )
        if self.account is not None and not _ACCOUNT.match(self.account):
            problems.append(f"account: {self.account!r} is not a 12-digit AWS account id")
        if self.region is not None and not _REGION.match(self.region):
            problems.append(f"region: {self.region!r} is not an AWS region such as 'eu-west-1'")
        if (self.account is None) != (self.region is None):
            problems.append(
                "account and region: set both (an environment-bound deployment) or neither "
                "(environment-agnostic stacks)"
            )
        if self.region is not None and self.network.availability_zones is None:
            problems.append(
                "network.availability_zones: required when region is set, so that synth never "
                f"looks zones up in AWS; list {self.network.az_count} zones such as "
                f"['{self.region}a', '{self.region}b']"
            )
        if self.network.availability_zones is not None:
            for zone in self.network.availability_zones:
                if self.region is None or not re.fullmatch(re.escape(self.region) + "[a-z]", zone):
                    problems.append(
                        f"network.availability_zones: {zone!r} is not a zone of region "
                        f"{self.region!r}; zones are the region name plus one letter"
                    )
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            problems.append(
                f"log_retention_days: {self.log_retention_days} is not a CloudWatch Logs "
                f"retention period; allowed: {', '.join(map(str, LOG_RETENTION_DAYS))}"
            )
        vpc = ipaddress.IPv4Network(self.network.vpc_cidr)
        vpn = ipaddress.IPv4Network(self.vpn.client_cidr)
        if vpc.overlaps(vpn):
            problems.append(
                f"vpn.client_cidr: {self.vpn.client_cidr!r} overlaps network.vpc_cidr "
                f"{self.network.vpc_cidr!r}; choose a client range outside the VPC"
            )
        for setting in ("server_certificate_arn", "client_root_certificate_arn"):
            arn = getattr(self.vpn, setting)
            match = _ACM_ARN.match(arn) if arn else None
            if match and self.region is not None and match["region"] != self.region:
                problems.append(
                    f"vpn.{setting}: {arn!r} is in region {match['region']!r} but the "
                    f"environment deploys to {self.region!r}; import the certificate there"
                )
        portal_cert = _ACM_ARN.match(self.portal.certificate_arn or "")
        if portal_cert and self.region is not None and portal_cert["region"] != self.region:
            problems.append(
                f"portal.certificate_arn: {self.portal.certificate_arn!r} is in region "
                f"{portal_cert['region']!r} but the environment deploys to {self.region!r}; an "
                "ALB uses certificates of its own region: request or import it there"
            )
        if self.production:
            if not self.observability.alarm_emails:
                problems.append(
                    "observability.alarm_emails: required in a production environment; list at "
                    "least one address that receives the platform's alarms and budget alerts"
                )
            if self.portal.min_capacity < self.network.az_count:
                problems.append(
                    f"portal.min_capacity: {self.portal.min_capacity} is below network.az_count "
                    f"{self.network.az_count} in a production environment; allowed: at least one "
                    "portal instance per availability zone, so that losing a zone keeps it up"
                )
            if not self.vpn.enabled:
                problems.append(
                    "vpn.server_certificate_arn and vpn.client_root_certificate_arn: required "
                    "in a production environment (administrators reach the platform only "
                    "over the Client VPN); import the certificates into ACM and set both ARNs"
                )
            if self.removal_policy != "retain":
                problems.append(
                    f"removal_policy: {self.removal_policy!r} is not allowed in a production "
                    "environment; allowed: 'retain' (stateful data outlives the stack)"
                )
            if self.account is None:
                problems.append(
                    "account and region: required in a production environment, so that a "
                    "deployment cannot land in whichever account the caller's credentials name"
                )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def stack_prefix(self) -> str:
        """Prefix of every stack name, e.g. 'TrainingPlatform-example'."""
        return f"TrainingPlatform-{self.name}"

    @property
    def alarm_prefix(self) -> str:
        """Prefix of every endpoint alarm the deploy handler creates ('<stack prefix>-endpoint'):
        what its PutMetricAlarm grant and the EventBridge rules on alarm state match."""
        return f"{self.stack_prefix}-endpoint"

    @property
    def schedule_group(self) -> str:
        """The EventBridge Scheduler group of the retraining schedules: ``retraining.
        schedule_group``, or '<name>-retraining'."""
        return self.retraining.schedule_group or f"{self.name}-retraining"


def _format_error(error: Any, model: type[BaseModel]) -> str:
    location = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        section: type[BaseModel] = model
        for part in error["loc"][:-1]:
            annotation = section.model_fields[str(part)].annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                section = annotation
        allowed = ", ".join(sorted(section.model_fields))
        return f"{location}: unknown setting; allowed here: {allowed}"
    if error["type"] == "missing":
        return f"{location}: required setting is missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "value_error":
        # Our validators already name the bad value; a model-level error lists full setting names.
        return message if not location else f"{location}: {message}"
    return f"{location}: {message} (got {error['input']!r})"


def parse_config(data: dict[str, Any], *, source: str = "configuration") -> PlatformConfig:
    """Validate a configuration mapping; raise ConfigError naming every bad setting."""
    try:
        return PlatformConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            lines.extend(_format_error(error, PlatformConfig).splitlines())
        details = "\n".join(f"  - {line}" for line in lines)
        raise ConfigError(f"invalid settings in {source}:\n{details}") from None


def load_config(path: Path) -> PlatformConfig:
    """Read and validate one environment file (TOML)."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        available = sorted(p.stem for p in path.parent.glob("*.toml"))
        raise ConfigError(
            f"environment file {path} does not exist; available environments: "
            f"{', '.join(available) or 'none'}"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    data.setdefault("name", path.stem)
    return parse_config(data, source=str(path))
