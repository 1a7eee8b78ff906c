"""Builds the CDK app for one validated environment configuration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import App, Environment, RemovalPolicy, Stack, Tags
from constructs import Construct

from training_platform.config import PlatformConfig
from training_platform.constructs.logs import retain_function_logs
from training_platform.constructs.nag import add_nag_packs
from training_platform.stacks.data_lake import DataLakeStack
from training_platform.stacks.network import NetworkStack
from training_platform.stacks.observability import PLATFORM_TAG, ObservabilityStack, PortalMetrics
from training_platform.stacks.portal import PortalStack
from training_platform.stacks.training import TrainingStack


@dataclass(frozen=True)
class Platform:
    """The app and its stacks, as tests and app.py see them."""

    app: App
    network: NetworkStack
    data_lake: DataLakeStack
    training: TrainingStack
    portal: PortalStack
    observability: ObservabilityStack

    @property
    def stacks(self) -> list[Stack]:
        return [self.network, self.data_lake, self.training, self.portal, self.observability]


def removal_policy(config: PlatformConfig) -> RemovalPolicy:
    return RemovalPolicy.RETAIN if config.removal_policy == "retain" else RemovalPolicy.DESTROY


def build_platform(
    config: PlatformConfig, *, outdir: str | None = None, context: dict[str, Any] | None = None
) -> Platform:
    """Create every stack of the platform for ``config``, with its nag packs registered
    (``compliance.packs``).

    An unacknowledged nag finding makes ``app.synth()`` raise ``ValidationFailed``.
    """
    app = App(outdir=outdir, context=context)
    stacks = add_platform(app, config)
    add_nag_packs(app, config.compliance.packs)
    return Platform(app=app, **stacks)


def add_platform(scope: Construct, config: PlatformConfig) -> dict[str, Any]:
    """The platform's five stacks for ``config`` under ``scope`` (an app, or a pipeline's
    stage), tagged and with every function's log retention set; by name (``network``, ...)."""
    app = scope
    env = (
        Environment(account=config.account, region=config.region)
        if config.account is not None
        else None
    )
    if config.account is not None and config.network.availability_zones is not None:
        # What `cdk.context.json` would hold after a lookup: CDK checks a VPC's zones against
        # the stack's, and without this it asks AWS for them (synth would need credentials).
        scope.node.set_context(
            f"availability-zones:account={config.account}:region={config.region}",
            list(config.network.availability_zones),
        )
    prefix = config.stack_prefix
    policy = removal_policy(config)

    network = NetworkStack(
        app,
        f"{prefix}-Network",
        stack_name=f"{prefix}-Network",  # the same in a pipeline stage as with make deploy
        description="AI training platform: VPC, endpoints, flow logs, Client VPN and bastion",
        env=env,
        network=config.network,
        vpn=config.vpn,
        bastion=config.bastion,
        log_retention_days=config.log_retention_days,
        removal_policy=policy,
    )

    data_lake = DataLakeStack(
        app,
        f"{prefix}-DataLake",
        stack_name=f"{prefix}-DataLake",  # the same in a pipeline stage as with make deploy
        description=(
            "AI training platform: KMS keys, S3 buckets, EFS, AWS Backup and the tenant access role"
        ),
        env=env,
        vpc=network.vpc,
        private_subnets=network.private_subnets,
        admin_security_group=network.admin_security_group,
        training_security_group=network.training_security_group,
        settings=config.data_lake,
        log_retention_days=config.log_retention_days,
        removal_policy=policy,
    )
    data_lake.allow_admin_mount(network.bastion.role)

    training = TrainingStack(
        app,
        f"{prefix}-Training",
        stack_name=f"{prefix}-Training",  # the same in a pipeline stage as with make deploy
        description=(
            "AI training platform: queues, tables, handlers and roles that run SageMaker jobs"
        ),
        env=env,
        vpc=network.vpc,
        private_subnets=network.private_subnets,
        training_security_group=network.training_security_group,
        data_lake=data_lake,
        settings=config.training,
        serving=config.serving,
        schedule_group=config.schedule_group,
        alarm_prefix=config.alarm_prefix,
        log_retention_days=config.log_retention_days,
        removal_policy=policy,
    )

    portal = PortalStack(
        app,
        f"{prefix}-Portal",
        stack_name=f"{prefix}-Portal",  # the same in a pipeline stage as with make deploy
        description=(
            "AI training platform: tenants' portal (Cognito, ALB with WAF, Auto Scaling fleet)"
        ),
        env=env,
        vpc=network.vpc,
        private_subnets=network.private_subnets,
        public_subnets=network.public_subnets,
        data_lake=data_lake,
        training=training,
        settings=config.portal,
        serving=config.serving,
        retraining=config.retraining,
        log_retention_days=config.log_retention_days,
        removal_policy=policy,
    )

    observability = ObservabilityStack(
        app,
        f"{prefix}-Observability",
        stack_name=f"{prefix}-Observability",  # the same in a pipeline stage as with make deploy
        description="AI training platform: audit trail, dashboard, alarms and cost budget",
        env=env,
        data_lake=data_lake,
        training=training,
        portal=PortalMetrics(
            load_balancer=portal.load_balancer,
            target_group=portal.target_group,
            auto_scaling_group_name=portal.auto_scaling_group.auto_scaling_group_name,
        ),
        settings=config.observability,
        log_retention_days=config.log_retention_days,
        removal_policy=policy,
    )

    retain_function_logs(app, retention_days=config.log_retention_days, removal_policy=policy)
    Tags.of(app).add(*PLATFORM_TAG)
    Tags.of(app).add("environment", config.name)
    for key, value in config.tags.items():
        Tags.of(app).add(key, value)
    return {
        "network": network,
        "data_lake": data_lake,
        "training": training,
        "portal": portal,
        "observability": observability,
    }
