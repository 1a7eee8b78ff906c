"""The deployment pipeline: CDK Pipelines (CodePipeline V2) in the tooling account.

Every push to the configured branch is built once: CodeBuild runs the README's two commands
(``make synth ENV=pipeline`` and ``make test``: nag packs, cfn-lint, the whole suite), the
pipeline updates itself from the result, then deploys one :class:`PlatformStage` per
environment in order. Before an environment that needs approval, a step prints ``cdk diff`` of
that stage against what is deployed, and a person approves in the console. Deployment goes
through the target accounts' CDK bootstrap roles (``cdk bootstrap --trust <tooling account>``);
there are no long-lived keys. Failures and approvals notify the operators' topic.
"""

from __future__ import annotations

from aws_cdk import (
    CfnElement,
    CfnResource,
    Duration,
    Environment,
    RemovalPolicy,
    Stack,
    Stage,
    pipelines,
)
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from training_platform.config import PlatformConfig
from training_platform.constructs.logs import encrypted_log_group
from training_platform.constructs.nag import acknowledge, acknowledge_findings
from training_platform.constructs.secure_bucket import BucketLifecycle, SecureBucket
from training_platform.constructs.topics import email_topic
from training_platform.pipeline_config import PipelineConfig
from training_platform.platform_app import add_platform

BOOTSTRAP_QUALIFIER = "hnb659fds"
"""CDK's default bootstrap qualifier: the target accounts' roles are named with it."""
SYNTH_COMMANDS = ("make synth ENV=pipeline", "make test")
PIPELINE_LOG_RETENTION_DAYS = 365


class PlatformStage(Stage):
    """One environment's platform stacks, as a deployable unit of the pipeline."""

    def __init__(self, scope: Construct, id: str, *, config: PlatformConfig) -> None:
        super().__init__(scope, id, env=Environment(account=config.account, region=config.region))
        self.platform = add_platform(self, config)


def lookup_role_arn(config: PlatformConfig) -> str:
    """The target environment's CDK bootstrap lookup role, which ``cdk diff`` assumes to read
    the deployed templates (trusted by the tooling account after ``cdk bootstrap --trust``)."""
    return (
        f"arn:aws:iam::{config.account}:role/"
        f"cdk-{BOOTSTRAP_QUALIFIER}-lookup-role-{config.account}-{config.region}"
    )


