"""The portal fleet: an Auto Scaling group of Amazon Linux 2023 instances that run ``portal_app``.

The instances need nothing from the internet to start: the application, the shared
``training_common`` package and a wheelhouse of ``portal/requirements.txt`` (for both
architectures and Amazon Linux 2023's ``python3.11``) come from one S3 asset that ``make build``
zips into ``build/portal-bundle.zip``; ``python3.11`` itself comes from the Amazon Linux
repositories, which are S3 buckets reachable through the VPC's S3 gateway endpoint. The
user data installs it, writes the environment file and a systemd unit (``Restart=always``, an
unprivileged user, port 8080), waits for ``/health`` and signals CloudFormation, so a
deployment whose new instances never become healthy rolls back.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import Duration, Tags
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from training_platform.config import is_graviton
from training_platform.constructs.handler import require_archive
from training_platform.constructs.nag import acknowledge
from training_platform.constructs.tenant_access import COMPONENT_TAG_KEY, PORTAL_COMPONENT

ROOT = Path(__file__).resolve().parents[2]
BUNDLE_ZIP = ROOT / "build" / "portal-bundle.zip"
PORT = 8080
HEALTH_CHECK_PATH = "/health"
ROOT_VOLUME_GIB = 10
APP_DIR = "/opt/portal/app"
VENV_DIR = "/opt/portal/venv"
ENV_FILE = "/etc/portal/portal.env"
SERVICE_USER = "portal"
SSM_MANAGED_POLICY = "AmazonSSMManagedInstanceCore"
# New instances must answer /health within this long, or CloudFormation rolls the change back.
SIGNAL_TIMEOUT = Duration.minutes(15)
HEALTH_CHECK_GRACE = Duration.minutes(5)

SYSTEMD_UNIT = f"""[Unit]
Description=AI training platform portal (portal_app)
After=network-online.target
Wants=network-online.target

[Service]
User={SERVICE_USER}
Group={SERVICE_USER}
WorkingDirectory={APP_DIR}
EnvironmentFile={ENV_FILE}
Environment=PYTHONDONTWRITEBYTECODE=1
ExecStart={VENV_DIR}/bin/python3.11 -m portal_app
Restart=always
RestartSec=5
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
CapabilityBoundingSet=

[Install]
WantedBy=multi-user.target
"""


def portal_bundle(scope: Construct, id: str) -> s3_assets.Asset:
    """The S3 asset of ``build/portal-bundle.zip`` (see ``make build``), uploaded as it is."""
    require_archive(
        BUNDLE_ZIP,
        ["portal_app/__main__.py", "training_common/__init__.py", "requirements.txt", "wheels/"],
    )
    return s3_assets.Asset(scope, id, path=str(BUNDLE_ZIP))


def environment_file(environment: Mapping[str, str]) -> str:
    """``KEY=value`` lines for systemd's EnvironmentFile, in a stable order."""
    return "".join(f"{key}={value}\n" for key, value in sorted(environment.items()))


