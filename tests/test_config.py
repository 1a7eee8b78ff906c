"""Bad configuration fails at synth with a message naming the setting, value and what is allowed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from training_platform.config import ConfigError, is_graviton, load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent
CERT = "arn:aws:acm:eu-west-1:111111111111:certificate/00000000-0000-4000-8000-00000000000{}"


PORTAL: dict[str, Any] = {
    "domain_name": "portal.example.com",
    "cognito_domain_prefix": "dev-training-portal",
}


def base(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"name": "dev", "portal": dict(PORTAL)}
    data.update(overrides)
    return data


def portal(**settings: Any) -> dict[str, Any]:
    """A configuration whose portal section has ``settings`` on top of the required ones."""
    return base(portal={**PORTAL, **settings})


def production(**overrides: Any) -> dict[str, Any]:
    data = base(
        production=True,
        account="111111111111",
        region="eu-west-1",
        network={"availability_zones": ["eu-west-1a", "eu-west-1b"]},
        vpn={
            "server_certificate_arn": CERT.format(1),
            "client_root_certificate_arn": CERT.format(2),
        },
        observability={"alarm_emails": ["oncall@example.com"]},
    )
    data.update(overrides)
    return data


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, source="test.toml")
    return str(caught.value)


def test_defaults_are_valid() -> None:
    config = parse_config(base())
    assert config.network.az_count == 2
    assert config.removal_policy == "retain"
    assert not config.vpn.enabled


def test_production_example_is_valid() -> None:
    config = parse_config(production())
    assert config.vpn.enabled
    assert config.stack_prefix == "TrainingPlatform-dev"


def test_config_is_frozen() -> None:
    config = parse_config(base())
    with pytest.raises(ValueError, match="frozen"):
        config.network.az_count = 3  # type: ignore[misc]


def test_malformed_vpc_cidr() -> None:
    message = error_of(base(network={"vpc_cidr": "10.20.0.0/33"}))
    assert "network.vpc_cidr: '10.20.0.0/33' is not an IPv4 network in CIDR notation" in message
    assert "expected for example '10.20.0.0/16'" in message


def test_vpc_cidr_with_host_bits() -> None:
    message = error_of(base(network={"vpc_cidr": "10.20.1.0/16"}))
    assert "network.vpc_cidr: '10.20.1.0/16'" in message
    assert "has host bits set" in message


def test_vpc_cidr_prefix_out_of_range() -> None:
    message = error_of(base(network={"vpc_cidr": "10.0.0.0/8"}))
    assert (
        "network.vpc_cidr: '10.0.0.0/8' has prefix /8; allowed prefixes are /16 to /22" in message
    )


def test_public_vpc_cidr() -> None:
    message = error_of(base(network={"vpc_cidr": "8.8.0.0/16"}))
    assert "network.vpc_cidr: '8.8.0.0/16' is not a private (RFC 1918) range" in message


def test_malformed_vpn_cidr() -> None:
    message = error_of(base(vpn={"client_cidr": "10.100.0.0"}))
    assert (
        "vpn.client_cidr: '10.100.0.0' has prefix /32; allowed prefixes are /12 to /22" in message
    )


def test_vpn_cidr_overlapping_vpc() -> None:
    message = error_of(
        base(network={"vpc_cidr": "10.0.0.0/16"}, vpn={"client_cidr": "10.0.4.0/22"})
    )
    assert (
        "vpn.client_cidr: '10.0.4.0/22' overlaps network.vpc_cidr '10.0.0.0/16'; "
        "choose a client range outside the VPC"
    ) in message


def test_nat_count_above_az_count() -> None:
    message = error_of(base(network={"az_count": 2, "nat_gateways": 3}))
    assert "nat_gateways is 3 but az_count is 2; allowed is 0 to 2" in message


@pytest.mark.parametrize("az_count", [1, 4])
def test_az_count_out_of_range(az_count: int) -> None:
    message = error_of(base(network={"az_count": az_count}))
    assert "network.az_count: Input should be" in message
    assert f"(got {az_count})" in message


def test_nat_count_zero_is_allowed() -> None:
    """Private work needs only the VPC endpoints; the portal's ALB keys come through the relay."""
    assert parse_config(base(network={"nat_gateways": 0})).network.nat_gateways == 0


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:acm:eu-west-1:1111:certificate/00000000-0000-4000-8000-000000000001",
        "arn:aws:iam::111111111111:server-certificate/vpn",
        "not-an-arn",
    ],
)
def test_malformed_certificate_arn(arn: str) -> None:
    message = error_of(
        base(vpn={"server_certificate_arn": arn, "client_root_certificate_arn": CERT.format(2)})
    )
    assert f"vpn.server_certificate_arn: {arn!r} is not an ACM certificate ARN" in message
    assert "expected 'arn:aws:acm:<region>:<12-digit account>:certificate/<uuid>'" in message


