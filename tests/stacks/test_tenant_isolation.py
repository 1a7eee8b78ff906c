"""Tenant isolation, read from the synthesized template: every permission of the tenant role is
bound to the caller's own session tag ``tenant``, and only the portal may assume the role with a
well-formed tag.

The checker (:func:`unbound_grants`) is tested on statements that leak, so that a test that passes
cannot be passing by looking at nothing.
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Template

from tests.conftest import Synthesized
from training_platform.constructs.tenant_access import (
    TenantTableGrant,
    tenant_assume_statements,
    tenant_table_policy,
)

TENANT = "${aws:PrincipalTag/tenant}"
PREFIX = f"tenants/{TENANT}/"
TENANT_ROLE = "TenantAccessRoleD50CA26B"
TENANT_DATA_SERVICES = ("s3", "dynamodb", "sagemaker", "kms")
# SageMaker resources a statement may name by the tenant id instead of a tag condition: the
# tenant's own model package group and its versions (model-package/<group>/<version>).
TENANT_GROUP_ARN = re.compile(
    r"^arn:[^:]+:sagemaker:[^:]+:[^:]+:model-package-group/" + re.escape(TENANT) + "-models$"
)
TENANT_VERSIONS_ARN = re.compile(
    r"^arn:[^:]+:sagemaker:[^:]+:[^:]+:model-package/" + re.escape(TENANT) + r"-models/\*$"
)
TENANT_DECISIONS = {"Approved", "Rejected"}
# How flat() renders a pseudo parameter of an environment-agnostic stack ({"Ref": "AWS::Region"}).
_PSEUDO_PARAMETER = re.compile(r'\{"Ref": "AWS::(\w+)"\}')


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def flat(value: Any) -> str:
    """An ARN as one string: a Fn::Join's parts concatenated, other intrinsics as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(flat(part) for part in parts)
    return json.dumps(value, sort_keys=True)


def unbound_grants(statement: dict[str, Any]) -> list[str]:
    """Why an Allow statement would reach tenant data without the tenant condition (empty: fine)."""
    if statement["Effect"] != "Allow":
        return []
    actions = as_list(statement["Action"])
    resources = [flat(r) for r in as_list(statement.get("Resource", []))]
    conditions = statement.get("Condition", {})
    problems = []
    for action in actions:
        service, _, name = action.partition(":")
        if service not in TENANT_DATA_SERVICES:
            problems.append(f"{action}: a service the tenant role has no business with")
        elif "*" in name:
            problems.append(f"{action}: a wildcard action")
        elif service == "s3" and name == "ListBucket":
            prefixes = as_list(conditions.get("StringLike", {}).get("s3:prefix", []))
            if not prefixes or not all(p.startswith(PREFIX) for p in prefixes):
                problems.append(f"{action}: not limited by s3:prefix to {PREFIX}")
        elif service == "s3":
            if not resources or not all(r.endswith(f"/{PREFIX}*") for r in resources):
                problems.append(f"{action}: resources outside {PREFIX}: {resources}")
        elif service == "dynamodb":
            keys = conditions.get("ForAllValues:StringEquals", {}).get("dynamodb:LeadingKeys")
            if keys != [TENANT]:
                problems.append(f"{action}: not limited by dynamodb:LeadingKeys to {TENANT}")
        elif service == "sagemaker":
            problems += _sagemaker_problems(action, resources, conditions)
        elif service == "kms":
            via = flat(conditions.get("StringEquals", {}).get("kms:ViaService", ""))
            if not (via.startswith("s3.") and via.endswith(".amazonaws.com")) or "*" in via:
                problems.append(f"{action}: usable outside S3 (no kms:ViaService s3)")
    return problems