class PortalFleet(Construct):
    """Launch template, instance role and Auto Scaling group of the portal.

    ``role`` is tagged ``training-platform-component = portal`` (the tenant role trusts only
    principals so tagged); ``policy`` is its customer managed policy, to which the stack adds what
    the portal needs; ``security_group`` admits nothing until the stack allows the load balancer;
    ``launch_template`` (IMDSv2 only, hop limit 1, encrypted gp3 root volume, detailed monitoring)
    and ``auto_scaling_group`` (private subnets of every AZ, ELB health checks, rolling
    replacement whenever the launch template changes, target tracking on CPU).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        instance_type: str,
        min_capacity: int,
        max_capacity: int,
        target_cpu_percent: int,
        environment: Mapping[str, str],
    ) -> None:
        super().__init__(scope, id)
        self.bundle = portal_bundle(self, "Bundle")

        self.role = iam.Role(
            self,
            "InstanceRole",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="The portal instances: platform administration and tenant sessions",
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name(SSM_MANAGED_POLICY)],
        )
        Tags.of(self.role).add(COMPONENT_TAG_KEY, PORTAL_COMPONENT)
        acknowledge(
            self.role,
            f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{SSM_MANAGED_POLICY}]",
            "Session Manager is the only way onto a portal instance (no SSH, no inbound port); "
            "AmazonSSMManagedInstanceCore is AWS's minimum for the SSM agent and AWS keeps it in "
            "step with the agent. It grants no access to platform or tenant data.",
        )
        self.policy = iam.ManagedPolicy(
            self,
            "InstancePolicy",
            description="What the portal instances do with their own role",
            roles=[self.role],
            statements=[
                iam.PolicyStatement(
                    sid="ReadTheApplicationBundle",
                    actions=["s3:GetObject"],
                    resources=[self.bundle.bucket.arn_for_objects(self.bundle.s3_object_key)],
                ),
            ],
        )

        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="Portal instances: the application port from the load balancer only",
            allow_all_outbound=False,
        )
        # AWS APIs only: the interface endpoints (the ALB key relay included) and the S3 gateway
        # endpoint, whose addresses are a regional prefix list synth cannot know offline.
        self.security_group.add_egress_rule(
            ec2.Peer.any_ipv4(),
            ec2.Port.tcp(443),
            "HTTPS to AWS APIs (interface endpoints, S3 gateway endpoint)",
        )

        cpu = (
            ec2.AmazonLinuxCpuType.ARM_64
            if is_graviton(instance_type)
            else ec2.AmazonLinuxCpuType.X86_64
        )
        self.user_data = ec2.UserData.for_linux()
        self.launch_template = ec2.LaunchTemplate(
            self,
            "LaunchTemplate",
            instance_type=ec2.InstanceType(instance_type),
            machine_image=ec2.MachineImage.latest_amazon_linux2023(cpu_type=cpu),
            role=self.role,
            security_group=self.security_group,
            user_data=self.user_data,
            require_imdsv2=True,
            http_tokens=ec2.LaunchTemplateHttpTokens.REQUIRED,
            http_put_response_hop_limit=1,
            http_endpoint=True,
            detailed_monitoring=True,
            block_devices=[
                ec2.BlockDevice(
                    device_name="/dev/xvda",
                    volume=ec2.BlockDeviceVolume.ebs(
                        ROOT_VOLUME_GIB,
                        encrypted=True,
                        volume_type=ec2.EbsDeviceVolumeType.GP3,
                        delete_on_termination=True,
                    ),
                )
            ],
        )

        self.auto_scaling_group = autoscaling.AutoScalingGroup(
            self,
            "Group",
            vpc=vpc,
            vpc_subnets=subnets,
            launch_template=self.launch_template,
            min_capacity=min_capacity,
            max_capacity=max_capacity,
            health_checks=autoscaling.HealthChecks.with_additional_checks(
                additional_types=[autoscaling.AdditionalHealthCheckType.ELB],
                grace_period=HEALTH_CHECK_GRACE,
            ),
            signals=autoscaling.Signals.wait_for_min_capacity(timeout=SIGNAL_TIMEOUT),
            # CloudFormation replaces the instances in batches whenever the launch template
            # (image, user data, asset, type) changes, and rolls back if they never signal.
            update_policy=autoscaling.UpdatePolicy.rolling_update(
                max_batch_size=1,
                min_instances_in_service=min(min_capacity, max_capacity - 1),
            ),
            default_instance_warmup=Duration.minutes(3),
            cooldown=Duration.minutes(5),
            # In-service and desired counts for the operators' dashboard (no extra charge).
            group_metrics=[autoscaling.GroupMetrics.all()],
        )
        self.auto_scaling_group.scale_on_cpu_utilization(
            "CpuTarget", target_utilization_percent=target_cpu_percent
        )
        acknowledge(
            self.auto_scaling_group,
            "AwsSolutions-AS3",
            "Launch and terminate events (and their errors) reach EventBridge for every Auto "
            "Scaling group without configuration, and the Observability stack alarms on any "
            "unhealthy portal host; an SNS topic per group would duplicate those paths.",
        )

        acknowledge(
            self.role,
            "NIST.800.53.R5-IAMNoInlinePolicy",
            "The role's only inline statement is the one CDK writes for the group's creation and "
            "update signals: cloudformation:SignalResource on this stack alone. Everything else "
            "is in customer managed policies.",
        )
        self._bootstrap(environment)

    def _bootstrap(self, environment: Mapping[str, str]) -> None:
        user_data = self.user_data
        # A trap on EXIT reports the script's exit code to CloudFormation (cfn-signal).
        user_data.add_signal_on_exit_command(self.auto_scaling_group)
        user_data.add_commands(
            "set -euo pipefail",
            "dnf install -y python3.11 python3.11-pip aws-cfn-bootstrap",
            f"id {SERVICE_USER} >/dev/null 2>&1 || useradd --system --no-create-home "
            f"--home-dir /opt/portal --shell /sbin/nologin {SERVICE_USER}",
        )
        archive = user_data.add_s3_download_command(
            bucket=self.bundle.bucket,
            bucket_key=self.bundle.s3_object_key,
            local_file="/opt/portal/bundle.zip",
        )
        env_file = environment_file(environment)
        user_data.add_commands(
            f"rm -rf {APP_DIR} {VENV_DIR} && mkdir -p {APP_DIR}",
            f"python3.11 -m zipfile -e {archive} {APP_DIR}",
            f"python3.11 -m venv {VENV_DIR}",
            f"{VENV_DIR}/bin/python3.11 -m pip install --no-index --find-links {APP_DIR}/wheels "
            f"-r {APP_DIR}/requirements.txt",
            f"{VENV_DIR}/bin/python3.11 -m compileall -q {APP_DIR}/portal_app "
            f"{APP_DIR}/training_common",
            f"install -d -m 0750 -o root -g {SERVICE_USER} /etc/portal",
            f"cat > {ENV_FILE} <<'PORTAL_ENV'\n{env_file}PORTAL_ENV",
            f"chown root:{SERVICE_USER} {ENV_FILE} && chmod 0640 {ENV_FILE}",
            f"cat > /etc/systemd/system/portal.service <<'PORTAL_UNIT'\n{SYSTEMD_UNIT}PORTAL_UNIT",
            "systemctl daemon-reload",
            "systemctl enable --now portal.service",
            # Signal success only once the application answers its health check locally.
            "for attempt in $(seq 1 60); do",
            f"  if curl -fsS http://127.0.0.1:{PORT}{HEALTH_CHECK_PATH}; then exit 0; fi",
            "  sleep 5",
            "done",
            "echo 'portal did not become healthy' >&2",
            "exit 1",
        )
