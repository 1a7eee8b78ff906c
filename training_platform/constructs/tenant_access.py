"""The tenant access role: attribute-based access control on the session tag ``tenant``.

The portal acts for a tenant with credentials from ``sts:AssumeRole`` on this role, passing the
session tag ``tenant=<tenant id>``. Every permission of the role names
``${aws:PrincipalTag/tenant}``, so one role serves every tenant and adding a tenant changes no
template: S3 only under ``tenants/<tenant>/``, DynamoDB only on items whose partition key is the
tenant id, SageMaker only on training and tuning jobs tagged with the tenant and on the model
packages of the tenant's own model package group, whose ARN is built from the tenant id
(``model-package/<tenant>-models/*``: SageMaker's model package actions take no tag condition
that a version carries at creation, see README "The IAM condition keys of tuning and the
registry").

The DynamoDB tables live in the Training stack, which depends on the DataLake stack. The DataLake
stack therefore must not name them (that would be a dependency cycle); the Training stack attaches
:func:`tenant_table_statements` to :attr:`TenantAccessRole.role` with :func:`tenant_table_policy`,
in its own stack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from training_platform.constructs.key_use import key_through_services
from training_platform.constructs.nag import acknowledge, logical_id, nag_value

TENANT_TAG = "tenant"
TENANT = "${aws:PrincipalTag/tenant}"
TENANT_PREFIX = f"tenants/{TENANT}/"

# The Portal stack tags its instance role with this; only principals so tagged may assume the role.
COMPONENT_TAG_KEY = "training-platform-component"
PORTAL_COMPONENT = "portal"

# Tenant ids are ^[a-z][a-z0-9-]{2,23}$ (contract.md). IAM conditions have no regular expressions:
# the trust policy requires 3 to 24 characters and refuses every character that STS allows in a
# tag value but a tenant id never holds, above all '/', which would reach into another prefix.
# STS itself refuses '*', '?' and '$' (wildcards and policy variables) in tag values.
# Upper-case and non-ASCII letters cannot be enumerated; they cannot widen access either (S3 keys,
# DynamoDB keys and tag comparisons are case-sensitive, exact matches).
TENANT_TAG_MIN_LENGTH = 3
TENANT_TAG_MAX_LENGTH = 24
FORBIDDEN_TENANT_TAG_PATTERNS = (
    "*/*",
    "* *",
    "*_*",
    "*.*",
    "*:*",
    "*=*",
    "*+*",
    "*@*",
    "?" * (TENANT_TAG_MAX_LENGTH + 1) + "*",
)

# DynamoDB actions a tenant session may be granted on its own items: ones that always carry a
# partition key (no Scan, no batch or PartiQL operations), so dynamodb:LeadingKeys is never empty.
TENANT_ITEM_ACTIONS = frozenset(
    {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem"}
)
TENANT_TRAINING_JOB_ACTIONS = ("sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob")
TENANT_TUNING_JOB_ACTIONS = (
    "sagemaker:DescribeHyperParameterTuningJob",
    "sagemaker:StopHyperParameterTuningJob",
)
# The tenant's model package group, named as training_common.registry.model_package_group_name
# names it at run time; its versions' ARNs are model-package/<group>/<version>.
TENANT_MODEL_PACKAGE_GROUP = f"{TENANT}-models"
# What a tenant may set a version's approval status to (training_common.registry.DECISIONS).
TENANT_APPROVAL_DECISIONS = ("Approved", "Rejected")
RETRAINING_OBJECTS = "tenants/*/retraining/*"
"""Retraining runs' manifests (``training_common.manifest_key``): written by the platform only."""
TENANT_OBJECT_READ_ACTIONS = ("s3:GetObject", "s3:GetObjectVersion")
TENANT_OBJECT_WRITE_ACTIONS = ("s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject")


def tenant_trust_conditions() -> dict[str, dict[str, object]]:
    """Conditions on ``sts:AssumeRole`` and ``sts:TagSession`` into the tenant role."""
    return {
        "StringEquals": {f"aws:PrincipalTag/{COMPONENT_TAG_KEY}": PORTAL_COMPONENT},
        **tenant_tag_conditions(),
    }


def tenant_tag_conditions() -> dict[str, dict[str, object]]:
    """The session tag of a tenant-bound session: exactly one tag, ``tenant``, whose value is
    shaped like a tenant id (see :data:`FORBIDDEN_TENANT_TAG_PATTERNS`)."""
    return {
        "Null": {f"aws:RequestTag/{TENANT_TAG}": "false"},
        "ForAllValues:StringEquals": {"aws:TagKeys": [TENANT_TAG]},
        "StringLike": {f"aws:RequestTag/{TENANT_TAG}": "?" * TENANT_TAG_MIN_LENGTH + "*"},
        "StringNotLike": {f"aws:RequestTag/{TENANT_TAG}": list(FORBIDDEN_TENANT_TAG_PATTERNS)},
    }


