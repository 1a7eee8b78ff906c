"""Tenant isolation proven by an IAM evaluator, not only by reading statements.

The synthesized policies of each environment (identity policies of every role, bucket, key and
trust policies, intrinsics resolved to the names the resources would have) are evaluated by an
offline IAM policy simulator (``@cloud-copilot/iam-simulate``, run by ``tests/iam/simulate.js``)
for a matrix of requests: what the portal and the handlers do for tenant acme must be allowed;
the same on globex's resources, on a tenant ``acme2`` whose prefix starts with ``acme``, from a
session without the tenant tag, with several DynamoDB partition keys, or from the portal's
instance role, must be denied. The matrix is printed when a row disagrees.

The matrix is also run against policies with one tenant condition removed, and must then fail:
a test that passes because it evaluates nothing would pass those too.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import Synthesized
from tests.iam.policies import DeployedPolicies, simulate

ALLOWED = "Allowed"
DENIED = "Denied"
TENANT_VARIABLE = "${aws:PrincipalTag/tenant}"


@dataclass(frozen=True)
class Principal:
    label: str
    arn: str
    policies: list[dict[str, Any]]
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    principal: Principal
    action: str
    resource: str
    expected: str
    context: dict[str, Any] = field(default_factory=dict)
    resource_policy: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        context = " ".join(f"{key}={value}" for key, value in sorted(self.context.items()))
        return f"{self.principal.label} | {self.action} | {self.resource} {context}".strip()


class Platform:
    """Names, ARNs and policies of one synthesized environment, for building requests."""

    def __init__(self, synthesized: Synthesized) -> None:
        account = synthesized.platform.network.account
        region = synthesized.platform.network.region
        self.account = account if account.isdigit() else "123456789012"
        self.region = region if not region.startswith("${") else "eu-west-1"
        self.deployed = DeployedPolicies(synthesized.templates, self.account, self.region)
        d = self.deployed
        self.data_bucket = d.find("DataLake", "AWS::S3::Bucket", "TenantDataBucket")
        self.artifacts_bucket = d.find("DataLake", "AWS::S3::Bucket", "ArtifactsBucket")
        self.catalog_bucket = d.find("DataLake", "AWS::S3::Bucket", "CatalogBucket")
        self.data_key = d.find("DataLake", "AWS::KMS::Key", "DataKey")
        self.tenants = d.find("Training", "AWS::DynamoDB::Table", "Tenants")
        self.jobs = d.find("Training", "AWS::DynamoDB::Table", "Jobs")
        self.notifications = d.find("Training", "AWS::DynamoDB::Table", "Notifications")
        self.requests_queue = d.find("Training", "AWS::SQS::Queue", "TrainingRequests0")
        self.tenant_role = d.find("DataLake", "AWS::IAM::Role", "TenantAccessRole")
        self.instance_role = d.find("Portal", "AWS::IAM::Role", "FleetInstanceRole")
        self.launch_role = d.find("Training", "AWS::IAM::Role", "LaunchHandlerRole")
        self.events_role = d.find("Training", "AWS::IAM::Role", "JobEventsHandlerRole")
        self.execution_role = d.find("Training", "AWS::IAM::Role", "SageMakerExecutionRole")

    def session(self, role: tuple[str, str], name: str) -> str:
        return f"arn:aws:sts::{self.account}:assumed-role/{self.deployed.name(*role)}/{name}"

    def object(self, bucket: tuple[str, str], key: str) -> str:
        return f"{self.deployed.arn(*bucket)}/{key}"

    def training_job(self, name: str) -> str:
        return f"arn:aws:sagemaker:{self.region}:{self.account}:training-job/{name}"


def evaluate(cases: list[Case], platform: Platform) -> list[tuple[Case, str, Any]]:
    """(case, decision, simulator errors) for every case, in one simulator run."""
    requests = []
    for case in cases:
        context = {"aws:SecureTransport": "true", **case.context}
        context.update({f"aws:PrincipalTag/{k}": v for k, v in case.principal.tags.items()})
        requests.append(
            {
                "id": case.id,
                "principal": case.principal.arn,
                "action": case.action,
                "resource": case.resource,
                "accountId": platform.account,
                "context": context,
                "identityPolicies": case.principal.policies,
                "resourcePolicy": case.resource_policy,
            }
        )
    ids = [r["id"] for r in requests]
    assert len(ids) == len(set(ids)), "two cases of the matrix have the same id"
    results = simulate(requests)
    decisions = []
    for case in cases:
        result = results[case.id]
        decision = {"Allowed": ALLOWED, "Error": "Error"}.get(result["result"], DENIED)
        decisions.append((case, decision, result["errors"]))
    return decisions


def mismatches(decisions: list[tuple[Case, str, Any]]) -> list[str]:
    return [
        f"{case.id}: expected {case.expected}, got {decision}"
        + (f" ({json.dumps(errors)[:300]})" if errors else "")
        for case, decision, errors in decisions
        if decision != case.expected
    ]


def table(decisions: list[tuple[Case, str, Any]]) -> str:
    rows = [f"{'expected':9} {'got':9} request"]
    rows += [f"{c.expected:9} {d:9} {c.id}" for c, d, _ in decisions]
    return "\n".join(rows)


# --- the matrix ----------------------------------------------------------------------------------


def tenant_matrix(p: Platform, tenant_policies: list[dict[str, Any]]) -> list[Case]:
    """What tenant sessions may and may not do; ``tenant_policies`` are the tenant role's."""
    d = p.deployed
    acme = Principal(
        "acme", p.session(p.tenant_role, "portal-acme"), tenant_policies, {"tenant": "acme"}
    )
    untagged = Principal("untagged", p.session(p.tenant_role, "portal-x"), tenant_policies)
    data_policy = d.resource_policy(*p.data_bucket)
    artifacts_policy = d.resource_policy(*p.artifacts_bucket)
    key_policy = d.resource_policy(*p.data_key)
    via_s3 = {"kms:ViaService": f"s3.{p.region}.amazonaws.com"}

    def data(key: str) -> str:
        return p.object(p.data_bucket, key)

    def artifacts(key: str) -> str:
        return p.object(p.artifacts_bucket, key)

    cases: list[Case] = []

    def s3_object(principal: Principal, action: str, resource: str, expected: str) -> None:
        policy = data_policy if resource.startswith(d.arn(*p.data_bucket)) else artifacts_policy
        cases.append(Case(principal, action, resource, expected, resource_policy=policy))

    # S3: the portal's presigned uploads and downloads, dataset listing.
    for action in ("s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload"):
        s3_object(acme, action, data("tenants/acme/datasets/readings.csv"), ALLOWED)
        s3_object(acme, action, data("tenants/globex/datasets/readings.csv"), DENIED)
        s3_object(acme, action, data("tenants/acme2/datasets/readings.csv"), DENIED)
        s3_object(untagged, action, data("tenants/acme/datasets/readings.csv"), DENIED)
    model = "tenants/{}/jobs/{}-0001/output/model.tar.gz"
    s3_object(acme, "s3:GetObject", artifacts(model.format("acme", "acme")), ALLOWED)
    s3_object(acme, "s3:GetObject", artifacts(model.format("globex", "globex")), DENIED)
    s3_object(acme, "s3:GetObject", artifacts(model.format("acme2", "acme2")), DENIED)
    s3_object(acme, "s3:PutObject", artifacts(model.format("acme", "acme")), DENIED)
    s3_object(acme, "s3:GetObject", data("tenants"), DENIED)
    cases.append(
        Case(acme, "s3:GetObject", p.object(p.catalog_bucket, "algorithms/xgboost.json"), DENIED)
    )
    for prefix, expected in (
        ("tenants/acme/datasets/", ALLOWED),
        ("tenants/acme/", ALLOWED),
        ("tenants/globex/", DENIED),
        ("tenants/acme2/", DENIED),
        ("tenants/acme", DENIED),  # would list acme2's keys too
        ("tenants/", DENIED),
    ):
        cases.append(
            Case(
                acme,
                "s3:ListBucket",
                d.arn(*p.data_bucket),
                expected,
                {"s3:prefix": prefix},
                data_policy,
            )
        )
    cases.append(
        Case(
            untagged,
            "s3:ListBucket",
            d.arn(*p.data_bucket),
            DENIED,
            {"s3:prefix": "tenants/acme/"},
            data_policy,
        )
    )
    # KMS: the bucket key only through S3.
    key = d.arn(*p.data_key)
    cases.append(Case(acme, "kms:GenerateDataKey", key, ALLOWED, via_s3, key_policy))
    cases.append(Case(acme, "kms:Decrypt", key, ALLOWED, via_s3, key_policy))
    cases.append(Case(acme, "kms:Decrypt", key, DENIED, {}, key_policy))
    cases.append(Case(untagged, "kms:Decrypt", key, DENIED, via_s3, key_policy))

    # DynamoDB: only the tenant's partition, and the tenants table read-only.
    def item(principal: Principal, action: str, table: str, keys: list[str], expected: str) -> None:
        cases.append(Case(principal, action, table, expected, {"dynamodb:LeadingKeys": keys}))

    tenants = d.arn(*p.tenants)
    jobs = d.arn(*p.jobs)
    by_created = f"{jobs}/index/ByCreatedAt"
    notifications = d.arn(*p.notifications)
    item(acme, "dynamodb:GetItem", tenants, ["acme"], ALLOWED)
    item(acme, "dynamodb:PutItem", tenants, ["acme"], DENIED)  # its own quota or status
    item(acme, "dynamodb:UpdateItem", tenants, ["acme"], DENIED)
    item(acme, "dynamodb:GetItem", tenants, ["globex"], DENIED)
    for action in ("dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem"):
        item(acme, action, jobs, ["acme"], ALLOWED)
        item(acme, action, jobs, ["globex"], DENIED)
        item(acme, action, jobs, ["acme2"], DENIED)
        item(untagged, action, jobs, ["acme"], DENIED)
    item(acme, "dynamodb:Query", by_created, ["acme"], ALLOWED)
    item(acme, "dynamodb:Query", by_created, ["globex"], DENIED)
    item(acme, "dynamodb:BatchGetItem", jobs, ["acme", "globex"], DENIED)  # several keys
    item(acme, "dynamodb:BatchGetItem", jobs, ["acme"], DENIED)  # no batch operations at all
    item(acme, "dynamodb:GetItem", jobs, ["acme", "globex"], DENIED)
    item(acme, "dynamodb:Scan", jobs, [], DENIED)
    for action in ("dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"):
        item(acme, action, notifications, ["acme"], ALLOWED)
        item(acme, action, notifications, ["globex"], DENIED)
    item(acme, "dynamodb:PutItem", notifications, ["acme"], DENIED)  # the handlers write them

    # SageMaker: only jobs tagged with the tenant.
    for action in ("sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob"):
        for tag, expected in (("acme", ALLOWED), ("globex", DENIED), ("acme2", DENIED)):
            cases.append(
                Case(
                    acme,
                    action,
                    p.training_job(f"{tag}-0001"),
                    expected,
                    {"aws:ResourceTag/tenant": tag},
                )
            )
        cases.append(Case(acme, action, p.training_job("untagged-0001"), DENIED))
        cases.append(
            Case(
                untagged,
                action,
                p.training_job("acme-0002"),
                DENIED,
                {"aws:ResourceTag/tenant": "acme"},
            )
        )
    cases.append(Case(acme, "sagemaker:CreateTrainingJob", p.training_job("acme-0003"), DENIED))

    # SQS: the portal queues the tenant's request; a session without the tag can't.
    queue = d.arn(*p.requests_queue)
    cases.append(Case(acme, "sqs:SendMessage", queue, ALLOWED))
    cases.append(Case(untagged, "sqs:SendMessage", queue, DENIED))
    cases.append(Case(acme, "sqs:ReceiveMessage", queue, DENIED))
    return cases


