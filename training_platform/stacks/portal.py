"""Portal stack: Cognito sign-in, the internet-facing ALB and its WAF, and the portal fleet.

Request path: WAF (managed rule groups, rate limit) -> ALB (HTTPS only; HTTP redirects) ->
authenticate-cognito (the user pool's hosted sign-in, MFA) -> the fleet in the private subnets,
which reads the tenant from the ALB's signed identity header and acts for it through the tenant
role (session tag ``tenant``). The instance role itself cannot read tenant data.
"""

from __future__ import annotations

import json

from aws_cdk import Aws, CfnOutput, Duration, RemovalPolicy, Stack, Token
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_elasticloadbalancingv2_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk.region_info import FactName, RegionInfo
from constructs import Construct

from training_platform.config import PortalSettings, RetrainingSettings, ServingSettings
from training_platform.constructs.handler import PlatformFunction, dependencies_layer
from training_platform.constructs.inference_api import InferenceApi
from training_platform.constructs.key_use import key_through_services
from training_platform.constructs.logs import LogsKey
from training_platform.constructs.nag import acknowledge, acknowledge_findings
from training_platform.constructs.portal_fleet import HEALTH_CHECK_PATH, PORT, PortalFleet
from training_platform.constructs.secure_bucket import ABORT_INCOMPLETE_UPLOADS_AFTER_DAYS
from training_platform.constructs.tenant_access import tenant_assume_statements
from training_platform.constructs.user_pool import ADMIN_GROUP, TenantUserPool
from training_platform.constructs.web_acl import RegionalWebAcl
from training_platform.stacks.data_lake import DataLakeStack
from training_platform.stacks.training import TABLE_KEY_ACTIONS, TrainingStack

ALB_SESSION_TIMEOUT = Duration.hours(8)
ACCESS_LOGS_PREFIX = "alb"
# Regions opened since August 2022 deliver load balancer logs as this service principal; older
# ones as a regional Elastic Load Balancing account (region_info's ELBV2_ACCOUNT fact).
ELB_LOG_DELIVERY_SERVICE = "logdelivery.elasticloadbalancing.amazonaws.com"