def test_only_one_certificate_arn() -> None:
    message = error_of(base(vpn={"server_certificate_arn": CERT.format(1)}))
    assert "server_certificate_arn and client_root_certificate_arn must be set together" in message


def test_certificate_in_another_region() -> None:
    other = CERT.format(1).replace("eu-west-1", "us-east-1")
    message = error_of(
        production(
            vpn={"server_certificate_arn": other, "client_root_certificate_arn": CERT.format(2)}
        )
    )
    assert f"vpn.server_certificate_arn: {other!r} is in region 'us-east-1'" in message


def test_production_without_certificates() -> None:
    message = error_of(production(vpn={}))
    assert "vpn.server_certificate_arn and vpn.client_root_certificate_arn: required" in message


def test_production_without_alarm_emails() -> None:
    message = error_of(production(observability={}))
    assert "observability.alarm_emails: required in a production environment" in message


def test_malformed_alarm_email() -> None:
    message = error_of(base(observability={"alarm_emails": ["ops.example.com"]}))
    assert "observability.alarm_emails.0: 'ops.example.com' is not an email address" in message


def test_budget_must_be_positive() -> None:
    message = error_of(base(observability={"monthly_budget_usd": 0}))
    assert "observability.monthly_budget_usd: Input should be greater than 0 (got 0)" in message


def test_training_receive_count_out_of_range() -> None:
    message = error_of(base(training={"max_receive_count": 1}))
    assert (
        "training.max_receive_count: Input should be greater than or equal to 2 (got 1)" in message
    )


def test_production_with_destroy_removal_policy() -> None:
    message = error_of(production(removal_policy="destroy"))
    assert "removal_policy: 'destroy' is not allowed in a production environment" in message
    assert "allowed: 'retain'" in message


def test_production_without_account() -> None:
    data = production()
    del data["account"], data["region"]
    data["network"] = {}
    message = error_of(data)
    assert "account and region: required in a production environment" in message


def test_unknown_removal_policy() -> None:
    message = error_of(base(removal_policy="snapshot"))
    assert "removal_policy: Input should be 'retain' or 'destroy' (got 'snapshot')" in message


def test_unknown_top_level_key() -> None:
    message = error_of(base(vpc_cidr="10.0.0.0/16"))
    assert "vpc_cidr: unknown setting; allowed here: account, bastion," in message


def test_unknown_nested_key() -> None:
    message = error_of(base(network={"nat_gateway": 1}))
    assert (
        "network.nat_gateway: unknown setting; allowed here: availability_zones, az_count, "
        "nat_gateways, vpc_cidr"
    ) in message


def test_account_without_region() -> None:
    message = error_of(base(account="111111111111"))
    assert "account and region: set both" in message


def test_malformed_account_and_region() -> None:
    message = error_of(base(account="1234", region="Europe"))
    assert "account: '1234' is not a 12-digit AWS account id" in message
    assert "region: 'Europe' is not an AWS region such as 'eu-west-1'" in message


def test_region_requires_availability_zones() -> None:
    message = error_of(base(account="111111111111", region="eu-west-1"))
    assert "network.availability_zones: required when region is set" in message