def platform_matrix(p: Platform) -> list[Case]:
    """The portal's instance role reaches no tenant data; the handlers can do their work; only
    the portal assumes the tenant role, with a well-formed tenant tag."""
    d = p.deployed
    instance = Principal(
        "instance role",
        p.session(p.instance_role, "i-0123456789abcdef0"),
        d.role_policies(*p.instance_role),
        {"training-platform-component": "portal"},
    )
    untagged_instance = Principal(
        "role without the portal tag",
        p.session(p.instance_role, "i-0fedcba9876543210"),
        d.role_policies(*p.instance_role),
    )
    launch = Principal(
        "launch handler", p.session(p.launch_role, "launch"), d.role_policies(*p.launch_role)
    )
    events = Principal(
        "job-events handler", p.session(p.events_role, "events"), d.role_policies(*p.events_role)
    )
    data_policy = d.resource_policy(*p.data_bucket)
    cases = [
        Case(
            instance,
            "s3:GetObject",
            p.object(p.data_bucket, "tenants/acme/datasets/readings.csv"),
            DENIED,
            resource_policy=data_policy,
        ),
        Case(
            instance,
            "s3:GetObject",
            p.object(p.artifacts_bucket, "tenants/acme/jobs/acme-0001/output/model.tar.gz"),
            DENIED,
            resource_policy=d.resource_policy(*p.artifacts_bucket),
        ),
        Case(
            instance,
            "s3:ListBucket",
            d.arn(*p.data_bucket),
            DENIED,
            {"s3:prefix": "tenants/acme/"},
            data_policy,
        ),
        Case(
            instance, "dynamodb:Query", d.arn(*p.jobs), DENIED, {"dynamodb:LeadingKeys": ["acme"]}
        ),
        Case(
            instance,
            "dynamodb:GetItem",
            d.arn(*p.notifications),
            DENIED,
            {"dynamodb:LeadingKeys": ["acme"]},
        ),
        Case(
            instance,
            "sagemaker:DescribeTrainingJob",
            p.training_job("acme-0001"),
            DENIED,
            {"aws:ResourceTag/tenant": "acme"},
        ),
        Case(instance, "sqs:SendMessage", d.arn(*p.requests_queue), DENIED),
        # Administration: the instance role writes tenant records (onboarding, quotas).
        Case(
            instance,
            "dynamodb:PutItem",
            d.arn(*p.tenants),
            ALLOWED,
            {"dynamodb:LeadingKeys": ["acme"]},
        ),
        Case(
            instance,
            "s3:GetObject",
            p.object(p.catalog_bucket, "algorithms/xgboost.json"),
            ALLOWED,
            resource_policy=d.resource_policy(*p.catalog_bucket),
        ),
    ]
    # Assuming the tenant role: the trust policy checks the caller and the tag.
    tenant_role = d.arn(*p.tenant_role)
    trust = d.resource_policy(*p.tenant_role)
    for tag, expected in (
        ("acme", ALLOWED),
        ("acme/../globex", DENIED),
        ("ac", DENIED),
        ("acme@globex", DENIED),  # STS itself refuses '*', '?' and '$' in tag values
        ("a" * 25, DENIED),
    ):
        for action in ("sts:AssumeRole", "sts:TagSession"):
            cases.append(
                Case(
                    instance,
                    action,
                    tenant_role,
                    expected,
                    {"aws:RequestTag/tenant": tag, "aws:TagKeys": ["tenant"]},
                    trust,
                )
            )
    cases.append(Case(instance, "sts:AssumeRole", tenant_role, DENIED, {"aws:TagKeys": []}, trust))
    cases.append(
        Case(
            instance,
            "sts:TagSession",
            tenant_role,
            DENIED,
            {"aws:RequestTag/tenant": "acme", "aws:TagKeys": ["tenant", "admin"]},
            trust,
        )
    )
    cases.append(
        Case(
            untagged_instance,
            "sts:AssumeRole",
            tenant_role,
            DENIED,
            {"aws:RequestTag/tenant": "acme", "aws:TagKeys": ["tenant"]},
            trust,
        )
    )
    cases += create_training_job_cases(p, launch)
    # The handlers: what they do for acme's jobs.
    cases += [
        Case(
            launch,
            "dynamodb:GetItem",
            d.arn(*p.tenants),
            ALLOWED,
            {"dynamodb:LeadingKeys": ["acme"]},
        ),
        Case(
            launch,
            "dynamodb:UpdateItem",
            d.arn(*p.jobs),
            ALLOWED,
            {"dynamodb:LeadingKeys": ["acme"]},
        ),
        Case(
            launch,
            "dynamodb:PutItem",
            d.arn(*p.tenants),
            DENIED,
            {"dynamodb:LeadingKeys": ["acme"]},
        ),
        Case(
            launch,
            "iam:PassRole",
            d.arn(*p.execution_role),
            ALLOWED,
            {"iam:PassedToService": "sagemaker.amazonaws.com"},
        ),
        Case(
            launch,
            "iam:PassRole",
            d.arn(*p.execution_role),
            DENIED,
            {"iam:PassedToService": "lambda.amazonaws.com"},
        ),
        Case(
            launch,
            "s3:GetObject",
            p.object(p.catalog_bucket, "algorithms/xgboost.json"),
            ALLOWED,
            resource_policy=d.resource_policy(*p.catalog_bucket),
        ),
        Case(
            launch,
            "s3:GetObject",
            p.object(p.data_bucket, "tenants/acme/datasets/readings.csv"),
            DENIED,
            resource_policy=data_policy,
        ),
        Case(
            events,
            "dynamodb:UpdateItem",
            d.arn(*p.jobs),
            ALLOWED,
            {"dynamodb:LeadingKeys": ["acme"]},
        ),
        Case(
            events,
            "dynamodb:PutItem",
            d.arn(*p.notifications),
            ALLOWED,
            {"dynamodb:LeadingKeys": ["acme"]},
        ),
        Case(
            events,
            "dynamodb:PutItem",
            d.arn(*p.tenants),
            DENIED,
            {"dynamodb:LeadingKeys": ["acme"]},
        ),
    ]
    return cases


