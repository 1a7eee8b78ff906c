"""DataLake stack (stateful): keys, buckets, the shared file system, backups, tenant access role."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_backup as backup
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from training_platform.config import DataLakeSettings
from training_platform.constructs.data_access import DataAccessPolicies
from training_platform.constructs.nag import acknowledge
from training_platform.constructs.secure_bucket import BucketLifecycle, SecureBucket
from training_platform.constructs.shared_file_system import SharedFileSystem
from training_platform.constructs.tenant_access import TenantAccessRole

# AWS managed policies the backup role uses: AWS keeps them current with what Backup needs.
BACKUP_ROLE_POLICIES = (
    "service-role/AWSBackupServiceRolePolicyForBackup",
    "service-role/AWSBackupServiceRolePolicyForRestores",
    "AWSBackupServiceRolePolicyForS3Backup",
    "AWSBackupServiceRolePolicyForS3Restore",
)


# Server access logs of the audit trail's bucket (Observability stack) land under this prefix.
AUDIT_TRAIL_LOGS_PREFIX = "Trail/"


def _key(scope: Construct, id: str, purpose: str, removal_policy: RemovalPolicy) -> kms.Key:
    """A rotating customer-managed key whose key policy is CDK's default statement only: the
    account may manage and use it through IAM policies, which grant each use explicitly."""
    return kms.Key(
        scope,
        id,
        description=f"{purpose} ({Stack.of(scope).stack_name})",
        enable_key_rotation=True,
        rotation_period=Duration.days(365),
        pending_window=Duration.days(30),
        removal_policy=removal_policy,
    )


class DataLakeStack(Stack):
    """Everything that holds tenant and training data, and the role through which tenants reach it.

    Attributes other stacks receive: ``data_key``, ``data_bucket``, ``catalog_bucket``,
    ``artifacts_bucket``, ``access_logs_bucket``, ``file_system``, ``admin_access_point``,
    ``training_access_point``, ``backup_vault``, ``backup_plan``, ``backup_role`` (for other
    stacks' backup selections) and ``tenant_role``; ``access_policies``
    (managed policies for training jobs and catalog readers); ``training_mount_statements``
    for the training jobs' role. The DynamoDB statements of the tenant role come from
    ``training_platform.constructs.tenant_access.tenant_table_policy`` in the Training stack.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        vpc: ec2.IVpc,
        private_subnets: ec2.SubnetSelection,
        admin_security_group: ec2.ISecurityGroup,
        training_security_group: ec2.ISecurityGroup,
        settings: DataLakeSettings,
        log_retention_days: int,
        removal_policy: RemovalPolicy,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, id, **kwargs)  # type: ignore[arg-type]

        # Three keys, so that no use of one reaches the others: the data key (tenant data, catalog,
        # artifacts, EFS), the access log key (the only one S3's log delivery service may use) and
        # the backup key (a recovery point must survive the loss or deletion of the data key).
        self.data_key = _key(
            self, "DataKey", "Tenant data, catalog, model artifacts and EFS", removal_policy
        )
        self.access_logs_key = _key(self, "AccessLogsKey", "S3 server access logs", removal_policy)
        self.backup_key = _key(self, "BackupKey", "AWS Backup vault", removal_policy)

        lifecycle = BucketLifecycle(
            noncurrent_version_expiration_days=settings.noncurrent_version_expiration_days,
            intelligent_tiering_after_days=settings.intelligent_tiering_after_days,
        )
        self.access_logs_bucket = SecureBucket(
            self,
            "AccessLogs",
            key=self.access_logs_key,
            access_logs_bucket=None,
            lifecycle=BucketLifecycle(
                noncurrent_version_expiration_days=settings.noncurrent_version_expiration_days,
                intelligent_tiering_after_days=settings.intelligent_tiering_after_days,
                expiration_days=log_retention_days,
            ),
            removal_policy=removal_policy,
        ).bucket
        # The Observability stack's audit trail bucket logs here too, under its own prefix; it
        # cannot add a statement naming itself without making this stack depend on that one, so
        # delivery under that prefix is admitted from this account's buckets.
        self.access_logs_bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="S3ServerAccessLogsOfTheAuditTrailBucket",
                principals=[iam.ServicePrincipal("logging.s3.amazonaws.com")],
                actions=["s3:PutObject"],
                resources=[self.access_logs_bucket.arn_for_objects(f"{AUDIT_TRAIL_LOGS_PREFIX}*")],
                conditions={"StringEquals": {"aws:SourceAccount": self.account}},
            )
        )
        self.data_bucket = SecureBucket(
            self,
            "TenantData",
            key=self.data_key,
            access_logs_bucket=self.access_logs_bucket,
            lifecycle=lifecycle,
            removal_policy=removal_policy,
            cors_post_origins=settings.cors_allowed_origins,
        ).bucket
        self.catalog_bucket = SecureBucket(
            self,
            "Catalog",
            key=self.data_key,
            access_logs_bucket=self.access_logs_bucket,
            lifecycle=lifecycle,
            removal_policy=removal_policy,
        ).bucket
        self.artifacts_bucket = SecureBucket(
            self,
            "Artifacts",
            key=self.data_key,
            access_logs_bucket=self.access_logs_bucket,
            lifecycle=lifecycle,
            removal_policy=removal_policy,
        ).bucket

        shared = SharedFileSystem(
            self,
            "SharedFileSystem",
            vpc=vpc,
            subnets=private_subnets,
            trusted_security_groups=[admin_security_group, training_security_group],
            key=self.data_key,
            ia_after_days=settings.efs_ia_after_days,
            removal_policy=removal_policy,
        )
        self._shared_file_system = shared
        self.file_system = shared.file_system
        self.file_system_security_group = shared.security_group
        self.admin_access_point = shared.admin_access_point
        self.training_access_point = shared.training_access_point

        self.backup_vault, self.backup_plan = self._backups(settings, removal_policy)

        self.access_policies = DataAccessPolicies(
            self,
            "Access",
            data_bucket=self.data_bucket,
            artifacts_bucket=self.artifacts_bucket,
            catalog_bucket=self.catalog_bucket,
            data_key=self.data_key,
        )

        self.tenant_role = TenantAccessRole(
            self,
            "TenantAccess",
            buckets_read=[self.data_bucket, self.artifacts_bucket],
            buckets_write=[self.data_bucket],
            bucket_key=self.data_key,
        ).role

    def training_mount_statements(self) -> list[iam.PolicyStatement]:
        """Read-only mount through the training access point, for the Training stack's role."""
        return self._shared_file_system.mount_statements(self.training_access_point, write=False)

    def allow_admin_mount(self, role: iam.IRole) -> iam.ManagedPolicy:
        """Let ``role`` (the bastion's, from the Network stack, which this stack depends on)
        mount and write through the administrators' access point. The policy lives in this stack."""
        return iam.ManagedPolicy(
            self,
            "AdminMountPolicy",
            description="Administrators mount the shared file system through their access point",
            statements=self._shared_file_system.mount_statements(
                self.admin_access_point, write=True
            ),
            roles=[role],
        )

    def _backups(
        self, settings: DataLakeSettings, removal_policy: RemovalPolicy
    ) -> tuple[backup.BackupVault, backup.BackupPlan]:
        vault = backup.BackupVault(
            self,
            "BackupVault",
            encryption_key=self.backup_key,
            removal_policy=removal_policy,
            # Where data outlives the stack, nobody may delete a recovery point before it expires.
            block_recovery_point_deletion=removal_policy == RemovalPolicy.RETAIN,
        )
        plan = backup.BackupPlan(
            self, "BackupPlan", backup_plan_name=self.stack_name, backup_vault=vault
        )
        plan.add_rule(
            backup.BackupPlanRule(
                rule_name="Daily",
                schedule_expression=events.Schedule.cron(hour="3", minute="0"),
                start_window=Duration.hours(1),
                completion_window=Duration.hours(8),
                delete_after=Duration.days(settings.backup_retention_days),
            )
        )
        role = iam.Role(
            self,
            "BackupRole",
            assumed_by=iam.ServicePrincipal("backup.amazonaws.com"),
            description="AWS Backup backs up and restores the shared file system and two buckets",
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name(name)
                for name in BACKUP_ROLE_POLICIES
            ],
        )
        for name in BACKUP_ROLE_POLICIES:
            acknowledge(
                role,
                f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{name}]",
                "AWS Backup's own service-role policy for backup or restore of EFS and S3; AWS "
                "keeps it in step with what the service calls, which a copy here would not be.",
            )
        self.backup_role = role
        plan.add_selection(
            "Data",
            role=role,
            resources=[
                backup.BackupResource.from_efs_file_system(self.file_system),
                backup.BackupResource.from_arn(self.data_bucket.bucket_arn),
                backup.BackupResource.from_arn(self.artifacts_bucket.bucket_arn),
            ],
        )
        return vault, plan