def test_availability_zone_of_another_region() -> None:
    message = error_of(
        base(
            account="111111111111",
            region="eu-west-1",
            network={"availability_zones": ["eu-west-1a", "us-east-1b"]},
        )
    )
    assert "network.availability_zones: 'us-east-1b' is not a zone of region 'eu-west-1'" in message


def test_name_cloudformation_would_reject() -> None:
    message = error_of(base(name="Prod_1"))
    assert "name: 'Prod_1' is not allowed; use 2-20 lowercase letters" in message


def test_unknown_instance_type() -> None:
    message = error_of(base(bastion={"instance_type": "t4g.huge"}))
    assert "bastion.instance_type: 't4g.huge' is not an EC2 instance type" in message


def test_log_retention_not_supported_by_cloudwatch() -> None:
    message = error_of(base(log_retention_days=100))
    assert (
        "log_retention_days: 100 is not a CloudWatch Logs retention period; allowed: 1, 3"
        in message
    )


def test_reserved_tag_key() -> None:
    message = error_of(base(tags={"aws:owner": "me"}))
    assert "tags: tag key 'aws:owner' is not allowed" in message


def test_every_problem_is_reported_at_once() -> None:
    message = error_of(base(name="X", log_retention_days=2, vpn={"client_cidr": "10.20.0.0/22"}))
    assert message.count("\n  - ") == 3


@pytest.mark.parametrize(
    ("instance_type", "graviton"),
    [
        ("t4g.nano", True),
        ("c7gn.large", True),
        ("m7gd.xlarge", True),
        ("t3.micro", False),
        ("g4dn.xlarge", False),
        ("m7i.large", False),
    ],
)
def test_graviton_detection(instance_type: str, graviton: bool) -> None:
    assert is_graviton(instance_type) is graviton


def test_missing_environment_file_lists_available(tmp_path: Path) -> None:
    (tmp_path / "staging.toml").write_text("")
    with pytest.raises(ConfigError, match="available environments: staging"):
        load_config(tmp_path / "prod.toml")