def _sagemaker_problems(action: str, resources: list[str], conditions: dict[str, Any]) -> list[str]:
    """A SageMaker grant is the tenant's own when it is conditioned on the resource's tenant
    tag, or when every resource is an ARN built from the tenant id (the model registry, whose
    actions take no tag condition a version carries when it is created). No List action: a
    listing can't be limited to the tenant (the portal lists from DynamoDB)."""
    name = action.partition(":")[2]
    if name.startswith("List"):
        return [f"{action}: a listing reaches every tenant's resources"]
    tagged = conditions.get("StringEquals", {}).get("aws:ResourceTag/tenant") == TENANT
    arns = [_PSEUDO_PARAMETER.sub(r"\1", r) for r in resources]
    named = bool(arns) and all(
        TENANT_GROUP_ARN.match(r) or TENANT_VERSIONS_ARN.match(r) for r in arns
    )
    if not (tagged or named):
        return [f"{action}: neither aws:ResourceTag/tenant nor ARNs of the tenant's own group"]
    if name == "UpdateModelPackage":
        statuses = as_list(conditions.get("StringEquals", {}).get("sagemaker:ModelApprovalStatus"))
        if not statuses or statuses == [None] or not set(statuses) <= TENANT_DECISIONS:
            return [f"{action}: not limited by sagemaker:ModelApprovalStatus to a decision"]
    return []


def tenant_role_statements(synthesized: Synthesized) -> list[dict[str, Any]]:
    """Every identity statement that reaches the tenant role: inline policies, customer managed
    policies attached to it, and no AWS managed policy (asserted)."""
    template = synthesized.raw("DataLake")
    role = template["Resources"][TENANT_ROLE]["Properties"]
    assert "ManagedPolicyArns" not in role and "Policies" not in role
    statements: list[dict[str, Any]] = []
    attached = 0
    for resource in template["Resources"].values():
        if resource["Type"] in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy") and {
            "Ref": TENANT_ROLE
        } in resource["Properties"].get("Roles", []):
            attached += 1
            statements.extend(resource["Properties"]["PolicyDocument"]["Statement"])
    assert attached == 1
    return statements


# --- The checker catches leaks -------------------------------------------------------------------

OWN_VERSIONS = f"arn:aws:sagemaker:eu-west-1:1:model-package/{TENANT}-models/*"