class TenantAccessRole(Construct):
    """The role the portal assumes for one tenant at a time (see the module docstring).

    ``buckets_read`` are read under the tenant's prefix (tenant data and model artifacts);
    ``buckets_write`` may also be written and deleted there (tenant data only: artifacts are
    written by SageMaker). ``bucket_key`` may be used only through S3.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        buckets_read: Sequence[s3.IBucket],
        buckets_write: Sequence[s3.IBucket],
        bucket_key: kms.IKey,
    ) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        principal = iam.AccountPrincipal(stack.account).with_conditions(tenant_trust_conditions())
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.SessionTagsPrincipal(principal),
            description=(
                "Assumed by the portal for one tenant (session tag tenant=<id>); every permission "
                "is limited to that tenant's data"
            ),
        )
        statements = [
            iam.PolicyStatement(
                sid="ReadOwnObjects",
                actions=list(TENANT_OBJECT_READ_ACTIONS),
                resources=[b.arn_for_objects(f"{TENANT_PREFIX}*") for b in buckets_read],
            ),
            iam.PolicyStatement(
                sid="WriteOwnObjects",
                actions=list(TENANT_OBJECT_WRITE_ACTIONS),
                resources=[b.arn_for_objects(f"{TENANT_PREFIX}*") for b in buckets_write],
            ),
            iam.PolicyStatement(
                sid="ListOwnPrefix",
                actions=["s3:ListBucket"],
                resources=[b.bucket_arn for b in buckets_read],
                conditions={"StringLike": {"s3:prefix": [f"{TENANT_PREFIX}*"]}},
            ),
            key_through_services(
                self,
                bucket_key,
                services=["s3"],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                sid="UseBucketKeyThroughS3",
            ),
            iam.PolicyStatement(
                sid="OwnTrainingJobs",
                actions=list(TENANT_TRAINING_JOB_ACTIONS),
                resources=[_sagemaker_arn(stack, "training-job", "*")],
                conditions={"StringEquals": {f"aws:ResourceTag/{TENANT_TAG}": TENANT}},
            ),
            iam.PolicyStatement(
                sid="OwnTuningJobs",
                actions=list(TENANT_TUNING_JOB_ACTIONS),
                resources=[_sagemaker_arn(stack, "hyper-parameter-tuning-job", "*")],
                conditions={"StringEquals": {f"aws:ResourceTag/{TENANT_TAG}": TENANT}},
            ),
            iam.PolicyStatement(
                sid="OwnModelPackageGroup",
                actions=["sagemaker:DescribeModelPackageGroup"],
                resources=[
                    _sagemaker_arn(stack, "model-package-group", TENANT_MODEL_PACKAGE_GROUP)
                ],
            ),
            iam.PolicyStatement(
                sid="OwnModelPackages",
                actions=["sagemaker:DescribeModelPackage"],
                resources=[
                    _sagemaker_arn(stack, "model-package", f"{TENANT_MODEL_PACKAGE_GROUP}/*")
                ],
            ),
            iam.PolicyStatement(
                sid="DecideOnOwnModelPackages",
                actions=["sagemaker:UpdateModelPackage"],
                resources=[
                    _sagemaker_arn(stack, "model-package", f"{TENANT_MODEL_PACKAGE_GROUP}/*")
                ],
                conditions={
                    "StringEquals": {
                        "sagemaker:ModelApprovalStatus": list(TENANT_APPROVAL_DECISIONS)
                    }
                },
            ),
            # The launch handler writes each retraining run's manifest there and checks it;
            # SageMaker reads it when the job starts. Were it writable by the tenant, a tenant
            # could rewrite a checked manifest to list another tenant's objects in between.
            iam.PolicyStatement(
                sid="DenyWritingPlatformManifests",
                effect=iam.Effect.DENY,
                actions=list(TENANT_OBJECT_WRITE_ACTIONS),
                resources=[b.arn_for_objects(RETRAINING_OBJECTS) for b in buckets_write],
            ),
            iam.PolicyStatement(
                sid="DenyWithoutTenantTag",
                effect=iam.Effect.DENY,
                actions=["s3:*", "dynamodb:*", "sagemaker:*", "kms:*", "sqs:*"],
                resources=["*"],
                conditions={"Null": {f"aws:PrincipalTag/{TENANT_TAG}": "true"}},
            ),
        ]
        self.policy = iam.ManagedPolicy(
            self,
            "Policy",
            description="Tenant data access, limited by the session tag tenant",
            statements=statements,
            roles=[self.role],
        )
        for bucket in dict.fromkeys([*buckets_read, *buckets_write]):
            acknowledge(
                self.policy,
                f"AwsSolutions-IAM5[Resource::<{logical_id(bucket)}.Arn>/"
                "tenants/<aws:PrincipalTag/tenant>/*]",
                "Objects only under tenants/${aws:PrincipalTag/tenant}/: the wildcard spans the "
                "caller's own tenant prefix (the session tag, which the trust policy checks).",
            )
        sagemaker = (
            f"arn:{nag_value(stack.partition, 'Partition')}:sagemaker:"
            f"{nag_value(stack.region, 'Region')}:{nag_value(stack.account, 'AccountId')}:"
        )
        acknowledge(
            self.policy,
            f"AwsSolutions-IAM5[Resource::{sagemaker}training-job/*]",
            "Training job names are not known in advance; the statement's condition "
            "aws:ResourceTag/tenant = ${aws:PrincipalTag/tenant} limits it to the caller's jobs.",
        )
        acknowledge(
            self.policy,
            f"AwsSolutions-IAM5[Resource::{sagemaker}hyper-parameter-tuning-job/*]",
            "Tuning job names are hashes of job ids created at run time; the statement's "
            "condition aws:ResourceTag/tenant = ${aws:PrincipalTag/tenant} limits Describe and "
            "Stop to the caller's own tuning jobs.",
        )
        acknowledge(
            self.policy,
            f"AwsSolutions-IAM5[Resource::{sagemaker}model-package/"
            "<aws:PrincipalTag/tenant>-models/*]",
            "The versions of the caller's own model package group only: the ARN is built from "
            "the session tag (model-package/${aws:PrincipalTag/tenant}-models/<version>), and "
            "the wildcard spans version numbers; UpdateModelPackage may only set Approved or "
            "Rejected.",
        )


def _sagemaker_arn(stack: Stack, resource: str, name: str) -> str:
    """``arn:<partition>:sagemaker:<region>:<account>:<resource>/<name>`` of ``stack``."""
    return stack.format_arn(
        service="sagemaker",
        resource=resource,
        resource_name=name,
        arn_format=ArnFormat.SLASH_RESOURCE_NAME,
    )


@dataclass(frozen=True)
class TenantTableGrant:
    """What tenant sessions may do with their own items of one table: exactly what the portal
    does with that table through them, and no more (a tenant session must never write a record
    that governs it, such as its own quota or status in the tenants table)."""

    sid: str
    table: dynamodb.ITable
    actions: tuple[str, ...]
    indexes: tuple[str, ...] = ()
    """Secondary indexes the session queries (``Query`` on ``<table>/index/<name>``)."""
    attributes: tuple[str, ...] = ()
    """When given, the only attributes a request may touch (``dynamodb:Attributes``), and it
    may return none of the item (``dynamodb:ReturnValues``)."""

    def __post_init__(self) -> None:
        unkeyed = set(self.actions) - TENANT_ITEM_ACTIONS
        if unkeyed or not self.actions:
            raise ValueError(
                f"{self.sid}: tenant sessions get only {sorted(TENANT_ITEM_ACTIONS)}, which "
                f"always carry a partition key; got {sorted(self.actions)}"
            )


def tenant_table_statements(grants: Sequence[TenantTableGrant]) -> list[iam.PolicyStatement]:
    """The tenant role's DynamoDB permissions: for each grant, its actions on items whose
    partition key is the caller's tenant id, and nothing else.

    ``ForAllValues:StringEquals`` on ``dynamodb:LeadingKeys`` compares every partition key the
    request touches with the session tag; the actions always carry one (see
    :data:`TENANT_ITEM_ACTIONS`), so the set of leading keys is never empty.
    """
    return [
        iam.PolicyStatement(
            sid=grant.sid,
            actions=sorted(grant.actions),
            resources=[
                grant.table.table_arn,
                *(f"{grant.table.table_arn}/index/{name}" for name in grant.indexes),
            ],
            conditions=_item_conditions(grant),
        )
        for grant in grants
    ]


def _item_conditions(grant: TenantTableGrant) -> dict[str, dict[str, object]]:
    conditions: dict[str, dict[str, object]] = {
        "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [TENANT]}
    }
    if grant.attributes:
        conditions["ForAllValues:StringEquals"]["dynamodb:Attributes"] = list(grant.attributes)
        conditions["StringEqualsIfExists"] = {"dynamodb:ReturnValues": "NONE"}
    return conditions


def tenant_table_policy(
    scope: Construct,
    id: str,
    *,
    role: iam.IRole,
    grants: Sequence[TenantTableGrant],
) -> iam.ManagedPolicy:
    """Attach :func:`tenant_table_statements` to the tenant role, from the stack of ``scope``
    (the Training stack, which owns the tables). A customer managed policy, not an inline one,
    so that the NIST pack's IAMNoInlinePolicy rule holds."""
    return iam.ManagedPolicy(
        scope,
        id,
        description="Tenant access to its own items (dynamodb:LeadingKeys = session tag tenant)",
        statements=tenant_table_statements(grants),
        roles=[role],
    )


def tenant_assume_statements(tenant_role: iam.IRole) -> list[iam.PolicyStatement]:
    """What the portal's instance role needs to act for a tenant: assume the tenant role and
    set the session tag on it (the trust policy checks the tag and the caller's component tag)."""
    return [
        iam.PolicyStatement(
            sid="AssumeTenantRole",
            actions=["sts:AssumeRole", "sts:TagSession"],
            resources=[tenant_role.role_arn],
        )
    ]