def test_invalid_toml(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("network = [")
    with pytest.raises(ConfigError, match=re.escape(f"{path} is not valid TOML")):
        load_config(path)


def test_app_reports_bad_configuration_and_exits(tmp_path: Path) -> None:
    """app.py prints the problems (no traceback) and exits 2 before any synthesis starts."""
    result = subprocess.run(
        [sys.executable, "app.py"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PLATFORM_ENV": "does-not-exist"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert (
        "environment file" in result.stderr
        and "available environments: dev, example, pipeline, production, regulated, staging"
        in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_data_lake_defaults() -> None:
    settings = parse_config(base()).data_lake
    assert settings.backup_retention_days == 35
    assert settings.noncurrent_version_expiration_days == 90
    assert settings.intelligent_tiering_after_days == 0
    assert settings.efs_ia_after_days == 30
    assert settings.cors_allowed_origins == ()


@pytest.mark.parametrize("days", [6, 36501])
def test_backup_retention_out_of_range(days: int) -> None:
    message = error_of(base(data_lake={"backup_retention_days": days}))
    assert (
        f"data_lake.backup_retention_days: {days} days is out of range; allowed: 7 to 36500"
        in message
    )


@pytest.mark.parametrize("days", [0, 3651])
def test_noncurrent_version_expiration_out_of_range(days: int) -> None:
    message = error_of(base(data_lake={"noncurrent_version_expiration_days": days}))
    assert (
        f"data_lake.noncurrent_version_expiration_days: {days} days is out of range; "
        "allowed: 1 to 3650"
    ) in message


def test_intelligent_tiering_negative() -> None:
    message = error_of(base(data_lake={"intelligent_tiering_after_days": -1}))
    assert (
        "data_lake.intelligent_tiering_after_days: -1 days is out of range; allowed: 0 to 3650"
        in message
    )


def test_retention_that_is_not_a_number() -> None:
    message = error_of(base(data_lake={"backup_retention_days": "a month"}))
    assert "data_lake.backup_retention_days: Input should be a valid integer" in message
    assert "(got 'a month')" in message


def test_efs_transition_period_efs_does_not_offer() -> None:
    message = error_of(base(data_lake={"efs_ia_after_days": 45}))
    assert (
        "data_lake.efs_ia_after_days: 45 is not an EFS Infrequent Access transition period; "
        "allowed: 1, 7, 14, 30, 60, 90, 180, 270, 365 (days)"
    ) in message


@pytest.mark.parametrize(
    "origin",
    [
        "http://portal.example.com",
        "https://portal.example.com/",
        "https://portal.example.com/upload",
        "https://*.example.com",
        "*",
        "https://Portal.Example.com",
    ],
)
def test_cors_origin_that_is_not_an_https_origin(origin: str) -> None:
    message = error_of(base(data_lake={"cors_allowed_origins": [origin]}))
    assert f"data_lake.cors_allowed_origins.0: {origin!r} is not an https origin" in message
    assert "no path, no trailing slash and no wildcard" in message


def test_cors_origin_listed_twice() -> None:
    origin = "https://portal.example.com"
    message = error_of(base(data_lake={"cors_allowed_origins": [origin, origin]}))
    assert (
        "data_lake: cors_allowed_origins lists 'https://portal.example.com' more than once"
        in message
    )


def test_cors_origins_with_port_are_allowed() -> None:
    origins = ["https://portal.example.com", "https://portal.example.com:8443"]
    config = parse_config(base(data_lake={"cors_allowed_origins": origins}))
    assert config.data_lake.cors_allowed_origins == tuple(origins)


def test_unknown_data_lake_key() -> None:
    message = error_of(base(data_lake={"backup_days": 30}))
    assert (
        "data_lake.backup_days: unknown setting; allowed here: backup_retention_days, "
        "cors_allowed_origins, efs_ia_after_days, intelligent_tiering_after_days, "
        "noncurrent_version_expiration_days"
    ) in message


# --- portal ----------------------------------------------------------------------------------


def test_portal_defaults() -> None:
    settings = parse_config(base()).portal
    assert settings.instance_type == "t4g.small"
    assert is_graviton(settings.instance_type)
    assert (settings.min_capacity, settings.max_capacity) == (2, 4)
    assert settings.target_cpu_percent == 50
    assert settings.waf_rate_limit == 1000
    assert settings.certificate_arn is None
    assert settings.threat_protection is False


def test_portal_section_is_required() -> None:
    data = base()
    del data["portal"]
    assert "  - portal: required setting is missing" in error_of(data)


@pytest.mark.parametrize("setting", ["domain_name", "cognito_domain_prefix"])
def test_portal_names_are_required(setting: str) -> None:
    data = base()
    del data["portal"][setting]
    assert f"  - portal.{setting}: required setting is missing" in error_of(data)


@pytest.mark.parametrize(
    "domain", ["portal", "Portal.Example.com", "https://portal.example.com", "portal.example.com."]
)
def test_domain_name_that_is_not_a_host_name(domain: str) -> None:
    message = error_of(portal(domain_name=domain))
    assert f"portal.domain_name: {domain!r} is not a DNS host name" in message
    assert "such as 'portal.example.com'" in message


def test_portal_certificate_that_is_not_an_acm_arn() -> None:
    message = error_of(portal(certificate_arn="arn:aws:iam::111111111111:server-certificate/x"))
    assert (
        "portal.certificate_arn: 'arn:aws:iam::111111111111:server-certificate/x' is not an ACM"
        in (message)
    )


def test_portal_certificate_in_another_region() -> None:
    arn = CERT.format(3).replace("eu-west-1", "us-east-1")
    message = error_of(production(portal={**PORTAL, "certificate_arn": arn}))
    assert (
        f"portal.certificate_arn: {arn!r} is in region 'us-east-1' but the environment deploys "
        "to 'eu-west-1'"
    ) in message


def test_portal_certificate_in_the_environment_region_is_valid() -> None:
    config = parse_config(production(portal={**PORTAL, "certificate_arn": CERT.format(3)}))
    assert config.portal.certificate_arn == CERT.format(3)


@pytest.mark.parametrize(
    ("prefix", "problem"),
    [
        ("Dev-Portal", "is not a Cognito domain prefix"),
        ("-portal", "is not a Cognito domain prefix"),
        ("my-cognito-portal", "contains the reserved word 'cognito'"),
        ("aws-portal", "contains the reserved word 'aws'"),
    ],
)
def test_cognito_domain_prefix_cognito_refuses(prefix: str, problem: str) -> None:
    message = error_of(portal(cognito_domain_prefix=prefix))
    assert f"portal.cognito_domain_prefix: {prefix!r} {problem}" in message


def test_portal_instance_type_that_does_not_exist() -> None:
    message = error_of(portal(instance_type="t4g-small"))
    assert "portal.instance_type: 't4g-small' is not an EC2 instance type" in message


def test_portal_x86_instance_type_is_allowed() -> None:
    config = parse_config(portal(instance_type="t3.small"))
    assert not is_graviton(config.portal.instance_type)


@pytest.mark.parametrize(("setting", "value"), [("min_capacity", 0), ("max_capacity", 51)])
def test_capacity_out_of_range(setting: str, value: int) -> None:
    message = error_of(portal(**{setting: value}))
    assert f"portal.{setting}: Input should be" in message
    assert f"(got {value})" in message


@pytest.mark.parametrize(("low", "high"), [(5, 3), (2, 2)])
def test_min_capacity_not_below_max_capacity(low: int, high: int) -> None:
    message = error_of(portal(min_capacity=low, max_capacity=high))
    assert (
        f"portal: min_capacity {low} is not below max_capacity {high}; allowed: min_capacity < "
        "max_capacity (target tracking scales between them)"
    ) in message


def test_production_needs_a_portal_instance_per_zone() -> None:
    message = error_of(production(portal={**PORTAL, "min_capacity": 1}))
    assert (
        "portal.min_capacity: 1 is below network.az_count 2 in a production environment"
    ) in message


@pytest.mark.parametrize("percent", [5, 95])
def test_target_cpu_percent_out_of_range(percent: int) -> None:
    message = error_of(portal(target_cpu_percent=percent))
    assert "portal.target_cpu_percent: Input should be" in message
    assert f"(got {percent})" in message


@pytest.mark.parametrize("limit", [9, 2_000_000_001])
def test_waf_rate_limit_out_of_range(limit: int) -> None:
    message = error_of(portal(waf_rate_limit=limit))
    assert "portal.waf_rate_limit: Input should be" in message
    assert f"(got {limit})" in message


def test_threat_protection_must_be_a_boolean() -> None:
    message = error_of(portal(threat_protection="sometimes"))
    assert "portal.threat_protection: Input should be a valid boolean" in message


def test_unknown_portal_key() -> None:
    message = error_of(portal(mfa="optional"))
    assert "portal.mfa: unknown setting; allowed here: certificate_arn, cognito_domain_prefix" in (
        message
    )


# --- compliance packs ----------------------------------------------------------------------------


def test_nag_packs_default_to_aws_solutions_and_nist() -> None:
    assert parse_config(base()).compliance.packs == ("AwsSolutions", "NIST.800.53.R5")


def test_all_four_nag_packs_are_accepted() -> None:
    packs = ["AwsSolutions", "NIST.800.53.R5", "HIPAA.Security", "PCI.DSS.321"]
    assert parse_config(base(compliance={"packs": packs})).compliance.packs == tuple(packs)


def test_unknown_nag_pack_is_rejected_with_the_packs_allowed() -> None:
    message = error_of(base(compliance={"packs": ["AwsSolutions", "HIPAA"]}))
    assert "compliance.packs.1:" in message
    for allowed in ("'AwsSolutions'", "'NIST.800.53.R5'", "'HIPAA.Security'", "'PCI.DSS.321'"):
        assert allowed in message
    assert "(got 'HIPAA')" in message


def test_empty_or_repeated_nag_packs_are_rejected() -> None:
    assert "compliance.packs: list at least one pack" in error_of(base(compliance={"packs": []}))
    message = error_of(base(compliance={"packs": ["PCI.DSS.321", "PCI.DSS.321"]}))
    assert "compliance.packs: ['PCI.DSS.321', 'PCI.DSS.321'] names a pack twice" in message


def test_regulated_environment_is_the_example_with_every_pack() -> None:
    """environments/regulated.toml must not drift from the example it documents."""
    example = load_config(ROOT / "environments" / "example.toml").model_dump()
    regulated = load_config(ROOT / "environments" / "regulated.toml").model_dump()
    assert regulated.pop("compliance") == {
        "packs": ("AwsSolutions", "NIST.800.53.R5", "HIPAA.Security", "PCI.DSS.321")
    }
    example.pop("compliance")
    for config in (example, regulated):
        del config["name"], config["portal"]["cognito_domain_prefix"]
    assert regulated == example


# --- [serving] -----------------------------------------------------------------------------------


def test_serving_defaults_are_the_handlers_defaults() -> None:
    serving = parse_config(base()).serving
    assert serving.model_latency_alarm_ms == 1000
    assert serving.capture_sampling_percentage == 100
    assert serving.monitoring_instance_type == "ml.m5.large"
    assert serving.monitoring_schedule == "cron(0 * ? * * *)"
    assert serving.blue_green_bake_seconds == 600
    assert serving.max_payload_bytes == 4 * 1024 * 1024
    assert serving.price_overrides == {}


def test_alarm_prefix_derives_from_the_stack_prefix() -> None:
    assert parse_config(base()).alarm_prefix == "TrainingPlatform-dev-endpoint"


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"model_latency_alarm_ms": 0}, "serving.model_latency_alarm_ms"),
        ({"capture_sampling_percentage": 101}, "serving.capture_sampling_percentage"),
        (
            {"monitoring_instance_type": "m5.large"},
            "serving.monitoring_instance_type: 'm5.large' is not a SageMaker instance type",
        ),
        (
            {"monitoring_schedule": "hourly"},
            "serving.monitoring_schedule: 'hourly' is not a Model Monitor schedule",
        ),
        ({"blue_green_bake_seconds": 7200}, "serving.blue_green_bake_seconds"),
        ({"max_payload_bytes": 0}, "serving.max_payload_bytes"),
        (
            {"max_payload_bytes": 4_600_000},
            "serving: max_payload_bytes is 4600000; allowed: at most 4521984",
        ),
        ({"api_throttle_rate": 0}, "serving.api_throttle_rate"),
        (
            {"api_throttle_rate": 500, "api_throttle_burst": 100},
            "serving: api_throttle_burst 100 is below api_throttle_rate 500",
        ),
        (
            {"price_overrides": {"m5.large": 0.1}},
            "serving.price_overrides: 'm5.large' is not a SageMaker instance type",
        ),
        (
            {"price_overrides": {"ml.m5.large": -1.0}},
            "serving.price_overrides: the price of ml.m5.large is -1.0 USD per hour",
        ),
        ({"unknown": 1}, "serving.unknown: unknown setting; allowed here: api_throttle_burst"),
    ],
)
def test_serving_settings_are_validated_with_their_name(
    settings: dict[str, Any], expected: str
) -> None:
    assert expected in error_of(base(serving=settings))