def create_training_job_cases(p: Platform, launch: Principal) -> list[Case]:
    """The launch handler creates only network-isolated jobs in the training subnets and
    security group, with the data key, tagged with a tenant."""
    [statement] = [
        s
        for document in launch.policies
        for s in document["policy"]["Statement"]
        if s.get("Action") == "sagemaker:CreateTrainingJob"
    ]
    subnets = statement["Condition"]["ForAllValues:StringEquals"]["sagemaker:VpcSubnets"]
    groups = statement["Condition"]["ForAllValues:StringEquals"]["sagemaker:VpcSecurityGroupIds"]
    key = statement["Condition"]["ArnEquals"]["sagemaker:VolumeKmsKeyArn"]
    allowed = {
        "sagemaker:NetworkIsolation": "true",
        "sagemaker:VpcSubnets": subnets[:1],
        "sagemaker:VpcSecurityGroupIds": groups,
        "sagemaker:VolumeKmsKeyArn": key,
        "sagemaker:OutputKmsKeyArn": key,
        "aws:RequestTag/tenant": "acme",
        "aws:TagKeys": ["tenant", "job"],
    }
    job = p.training_job("acme-0001")
    action = "sagemaker:CreateTrainingJob"
    return [
        Case(launch, action, job, ALLOWED, allowed),
        Case(launch, action, job, DENIED, {**allowed, "sagemaker:NetworkIsolation": "false"}),
        Case(launch, action, job, DENIED, {**allowed, "sagemaker:VpcSubnets": ["subnet-other"]}),
        Case(
            launch,
            action,
            job,
            DENIED,
            {
                **allowed,
                "sagemaker:OutputKmsKeyArn": "arn:aws:kms:eu-west-1:111111111111:key/other",
            },
        ),
        Case(
            launch,
            action,
            job,
            DENIED,
            {k: v for k, v in allowed.items() if k != "aws:RequestTag/tenant"},
        ),
        Case(
            launch,
            action,
            job,
            DENIED,
            {k: v for k, v in allowed.items() if k != "sagemaker:VpcSubnets"},
        ),
    ]


