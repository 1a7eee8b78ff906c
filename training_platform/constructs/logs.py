"""A KMS key that CloudWatch Logs may use, for the log groups of one stack."""

from __future__ import annotations

from aws_cdk import ArnFormat, CfnResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct, IConstruct

from training_platform.constructs.nag import acknowledge


class LogsKey(Construct):
    """A rotating customer-managed key whose use by CloudWatch Logs is limited to this account's
    log groups in this region (the ``kms:EncryptionContext:aws:logs:arn`` condition)."""

    def __init__(self, scope: Construct, id: str, *, removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        self.key = kms.Key(
            self,
            "Key",
            description=f"Encrypts the CloudWatch Logs log groups of {stack.stack_name}",
            enable_key_rotation=True,
            rotation_period=Duration.days(365),
            removal_policy=removal_policy,
            pending_window=Duration.days(30),
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchLogsOfThisAccount",
                principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                actions=[
                    "kms:Encrypt*",
                    "kms:Decrypt*",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:Describe*",
                ],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": stack.format_arn(
                            service="logs",
                            resource="log-group",
                            resource_name="*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    }
                },
            )
        )


_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1096: logs.RetentionDays.THREE_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    2192: logs.RetentionDays.SIX_YEARS,
    2557: logs.RetentionDays.SEVEN_YEARS,
    2922: logs.RetentionDays.EIGHT_YEARS,
    3288: logs.RetentionDays.NINE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


def retention(days: int) -> logs.RetentionDays:
    """The RetentionDays member for a number of days (config.py allows only these)."""
    return _RETENTION[days]


def encrypted_log_group(
    scope: Construct,
    id: str,
    *,
    key: kms.IKey,
    retention_days: int,
    removal_policy: RemovalPolicy,
    log_group_name: str | None = None,
) -> logs.LogGroup:
    """A log group encrypted with ``key`` that keeps its events for ``retention_days``."""
    return logs.LogGroup(
        scope,
        id,
        encryption_key=key,
        retention=retention(retention_days),
        removal_policy=removal_policy,
        log_group_name=log_group_name,
    )


LAMBDA_FUNCTION = "AWS::Lambda::Function"


def retain_function_logs(
    root: IConstruct, *, retention_days: int, removal_policy: RemovalPolicy
) -> int:
    """Give every Lambda function under ``root`` that has no log group of its own (CDK's custom
    resource providers: default security group restriction, bucket auto-deletion) a log group
    with the configured retention, so that no log group in the app keeps events forever; the
    number of functions given one.

    The function is pointed at the new group (``LoggingConfig.LogGroup``), so the group exists
    before the function first runs and Lambda never creates an unmanaged ``/aws/lambda/...``.

    Called once after every stack is built, rather than as an aspect: an aspect is a callback
    from Node into Python for each of the app's constructs at synth, which cost a quarter of a
    second per synth; one ``find_all`` and checks on the Python side cost almost nothing.
    """
    retention_period = retention(retention_days)
    given = 0
    for node in root.node.find_all():
        if isinstance(node, lambda_.CfnFunction):
            if node.logging_config is not None:
                continue  # a platform handler, with its own encrypted log group
        elif not (
            type(node) is CfnResource  # L1 classes subclass it; providers are plain CfnResources
            and node.cfn_resource_type == LAMBDA_FUNCTION
        ):
            continue
        group = logs.LogGroup(
            node.node.scope,  # type: ignore[arg-type]
            "Logs",
            retention=retention_period,
            removal_policy=removal_policy,
        )
        # CDK's providers are plain CfnResources whose properties only an override can extend.
        node.add_property_override("LoggingConfig.LogGroup", group.log_group_name)
        acknowledge(
            group,
            "NIST.800.53.R5-CloudWatchLogGroupEncrypted",
            "Deployment-time logs of a CDK custom resource provider (no tenant or training data); "
            "CloudWatch Logs encrypts them at rest with its own key.",
        )
        given += 1
    return given