def test_serving_settings_from_the_example_environment() -> None:
    serving = load_config(ROOT / "environments" / "example.toml").serving
    assert serving.monitoring_schedule == "cron(0 * ? * * *)"
    assert serving.api_throttle_burst >= serving.api_throttle_rate


# --- [retraining] --------------------------------------------------------------------------------


def test_retraining_defaults_are_the_contracts_defaults() -> None:
    from training_common import retraining as contract

    config = parse_config(base())
    assert config.retraining.default_schedule == contract.DEFAULT_SCHEDULE
    assert config.retraining.default_timezone == contract.DEFAULT_TIMEZONE
    flexible = contract.RetrainingPolicy.model_fields["flexible_window_minutes"].default
    assert config.retraining.flexible_window_minutes == flexible
    assert config.retraining.schedule_group is None
    assert config.schedule_group == "dev-retraining"  # <environment name>-retraining


def test_schedule_group_can_be_named() -> None:
    config = parse_config(base(retraining={"schedule_group": "shared.retraining_1"}))
    assert config.schedule_group == "shared.retraining_1"


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            {"default_schedule": "rate(30 minutes)"},
            "retraining.default_schedule: 'rate(30 minutes)' is not a retraining schedule: a "
            "retraining schedule runs at most once an hour",
        ),
        (
            {"default_schedule": "cron(0 3 * * MON *)"},
            "retraining.default_schedule: 'cron(0 3 * * MON *)' is not a retraining schedule: "
            "give either day-of-month or day-of-week",
        ),
        (
            {"default_schedule": "cron(*/5 * ? * * *)"},
            "retraining.default_schedule: 'cron(*/5 * ? * * *)' is not a retraining schedule: "
            "the minutes field must be one number",
        ),
        (
            {"default_schedule": "at(2026-12-07T03:00:00)"},
            "retraining.default_schedule: 'at(2026-12-07T03:00:00)' is not a retraining "
            "schedule: expected rate(...) or cron(...)",
        ),
        (
            {"default_timezone": "Mars/Olympus"},
            "retraining.default_timezone: unknown time zone 'Mars/Olympus': use an IANA name",
        ),
        ({"flexible_window_minutes": -1}, "retraining.flexible_window_minutes"),
        ({"flexible_window_minutes": 1441}, "retraining.flexible_window_minutes"),
        (
            {"schedule_group": "tenants/acme"},
            "retraining.schedule_group: 'tenants/acme' is not an EventBridge Scheduler schedule "
            "group name",
        ),
        ({"schedule_group": "x" * 65}, "retraining.schedule_group"),
        (
            {"schedule_group": "default"},
            "retraining.schedule_group: 'default' is not an EventBridge Scheduler schedule group "
            "name for the platform",
        ),
        ({"weekly": True}, "retraining.weekly: unknown setting; allowed here: default_schedule"),
    ],
)
def test_retraining_settings_are_validated_with_their_name(
    settings: dict[str, Any], expected: str
) -> None:
    assert expected in error_of(base(retraining=settings))