# --- tests ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["full", "example"])
def platform(request: pytest.FixtureRequest) -> Platform:
    return Platform(request.getfixturevalue(request.param))


def test_tenant_sessions_reach_their_own_resources_only(platform: Platform) -> None:
    policies = platform.deployed.role_policies(*platform.tenant_role)
    decisions = evaluate(tenant_matrix(platform, policies), platform)
    assert len(decisions) >= 80
    assert mismatches(decisions) == [], table(decisions)


def test_the_instance_role_and_the_handlers(platform: Platform) -> None:
    decisions = evaluate(platform_matrix(platform), platform)
    assert mismatches(decisions) == [], table(decisions)
    # Only SSM's instance core policy is attached from outside the templates, and it grants no
    # S3, DynamoDB or SageMaker access, so leaving it out hides nothing the matrix asks about.
    assert platform.deployed.skipped_aws_managed == {"AmazonSSMManagedInstanceCore"}


# Each mutation removes one tenant condition; the rows named must then disagree.


def _statements(policies: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for document in policies:
        yield from document["policy"]["Statement"]


def _without_leading_keys(policies: list[dict[str, Any]]) -> None:
    for statement in _statements(policies):
        statement.get("Condition", {}).pop("ForAllValues:StringEquals", None)


def _any_prefix(policies: list[dict[str, Any]]) -> None:
    for statement in _statements(policies):
        if "s3:" in json.dumps(statement["Action"]):
            resources = json.dumps(statement.get("Resource", []))
            statement["Resource"] = json.loads(resources.replace(TENANT_VARIABLE, "*"))


def _without_resource_tag(policies: list[dict[str, Any]]) -> None:
    for statement in _statements(policies):
        statement.get("Condition", {}).get("StringEquals", {}).pop("aws:ResourceTag/tenant", None)


@pytest.mark.parametrize(
    ("mutation", "must_flip"),
    [
        (_without_leading_keys, "acme | dynamodb:GetItem | {jobs} dynamodb:LeadingKeys=['globex']"),
        (_any_prefix, "acme | s3:GetObject | {data}/tenants/globex/datasets/readings.csv"),
        (
            _without_resource_tag,
            "acme | sagemaker:StopTrainingJob | {job} aws:ResourceTag/tenant=globex",
        ),
    ],
    ids=["no LeadingKeys condition", "no tenant in the S3 prefix", "no ResourceTag condition"],
)
def test_the_matrix_fails_when_a_tenant_condition_is_removed(
    platform: Platform, mutation: Callable[[list[dict[str, Any]]], None], must_flip: str
) -> None:
    policies = copy.deepcopy(platform.deployed.role_policies(*platform.tenant_role))
    mutation(policies)
    decisions = evaluate(tenant_matrix(platform, policies), platform)
    flipped = mismatches(decisions)
    expected = must_flip.format(
        jobs=platform.deployed.arn(*platform.jobs),
        data=platform.deployed.arn(*platform.data_bucket),
        job=platform.training_job("globex-0001"),
    )
    assert any(line.startswith(f"{expected}: expected Denied, got Allowed") for line in flipped), (
        "\n".join(flipped) or table(decisions)
    )
