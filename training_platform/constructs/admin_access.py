"""The administrators' way in: AWS Client VPN (mutual TLS) and a private bastion host."""

from __future__ import annotations

import ipaddress

from aws_cdk import Annotations, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from constructs import Construct

from training_platform.config import BastionSettings, VpnSettings, is_graviton
from training_platform.constructs.logs import encrypted_log_group
from training_platform.constructs.nag import acknowledge


class AdminAccess(Construct):
    """Client VPN endpoint, the administrators' security group and the bastion host in it.

    ``admin_security_group`` is the group that stacks holding critical data (EFS) trust. The
    bastion is its only member. It admits SSH only from the Client VPN endpoint's security group:
    Client VPN translates each client's address (from the VPN client range) to the endpoint's
    network interface in the VPC, so a rule on the client range itself would never match.
    Session Manager needs no inbound rule at all.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        vpc: ec2.IVpc,
        vpc_cidr: str,
        subnets: ec2.SubnetSelection,
        vpn: VpnSettings,
        bastion: BastionSettings,
        logs_key: kms.IKey,
        log_retention_days: int,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, id)

        self.admin_security_group = ec2.SecurityGroup(
            self,
            "AdminSecurityGroup",
            vpc=vpc,
            description="Administrator hosts (the bastion); trusted by EFS for NFS",
            allow_all_outbound=False,
        )
        # HTTPS to AWS APIs: the interface endpoints (SSM, logs) and S3 through the gateway
        # endpoint, whose addresses are a regional prefix list that synth cannot know offline.
        self.admin_security_group.add_egress_rule(
            ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to AWS APIs (endpoints, S3 gateway)"
        )
        self.admin_security_group.add_egress_rule(
            ec2.Peer.ipv4(vpc_cidr), ec2.Port.tcp(2049), "NFS to EFS mount targets"
        )

        self.client_vpn: ec2.ClientVpnEndpoint | None = None
        if vpn.enabled:
            self.client_vpn = self._client_vpn(
                vpc=vpc,
                vpc_cidr=vpc_cidr,
                subnets=subnets,
                vpn=vpn,
                logs_key=logs_key,
                log_retention_days=log_retention_days,
                removal_policy=removal_policy,
            )
        else:
            Annotations.of(self).add_info(
                "No Client VPN endpoint: vpn.server_certificate_arn and "
                "vpn.client_root_certificate_arn are not set. Administrators reach the bastion "
                "through Session Manager only."
            )

        architecture = (
            ec2.AmazonLinuxCpuType.ARM_64
            if is_graviton(bastion.instance_type)
            else ec2.AmazonLinuxCpuType.X86_64
        )
        self.bastion = ec2.BastionHostLinux(
            self,
            "Bastion",
            vpc=vpc,
            subnet_selection=subnets,
            security_group=self.admin_security_group,
            instance_type=ec2.InstanceType(bastion.instance_type),
            machine_image=ec2.MachineImage.latest_amazon_linux2023(cpu_type=architecture),
            require_imdsv2=True,
            block_devices=[
                ec2.BlockDevice(
                    device_name="/dev/xvda",
                    volume=ec2.BlockDeviceVolume.ebs(
                        8, encrypted=True, volume_type=ec2.EbsDeviceVolumeType.GP3
                    ),
                )
            ],
        )
        instance = self.bastion.instance
        instance.instance.monitoring = True
        instance.instance.ebs_optimized = True
        if self.client_vpn is not None:
            self.admin_security_group.connections.allow_from(
                self.client_vpn, ec2.Port.tcp(22), "SSH from administrators on the Client VPN"
            )
        acknowledge(
            instance,
            "AwsSolutions-EC29",
            "The bastion is a stateless, replaceable jump host (no data on it); termination "
            "protection would only block cdk destroy and instance replacement on AMI updates.",
        )
        session_manager = (
            "Session Manager's agent needs ssmmessages:*, ec2messages:* and "
            "ssm:UpdateInstanceInformation on '*' (these actions have no resource-level "
            "permissions); the statements are the ones CDK's BastionHostLinux writes."
        )
        for rule in (
            "AwsSolutions-IAM5[Action::ssmmessages:*]",
            "AwsSolutions-IAM5[Action::ec2messages:*]",
            "AwsSolutions-IAM5[Resource::*]",
            "NIST.800.53.R5-IAMNoInlinePolicy",
            "NIST.800.53.R5-IAMPolicyNoStatementsWithFullAccess",
        ):
            acknowledge(self.bastion.role, rule, session_manager)

    def _client_vpn(
        self,
        *,
        vpc: ec2.IVpc,
        vpc_cidr: str,
        subnets: ec2.SubnetSelection,
        vpn: VpnSettings,
        logs_key: kms.IKey,
        log_retention_days: int,
        removal_policy: RemovalPolicy,
    ) -> ec2.ClientVpnEndpoint:
        assert vpn.server_certificate_arn and vpn.client_root_certificate_arn
        log_group = encrypted_log_group(
            self,
            "VpnConnectionLogs",
            key=logs_key,
            retention_days=log_retention_days,
            removal_policy=removal_policy,
        )
        vpn_security_group = ec2.SecurityGroup(
            self,
            "VpnSecurityGroup",
            vpc=vpc,
            description="Client VPN endpoint: administrator traffic into the VPC",
            allow_all_outbound=False,
        )
        endpoint = vpc.add_client_vpn_endpoint(
            "ClientVpn",
            cidr=vpn.client_cidr,
            server_certificate_arn=vpn.server_certificate_arn,
            client_certificate_arn=vpn.client_root_certificate_arn,
            split_tunnel=True,
            vpc_subnets=subnets,
            security_groups=[vpn_security_group],
            authorize_all_users_to_vpc_cidr=False,
            self_service_portal=False,
            logging=True,
            log_group=log_group,
            dns_servers=[vpc_resolver(vpc_cidr)],
            session_timeout=ec2.ClientVpnSessionTimeout.EIGHT_HOURS,
            description="Administrators' access to the AI training platform (mutual TLS)",
        )
        endpoint.add_authorization_rule(
            "VpcOnly",
            cidr=vpc_cidr,
            description="VPN clients may reach the VPC and nothing else",
        )
        vpn_security_group.add_egress_rule(
            ec2.Peer.ipv4(vpc_cidr), ec2.Port.tcp(22), "SSH to the bastion"
        )
        vpn_security_group.add_egress_rule(
            ec2.Peer.ipv4(vpc_cidr), ec2.Port.udp(53), "DNS to the VPC resolver"
        )
        vpn_security_group.add_egress_rule(
            ec2.Peer.ipv4(vpc_cidr), ec2.Port.tcp(53), "DNS to the VPC resolver"
        )
        return endpoint


def vpc_resolver(vpc_cidr: str) -> str:
    """The Amazon-provided DNS resolver of a VPC: its base address plus two."""
    return str(ipaddress.IPv4Network(vpc_cidr).network_address + 2)