class PortalStack(Stack):
    """The tenants' portal.

    Attributes other stacks receive (an Observability stack's alarms and dashboard):
    ``load_balancer``, ``https_listener``, ``target_group``, ``auto_scaling_group``,
    ``web_acl`` (CfnWebACL) and ``waf_log_group``, ``user_pool``, ``user_pool_client``,
    ``instance_role``, ``access_logs_bucket``, ``certificate``; ``inference`` (the inference
    API, constructs/inference_api.py: here because it needs this stack's user pool and the
    portal needs its URL).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        vpc: ec2.IVpc,
        private_subnets: ec2.SubnetSelection,
        public_subnets: ec2.SubnetSelection,
        data_lake: DataLakeStack,
        training: TrainingStack,
        settings: PortalSettings,
        serving: ServingSettings,
        retraining: RetrainingSettings,
        log_retention_days: int,
        removal_policy: RemovalPolicy,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, id, **kwargs)  # type: ignore[arg-type]
        production = removal_policy == RemovalPolicy.RETAIN

        sign_in = TenantUserPool(
            self,
            "SignIn",
            domain_name=settings.domain_name,
            domain_prefix=settings.cognito_domain_prefix,
            threat_protection=settings.threat_protection,
            removal_policy=removal_policy,
        )
        self.user_pool = sign_in.user_pool
        self.user_pool_client = sign_in.alb_client
        self.user_pool_domain = sign_in.domain

        self.certificate = (
            acm.Certificate.from_certificate_arn(self, "Certificate", settings.certificate_arn)
            if settings.certificate_arn
            else acm.Certificate(
                self,
                "Certificate",
                domain_name=settings.domain_name,
                validation=acm.CertificateValidation.from_dns(),
            )
        )

        # Load balancer: public subnets, HTTPS only (HTTP redirects), logs to S3.
        alb_security_group = ec2.SecurityGroup(
            self,
            "LoadBalancerSecurityGroup",
            vpc=vpc,
            description="Portal load balancer: HTTPS and HTTP (redirect) from the internet",
            allow_all_outbound=False,
        )
        acknowledge(
            alb_security_group,
            "AwsSolutions-EC23",
            "The portal is a public web application for tenants anywhere: the load balancer "
            "admits 443 (and 80, which only redirects to 443) from any address; WAF filters "
            "requests and Cognito authenticates every one before it reaches the fleet.",
        )
        self.load_balancer = elbv2.ApplicationLoadBalancer(
            self,
            "LoadBalancer",
            vpc=vpc,
            vpc_subnets=public_subnets,
            internet_facing=True,
            security_group=alb_security_group,
            drop_invalid_header_fields=True,
            deletion_protection=production,
            http2_enabled=True,
        )
        if not production:
            acknowledge(
                self.load_balancer,
                "NIST.800.53.R5-ELBDeletionProtectionEnabled",
                "A non-production environment (removal_policy = destroy) must be removable with "
                "cdk destroy; production environments (retain) turn deletion protection on.",
            )
        self.access_logs_bucket = self._access_logs_bucket(log_retention_days, removal_policy)
        self._log_access(self.access_logs_bucket, ACCESS_LOGS_PREFIX)

        logs_key = LogsKey(self, "LogsKey", removal_policy=removal_policy).key
        layer = dependencies_layer(self, "Dependencies")
        # The ALB signs identity headers with keys published only on a public endpoint; this
        # function fetches them for the fleet, so the instances need no route to the internet.
        self.alb_key_relay = PlatformFunction(
            self,
            "AlbKeyRelay",
            name="alb_keys",
            description="Fetches ALB signing public keys for the portal (no internet on the fleet)",
            layer=layer,
            vpc=None,
            subnets=None,
            logs_key=logs_key,
            log_retention_days=log_retention_days,
            removal_policy=removal_policy,
            environment={},
            timeout=Duration.seconds(10),
            memory_size=256,
            reserved_concurrency=2,
        )
        acknowledge(
            self.alb_key_relay.function,
            "NIST.800.53.R5-LambdaInsideVPC",
            "The relay exists to reach public-keys.auth.elb.<region>.amazonaws.com, which has no "
            "VPC endpoint; it reads and writes no data, holds no secret, and returns public keys "
            "that the portal verifies signatures with itself.",
        )
        acknowledge_findings(
            self.alb_key_relay.role,
            "AwsSolutions-IAM5",
            ["Resource::*"],
            "The only '*' is X-Ray's PutTraceSegments and PutTelemetryRecords (active tracing), "
            "which have no resource-level permissions.",
        )

        self.inference = InferenceApi(
            self,
            "Inference",
            user_pool=self.user_pool,
            api_clients_table=training.api_clients_table,
            table_key=training.key,
            vpc=vpc,
            subnets=private_subnets,
            layer=layer,
            settings=serving,
            logs_key=logs_key,
            log_retention_days=log_retention_days,
            removal_policy=removal_policy,
        )
        prices = (
            # Single quotes: systemd's EnvironmentFile would strip the JSON's double quotes.
            {"PRICE_OVERRIDES": f"'{json.dumps(serving.price_overrides, separators=(',', ':'))}'"}
            if serving.price_overrides
            else {}
        )

        # The fleet, with the environment portal_app/settings.py reads.
        self.fleet = PortalFleet(
            self,
            "Fleet",
            vpc=vpc,
            subnets=private_subnets,
            instance_type=settings.instance_type,
            min_capacity=settings.min_capacity,
            max_capacity=settings.max_capacity,
            target_cpu_percent=settings.target_cpu_percent,
            environment={
                "AWS_REGION": Aws.REGION,
                "ALB_ARN": self.load_balancer.load_balancer_arn,
                "TENANTS_TABLE": training.tenants_table.table_name,
                "JOBS_TABLE": training.jobs_table.table_name,
                "NOTIFICATIONS_TABLE": training.notifications_table.table_name,
                "TRIALS_TABLE": training.trials_table.table_name,
                "MODELS_TABLE": training.models_table.table_name,
                "DATA_BUCKET": data_lake.data_bucket.bucket_name,
                "ARTIFACTS_BUCKET": data_lake.artifacts_bucket.bucket_name,
                "CATALOG_BUCKET": data_lake.catalog_bucket.bucket_name,
                "TRAINING_REQUESTS_QUEUE_URL": training.requests_queue.queue_url,
                "NOTIFICATIONS_TOPIC_ARN": training.notifications_topic.topic_arn,
                "TENANT_ROLE_ARN": data_lake.tenant_role.role_arn,
                "USER_POOL_ID": self.user_pool.user_pool_id,
                "ADMIN_GROUP": ADMIN_GROUP,
                "PORT": str(PORT),
                "ALB_KEY_RELAY_FUNCTION": self.alb_key_relay.function.function_name,
                "DEPLOYMENTS_TABLE": training.deployments_table.table_name,
                "API_CLIENTS_TABLE": training.api_clients_table.table_name,
                "DEPLOYMENT_REQUESTS_QUEUE_URL": training.deployment_requests_queue.queue_url,
                "INFERENCE_API_URL": self.inference.url,
                "OAUTH_TOKEN_URL": f"{sign_in.domain.base_url()}/oauth2/token",
                # Retraining policies (tenant sessions) and the policy form's defaults.
                "RETRAINING_POLICIES_TABLE": training.retraining_policies_table.table_name,
                "RETRAINING_RUNS_TABLE": training.retraining_runs_table.table_name,
                "RETRAINING_REQUESTS_QUEUE_URL": training.retraining_requests_queue.queue_url,
                # Single quotes (systemd's EnvironmentFile removes them): one value, spaces and all.
                "DEFAULT_SCHEDULE": f"'{retraining.default_schedule}'",
                "DEFAULT_TIMEZONE": retraining.default_timezone,
                "FLEXIBLE_WINDOW_MINUTES": str(retraining.flexible_window_minutes),
                **prices,
            },
        )
        self.auto_scaling_group = self.fleet.auto_scaling_group
        self.instance_role = self.fleet.role

        self.target_group = elbv2.ApplicationTargetGroup(
            self,
            "TargetGroup",
            vpc=vpc,
            port=PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            target_type=elbv2.TargetType.INSTANCE,
            targets=[self.auto_scaling_group],
            deregistration_delay=Duration.seconds(30),
            health_check=elbv2.HealthCheck(
                path=HEALTH_CHECK_PATH,
                healthy_http_codes="200",
                interval=Duration.seconds(15),
                timeout=Duration.seconds(5),
                healthy_threshold_count=2,
                unhealthy_threshold_count=3,
            ),
        )
        self.https_listener = self.load_balancer.add_listener(
            "Https",
            port=443,
            protocol=elbv2.ApplicationProtocol.HTTPS,
            certificates=[elbv2.ListenerCertificate.from_certificate_manager(self.certificate)],
            ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
            open=True,
            default_action=actions.AuthenticateCognitoAction(
                user_pool=self.user_pool,
                user_pool_client=self.user_pool_client,
                user_pool_domain=sign_in.domain,
                scope="openid email profile",
                session_timeout=ALB_SESSION_TIMEOUT,
                on_unauthenticated_request=elbv2.UnauthenticatedAction.AUTHENTICATE,
                next=elbv2.ListenerAction.forward([self.target_group]),
            ),
        )
        self.http_listener = self.load_balancer.add_redirect(source_port=80, target_port=443)
        acknowledge(
            self.http_listener,
            "NIST.800.53.R5-ELBv2ACMCertificateRequired",
            "The port 80 listener serves nothing: its only action is a 301 redirect to HTTPS on "
            "443, whose listener holds the ACM certificate; a certificate cannot apply to HTTP.",
        )

        self.waf = RegionalWebAcl(
            self,
            "Waf",
            rate_limit=settings.waf_rate_limit,
            logs_key=logs_key,
            log_retention_days=log_retention_days,
            removal_policy=removal_policy,
        )
        self.web_acl = self.waf.web_acl
        self.waf_log_group = self.waf.log_group
        self.waf.associate("LoadBalancerAssociation", self.load_balancer.load_balancer_arn)

        self._grant_instance_role(data_lake, training)
        self.instance_role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="FetchAlbKeysThroughTheRelay",
                actions=["lambda:InvokeFunction"],
                resources=[self.alb_key_relay.function.function_arn],
            )
        )
        self._grant_tenant_sessions(data_lake, training)

        for name, value in {
            "LoadBalancerDnsName": self.load_balancer.load_balancer_dns_name,
            "PortalUrl": f"https://{settings.domain_name}/",
            "UserPoolId": self.user_pool.user_pool_id,
            "AutoScalingGroupName": self.auto_scaling_group.auto_scaling_group_name,
        }.items():
            CfnOutput(self, name, value=value)

    def _log_access(self, bucket: s3.Bucket, prefix: str) -> None:
        """Access logs of the load balancer to ``bucket`` under ``prefix``.

        CDK's ``log_access_logs`` needs a concrete region to pick the delivery principal. For an
        environment-agnostic stack (the example environment) the principal is the regional ELB
        account from a mapping over every region that has one, resolved at deployment; regions
        without one (opened since August 2022) use the service principal and need ``region`` set.
        """
        region = self.region
        if Token.is_unresolved(region):
            principal: iam.IPrincipal = iam.AccountPrincipal(
                self.regional_fact(FactName.ELBV2_ACCOUNT)
            )
        else:
            account = RegionInfo.get(region).elbv2_account
            principal = (
                iam.AccountPrincipal(account)
                if account
                else iam.ServicePrincipal(ELB_LOG_DELIVERY_SERVICE)
            )
        bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="LoadBalancerAccessLogDelivery",
                principals=[principal],
                actions=["s3:PutObject"],
                resources=[bucket.arn_for_objects(f"{prefix}/AWSLogs/{self.account}/*")],
            )
        )
        for key, value in {
            "access_logs.s3.enabled": "true",
            "access_logs.s3.bucket": bucket.bucket_name,
            "access_logs.s3.prefix": prefix,
        }.items():
            self.load_balancer.set_attribute(key, value)
        # ELB checks that it may write to the bucket when logging is switched on.
        assert bucket.policy is not None
        self.load_balancer.node.add_dependency(bucket.policy)

    def _access_logs_bucket(
        self, log_retention_days: int, removal_policy: RemovalPolicy
    ) -> s3.Bucket:
        # ELB access log delivery supports only SSE-S3 on its target bucket.
        bucket = s3.Bucket(
            self,
            "LoadBalancerLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            versioned=True,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireLogs",
                    expiration=Duration.days(log_retention_days),
                    noncurrent_version_expiration=Duration.days(1),
                    abort_incomplete_multipart_upload_after=Duration.days(
                        ABORT_INCOMPLETE_UPLOADS_AFTER_DAYS
                    ),
                )
            ],
            removal_policy=removal_policy,
            auto_delete_objects=removal_policy == RemovalPolicy.DESTROY,
        )
        acknowledge(
            bucket,
            "NIST.800.53.R5-S3DefaultEncryptionKMS",
            "Elastic Load Balancing delivers access logs only to buckets encrypted with SSE-S3 "
            "(AES-256, S3-managed keys); a KMS default key would make every delivery fail.",
        )
        for rule in ("AwsSolutions-S1", "NIST.800.53.R5-S3BucketLoggingEnabled"):
            acknowledge(
                bucket,
                rule,
                "This bucket is itself a log destination (the load balancer's access logs, "
                "written only by ELB log delivery); server access logs of it would need yet "
                "another log bucket, as the DataLake's access log bucket does not log itself.",
            )
        acknowledge(
            bucket,
            "NIST.800.53.R5-S3BucketReplicationEnabled",
            "Access logs of a single-region platform; S3 keeps every object in at least three "
            "AZs, and the logs expire after log_retention_days anyway.",
        )
        return bucket

    def _grant_instance_role(self, data_lake: DataLakeStack, training: TrainingStack) -> None:
        """Exactly what portal_app does with the instance role (portal_app/aws.py,
        services/admin.py): assume the tenant role; administer tenants, users and the catalog
        (the DataLake's catalog read and write policies);
        subscribe tenants' addresses to notifications. No tenant data: no S3 outside the
        catalog, none of the jobs, notifications, trials and models tables, and no SageMaker."""
        role = self.fleet.role
        role.add_managed_policy(data_lake.access_policies.catalog_read)
        role.add_managed_policy(data_lake.access_policies.catalog_write)
        policy = self.fleet.policy
        policy.add_statements(
            *tenant_assume_statements(data_lake.tenant_role),
            iam.PolicyStatement(
                sid="AdministerTenants",
                actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Scan"],
                resources=[training.tenants_table.table_arn],
            ),
            key_through_services(
                self,
                training.key,
                services=["dynamodb"],
                actions=TABLE_KEY_ACTIONS,
                sid="TrainingKeyThroughDynamoDbOnly",
            ),
            iam.PolicyStatement(
                sid="AdministerUsers",
                actions=[
                    "cognito-idp:AdminListGroupsForUser",
                    "cognito-idp:AdminCreateUser",
                    "cognito-idp:ListUsers",
                ],
                resources=[self.user_pool.user_pool_arn],
            ),
            # API clients: the portal creates a tenant's app clients (client credentials, scope
            # inference/invoke) and records whose they are; a tenant session could otherwise
            # claim another tenant's client id. Usage: GetMetricData of the session's tenant's
            # dimension only (services/usage.py), which has no resource-level form.
            iam.PolicyStatement(
                sid="AdministerApiClients",
                actions=[
                    "cognito-idp:CreateUserPoolClient",
                    "cognito-idp:DeleteUserPoolClient",
                    "cognito-idp:DescribeUserPoolClient",
                ],
                resources=[self.user_pool.user_pool_arn],
            ),
            iam.PolicyStatement(
                sid="RecordApiClients",
                actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"],
                resources=[training.api_clients_table.table_arn],
            ),
            iam.PolicyStatement(
                sid="ReadEndpointUsage",
                actions=["cloudwatch:GetMetricData"],
                resources=["*"],
            ),
            iam.PolicyStatement(
                sid="SubscribeTenantsToNotifications",
                actions=["sns:Subscribe"],
                resources=[training.notifications_topic.topic_arn],
            ),
        )

        acknowledge_findings(
            policy,
            "AwsSolutions-IAM5",
            ["Resource::*"],
            "'*' is cloudwatch:GetMetricData for the usage page, which has no resource-level "
            "form; the portal queries only the session's tenant's dimension of the inference "
            "metrics and of that tenant's endpoints.",
        )

    def _grant_tenant_sessions(self, data_lake: DataLakeStack, training: TrainingStack) -> None:
        """portal_app submits a tenant's job with that tenant's session (services/jobs.py), so
        the tenant role may send to the training-requests queue. The policy lives here, with
        its only user, so neither the DataLake nor the Training stack depends on this one."""
        iam.ManagedPolicy(
            self,
            "TenantRequestsPolicy",
            # Retraining policy requests too; the description stays as it was, because a new
            # one would make CloudFormation replace the managed policy.
            description=(
                "Tenant sessions queue training and deployment requests (the handlers check them)"
            ),
            roles=[data_lake.tenant_role],
            statements=[
                iam.PolicyStatement(
                    sid="QueueTrainingRequests",
                    actions=["sqs:SendMessage"],
                    resources=[training.requests_queue.queue_arn],
                ),
                # Deploy and undeploy (services/deployments.py); the deploy handler checks them.
                iam.PolicyStatement(
                    sid="QueueDeploymentRequests",
                    actions=["sqs:SendMessage"],
                    resources=[training.deployment_requests_queue.queue_arn],
                ),
                # Retraining policies: apply or delete a policy's schedule
                # (services/retraining.py); the retraining handler reads the record itself.
                iam.PolicyStatement(
                    sid="QueueRetrainingPolicyRequests",
                    actions=["sqs:SendMessage"],
                    resources=[training.retraining_requests_queue.queue_arn],
                ),
                key_through_services(
                    self,
                    training.key,
                    services=["sqs"],
                    actions=["kms:GenerateDataKey", "kms:Decrypt"],
                    sid="TrainingKeyThroughSqsOnly",
                ),
            ],
        )