class PipelineStack(Stack):
    """The self-mutating pipeline and its stages; ``stages`` in deployment order."""

    def __init__(
        self, scope: Construct, id: str, *, config: PipelineConfig, **kwargs: object
    ) -> None:
        super().__init__(
            scope,
            id,
            env=Environment(account=config.pipeline.account, region=config.pipeline.region),
            **kwargs,  # type: ignore[arg-type]
        )
        settings = config.pipeline
        self.key = kms.Key(
            self,
            "ArtifactsKey",
            description="Encrypts the deployment pipeline's artifacts, logs and notifications",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.artifacts = SecureBucket(
            self,
            "Artifacts",
            key=self.key,
            access_logs_bucket=None,
            lifecycle=BucketLifecycle(
                noncurrent_version_expiration_days=30,
                intelligent_tiering_after_days=0,
                expiration_days=90,
            ),
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.code_pipeline = codepipeline.Pipeline(
            self,
            "CodePipeline",
            pipeline_type=codepipeline.PipelineType.V2,
            artifact_bucket=self.artifacts.bucket,
            restart_execution_on_update=True,
        )
        self.log_group = encrypted_log_group(
            self,
            "BuildLogs",
            key=self._logs_key(),
            retention_days=PIPELINE_LOG_RETENTION_DAYS,
            removal_policy=RemovalPolicy.RETAIN,
        )
        source = pipelines.CodePipelineSource.connection(
            settings.repository, settings.branch, connection_arn=settings.connection_arn
        )
        self.synth = pipelines.CodeBuildStep(
            "Synth",
            input=source,
            commands=list(SYNTH_COMMANDS),
            partial_build_spec=codebuild.BuildSpec.from_object(
                {"phases": {"install": {"runtime-versions": {"python": "3.12", "nodejs": "20"}}}}
            ),
            primary_output_directory="cdk.out",
        )
        self.pipeline = pipelines.CodePipeline(
            self,
            "Pipeline",
            code_pipeline=self.code_pipeline,
            synth=self.synth,
            self_mutation=True,
            code_build_defaults=pipelines.CodeBuildOptions(
                build_environment=codebuild.BuildEnvironment(
                    build_image=codebuild.LinuxBuildImage.STANDARD_7_0,
                    compute_type=codebuild.ComputeType.MEDIUM,
                ),
                logging=codebuild.LoggingOptions(
                    cloud_watch=codebuild.CloudWatchLoggingOptions(log_group=self.log_group)
                ),
                timeout=Duration.minutes(90),
            ),
        )
        self.stages: list[PlatformStage] = []
        for environment in config.environments:
            # Stages belong to the app, beside this stack (a stage cannot live in a stack).
            stage = PlatformStage(scope, _stage_id(environment), config=environment)
            pre: list[pipelines.Step] = []
            if config.approval_before(environment.name):
                diff = self._diff_step(environment, stage)
                approve = pipelines.ManualApprovalStep(
                    f"Approve-{environment.name}",
                    comment=(
                        f"Deploy {environment.name} to account {environment.account} in "
                        f"{environment.region}? Read the Diff-{environment.name} step's output "
                        "first: it lists every template change of this stage."
                    ),
                )
                approve.add_step_dependency(diff)  # the diff first, then a person decides
                pre = [diff, approve]
            self.pipeline.add_stage(stage, pre=pre)
            self.stages.append(stage)
        self.pipeline.build_pipeline()
        # cfn-lint E3703 ("prefer Fn::Sub over Fn::Join with an empty delimiter") is a style rule;
        # CDK Pipelines writes each target account's deploy role ARN of the CloudFormation actions
        # as such a Join. The value is right, and the template is CDK's to write, so the check is
        # off for this one resource only.
        pipeline_resource = self.code_pipeline.node.default_child
        assert isinstance(pipeline_resource, CfnResource)
        pipeline_resource.add_metadata("cfn-lint", {"config": {"ignore_checks": ["E3703"]}})

        self.topic = email_topic(
            self,
            "Notifications",
            display_name="AI training platform: deployment pipeline",
            key=self.key,
            emails=settings.notification_emails,
        )
        self.key.grant_encrypt_decrypt(iam.ServicePrincipal("codestar-notifications.amazonaws.com"))
        self.code_pipeline.notify_on(
            "FailuresAndApprovals",
            self.topic,
            events=[
                codepipeline.PipelineNotificationEvents.PIPELINE_EXECUTION_FAILED,
                codepipeline.PipelineNotificationEvents.ACTION_EXECUTION_FAILED,
                codepipeline.PipelineNotificationEvents.MANUAL_APPROVAL_NEEDED,
                codepipeline.PipelineNotificationEvents.MANUAL_APPROVAL_FAILED,
                codepipeline.PipelineNotificationEvents.PIPELINE_EXECUTION_SUCCEEDED,
            ],
        )
        self._acknowledge()

    def _logs_key(self) -> kms.IKey:
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchLogsOfThisAccount",
                principals=[iam.ServicePrincipal(f"logs.{self.region}.amazonaws.com")],
                actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": (
                            f"arn:{self.partition}:logs:{self.region}:{self.account}:log-group:*"
                        )
                    }
                },
            )
        )
        return self.key

    def _diff_step(self, environment: PlatformConfig, stage: PlatformStage) -> pipelines.Step:
        return pipelines.CodeBuildStep(
            f"Diff-{environment.name}",
            input=self.synth,
            install_commands=["npm install --no-save --no-audit --no-fund aws-cdk@2"],
            commands=[f"npx cdk diff --app {stage.artifact_id} --no-notices --context-lines 3"],
            role_policy_statements=[
                iam.PolicyStatement(
                    sid="ReadDeployedTemplatesThroughTheLookupRole",
                    actions=["sts:AssumeRole"],
                    resources=[lookup_role_arn(environment)],
                )
            ],
        )

    def _acknowledge(self) -> None:
        bucket = self.artifacts.bucket
        for rule in ("AwsSolutions-S1", "NIST.800.53.R5-S3BucketLoggingEnabled"):
            acknowledge(
                bucket,
                rule,
                "The pipeline's artifact bucket holds only build outputs of the repository; the "
                "pipeline's own roles are its only readers and writers, and CloudTrail records "
                "them.",
            )
        acknowledge(
            bucket,
            "NIST.800.53.R5-S3BucketReplicationEnabled",
            "Pipeline artifacts are rebuilt from the repository by the next run and expire after "
            "90 days; a replica in another region would protect nothing that cannot be rebuilt.",
        )
        # The grants CDK Pipelines writes for each of its roles on the artifact bucket and key.
        acknowledge_findings(
            self,
            "AwsSolutions-IAM5",
            [
                *(
                    f"Action::s3:{action}"
                    for action in ("Abort*", "DeleteObject*", "GetBucket*", "GetObject*", "List*")
                ),
                "Action::kms:GenerateDataKey*",
                "Action::kms:ReEncrypt*",
                f"Resource::<{self.get_logical_id(_cfn(bucket))}.Arn>/*",
            ],
            "CDK Pipelines' grants on the pipeline's own artifact bucket and its key (read, "
            "write and list of artifacts): objects of that bucket only, and the key only.",
        )
        acknowledge(
            self,
            "NIST.800.53.R5-IAMNoInlinePolicy",
            "CDK Pipelines writes each pipeline role's grants as that role's own default policy; "
            "none is shared or attached elsewhere, and each names the pipeline's resources.",
        )
        assets = self.pipeline.node.find_child("Assets")
        for project in self.node.find_all():
            # Asset publishing projects share one role, acknowledged below.
            if not isinstance(project, codebuild.CfnProject) or project.node.path.startswith(
                assets.node.path + "/"
            ):
                continue
            logical_id = self.get_logical_id(project)
            acknowledge_findings(
                project.node.scope,  # type: ignore[arg-type]
                "AwsSolutions-IAM5",
                [
                    f"Resource::arn:{self.partition}:logs:{self.region}:{self.account}:log-group:"
                    f"/aws/codebuild/<{logical_id}>:*",
                    f"Resource::arn:{self.partition}:codebuild:{self.region}:{self.account}:"
                    f"report-group/<{logical_id}>-*",
                ],
                "CodeBuild's own log streams and test report groups of this one project, whose "
                "names CodeBuild derives from the project name at run time.",
            )
        acknowledge_findings(
            assets.node.find_child("FileRole"),
            "AwsSolutions-IAM5",
            [
                f"Resource::arn:{self.partition}:logs:{self.region}:{self.account}:log-group:"
                "/aws/codebuild/*",
                f"Resource::arn:{self.partition}:codebuild:{self.region}:{self.account}:"
                "report-group/*",
                "Resource::*",
            ],
            "CDK Pipelines' asset publishing role: its CodeBuild projects are created per asset, "
            "and it assumes the target accounts' file publishing roles, whose names it cannot "
            "know in advance; it can only publish assets, through the bootstrap roles.",
        )
        mutation = self.pipeline.node.find_child("UpdatePipeline").node.find_child("SelfMutation")
        acknowledge_findings(
            mutation,
            "AwsSolutions-IAM5",
            [f"Resource::arn:*:iam::{self.account}:role/*", "Resource::*"],
            "The self-mutation step runs `cdk deploy` of this pipeline stack: it assumes this "
            "account's CDK bootstrap roles (named by qualifier) and lists stacks, which take no "
            "resource-level permission.",
        )


def _cfn(construct: Construct) -> CfnElement:
    child = construct.node.default_child
    assert isinstance(child, CfnElement), f"{construct.node.path} has no CloudFormation resource"
    return child


def _stage_id(config: PlatformConfig) -> str:
    return config.name.title().replace("-", "")
