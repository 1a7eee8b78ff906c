"""A platform Lambda function: arm64, latest Python, in the VPC, traced, with its own log group.

Each function's asset is its own folder under ``lambda/`` plus the shared ``training_common``
package, and nothing else; third-party libraries (Powertools, pydantic) come from one layer built
from ``lambda/requirements.txt`` for arm64 by ``make build`` (``make synth`` and ``make test`` run
it), so no Docker is needed to synthesize.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from training_platform.constructs.logs import encrypted_log_group
from training_platform.constructs.nag import acknowledge

ROOT = Path(__file__).resolve().parents[2]
LAMBDA_DIR = ROOT / "lambda"
SHARED_PACKAGE = "training_common"
LAYER_ZIP = ROOT / "build" / "lambda-layer.zip"
RUNTIME = lambda_.Runtime.PYTHON_3_14
ARCHITECTURE = lambda_.Architecture.ARM_64


class MissingBuildError(RuntimeError):
    """The dependencies layer has not been built."""


def function_code(name: str) -> lambda_.Code:
    """The asset of one function: ``lambda/<name>/`` and the shared package, caches excluded."""
    if not (LAMBDA_DIR / name / "app.py").is_file():
        raise ValueError(f"lambda/{name}/app.py does not exist")
    return lambda_.Code.from_asset(
        str(LAMBDA_DIR),
        exclude=[
            "*",
            f"!{name}",
            f"!{name}/**",
            f"!{SHARED_PACKAGE}",
            f"!{SHARED_PACKAGE}/**",
            "**/__pycache__",
            "**/*.pyc",
        ],
    )


def dependencies_layer(scope: Construct, id: str) -> lambda_.LayerVersion:
    """Powertools and pydantic for arm64, from ``build/lambda-layer.zip`` (see ``make build``).

    One zip file, not a directory: CDK hashes and stages one file instead of thousands."""
    require_archive(LAYER_ZIP, ["python/aws_lambda_powertools/__init__.py", "python/pydantic/"])
    return lambda_.LayerVersion(
        scope,
        id,
        code=lambda_.Code.from_asset(str(LAYER_ZIP)),
        compatible_runtimes=[RUNTIME],
        compatible_architectures=[ARCHITECTURE],
        description="Powertools for AWS Lambda and pydantic (lambda/requirements.txt)",
    )


def require_archive(archive: Path, prefixes: list[str]) -> None:
    """MissingBuildError unless ``archive`` is a zip holding a name that starts with each of
    ``prefixes`` (reads the zip's directory only)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
    except (OSError, zipfile.BadZipFile) as error:
        raise MissingBuildError(
            f"{archive} is missing or unreadable ({error.__class__.__name__}): run `make build` "
            "(make synth and make test run it)"
        ) from error
    missing = [p for p in prefixes if not any(name.startswith(p) for name in names)]
    if missing:
        raise MissingBuildError(
            f"{archive} is incomplete (missing: {', '.join(missing)}): run `make build` "
            "(make synth and make test run it)"
        )


class PlatformFunction(Construct):
    """One handler with its own role, log group (KMS, retention) and, in the VPC (``vpc`` given),
    its own security group. Outside the VPC is the exception: the caller acknowledges why."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        name: str,
        description: str,
        layer: lambda_.ILayerVersion,
        vpc: ec2.IVpc | None,
        subnets: ec2.SubnetSelection | None,
        logs_key: kms.IKey,
        log_retention_days: int,
        removal_policy: RemovalPolicy,
        environment: dict[str, str],
        timeout: Duration,
        memory_size: int = 512,
        reserved_concurrency: int | None = None,
    ) -> None:
        super().__init__(scope, id)
        self.log_group = encrypted_log_group(
            self,
            "Logs",
            key=logs_key,
            retention_days=log_retention_days,
            removal_policy=removal_policy,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"The {name} handler of the AI training platform",
        )
        self.security_group: ec2.SecurityGroup | None = None
        if vpc is not None:
            self.security_group = ec2.SecurityGroup(
                self,
                "SecurityGroup",
                vpc=vpc,
                description=f"The {name} handler: HTTPS to AWS APIs only",
                allow_all_outbound=False,
            )
            self.security_group.add_egress_rule(
                ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to AWS APIs (VPC endpoints)"
            )
        self.function = lambda_.Function(
            self,
            "Function",
            description=description,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            code=function_code(name),
            handler=f"{name}.app.handler",
            layers=[layer],
            role=self.role,
            vpc=vpc,
            vpc_subnets=subnets,
            security_groups=[self.security_group] if self.security_group else None,
            timeout=timeout,
            memory_size=memory_size,
            reserved_concurrent_executions=reserved_concurrency,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=self.log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            environment={
                "POWERTOOLS_SERVICE_NAME": name,
                "POWERTOOLS_METRICS_NAMESPACE": "AiTrainingPlatform",
                **environment,
            },
        )
        acknowledge(
            self.role,
            "NIST.800.53.R5-IAMNoInlinePolicy",
            "The handler's role has exactly one policy, generated from the grant_* calls that "
            "name each queue, table, key and bucket it uses; it is attached to nothing else.",
        )
        acknowledge(
            self.function,
            "NIST.800.53.R5-LambdaDLQ",
            "The function is invoked only by an SQS event source mapping; failed messages go to "
            "the source queue's dead-letter queue, so an asynchronous-invocation DLQ never "
            "applies.",
        )