@pytest.mark.parametrize(
    "statement",
    [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::data/*"},
        {
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": ["arn:aws:s3:::data/tenants/${aws:PrincipalTag/tenant}/*", "arn:x/*"],
        },
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::data"},
        {
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": "arn:aws:s3:::data",
            "Condition": {"StringLike": {"s3:prefix": ["tenants/*"]}},
        },
        {"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::data/tenants/x/*"},
        {"Effect": "Allow", "Action": "dynamodb:Query", "Resource": "arn:aws:dynamodb:::t"},
        {"Effect": "Allow", "Action": "sagemaker:StopTrainingJob", "Resource": "*"},
        {
            "Effect": "Allow",
            "Action": "sagemaker:StopHyperParameterTuningJob",
            "Resource": "arn:aws:sagemaker:eu-west-1:1:hyper-parameter-tuning-job/*",
        },
        {
            "Effect": "Allow",
            "Action": "sagemaker:DescribeModelPackage",
            "Resource": "arn:aws:sagemaker:eu-west-1:1:model-package/*-models/*",
        },
        {  # ${tenant}* would reach acme2-models too
            "Effect": "Allow",
            "Action": "sagemaker:DescribeModelPackage",
            "Resource": "arn:aws:sagemaker:eu-west-1:1:model-package/${aws:PrincipalTag/tenant}*",
        },
        {
            "Effect": "Allow",
            "Action": "sagemaker:DescribeModelPackageGroup",
            "Resource": [
                "arn:aws:sagemaker:eu-west-1:1:model-package-group/${aws:PrincipalTag/tenant}-models",
                "arn:aws:sagemaker:eu-west-1:1:model-package-group/globex-models",
            ],
        },
        {
            "Effect": "Allow",
            "Action": "sagemaker:UpdateModelPackage",
            "Resource": OWN_VERSIONS,
        },
        {
            "Effect": "Allow",
            "Action": "sagemaker:UpdateModelPackage",
            "Resource": OWN_VERSIONS,
            "Condition": {
                "StringEquals": {
                    "sagemaker:ModelApprovalStatus": ["Approved", "PendingManualApproval"]
                }
            },
        },
        {
            "Effect": "Allow",
            "Action": "sagemaker:ListModelPackages",
            "Resource": OWN_VERSIONS,
        },
        {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*"},
        {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"},
    ],
)
def test_checker_flags_grants_without_the_tenant_condition(statement: dict[str, Any]) -> None:
    assert unbound_grants(statement) != []


# --- The tenant role in the template -------------------------------------------------------------


def test_every_tenant_role_grant_is_bound_to_the_tenant(synthesized: Synthesized) -> None:
    statements = tenant_role_statements(synthesized)
    allows = [s for s in statements if s["Effect"] == "Allow"]
    assert len(allows) == 9
    problems = {json.dumps(s["Sid"]): unbound_grants(s) for s in allows}
    assert all(p == [] for p in problems.values()), problems


def test_tenant_role_reaches_each_bucket_as_intended(full: Synthesized) -> None:
    by_sid = {s["Sid"]: s for s in tenant_role_statements(full)}
    read = [flat(r) for r in by_sid["ReadOwnObjects"]["Resource"]]
    write = [flat(r) for r in as_list(by_sid["WriteOwnObjects"]["Resource"])]
    assert sorted(r.split('"')[3] for r in read) == [
        "ArtifactsBucket88671897",
        "TenantDataBucket7376A0FC",
    ]
    assert [r.split('"')[3] for r in write] == ["TenantDataBucket7376A0FC"]
    assert sorted(by_sid["WriteOwnObjects"]["Action"]) == [
        "s3:AbortMultipartUpload",
        "s3:DeleteObject",
        "s3:PutObject",
    ]
    everything = json.dumps(tenant_role_statements(full))
    assert "CatalogBucket" not in everything and "AccessLogsBucket" not in everything
    assert by_sid["UseBucketKeyThroughS3"]["Condition"] == {
        "StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}
    }
    assert by_sid["UseBucketKeyThroughS3"]["Resource"] == {"Fn::GetAtt": ["DataKey17AFBB84", "Arn"]}
    assert by_sid["OwnTrainingJobs"]["Resource"] == (
        "arn:aws:sagemaker:eu-west-1:111111111111:training-job/*"
    )


def test_tenant_role_reaches_its_tuning_jobs_and_its_own_model_registry(full: Synthesized) -> None:
    """Tuning jobs by their tenant tag; the registry by ARNs built from the tenant id; approval
    status only to a decision; no listing and nothing else of SageMaker."""
    by_sid = {s["Sid"]: s for s in tenant_role_statements(full)}
    sagemaker = "arn:aws:sagemaker:eu-west-1:111111111111:"
    own_tag = {"StringEquals": {"aws:ResourceTag/tenant": TENANT}}
    assert by_sid["OwnTuningJobs"] == {
        "Sid": "OwnTuningJobs",
        "Effect": "Allow",
        "Action": [
            "sagemaker:DescribeHyperParameterTuningJob",
            "sagemaker:StopHyperParameterTuningJob",
        ],
        "Resource": f"{sagemaker}hyper-parameter-tuning-job/*",
        "Condition": own_tag,
    }
    assert by_sid["OwnModelPackageGroup"] == {
        "Sid": "OwnModelPackageGroup",
        "Effect": "Allow",
        "Action": "sagemaker:DescribeModelPackageGroup",
        "Resource": f"{sagemaker}model-package-group/{TENANT}-models",
    }
    assert by_sid["OwnModelPackages"] == {
        "Sid": "OwnModelPackages",
        "Effect": "Allow",
        "Action": "sagemaker:DescribeModelPackage",
        "Resource": f"{sagemaker}model-package/{TENANT}-models/*",
    }
    assert by_sid["DecideOnOwnModelPackages"] == {
        "Sid": "DecideOnOwnModelPackages",
        "Effect": "Allow",
        "Action": "sagemaker:UpdateModelPackage",
        "Resource": f"{sagemaker}model-package/{TENANT}-models/*",
        "Condition": {"StringEquals": {"sagemaker:ModelApprovalStatus": ["Approved", "Rejected"]}},
    }
    actions = sorted(
        a
        for s in by_sid.values()
        if s["Effect"] == "Allow"
        for a in as_list(s["Action"])
        if a.startswith("sagemaker:")
    )
    assert actions == [
        "sagemaker:DescribeHyperParameterTuningJob",
        "sagemaker:DescribeModelPackage",
        "sagemaker:DescribeModelPackageGroup",
        "sagemaker:DescribeTrainingJob",
        "sagemaker:StopHyperParameterTuningJob",
        "sagemaker:StopTrainingJob",
        "sagemaker:UpdateModelPackage",
    ]


def test_registry_arns_name_the_group_the_domain_package_names() -> None:
    """One function names a tenant's model package group (training_common.registry); the
    tenant role's ARNs, the handler roles' ARNs and the decisions a tenant may take agree."""
    from training_common import DECISIONS, model_package_group_name, tenant_of_group

    from training_platform.constructs import tenant_access
    from training_platform.stacks import training

    assert tenant_access.TENANT_MODEL_PACKAGE_GROUP.replace(TENANT, "acme") == (
        model_package_group_name("acme")
    )
    assert set(tenant_access.TENANT_APPROVAL_DECISIONS) == {d.value for d in DECISIONS}
    group = training.MODEL_PACKAGE_GROUPS.removeprefix("model-package-group/")
    assert fnmatch.fnmatchcase(model_package_group_name("acme"), group)
    assert tenant_of_group(group.replace("*", "acme")) == "acme"
    versions = training.MODEL_PACKAGE_VERSIONS.removeprefix("model-package/")
    assert fnmatch.fnmatchcase(f"{model_package_group_name('acme')}/1", versions)


def test_sessions_without_a_tenant_tag_are_denied_everything(synthesized: Synthesized) -> None:
    denies = [
        s
        for s in tenant_role_statements(synthesized)
        if s["Effect"] == "Deny" and s["Sid"] != "DenyWritingPlatformManifests"
    ]
    assert denies == [
        {
            "Action": ["dynamodb:*", "kms:*", "s3:*", "sagemaker:*", "sqs:*"],
            "Condition": {"Null": {"aws:PrincipalTag/tenant": "true"}},
            "Effect": "Deny",
            "Resource": "*",
            "Sid": "DenyWithoutTenantTag",
        }
    ]


def test_a_tenant_session_cannot_rewrite_a_retraining_manifest(synthesized: Synthesized) -> None:
    """The launch handler checks a run's manifest before the launch and SageMaker reads it when
    the job starts: no tenant may write it in between (the Allow on the tenant's own prefix
    would otherwise cover it)."""
    [deny] = [
        s
        for s in tenant_role_statements(synthesized)
        if s.get("Sid") == "DenyWritingPlatformManifests"
    ]
    assert deny["Effect"] == "Deny"
    assert sorted(deny["Action"]) == ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:PutObject"]
    assert "Condition" not in deny
    resources = deny["Resource"] if isinstance(deny["Resource"], list) else [deny["Resource"]]
    assert resources and all(
        json.dumps(r).endswith('/tenants/*/retraining/*"]]}') for r in resources
    ), resources


def test_trust_policy_requires_the_portal_and_a_well_formed_tenant_tag(full: Synthesized) -> None:
    trust = full.raw("DataLake")["Resources"][TENANT_ROLE]["Properties"]["AssumeRolePolicyDocument"]
    [statement] = trust["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"AWS": "arn:aws:iam::111111111111:root"}
    assert sorted(statement["Action"]) == ["sts:AssumeRole", "sts:TagSession"]
    conditions = statement["Condition"]
    assert conditions["StringEquals"] == {"aws:PrincipalTag/training-platform-component": "portal"}
    assert conditions["Null"] == {"aws:RequestTag/tenant": "false"}
    assert conditions["ForAllValues:StringEquals"] == {"aws:TagKeys": ["tenant"]}
    assert conditions["StringLike"] == {"aws:RequestTag/tenant": "???*"}
    refused = conditions["StringNotLike"]["aws:RequestTag/tenant"]
    assert "*/*" in refused  # a tenant value with '/' would reach into a sub-prefix
    assert "?" * 25 + "*" in refused  # tenant ids are at most 24 characters
    assert set(conditions) == {
        "StringEquals",
        "Null",
        "ForAllValues:StringEquals",
        "StringLike",
        "StringNotLike",
    }


@pytest.mark.parametrize(
    ("tag", "accepted"),
    [
        ("acme", True),
        ("acme-robotics", True),
        ("a" * 24, True),
        ("ab", False),
        ("a" * 25, False),
        ("acme/datasets", False),
        ("acme robotics", False),
        ("acme.robotics", False),
        ("acme_robotics", False),
        ("acme:robotics", False),
        ("acme@robotics", False),
    ],
)
def test_trust_patterns_accept_tenant_ids_only(full: Synthesized, tag: str, accepted: bool) -> None:
    """The StringLike/StringNotLike patterns evaluated the way IAM does ('*' any run, '?' one)."""
    trust = full.raw("DataLake")["Resources"][TENANT_ROLE]["Properties"]["AssumeRolePolicyDocument"]
    conditions = trust["Statement"][0]["Condition"]

    def like(value: str, pattern: str) -> bool:
        assert "[" not in pattern  # fnmatch would read it as a character class; IAM does not
        return fnmatch.fnmatchcase(value, pattern)

    required = as_list(conditions["StringLike"]["aws:RequestTag/tenant"])
    refused = as_list(conditions["StringNotLike"]["aws:RequestTag/tenant"])
    result = any(like(tag, p) for p in required) and not any(like(tag, p) for p in refused)
    assert result is accepted


# --- DynamoDB statements (the Training stack attaches them) --------------------------------------


def test_table_statements_limit_items_to_the_tenant_partition(tmp_path: Path) -> None:
    app = App(outdir=str(tmp_path))
    stack = Stack(app, "Probe")
    jobs = dynamodb.Table(
        stack,
        "Jobs",
        partition_key=dynamodb.Attribute(name="tenant_id", type=dynamodb.AttributeType.STRING),
        sort_key=dynamodb.Attribute(name="job_id", type=dynamodb.AttributeType.STRING),
    )
    tenants = dynamodb.Table(
        stack,
        "Tenants",
        partition_key=dynamodb.Attribute(name="tenant_id", type=dynamodb.AttributeType.STRING),
    )
    role = iam.Role.from_role_arn(stack, "TenantRole", "arn:aws:iam::111111111111:role/tenant")
    tenant_table_policy(
        stack,
        "TenantTables",
        role=role,
        grants=[
            TenantTableGrant("ReadTenant", tenants, ("dynamodb:GetItem",)),
            TenantTableGrant(
                "OwnJobs", jobs, ("dynamodb:Query", "dynamodb:PutItem"), indexes=("ByCreatedAt",)
            ),
        ],
    )
    template = Template.from_stack(stack).to_json()
    [policy] = [r for r in template["Resources"].values() if r["Type"] == "AWS::IAM::ManagedPolicy"]
    assert policy["Properties"]["Roles"] == ["tenant"]
    read, own = policy["Properties"]["PolicyDocument"]["Statement"]
    for statement in (read, own):
        assert unbound_grants(statement) == []
        assert statement["Condition"] == {
            "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [TENANT]}
        }
    assert (read["Sid"], read["Action"]) == ("ReadTenant", "dynamodb:GetItem")
    assert read["Resource"]["Fn::GetAtt"][0].startswith("Tenants")
    assert sorted(own["Action"]) == ["dynamodb:PutItem", "dynamodb:Query"]
    resources = [flat(r) for r in own["Resource"]]
    assert len(resources) == 2
    assert any(r.endswith("/index/ByCreatedAt") for r in resources)
    assert not any(r.endswith("*") for r in resources)


def test_table_grants_refuse_unkeyed_operations() -> None:
    """Scan, batch and PartiQL requests may carry no leading key (ForAllValues of nothing is
    true), so a grant that names one fails at synth."""
    table = dynamodb.Table(
        Stack(App(), "Probe"),
        "Table",
        partition_key=dynamodb.Attribute(name="tenant_id", type=dynamodb.AttributeType.STRING),
    )
    for action in (
        "dynamodb:Scan",
        "dynamodb:BatchGetItem",
        "dynamodb:PartiQLSelect",
        "dynamodb:*",
    ):
        with pytest.raises(ValueError, match="always carry a partition key"):
            TenantTableGrant("Probe", table, ("dynamodb:GetItem", action))
    with pytest.raises(ValueError, match="always carry a partition key"):
        TenantTableGrant("Probe", table, ())


def test_a_tenant_session_only_reads_the_tenants_table(full: Synthesized) -> None:
    """The tenant record holds the quota and the status the launch handler trusts: a tenant
    session that could write it could raise its own quota or lift its own suspension."""
    resources = full.raw("Training")["Resources"]
    [tenants_table] = [
        k
        for k in resources
        if k.startswith("Tenants") and resources[k]["Type"] == "AWS::DynamoDB::Table"
    ]
    [policy] = [
        r["Properties"]
        for k, r in resources.items()
        if k.startswith("TenantTablesPolicy") and r["Type"] == "AWS::IAM::ManagedPolicy"
    ]
    by_sid = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    on_tenants = [s for s in by_sid.values() if tenants_table in json.dumps(s.get("Resource", ""))]
    assert on_tenants == [by_sid["ReadOwnTenantRecord"]]
    assert by_sid["ReadOwnTenantRecord"]["Action"] == "dynamodb:GetItem"
    assert sorted(as_list(by_sid["OwnNotifications"]["Action"])) == [
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
    ]


def test_a_tenant_session_reads_trials_and_decides_on_model_versions_only(
    full: Synthesized,
) -> None:
    """Trials and model versions are written by the job-events handler: a tenant session reads
    its trials (table and best-first index) and updates only its versions' decisions."""
    resources = full.raw("Training")["Resources"]
    [policy] = [
        r["Properties"]
        for k, r in resources.items()
        if k.startswith("TenantTablesPolicy") and r["Type"] == "AWS::IAM::ManagedPolicy"
    ]
    by_sid = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    trials = by_sid["ReadOwnTrials"]
    assert as_list(trials["Action"]) == ["dynamodb:Query"]
    assert [flat(r) for r in trials["Resource"]] == [
        flat({"Fn::GetAtt": ["Trials31C8D880", "Arn"]}),
        flat(
            {
                "Fn::Join": [
                    "",
                    [{"Fn::GetAtt": ["Trials31C8D880", "Arn"]}, "/index/ByObjective"],
                ]
            }
        ),
    ]
    models = by_sid["ReadOwnModelVersions"]
    assert sorted(as_list(models["Action"])) == ["dynamodb:GetItem", "dynamodb:Query"]
    assert models["Resource"] == {"Fn::GetAtt": ["ModelsC55D3500", "Arn"]}
    decide = by_sid["DecideOnOwnModelVersions"]
    assert decide["Action"] == "dynamodb:UpdateItem"
    assert decide["Resource"] == models["Resource"]
    # The decision only: not the approval status, the package ARN or the artifact key.
    assert decide["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"] == [
        "tenant_id",
        "job_id",
        "decisions",
        "updated_at",
    ]
    assert decide["Condition"]["StringEqualsIfExists"] == {"dynamodb:ReturnValues": "NONE"}
    for statement in (trials, models, decide):
        assert unbound_grants(statement) == []
    on_trials_or_models = [
        s["Sid"]
        for s in by_sid.values()
        if "Trials31C8D880" in json.dumps(s["Resource"])
        or "ModelsC55D3500" in json.dumps(s["Resource"])
    ]
    assert sorted(on_trials_or_models) == [
        "DecideOnOwnModelVersions",
        "ReadOwnModelVersions",
        "ReadOwnTrials",
    ]


def test_portal_assume_statements_name_the_tenant_role(full: Synthesized) -> None:
    data_lake = full.platform.data_lake
    [statement] = [
        data_lake.resolve(s.to_statement_json())
        for s in tenant_assume_statements(data_lake.tenant_role)
    ]
    assert statement["Action"] == ["sts:AssumeRole", "sts:TagSession"]
    assert statement["Resource"] == {"Fn::GetAtt": [TENANT_ROLE, "Arn"]}
