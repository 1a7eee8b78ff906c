"""Network stack: the private VPC, its endpoints and flow logs, and the administrators' way in."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from constructs import Construct

from training_platform.config import BastionSettings, NetworkSettings, VpnSettings
from training_platform.constructs.admin_access import AdminAccess
from training_platform.constructs.logs import LogsKey, encrypted_log_group
from training_platform.constructs.nag import acknowledge

PUBLIC_SUBNETS = "Public"
PRIVATE_SUBNETS = "Private"

# What private workloads call when the VPC has no NAT gateway. Each one is a regional service
# that a stack in this app calls from inside the VPC (handlers, portal fleet, bastion).
INTERFACE_ENDPOINTS: dict[str, ec2.InterfaceVpcEndpointAwsService] = {
    "SageMakerApi": ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_API,
    "SageMakerRuntime": ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_RUNTIME,
    "Sts": ec2.InterfaceVpcEndpointAwsService.STS,
    "Sqs": ec2.InterfaceVpcEndpointAwsService.SQS,
    "Sns": ec2.InterfaceVpcEndpointAwsService.SNS,
    "EcrApi": ec2.InterfaceVpcEndpointAwsService.ECR,
    "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
    "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    "Monitoring": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_MONITORING,
    "Ssm": ec2.InterfaceVpcEndpointAwsService.SSM,
    "SsmMessages": ec2.InterfaceVpcEndpointAwsService.SSM_MESSAGES,
    "Ec2Messages": ec2.InterfaceVpcEndpointAwsService.EC2_MESSAGES,
    "Kms": ec2.InterfaceVpcEndpointAwsService.KMS,
    "XRay": ec2.InterfaceVpcEndpointAwsService.XRAY,
    "CognitoIdp": ec2.InterfaceVpcEndpointAwsService.COGNITO_IDP,
    "CloudFormation": ec2.InterfaceVpcEndpointAwsService.CLOUDFORMATION,
    "Lambda": ec2.InterfaceVpcEndpointAwsService.LAMBDA_,
    # The retraining handler creates, updates and deletes tenants' schedules (CDK names no
    # constant for EventBridge Scheduler's endpoint, com.amazonaws.<region>.scheduler).
    "Scheduler": ec2.InterfaceVpcEndpointAwsService("scheduler"),
}


class NetworkStack(Stack):
    """VPC over 2-3 AZs with public subnets only for the load balancer and NAT gateways.

    Attributes other stacks receive: ``vpc``, ``private_subnets`` and ``public_subnets``
    (selections),
    ``endpoints_security_group``, ``admin_security_group`` and ``training_security_group``
    (the two groups EFS trusts).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        network: NetworkSettings,
        vpn: VpnSettings,
        bastion: BastionSettings,
        log_retention_days: int,
        removal_policy: RemovalPolicy,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, id, **kwargs)  # type: ignore[arg-type]

        private_type = (
            ec2.SubnetType.PRIVATE_WITH_EGRESS
            if network.nat_gateways
            else ec2.SubnetType.PRIVATE_ISOLATED
        )
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(network.vpc_cidr),
            max_azs=None if network.availability_zones else network.az_count,
            availability_zones=list(network.availability_zones)
            if network.availability_zones
            else None,
            nat_gateways=network.nat_gateways,
            restrict_default_security_group=True,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name=PUBLIC_SUBNETS,
                    subnet_type=ec2.SubnetType.PUBLIC,
                    cidr_mask=24,
                    map_public_ip_on_launch=False,
                ),
                ec2.SubnetConfiguration(
                    name=PRIVATE_SUBNETS, subnet_type=private_type, cidr_mask=20
                ),
            ],
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3),
                "DynamoDb": ec2.GatewayVpcEndpointOptions(
                    service=ec2.GatewayVpcEndpointAwsService.DYNAMODB
                ),
            },
        )
        self.private_subnets = ec2.SubnetSelection(subnet_group_name=PRIVATE_SUBNETS)
        self.public_subnets = ec2.SubnetSelection(subnet_group_name=PUBLIC_SUBNETS)

        for index, _ in enumerate(self.vpc.public_subnets, start=1):
            route = self.vpc.node.find_child(f"{PUBLIC_SUBNETS}Subnet{index}").node.find_child(
                "DefaultRoute"
            )
            acknowledge(
                route,
                "NIST.800.53.R5-VPCNoUnrestrictedRouteToIGW",
                "Public subnets exist only for the internet-facing load balancer and the NAT "
                "gateways; nothing else is placed there and they assign no public IPs.",
            )

        # Flow logs: all traffic, to a KMS-encrypted log group with the configured retention.
        self.logs_key = LogsKey(self, "LogsKey", removal_policy=removal_policy).key
        flow_log_group = encrypted_log_group(
            self,
            "FlowLogGroup",
            key=self.logs_key,
            retention_days=log_retention_days,
            removal_policy=removal_policy,
        )
        flow_log_role = iam.Role(
            self,
            "FlowLogRole",
            assumed_by=iam.ServicePrincipal("vpc-flow-logs.amazonaws.com"),
            description="Lets VPC Flow Logs write to the VPC's flow log group",
        )
        acknowledge(
            flow_log_role,
            "NIST.800.53.R5-IAMNoInlinePolicy",
            "The flow log role's only policy is the one CDK generates for it, scoped to the "
            "flow log group; an inline policy cannot be attached to another principal by mistake.",
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_log_group, flow_log_role),
            traffic_type=ec2.FlowLogTrafficType.ALL,
            max_aggregation_interval=ec2.FlowLogMaxAggregationInterval.ONE_MINUTE,
        )

        # Interface endpoints: HTTPS from inside the VPC only.
        self.endpoints_security_group = ec2.SecurityGroup(
            self,
            "EndpointsSecurityGroup",
            vpc=self.vpc,
            description="Interface VPC endpoints: HTTPS from inside the VPC only",
            allow_all_outbound=False,
        )
        self.endpoints_security_group.add_ingress_rule(
            ec2.Peer.ipv4(network.vpc_cidr),
            ec2.Port.tcp(443),
            "HTTPS from workloads inside the VPC",
        )
        self.interface_endpoints = {
            name: self.vpc.add_interface_endpoint(
                name,
                service=service,
                subnets=self.private_subnets,
                security_groups=[self.endpoints_security_group],
                private_dns_enabled=True,
                open=False,
            )
            for name, service in INTERFACE_ENDPOINTS.items()
        }

        # Training jobs run in the VPC with network isolation; this group is theirs (EFS trusts it).
        self.training_security_group = ec2.SecurityGroup(
            self,
            "TrainingSecurityGroup",
            vpc=self.vpc,
            description="SageMaker training jobs (network isolation) and their EFS access",
            allow_all_outbound=False,
        )
        self.training_security_group.add_egress_rule(
            ec2.Peer.ipv4(network.vpc_cidr), ec2.Port.tcp(2049), "NFS to EFS mount targets"
        )
        # A training job in a VPC reads its input from S3, writes its output and checkpoints
        # there and pulls its image from ECR through its own network interfaces: the S3 gateway
        # endpoint (a regional prefix list synth cannot know offline) and the interface
        # endpoints. The containers themselves are network isolated and reach none of it.
        self.training_security_group.add_egress_rule(
            ec2.Peer.any_ipv4(),
            ec2.Port.tcp(443),
            "HTTPS to S3 (gateway endpoint), ECR and KMS for job input, output and images",
        )
        self.training_security_group.add_egress_rule(
            self.training_security_group,
            ec2.Port.all_tcp(),
            "Distributed training: traffic between the instances of one job",
        )
        self.training_security_group.add_ingress_rule(
            self.training_security_group,
            ec2.Port.all_tcp(),
            "Distributed training: traffic between the instances of one job",
        )

        access = AdminAccess(
            self,
            "AdminAccess",
            vpc=self.vpc,
            vpc_cidr=network.vpc_cidr,
            subnets=self.private_subnets,
            vpn=vpn,
            bastion=bastion,
            logs_key=self.logs_key,
            log_retention_days=log_retention_days,
            removal_policy=removal_policy,
        )
        self.admin_security_group = access.admin_security_group
        self.bastion = access.bastion
        self.client_vpn = access.client_vpn
