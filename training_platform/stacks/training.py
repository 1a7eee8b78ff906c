"""Training stack: SQS-orchestrated SageMaker training jobs whose handlers lose nothing.

Job flow: the portal writes the job record (QUEUED) and sends a request to ``requests``; the
launch handler validates it again and calls CreateTrainingJob or, for a tuning request,
CreateHyperParameterTuningJob; SageMaker's state changes (training jobs, tuning jobs, model
packages) reach ``events`` through an EventBridge rule; the job-events handler updates the
record, the trials of a tuning job and the tenant's model registry, and notifies the tenant.
Every queue has a dead-letter queue; see README "Operations" for redriving them.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Aws, CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_backup as backup
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from training_platform.config import ServingSettings, TrainingSettings
from training_platform.constructs.handler import PlatformFunction, dependencies_layer
from training_platform.constructs.key_use import key_through_services
from training_platform.constructs.logs import LogsKey
from training_platform.constructs.nag import acknowledge, acknowledge_findings
from training_platform.constructs.retraining import Retraining
from training_platform.constructs.serving import SERVING_STATE_CHANGES, Serving
from training_platform.constructs.statements import allow
from training_platform.constructs.tenant_access import (
    TenantTableGrant,
    tenant_table_policy,
    tenant_table_statements,
)
from training_platform.stacks.data_lake import DataLakeStack

LAUNCH_TIMEOUT = Duration.seconds(60)
JOBS_BY_CREATED_AT = "ByCreatedAt"  # training_common.JOBS_BY_CREATED_AT_INDEX
JOBS_RUNNING = "Running"  # training_common.JOBS_RUNNING_INDEX
TRIALS_BY_OBJECTIVE = "ByObjective"  # training_common.TRIALS_BY_OBJECTIVE_INDEX
# The SageMaker events the job-events handler applies, all from source aws.sagemaker.
SAGEMAKER_STATE_CHANGES = (
    "SageMaker Training Job State Change",
    "SageMaker HyperParameter Tuning Job State Change",
    "SageMaker Model Package State Change",
)
# Model package groups are named <tenant>-models at run time (training_common.registry's
# model_package_group_name); the handler roles name them by that suffix, never per tenant.
MODEL_PACKAGE_GROUPS = "model-package-group/*-models"
MODEL_PACKAGE_VERSIONS = "model-package/*-models/*"
# What reading and writing the training key's tables, queues and topic takes of the key.
TABLE_KEY_ACTIONS = (
    "kms:Decrypt",
    "kms:Encrypt",
    "kms:GenerateDataKey",
    "kms:DescribeKey",
)
EVENTS_TIMEOUT = Duration.seconds(30)


# The attributes a tenant session may touch when it records a decision on a model version
# (training_common.ModelRepository.record_decision and withdraw_decision).
MODEL_DECISION_ATTRIBUTES = ("tenant_id", "job_id", "decisions", "updated_at")

# Registry resources the job-events handler creates or tags must carry the tenant tag and no other.
_TENANT_TAG_ONLY: dict[str, Any] = {
    "Null": {"aws:RequestTag/tenant": "false"},
    "ForAllValues:StringEquals": {"aws:TagKeys": ["tenant"]},
}


class TrainingStack(Stack):
    """Queues, tables, handlers, the SageMaker execution role and the algorithm repository.

    Attributes other stacks receive: ``requests_queue``, ``events_queue`` and their
    ``*_dead_letter_queue``; ``tenants_table``, ``jobs_table``, ``notifications_table``,
    ``trials_table``, ``models_table``;
    ``notifications_topic``; ``sagemaker_role``; ``algorithms_repository``; ``launch`` and
    ``job_events`` (PlatformFunction); ``key``; ``serving`` (the deployments: its queue pair,
    the ``deployments_table`` and ``api_clients_table``, the deploy handler and the SageMaker
    roles of endpoints and monitoring, see ``constructs/serving.py``); ``retraining`` (the
    retraining policies and runs tables, the retraining-requests queue pair, the scheduler's
    dead-letter queue, schedule group and role and the retraining handler, see
    ``constructs/retraining.py``).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        vpc: ec2.IVpc,
        private_subnets: ec2.SubnetSelection,
        training_security_group: ec2.ISecurityGroup,
        data_lake: DataLakeStack,
        settings: TrainingSettings,
        serving: ServingSettings,
        schedule_group: str,
        alarm_prefix: str,
        log_retention_days: int,
        removal_policy: RemovalPolicy,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, id, **kwargs)  # type: ignore[arg-type]
        production = removal_policy == RemovalPolicy.RETAIN

        self.key = kms.Key(
            self,
            "Key",
            description="Encrypts the training queues, tables and notifications topic",
            enable_key_rotation=True,
            removal_policy=removal_policy,
            pending_window=Duration.days(30),
        )
        logs_key = LogsKey(self, "LogsKey", removal_policy=removal_policy).key

        # Queues: each with a dead-letter queue; visibility = 6 x the consumer's timeout.
        self.requests_queue, self.requests_dead_letter_queue = self._queue_pair(
            "TrainingRequests", consumer_timeout=LAUNCH_TIMEOUT, settings=settings
        )
        self.events_queue, self.events_dead_letter_queue = self._queue_pair(
            "JobEvents", consumer_timeout=EVENTS_TIMEOUT, settings=settings
        )

        # Tables: tenants, jobs (newest-first index per tenant), notifications, the trials of
        # tuning jobs (best-first local index) and the registered model versions.
        self.tenants_table = self._table(
            "Tenants", sort_key=None, production=production, removal_policy=removal_policy
        )
        self.jobs_table = self._table(
            "Jobs", sort_key="job_id", production=production, removal_policy=removal_policy
        )
        self.jobs_table.add_global_secondary_index(
            index_name=JOBS_BY_CREATED_AT,
            partition_key=dynamodb.Attribute(name="tenant_id", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="created_at", type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.ALL,
        )
        # Sparse: only jobs holding running-jobs slots have running_since, so the quota check
        # reads a tenant's running jobs, not all of its jobs.
        self.jobs_table.add_global_secondary_index(
            index_name=JOBS_RUNNING,
            partition_key=dynamodb.Attribute(name="tenant_id", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="running_since", type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.INCLUDE,
            non_key_attributes=["status", "tuning"],
        )
        self.notifications_table = self._table(
            "Notifications",
            sort_key="notification_id",
            production=production,
            removal_policy=removal_policy,
        )
        self.trials_table = self._table(
            "Trials", sort_key="trial_id", production=production, removal_policy=removal_policy
        )
        # Local: a tuning job's trials sorted by objective within the tenant's partition, read
        # consistently right after the handler writes them (training_common.objective_key).
        self.trials_table.add_local_secondary_index(
            index_name=TRIALS_BY_OBJECTIVE,
            sort_key=dynamodb.Attribute(name="objective_key", type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.ALL,
        )
        self.models_table = self._table(
            "Models", sort_key="job_id", production=production, removal_policy=removal_policy
        )
        tables: tuple[dynamodb.Table, ...] = (
            self.tenants_table,
            self.jobs_table,
            self.notifications_table,
            self.trials_table,
            self.models_table,
        )

        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AwsBackupOfTheTables",
                principals=[iam.ArnPrincipal(data_lake.backup_role.role_arn)],
                actions=[
                    "kms:Decrypt",
                    "kms:DescribeKey",
                    "kms:CreateGrant",
                    "kms:GenerateDataKeyWithoutPlaintext",
                ],
                resources=["*"],
                conditions={
                    "StringEquals": {
                        "kms:ViaService": [
                            f"dynamodb.{self.region}.amazonaws.com",
                            f"backup.{self.region}.amazonaws.com",
                        ]
                    }
                },
            )
        )

        # Tenants' DynamoDB access: only their own partition (see DataLake's tenant role). The
        # policy lives here, with the tables, so the DataLake stack never depends on this one.
        tenant_tables = tenant_table_policy(
            self,
            "TenantTablesPolicy",
            role=data_lake.tenant_role,
            grants=[
                # The portal reads the tenant's record (quota, status); only administration,
                # with the instance role, writes it.
                TenantTableGrant("ReadOwnTenantRecord", self.tenants_table, ("dynamodb:GetItem",)),
                # Submitting writes the QUEUED record (and REJECTED if queueing fails); the job
                # pages read one record and query the list and the running count.
                TenantTableGrant(
                    "OwnJobRecords",
                    self.jobs_table,
                    (
                        "dynamodb:GetItem",
                        "dynamodb:Query",
                        "dynamodb:PutItem",
                        "dynamodb:UpdateItem",
                    ),
                    indexes=(JOBS_BY_CREATED_AT, JOBS_RUNNING),
                ),
                # The handlers write notifications; the portal lists them and marks them read.
                TenantTableGrant(
                    "OwnNotifications",
                    self.notifications_table,
                    ("dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"),
                ),
                # The job-events handler writes trials; the tuning job page reads them best
                # first (the index) and in launch order (the table).
                TenantTableGrant(
                    "ReadOwnTrials",
                    self.trials_table,
                    ("dynamodb:Query",),
                    indexes=(TRIALS_BY_OBJECTIVE,),
                ),
                # The job-events handler registers versions and applies their status events;
                # the portal lists them and records the tenant's decision (who, when, comment),
                # writing no other attribute: not the status, the package or the artifact.
                TenantTableGrant(
                    "ReadOwnModelVersions",
                    self.models_table,
                    ("dynamodb:GetItem", "dynamodb:Query"),
                ),
                TenantTableGrant(
                    "DecideOnOwnModelVersions",
                    self.models_table,
                    ("dynamodb:UpdateItem",),
                    attributes=MODEL_DECISION_ATTRIBUTES,
                ),
            ],
        )
        tenant_tables.add_statements(
            key_through_services(
                self,
                self.key,
                services=["dynamodb"],
                actions=TABLE_KEY_ACTIONS,
                sid="TableKeyThroughDynamoDbOnly",
            )
        )

        self.notifications_topic = sns.Topic(
            self,
            "NotificationsTopic",
            display_name="AI training platform: job notifications",
            master_key=self.key,
            enforce_ssl=True,
        )

        self.algorithms_repository = ecr.Repository(
            self,
            "Algorithms",
            image_scan_on_push=True,
            image_tag_mutability=ecr.TagMutability.IMMUTABLE,
            encryption=ecr.RepositoryEncryption.KMS,
            encryption_key=self.key,
            removal_policy=removal_policy,
            empty_on_delete=removal_policy == RemovalPolicy.DESTROY,
            lifecycle_rules=[
                ecr.LifecycleRule(
                    description="Expire untagged images after 14 days",
                    tag_status=ecr.TagStatus.UNTAGGED,
                    max_image_age=Duration.days(14),
                    rule_priority=1,
                ),
                ecr.LifecycleRule(
                    description="Keep the newest images of each repository",
                    tag_status=ecr.TagStatus.ANY,
                    max_image_count=settings.max_algorithm_images,
                    rule_priority=2,
                ),
            ],
        )

        self.sagemaker_role = self._sagemaker_role(data_lake, vpc=vpc)

        # Deployments: endpoints of approved model versions, created at run time.
        self.serving = Serving(
            self,
            "Serving",
            vpc=vpc,
            key=self.key,
            endpoint_data=data_lake.access_policies.endpoints,
            monitoring_data=data_lake.access_policies.monitoring,
            data_key=data_lake.data_key,
            algorithms_repository=self.algorithms_repository,
            alarm_prefix=alarm_prefix,
            max_receive_count=settings.max_receive_count,
            removal_policy=removal_policy,
        )
        self.deployments_table = self.serving.deployments_table
        self.api_clients_table = self.serving.api_clients_table
        self.deployment_requests_queue = self.serving.requests_queue
        self.deployment_requests_dead_letter_queue = self.serving.requests_dead_letter_queue
        tables = (*tables, self.deployments_table, self.api_clients_table)
        # The portal reads and writes the tenant's deployment records (submit, list, page) and
        # lists its API clients; the clients are written only by the portal's own role.
        tenant_tables.add_statements(
            *tenant_table_statements(
                [
                    TenantTableGrant(
                        "OwnDeployments",
                        self.deployments_table,
                        (
                            "dynamodb:GetItem",
                            "dynamodb:Query",
                            "dynamodb:PutItem",
                            "dynamodb:UpdateItem",
                        ),
                    ),
                    TenantTableGrant(
                        "ListOwnApiClients", self.api_clients_table, ("dynamodb:Query",)
                    ),
                ]
            )
        )

        # Continuous retraining: tenants' policies, their schedules' group and role, the runs.
        self.retraining = Retraining(
            self,
            "Retraining",
            key=self.key,
            training_requests_queue=self.requests_queue,
            schedule_group_name=schedule_group,
            max_receive_count=settings.max_receive_count,
            removal_policy=removal_policy,
        )
        self.retraining_policies_table = self.retraining.policies_table
        self.retraining_runs_table = self.retraining.runs_table
        self.retraining_requests_queue = self.retraining.requests_queue
        self.retraining_requests_dead_letter_queue = self.retraining.requests_dead_letter_queue
        self.scheduler_dead_letter_queue = self.retraining.scheduler_dead_letter_queue
        tables = (*tables, self.retraining_policies_table, self.retraining_runs_table)
        # The portal writes a tenant's policies (create, edit, pause, resume, delete) and lists
        # them; it only reads runs, which the launch and job-events handlers write.
        tenant_tables.add_statements(
            *tenant_table_statements(
                [
                    TenantTableGrant(
                        "OwnRetrainingPolicies",
                        self.retraining_policies_table,
                        ("dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem"),
                    ),
                    TenantTableGrant(
                        "ReadOwnRetrainingRuns",
                        self.retraining_runs_table,
                        ("dynamodb:GetItem", "dynamodb:Query"),
                    ),
                ]
            )
        )

        # The tables join the DataLake's daily backup plan; the selection lives here, with them.
        backup.BackupSelection(
            self,
            "TablesBackup",
            backup_plan=data_lake.backup_plan,
            role=data_lake.backup_role,
            resources=[backup.BackupResource.from_dynamo_db_table(table) for table in tables],
        )

        # EventBridge: SageMaker's training job, tuning job and model package state changes ->
        # job-events queue. One rule: the three share the target, its retries and dead letters.
        self.key.grant_encrypt_decrypt(iam.ServicePrincipal("events.amazonaws.com"))
        self.state_change_rule = events.Rule(
            self,
            "SageMakerStateChanges",
            description=(
                "SageMaker training job, tuning job, model package, endpoint and processing job "
                "state changes, to the job-events queue"
            ),
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=[*SAGEMAKER_STATE_CHANGES, *SERVING_STATE_CHANGES],
            ),
            targets=[
                targets.SqsQueue(
                    self.events_queue,
                    dead_letter_queue=self.events_dead_letter_queue,
                    retry_attempts=185,
                    max_event_age=Duration.hours(24),
                )
            ],
        )

        subnet_ids = vpc.select_subnets(
            subnet_group_name=private_subnets.subnet_group_name
        ).subnet_ids
        layer = dependencies_layer(self, "Dependencies")
        common = {
            "TENANTS_TABLE": self.tenants_table.table_name,
            "JOBS_TABLE": self.jobs_table.table_name,
            "NOTIFICATIONS_TABLE": self.notifications_table.table_name,
            "CATALOG_BUCKET": data_lake.catalog_bucket.bucket_name,
            "DATA_BUCKET": data_lake.data_bucket.bucket_name,
            "ARTIFACTS_BUCKET": data_lake.artifacts_bucket.bucket_name,
        }
        function_settings = {
            "layer": layer,
            "vpc": vpc,
            "subnets": private_subnets,
            "logs_key": logs_key,
            "log_retention_days": log_retention_days,
            "removal_policy": removal_policy,
        }
        self.launch = PlatformFunction(
            self,
            "LaunchHandler",
            name="launch",
            description=(
                "Validates training requests again and creates SageMaker training and tuning jobs"
            ),
            timeout=LAUNCH_TIMEOUT,
            reserved_concurrency=settings.launch_concurrency,
            environment={
                **common,
                "TRAINING_REQUESTS_QUEUE_URL": self.requests_queue.queue_url,
                "TRAINING_REQUESTS_DLQ_URL": self.requests_dead_letter_queue.queue_url,
                "MAX_RECEIVE_COUNT": str(settings.max_receive_count),
                "SAGEMAKER_ROLE_ARN": self.sagemaker_role.role_arn,
                "TRAINING_SUBNET_IDS": ",".join(subnet_ids),
                "TRAINING_SECURITY_GROUP_IDS": training_security_group.security_group_id,
                "TRAINING_KMS_KEY_ARN": data_lake.data_key.key_arn,
                # Retraining runs: the deployed model a run must beat, and its deployment.
                "MODELS_TABLE": self.models_table.table_name,
                "DEPLOYMENTS_TABLE": self.deployments_table.table_name,
            },
            **function_settings,  # type: ignore[arg-type]
        )
        self.job_events = PlatformFunction(
            self,
            "JobEventsHandler",
            name="job_events",
            description=(
                "Applies SageMaker job and model package state changes and notifies tenants"
            ),
            timeout=EVENTS_TIMEOUT,
            reserved_concurrency=settings.events_concurrency,
            environment={
                **common,
                "NOTIFICATIONS_TOPIC_ARN": self.notifications_topic.topic_arn,
                "JOB_EVENTS_DLQ_URL": self.events_dead_letter_queue.queue_url,
                "TRIALS_TABLE": self.trials_table.table_name,
                "MODELS_TABLE": self.models_table.table_name,
                # Back-off of a promotion whose deployment is busy (ChangeMessageVisibility,
                # which the event source mapping grants on this queue).
                "JOB_EVENTS_QUEUE_URL": self.events_queue.queue_url,
            },
            **function_settings,  # type: ignore[arg-type]
        )
        self._grant_launch(data_lake, subnet_ids=subnet_ids, security_group=training_security_group)
        self._grant_job_events(data_lake)
        self.serving.grant_job_events(self.job_events)
        self.retraining.grant_launch(self.launch)
        self.retraining.grant_job_events(self.job_events)
        self.retraining_handler = self.retraining.add_handler(
            layer=layer,
            vpc=vpc,
            subnets=private_subnets,
            logs_key=logs_key,
            log_retention_days=log_retention_days,
            removal_policy=removal_policy,
        )
        self.serving.add_alarm_rule(
            target=self.events_queue, dead_letter_queue=self.events_dead_letter_queue
        )
        self.deploy = self.serving.add_deploy_handler(
            layer=layer,
            subnets=private_subnets,
            subnet_ids=subnet_ids,
            logs_key=logs_key,
            log_retention_days=log_retention_days,
            removal_policy=removal_policy,
            tenants_table=self.tenants_table,
            models_table=self.models_table,
            data_bucket=data_lake.data_bucket,
            settings=serving,
            max_receive_count=settings.max_receive_count,
        )

        for function, queue in (
            (self.launch, self.requests_queue),
            (self.job_events, self.events_queue),
        ):
            function.function.add_event_source(
                sources.SqsEventSource(
                    queue,
                    batch_size=10,
                    max_batching_window=Duration.seconds(5),
                    report_batch_item_failures=True,
                )
            )

        for name, value in {
            "TrainingRequestsQueueUrl": self.requests_queue.queue_url,
            "TrainingRequestsDlqArn": self.requests_dead_letter_queue.queue_arn,
            "JobEventsDlqArn": self.events_dead_letter_queue.queue_arn,
            "JobsTableName": self.jobs_table.table_name,
            "TrialsTableName": self.trials_table.table_name,
            "ModelsTableName": self.models_table.table_name,
            "DeploymentRequestsQueueUrl": self.deployment_requests_queue.queue_url,
            "DeploymentRequestsDlqArn": self.deployment_requests_dead_letter_queue.queue_arn,
            "DeploymentsTableName": self.deployments_table.table_name,
            "ApiClientsTableName": self.api_clients_table.table_name,
            "AlgorithmsRepositoryUri": self.algorithms_repository.repository_uri,
            "RetrainingPoliciesTableName": self.retraining_policies_table.table_name,
            "RetrainingRunsTableName": self.retraining_runs_table.table_name,
            "RetrainingRequestsQueueUrl": self.retraining_requests_queue.queue_url,
            "RetrainingRequestsDlqArn": self.retraining_requests_dead_letter_queue.queue_arn,
            "SchedulerDlqArn": self.scheduler_dead_letter_queue.queue_arn,
            "RetrainingScheduleGroup": self.retraining.schedule_group_name,
        }.items():
            CfnOutput(self, name, value=value)

    # -- building blocks ---------------------------------------------------------------------

    def _queue_pair(
        self, name: str, *, consumer_timeout: Duration, settings: TrainingSettings
    ) -> tuple[sqs.Queue, sqs.Queue]:
        dead_letters = sqs.Queue(
            self,
            f"{name}DeadLetters",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.key,
            data_key_reuse=Duration.hours(1),
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        queue = sqs.Queue(
            self,
            name,
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.key,
            data_key_reuse=Duration.hours(1),
            enforce_ssl=True,
            retention_period=Duration.days(4),
            visibility_timeout=Duration.seconds(consumer_timeout.to_seconds() * 6),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=dead_letters, max_receive_count=settings.max_receive_count
            ),
        )
        return queue, dead_letters

    def _table(
        self,
        name: str,
        *,
        sort_key: str | None,
        production: bool,
        removal_policy: RemovalPolicy,
    ) -> dynamodb.Table:
        return dynamodb.Table(
            self,
            name,
            partition_key=dynamodb.Attribute(name="tenant_id", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=sort_key, type=dynamodb.AttributeType.STRING)
            if sort_key
            else None,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self.key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            deletion_protection=production,
            removal_policy=removal_policy,
        )

    def _sagemaker_role(self, data_lake: DataLakeStack, *, vpc: ec2.IVpc) -> iam.Role:
        """One execution role for every tenant's jobs; the launch handler confines each job's
        input, output and checkpoints to its tenant's prefix, and network isolation keeps the
        container itself from calling any AWS API."""
        role = iam.Role(
            self,
            "SageMakerExecutionRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="Runs tenants' training jobs (network isolated, inside the VPC)",
        )
        role.add_managed_policy(data_lake.access_policies.training_jobs)
        self.algorithms_repository.grant_pull(role)
        self.key.grant_decrypt(role)  # the repository's images are encrypted with this key
        role.add_to_policy(
            iam.PolicyStatement(
                sid="TrainingJobLogs",
                actions=[
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:PutLogEvents",
                    "logs:DescribeLogStreams",
                ],
                resources=[_arn("logs", "log-group:/aws/sagemaker/TrainingJobs:*")],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="TrainingJobMetrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="TrainingJobNetworkInterfaces",
                actions=[
                    "ec2:CreateNetworkInterface",
                    "ec2:CreateNetworkInterfacePermission",
                    "ec2:DeleteNetworkInterface",
                    "ec2:DeleteNetworkInterfacePermission",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeVpcs",
                    "ec2:DescribeDhcpOptions",
                    "ec2:DescribeSubnets",
                    "ec2:DescribeSecurityGroups",
                ],
                resources=["*"],
                conditions={"ArnEqualsIfExists": {"ec2:Vpc": _arn("ec2", f"vpc/{vpc.vpc_id}")}},
            )
        )
        acknowledge_findings(
            role,
            "AwsSolutions-IAM5",
            [
                "Resource::*",
                f"Resource::{_ARN_FINDING.format(service='logs')}"
                "log-group:/aws/sagemaker/TrainingJobs:*",
            ],
            "'*' is ecr:GetAuthorizationToken, cloudwatch:PutMetricData (conditioned on the "
            "/aws/sagemaker namespaces) and the ENI actions SageMaker needs in the VPC "
            "(conditioned on this VPC), none of which has a resource-level form; the log "
            "streams are the ones SageMaker names after each job in its own log group.",
        )
        acknowledge(
            role,
            "NIST.800.53.R5-IAMNoInlinePolicy",
            "The execution role's own policy holds only ECR, logs, metrics and VPC statements "
            "written here for this role; data access comes from the DataLake's managed policy.",
        )
        return role

    def _use_key(self, role: iam.IRole, *services: str) -> None:
        """The training key, only as the named services (DynamoDB, SQS, SNS) use it for ``role``."""
        role.add_to_principal_policy(
            key_through_services(
                self,
                self.key,
                services=services,
                actions=TABLE_KEY_ACTIONS,
                sid="TrainingKeyThroughItsServicesOnly",
            )
        )

    def _grant_launch(
        self,
        data_lake: DataLakeStack,
        *,
        subnet_ids: list[str],
        security_group: ec2.ISecurityGroup,
    ) -> None:
        role = self.launch.role
        allow(role, "ReadTenants", ["dynamodb:GetItem"], [self.tenants_table.table_arn])
        # PutItem: a retraining run's job record, created if absent (the portal writes the
        # others).
        allow(
            role,
            "ReadAndAdvanceJobs",
            ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem"],
            [self.jobs_table.table_arn],
        )
        # A retraining run starts from the policy's deployment and the model it serves.
        allow(
            role,
            "ReadDeployedModels",
            ["dynamodb:GetItem"],
            [self.models_table.table_arn, self.deployments_table.table_arn],
        )
        # A run's data: listing the tenant's prefixes and writing the run's manifest.
        role.add_managed_policy(data_lake.access_policies.retraining_manifests)
        # The quota check: the tenant's running jobs (sparse index).
        allow(
            role,
            "CountRunningJobs",
            ["dynamodb:Query"],
            [f"{self.jobs_table.table_arn}/index/{JOBS_RUNNING}"],
        )
        # SendMessage: deferring a busy tenant's request, and malformed messages to the DLQ.
        allow(
            role,
            "DeferAndDeadLetterRequests",
            ["sqs:SendMessage"],
            [self.requests_queue.queue_arn, self.requests_dead_letter_queue.queue_arn],
        )
        self._use_key(role, "dynamodb", "sqs")
        role.add_managed_policy(data_lake.access_policies.catalog_read)
        allow(
            role,
            "PassTheExecutionRoleToSageMakerOnly",
            ["iam:PassRole"],
            [self.sagemaker_role.role_arn],
            {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        )
        training_jobs = _arn("sagemaker", "training-job/*")
        tuning_jobs = _arn("sagemaker", "hyper-parameter-tuning-job/*")
        isolated = _isolated_job_conditions(
            data_lake.data_key, subnet_ids=subnet_ids, security_group=security_group
        )
        allow(
            role,
            "CreateIsolatedTrainingJobsOnly",
            ["sagemaker:CreateTrainingJob"],
            [training_jobs],
            isolated,
        )
        # A tuning job's training jobs are started by SageMaker itself, from the tuning job's
        # training job definition, which these conditions check (the condition keys of
        # CreateHyperParameterTuningJob are the same as CreateTrainingJob's); SageMaker copies
        # the tuning job's tags to each of them.
        allow(
            role,
            "CreateIsolatedTuningJobsOnly",
            ["sagemaker:CreateHyperParameterTuningJob"],
            [tuning_jobs],
            isolated,
        )
        allow(
            role,
            "DescribeJobs",
            ["sagemaker:DescribeTrainingJob", "sagemaker:DescribeHyperParameterTuningJob"],
            [training_jobs, tuning_jobs],
        )
        # SageMaker authorizes the tags given at creation as AddTags on the new job; only the
        # keys tenant and job, with a tenant, so the role can't retag a job into another view.
        allow(
            role,
            "TagJobsWithTenantAndJob",
            ["sagemaker:AddTags"],
            [training_jobs, tuning_jobs],
            {
                "Null": {"aws:RequestTag/tenant": "false"},
                "ForAllValues:StringEquals": {"aws:TagKeys": ["tenant", "job"]},
            },
        )
        acknowledge_findings(
            role,
            "AwsSolutions-IAM5",
            [
                f"Resource::{_SAGEMAKER_FINDING}training-job/*",
                f"Resource::{_SAGEMAKER_FINDING}hyper-parameter-tuning-job/*",
                "Resource::*",
            ],
            "Training and tuning job names derive from job ids the portal creates, so the "
            "statements name training-job/* and hyper-parameter-tuning-job/*: creating either is "
            "conditioned on network isolation, encrypted inter-container traffic, the training "
            "subnets and group, the data key and a tenant tag; tagging (the tags given at "
            "creation) only with the keys tenant and job; describing is read-only. '*' is "
            "X-Ray's PutTraceSegments, which has no resource-level form.",
        )

    def _grant_job_events(self, data_lake: DataLakeStack) -> None:
        """The job-events handler's permissions: exactly the calls of ``lambda/job_events``."""
        role = self.job_events.role
        allow(
            role,
            "ApplyStateChanges",
            ["dynamodb:GetItem", "dynamodb:UpdateItem"],
            [self.jobs_table.table_arn],
        )
        allow(
            role,
            "WriteNotifications",
            ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
            [self.notifications_table.table_arn],
        )
        # Trials: one conditional put per training job event of a tuning job (newer events
        # only); models: a version per completed job, then its registration and status events.
        allow(role, "WriteTrials", ["dynamodb:PutItem"], [self.trials_table.table_arn])
        allow(
            role,
            "WriteModelVersions",
            ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
            [self.models_table.table_arn],
        )
        allow(role, "PublishNotifications", ["sns:Publish"], [self.notifications_topic.topic_arn])
        allow(
            role,
            "DeadLetterMalformedEvents",
            ["sqs:SendMessage"],
            [self.events_dead_letter_queue.queue_arn],
        )
        self._use_key(role, "dynamodb", "sqs", "sns")

        # Following jobs: the best training job of a tuning job (not in its events) and a
        # training job's final metrics and hyperparameters.
        allow(
            role,
            "DescribeTuningJobs",
            ["sagemaker:DescribeHyperParameterTuningJob"],
            [_arn("sagemaker", "hyper-parameter-tuning-job/*")],
        )
        allow(
            role,
            "DescribeTrainingJobs",
            ["sagemaker:DescribeTrainingJob"],
            [_arn("sagemaker", "training-job/*")],
        )
        # The registry: a group per tenant, created on its first registration with its tenant
        # tag (versions carry the group's tags: CreateModelPackage in a group takes none), and
        # versions created only as pending approval; only the tenant approves or rejects.
        groups = _arn("sagemaker", MODEL_PACKAGE_GROUPS)
        versions = _arn("sagemaker", MODEL_PACKAGE_VERSIONS)
        allow(
            role,
            "CreateTenantModelPackageGroups",
            ["sagemaker:CreateModelPackageGroup"],
            [groups],
            _TENANT_TAG_ONLY,
        )
        allow(
            role,
            "DescribeTenantModelPackageGroups",
            ["sagemaker:DescribeModelPackageGroup"],
            [groups],
        )
        # A state change event names the package; its job is in the package's metadata.
        allow(
            role,
            "DescribeTenantModelPackages",
            ["sagemaker:DescribeModelPackage"],
            [versions],
        )
        allow(
            role,
            "RegisterVersionsPendingApprovalOnly",
            ["sagemaker:CreateModelPackage"],
            [versions],
            {"StringEquals": {"sagemaker:ModelApprovalStatus": "PendingManualApproval"}},
        )
        allow(
            role,
            "TagTenantModelPackages",
            ["sagemaker:AddTags"],
            [groups],
            _TENANT_TAG_ONLY,
        )
        # Metric series: GetMetricData of /aws/sagemaker/TrainingJobs (no resource-level form).
        allow(role, "ReadTrainingJobMetrics", ["cloudwatch:GetMetricData"], ["*"])
        # The model metrics JSON that a version's ModelMetrics points to, in the job's prefix.
        role.add_managed_policy(data_lake.access_policies.model_metrics_write)
        # The catalog entry of a registered model's algorithm (its content types).
        role.add_managed_policy(data_lake.access_policies.catalog_read)
        acknowledge_findings(
            role,
            "AwsSolutions-IAM5",
            ["Resource::*"],
            "'*' is X-Ray's PutTraceSegments and PutTelemetryRecords (active tracing) and "
            "CloudWatch GetMetricData (training job metric series), none of which has "
            "resource-level permissions.",
        )
        acknowledge_findings(
            role,
            "AwsSolutions-IAM5",
            [
                f"Resource::{_SAGEMAKER_FINDING}training-job/*",
                f"Resource::{_SAGEMAKER_FINDING}hyper-parameter-tuning-job/*",
            ],
            "The handler follows every tenant's jobs, whose names derive from job ids created "
            "at run time: it only describes them (DescribeTrainingJob, "
            "DescribeHyperParameterTuningJob); nothing here creates, stops or changes a job.",
        )
        acknowledge_findings(
            role,
            "AwsSolutions-IAM5",
            [
                f"Resource::{_SAGEMAKER_FINDING}{MODEL_PACKAGE_GROUPS}",
                f"Resource::{_SAGEMAKER_FINDING}{MODEL_PACKAGE_VERSIONS}",
            ],
            "Tenants are data: each one's model package group <tenant>-models is created at run "
            "time, so the statements name every platform group by its -models suffix; groups "
            "are created only with a tenant tag and versions only as PendingManualApproval; "
            "UpdateModelPackage (a retraining run's promotion rule, constructs/retraining.py) "
            "may only set Approved or Rejected.",
        )


_ARN_FINDING = "arn:<AWS::Partition>:{service}:<AWS::Region>:<AWS::AccountId>:"
_SAGEMAKER_FINDING = _ARN_FINDING.format(service="sagemaker")


def _isolated_job_conditions(
    data_key: kms.IKey, *, subnet_ids: list[str], security_group: ec2.ISecurityGroup
) -> dict[str, dict[str, object]]:
    """The guardrails of CreateTrainingJob and CreateHyperParameterTuningJob: IAM itself refuses
    a job that is not network isolated, has unencrypted inter-container traffic, runs outside
    the training security group and subnets, lacks the data key on its volumes and output, or
    carries no tenant tag.

    The key conditions are SageMaker's ...KmsKeyArn keys: the actions no longer list the
    deprecated sagemaker:VolumeKmsKey and sagemaker:OutputKmsKey, and a condition on a key the
    request does not carry fails (the IAM simulator refused every job with them). The Null
    condition on the subnets keeps ForAllValues from holding for a job without a VPC."""
    return {
        "Bool": {
            "sagemaker:NetworkIsolation": "true",
            "sagemaker:InterContainerTrafficEncryption": "true",
        },
        "ForAllValues:StringEquals": {
            "sagemaker:VpcSecurityGroupIds": [security_group.security_group_id],
            "sagemaker:VpcSubnets": subnet_ids,
        },
        "ArnEquals": {
            "sagemaker:VolumeKmsKeyArn": data_key.key_arn,
            "sagemaker:OutputKmsKeyArn": data_key.key_arn,
        },
        "Null": {"sagemaker:VpcSubnets": "false", "aws:RequestTag/tenant": "false"},
    }


def _arn(service: str, resource: str) -> str:
    """An ARN in this stack's account and region, written with pseudo parameters so that it (and
    any nag finding that quotes it) reads the same in every environment."""
    return f"arn:{Aws.PARTITION}:{service}:{Aws.REGION}:{Aws.ACCOUNT_ID}:{resource}"