@pytest.mark.parametrize(
    "expression",
    [
        "cron(0 3 ? * MON *)",
        "cron(15 2 1 * ? *)",
        "cron(0 3 * * MON *)",
        "cron(*/5 * ? * * *)",
        "cron(0 3 ? * MON)",
        "rate(1 hour)",
        "rate(1 hours)",
        "rate(2 hour)",
        "rate(60 minutes)",
        "rate(59 minutes)",
        "rate(7 days)",
        "at(2026-12-07T03:00:00)",
        "weekly",
    ],
)
def test_schedule_rules_agree_with_the_contract(expression: str) -> None:
    """The config repeats training_common's rule (the CDK app doesn't import the Lambda
    package): the same expressions pass and fail, with the same reason."""
    from training_common import retraining as contract

    from training_platform import config

    ours = config.schedule_expression_problem(expression)
    assert ours == contract.schedule_expression_problem(expression)
    assert config.timezone_problem("Europe/Berlin") is None
    assert config.timezone_problem("Mars/Olympus") == contract.timezone_problem("Mars/Olympus")


def test_retraining_settings_of_the_example_environment() -> None:
    config = load_config(ROOT / "environments" / "example.toml")
    assert config.retraining.default_schedule == "cron(0 3 ? * MON *)"
    assert config.schedule_group == "example-retraining"
