"""EFS for the critical training source data: administrators write it, training jobs read it."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_efs as efs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

# Both access points root at this directory. Administrators own it; training is in its group,
# which may read and traverse (0750), so training jobs read what administrators wrote and
# cannot change it. Neither access point is root on the file system.
DATA_DIRECTORY = "/training-data"
ADMIN_POSIX_USER = efs.PosixUser(uid="4000", gid="4000")
TRAINING_POSIX_USER = efs.PosixUser(uid="4001", gid="4000")
DATA_DIRECTORY_OWNER = efs.Acl(owner_uid="4000", owner_gid="4000", permissions="750")

IA_AFTER: dict[int, efs.LifecyclePolicy] = {
    1: efs.LifecyclePolicy.AFTER_1_DAY,
    7: efs.LifecyclePolicy.AFTER_7_DAYS,
    14: efs.LifecyclePolicy.AFTER_14_DAYS,
    30: efs.LifecyclePolicy.AFTER_30_DAYS,
    60: efs.LifecyclePolicy.AFTER_60_DAYS,
    90: efs.LifecyclePolicy.AFTER_90_DAYS,
    180: efs.LifecyclePolicy.AFTER_180_DAYS,
    270: efs.LifecyclePolicy.AFTER_270_DAYS,
    365: efs.LifecyclePolicy.AFTER_365_DAYS,
}

CLIENT_MOUNT = "elasticfilesystem:ClientMount"
CLIENT_WRITE = "elasticfilesystem:ClientWrite"
CLIENT_ROOT_ACCESS = "elasticfilesystem:ClientRootAccess"


class SharedFileSystem(Construct):
    """An encrypted EFS file system in the private subnets, reachable over NFS only from
    ``trusted_security_groups``, only over TLS, only by IAM principals of this account, and only
    through one of its two access points (each a fixed POSIX user; no root access).

    Its file system policy allows mounting to this account's principals; identity policies say
    which principal uses which access point (:meth:`mount_statements`).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        trusted_security_groups: Sequence[ec2.ISecurityGroup],
        key: kms.IKey,
        ia_after_days: int,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, id)
        account = Stack.of(self).account

        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="EFS mount targets: NFS from the admin and training security groups only",
            allow_all_outbound=False,
        )
        for group in trusted_security_groups:
            self.security_group.add_ingress_rule(
                group, ec2.Port.tcp(2049), "NFS from a trusted security group"
            )

        policy = iam.PolicyDocument(
            statements=[
                iam.PolicyStatement(
                    sid="DenyWithoutTls",
                    effect=iam.Effect.DENY,
                    principals=[iam.AnyPrincipal()],
                    actions=["*"],
                    conditions={"Bool": {"aws:SecureTransport": "false"}},
                ),
                iam.PolicyStatement(
                    sid="DenyWithoutAccessPoint",
                    effect=iam.Effect.DENY,
                    principals=[iam.AnyPrincipal()],
                    actions=[CLIENT_MOUNT, CLIENT_WRITE, CLIENT_ROOT_ACCESS],
                    conditions={"Null": {"elasticfilesystem:AccessPointArn": "true"}},
                ),
                # Anonymous NFS clients (no IAM authorization) match no Allow: denied.
                iam.PolicyStatement(
                    sid="AllowIamPrincipalsOfThisAccount",
                    principals=[iam.AccountPrincipal(account)],
                    actions=[CLIENT_MOUNT, CLIENT_WRITE],
                    conditions={"Bool": {"elasticfilesystem:AccessedViaMountTarget": "true"}},
                ),
            ]
        )
        self.file_system = efs.FileSystem(
            self,
            "FileSystem",
            vpc=vpc,
            vpc_subnets=subnets,
            security_group=self.security_group,
            encrypted=True,
            kms_key=key,
            lifecycle_policy=IA_AFTER[ia_after_days],
            out_of_infrequent_access_policy=efs.OutOfInfrequentAccessPolicy.AFTER_1_ACCESS,
            performance_mode=efs.PerformanceMode.GENERAL_PURPOSE,
            throughput_mode=efs.ThroughputMode.ELASTIC,
            # AWS Backup's plan in this stack covers the file system; EFS's own default plan
            # would keep a second, differently retained copy.
            enable_automatic_backups=False,
            file_system_policy=policy,
            # The policy above already refuses anonymous clients (and grants nobody root access);
            # False here would append CDK's own statement granting root access to any principal.
            allow_anonymous_access=True,
            removal_policy=removal_policy,
        )
        self.admin_access_point = self.file_system.add_access_point(
            "AdminAccessPoint",
            path=DATA_DIRECTORY,
            posix_user=ADMIN_POSIX_USER,
            create_acl=DATA_DIRECTORY_OWNER,
        )
        self.training_access_point = self.file_system.add_access_point(
            "TrainingAccessPoint",
            path=DATA_DIRECTORY,
            posix_user=TRAINING_POSIX_USER,
            create_acl=DATA_DIRECTORY_OWNER,
        )

    def mount_statements(
        self, access_point: efs.IAccessPoint, *, write: bool
    ) -> list[iam.PolicyStatement]:
        """Identity policy statements that let a principal mount through ``access_point`` (and
        write, if ``write``). Attach them in the principal's own stack."""
        return [
            iam.PolicyStatement(
                actions=[CLIENT_MOUNT, CLIENT_WRITE] if write else [CLIENT_MOUNT],
                resources=[self.file_system.file_system_arn],
                conditions={
                    "StringEquals": {
                        "elasticfilesystem:AccessPointArn": access_point.access_point_arn
                    }
                },
            )
        ]
