"""Tenant isolation proven by an IAM evaluator, not only by reading statements.

The synthesized policies of each environment (identity policies of every role, bucket, key and
trust policies, intrinsics resolved to the names the resources would have) are evaluated by an
offline IAM policy simulator (``@cloud-copilot/iam-simulate``, run by ``tests/iam/simulate.js``)
for a matrix of requests: what the portal and the handlers do for tenant acme must be allowed;
the same on globex's resources, on a tenant ``acme2`` whose prefix starts with ``acme``, from a
session without the tenant tag, with several DynamoDB partition keys, or from the portal's
instance role, must be denied. That covers training and tuning jobs (by their tenant tag), the
model registry (ARNs built from the tenant id, approval status only to a decision), and the
trials and models tables. The handlers may create only isolated, encrypted, tagged jobs and
register model versions only as pending approval. The matrix is printed when a row disagrees.

The matrices are also run against policies with one condition removed, and must then fail:
a test that passes because it evaluates nothing would pass those too.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from training_common import model_package_group_name, tuning_job_name

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
        self.trials = d.find("Training", "AWS::DynamoDB::Table", "Trials")
        self.models = d.find("Training", "AWS::DynamoDB::Table", "Models")
        self.requests_queue = d.find("Training", "AWS::SQS::Queue", "TrainingRequests0")
        self.tenant_role = d.find("DataLake", "AWS::IAM::Role", "TenantAccessRole")
        self.instance_role = d.find("Portal", "AWS::IAM::Role", "FleetInstanceRole")
        self.launch_role = d.find("Training", "AWS::IAM::Role", "LaunchHandlerRole")
        self.events_role = d.find("Training", "AWS::IAM::Role", "JobEventsHandlerRole")
        self.execution_role = d.find("Training", "AWS::IAM::Role", "SageMakerExecutionRole")
        # Serving (constructs/serving.py, constructs/inference_api.py).
        self.deployments = d.find("Training", "AWS::DynamoDB::Table", "ServingDeployments")
        self.api_clients = d.find("Training", "AWS::DynamoDB::Table", "ServingApiClients")
        self.deployment_queue = d.find("Training", "AWS::SQS::Queue", "ServingDeploymentRequests9")
        self.deploy_role = d.find("Training", "AWS::IAM::Role", "ServingDeployHandlerRole")
        self.endpoint_role = d.find("Training", "AWS::IAM::Role", "ServingEndpointRole")
        self.monitoring_role = d.find("Training", "AWS::IAM::Role", "ServingMonitoringRole")
        self.invoke_role = d.find("Portal", "AWS::IAM::Role", "InferenceTenantInvokeRole")
        self.inference_role = d.find("Portal", "AWS::IAM::Role", "InferenceHandlerRole")
        self.user_pool = d.find("Portal", "AWS::Cognito::UserPool", "SignInUserPool")
        self.alarm_prefix = synthesized.platform.training.serving.alarm_prefix
        # Retraining (constructs/retraining.py).
        self.policies = d.find("Training", "AWS::DynamoDB::Table", "RetrainingPolicies")
        self.runs = d.find("Training", "AWS::DynamoDB::Table", "RetrainingRuns")
        self.retraining_queue = d.find("Training", "AWS::SQS::Queue", "RetrainingRequests7")
        self.retraining_dlq = d.find("Training", "AWS::SQS::Queue", "RetrainingRequestsDeadLetters")
        self.scheduler_dlq = d.find("Training", "AWS::SQS::Queue", "RetrainingSchedulerDeadLetters")
        self.events_queue = d.find("Training", "AWS::SQS::Queue", "JobEventsCA")
        self.training_key = d.find("Training", "AWS::KMS::Key", "Key961B73FD")
        self.schedule_group = d.find("Training", "AWS::Scheduler::ScheduleGroup", "Retraining")
        self.scheduler_role = d.find("Training", "AWS::IAM::Role", "RetrainingSchedulerRole")
        self.retraining_role = d.find("Training", "AWS::IAM::Role", "RetrainingHandlerRole")
        self.group_name = synthesized.platform.training.retraining.schedule_group_name

    def session(self, role: tuple[str, str], name: str) -> str:
        return f"arn:aws:sts::{self.account}:assumed-role/{self.deployed.name(*role)}/{name}"

    def object(self, bucket: tuple[str, str], key: str) -> str:
        return f"{self.deployed.arn(*bucket)}/{key}"

    def training_job(self, name: str) -> str:
        return self.sagemaker(f"training-job/{name}")

    def tuning_job(self, name: str) -> str:
        return self.sagemaker(f"hyper-parameter-tuning-job/{name}")

    def model_package_group(self, tenant: str) -> str:
        return self.sagemaker(f"model-package-group/{model_package_group_name(tenant)}")

    def model_package(self, tenant: str, version: int) -> str:
        """A version's ARN: model-package/<group>/<version>."""
        return self.sagemaker(f"model-package/{model_package_group_name(tenant)}/{version}")

    def sagemaker(self, resource: str) -> str:
        return f"arn:aws:sagemaker:{self.region}:{self.account}:{resource}"

    def alarm(self, name: str) -> str:
        return f"arn:aws:cloudwatch:{self.region}:{self.account}:alarm:{name}"

    def schedule(self, name: str, group: str | None = None) -> str:
        """A schedule's ARN: schedule/<group>/<name> (the platform's group unless named)."""
        return (
            f"arn:aws:scheduler:{self.region}:{self.account}:"
            f"schedule/{group or self.group_name}/{name}"
        )


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
    # A retraining run's manifest is the platform's: the tenant reads it, never rewrites it.
    manifest = data("tenants/acme/retraining/weekly/20261207030000/manifest.json")
    s3_object(acme, "s3:GetObject", manifest, ALLOWED)
    for action in ("s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"):
        s3_object(acme, action, manifest, DENIED)
    model = "tenants/{}/jobs/{}-0001/output/model.tar.gz"
    s3_object(acme, "s3:GetObject", artifacts(model.format("acme", "acme")), ALLOWED)
    s3_object(acme, "s3:GetObject", artifacts(model.format("globex", "globex")), DENIED)
    s3_object(acme, "s3:GetObject", artifacts(model.format("acme2", "acme2")), DENIED)
    s3_object(acme, "s3:PutObject", artifacts(model.format("acme", "acme")), DENIED)
    # A tuning job's best model: SageMaker appends the training job name to the output path.
    trial = "tenants/{0}/jobs/{0}-0002/output/{1}-001-0a1b2c3d/output/model.tar.gz"
    for tenant, expected in (("acme", ALLOWED), ("globex", DENIED), ("acme2", DENIED)):
        key = trial.format(tenant, tuning_job_name(f"{tenant}-0002"))
        s3_object(acme, "s3:GetObject", artifacts(key), expected)
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
    running = f"{jobs}/index/Running"  # the portal's quota check
    item(acme, "dynamodb:Query", running, ["acme"], ALLOWED)
    item(acme, "dynamodb:Query", running, ["globex"], DENIED)
    item(untagged, "dynamodb:Query", running, ["acme"], DENIED)
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
    cases += tenant_tuning_and_registry_cases(p, acme, untagged)
    cases += tenant_trials_and_models_cases(p, acme, untagged)

    # SQS: the portal queues the tenant's request; a session without the tag can't.
    queue = d.arn(*p.requests_queue)
    cases.append(Case(acme, "sqs:SendMessage", queue, ALLOWED))
    cases.append(Case(untagged, "sqs:SendMessage", queue, DENIED))
    cases.append(Case(acme, "sqs:ReceiveMessage", queue, DENIED))
    cases += tenant_serving_cases(p, acme, untagged)
    cases += tenant_retraining_cases(p, acme, untagged)
    return cases


def tenant_retraining_cases(p: Platform, acme: Principal, untagged: Principal) -> list[Case]:
    """Retraining: the tenant's policies (the portal creates, edits and lists them) and their
    requests; runs only read (the handlers write them); no schedule, role or scheduler queue
    directly: the retraining handler applies the policy."""
    d = p.deployed
    policies = d.arn(*p.policies)
    runs = d.arn(*p.runs)
    cases: list[Case] = []

    def item(principal: Principal, action: str, table: str, keys: list[str], expected: str) -> None:
        cases.append(Case(principal, action, table, expected, {"dynamodb:LeadingKeys": keys}))

    for table, actions in (
        (policies, ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query")),
        (runs, ("dynamodb:GetItem", "dynamodb:Query")),
    ):
        for action in actions:
            item(acme, action, table, ["acme"], ALLOWED)
            item(acme, action, table, ["globex"], DENIED)
            item(acme, action, table, ["acme2"], DENIED)
            item(acme, action, table, ["acme", "globex"], DENIED)
            item(untagged, action, table, ["acme"], DENIED)
        item(acme, "dynamodb:DeleteItem", table, ["acme"], DENIED)
        item(acme, "dynamodb:UpdateItem", table, ["acme"], DENIED)
        item(acme, "dynamodb:BatchWriteItem", table, ["acme"], DENIED)
        item(acme, "dynamodb:Scan", table, [], DENIED)
    item(acme, "dynamodb:PutItem", runs, ["acme"], DENIED)  # a tenant never writes a run
    queue = d.arn(*p.retraining_queue)
    cases += [
        Case(acme, "sqs:SendMessage", queue, ALLOWED),
        Case(untagged, "sqs:SendMessage", queue, DENIED),
        Case(acme, "sqs:ReceiveMessage", queue, DENIED),
        Case(acme, "sqs:SendMessage", d.arn(*p.scheduler_dlq), DENIED),
        Case(acme, "scheduler:CreateSchedule", p.schedule("acme-weekly"), DENIED),
        Case(acme, "scheduler:UpdateSchedule", p.schedule("globex-weekly"), DENIED),
        Case(
            acme,
            "iam:PassRole",
            d.arn(*p.scheduler_role),
            DENIED,
            {"iam:PassedToService": "scheduler.amazonaws.com"},
        ),
    ]
    return cases


def tenant_serving_cases(p: Platform, acme: Principal, untagged: Principal) -> list[Case]:
    """Deployments: the tenant's own records (the portal submits, lists and pages them) and its
    requests; API clients: only a listing of its own, never a write (the portal's instance role
    records them) and never the client-id index (another tenant's clients)."""
    d = p.deployed
    deployments = d.arn(*p.deployments)
    clients = d.arn(*p.api_clients)
    cases: list[Case] = []

    def item(principal: Principal, action: str, table: str, keys: list[str], expected: str) -> None:
        cases.append(Case(principal, action, table, expected, {"dynamodb:LeadingKeys": keys}))

    for action in ("dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem"):
        item(acme, action, deployments, ["acme"], ALLOWED)
        item(acme, action, deployments, ["globex"], DENIED)
        item(acme, action, deployments, ["acme2"], DENIED)
        item(untagged, action, deployments, ["acme"], DENIED)
    item(acme, "dynamodb:DeleteItem", deployments, ["acme"], DENIED)
    item(acme, "dynamodb:Scan", deployments, [], DENIED)
    item(acme, "dynamodb:Query", clients, ["acme"], ALLOWED)
    item(acme, "dynamodb:Query", clients, ["globex"], DENIED)
    item(untagged, "dynamodb:Query", clients, ["acme"], DENIED)
    for action in ("dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:GetItem"):
        item(acme, action, clients, ["acme"], DENIED)
    item(acme, "dynamodb:Query", f"{clients}/index/ByClientId", ["acme"], DENIED)
    queue = d.arn(*p.deployment_queue)
    cases.append(Case(acme, "sqs:SendMessage", queue, ALLOWED))
    cases.append(Case(untagged, "sqs:SendMessage", queue, DENIED))
    # Endpoints are the deploy handler's to create and the inference API's to invoke.
    for action in ("sagemaker:InvokeEndpoint", "sagemaker:DeleteEndpoint"):
        cases.append(
            Case(
                acme,
                action,
                p.sagemaker("endpoint/acme-thermostat"),
                DENIED,
                {"aws:ResourceTag/tenant": "acme"},
            )
        )
    return cases


def invoke_matrix(p: Platform, policies: list[dict[str, Any]]) -> list[Case]:
    """The tenant invoke role: a session tagged acme invokes acme's endpoints only (not
    globex's, not acme2's, not an untagged one, nor one that exists for nobody); a session
    without the tag nothing; only the inference function's role assumes it, with one
    well-formed tenant tag."""
    d = p.deployed

    def session(label: str, tags: dict[str, str]) -> Principal:
        return Principal(label, p.session(p.invoke_role, f"inference-{label}"), policies, tags)

    acme = session("acme invoke", {"tenant": "acme"})
    untagged = session("untagged invoke", {})
    cases: list[Case] = []
    for owner, expected in (("acme", ALLOWED), ("globex", DENIED), ("acme2", DENIED)):
        cases.append(
            Case(
                acme,
                "sagemaker:InvokeEndpoint",
                p.sagemaker(f"endpoint/{owner}-thermostat"),
                expected,
                {"aws:ResourceTag/tenant": owner},
            )
        )
    cases.append(Case(acme, "sagemaker:InvokeEndpoint", p.sagemaker("endpoint/nobody"), DENIED))
    cases.append(
        Case(
            untagged,
            "sagemaker:InvokeEndpoint",
            p.sagemaker("endpoint/acme-thermostat"),
            DENIED,
            {"aws:ResourceTag/tenant": "acme"},
        )
    )
    for action in ("sagemaker:DescribeEndpoint", "sagemaker:UpdateEndpoint"):
        cases.append(
            Case(
                acme,
                action,
                p.sagemaker("endpoint/acme-thermostat"),
                DENIED,
                {"aws:ResourceTag/tenant": "acme"},
            )
        )
    cases.append(
        Case(
            acme,
            "s3:GetObject",
            p.object(p.data_bucket, "tenants/acme/datasets/readings.csv"),
            DENIED,
            resource_policy=d.resource_policy(*p.data_bucket),
        )
    )
    # The trust policy: the inference function's role, one tenant tag shaped like a tenant id.
    inference = Principal(
        "inference function",
        p.session(p.inference_role, "inference"),
        d.role_policies(*p.inference_role),
    )
    instance = Principal(
        "instance role",
        p.session(p.instance_role, "i-0123456789abcdef0"),
        d.role_policies(*p.instance_role),
        {"training-platform-component": "portal"},
    )
    role = d.arn(*p.invoke_role)
    trust = d.resource_policy(*p.invoke_role)
    for tag, expected in (
        ("acme", ALLOWED),
        ("acme/x", DENIED),
        ("ac", DENIED),
        ("a" * 25, DENIED),
    ):
        for action in ("sts:AssumeRole", "sts:TagSession"):
            cases.append(
                Case(
                    inference,
                    action,
                    role,
                    expected,
                    {"aws:RequestTag/tenant": tag, "aws:TagKeys": ["tenant"]},
                    trust,
                )
            )
    cases.append(Case(inference, "sts:AssumeRole", role, DENIED, {"aws:TagKeys": []}, trust))
    cases.append(
        Case(
            inference,
            "sts:TagSession",
            role,
            DENIED,
            {"aws:RequestTag/tenant": "acme", "aws:TagKeys": ["tenant", "admin"]},
            trust,
        )
    )
    cases.append(
        Case(
            instance,
            "sts:AssumeRole",
            role,
            DENIED,
            {"aws:RequestTag/tenant": "acme", "aws:TagKeys": ["tenant"]},
            trust,
        )
    )
    # The function itself: the client-id index, and no endpoint or table item directly.
    clients = d.arn(*p.api_clients)
    cases += [
        Case(inference, "dynamodb:Query", f"{clients}/index/ByClientId", ALLOWED),
        Case(inference, "dynamodb:GetItem", clients, DENIED, {"dynamodb:LeadingKeys": ["acme"]}),
        Case(inference, "dynamodb:PutItem", clients, DENIED, {"dynamodb:LeadingKeys": ["acme"]}),
        Case(
            inference,
            "sagemaker:InvokeEndpoint",
            p.sagemaker("endpoint/acme-thermostat"),
            DENIED,
            {"aws:ResourceTag/tenant": "acme"},
        ),
    ]
    return cases


def tenant_tuning_and_registry_cases(
    p: Platform, acme: Principal, untagged: Principal
) -> list[Case]:
    """Tuning jobs by their tenant tag; the registry by ARNs built from the tenant id."""
    cases: list[Case] = []
    for action in (
        "sagemaker:DescribeHyperParameterTuningJob",
        "sagemaker:StopHyperParameterTuningJob",
    ):
        for tag, expected in (("acme", ALLOWED), ("globex", DENIED), ("acme2", DENIED)):
            cases.append(
                Case(
                    acme,
                    action,
                    p.tuning_job(tuning_job_name(f"{tag}-0001")),
                    expected,
                    {"aws:ResourceTag/tenant": tag},
                )
            )
        cases.append(Case(acme, action, p.tuning_job(tuning_job_name("untagged-0001")), DENIED))
        cases.append(
            Case(
                untagged,
                action,
                p.tuning_job(tuning_job_name("acme-0002")),
                DENIED,
                {"aws:ResourceTag/tenant": "acme"},
            )
        )
    cases.append(
        Case(
            acme,
            "sagemaker:CreateHyperParameterTuningJob",
            p.tuning_job(tuning_job_name("acme-0003")),
            DENIED,
            {"aws:RequestTag/tenant": "acme"},
        )
    )
    # The registry: acme's group and versions; not globex's, not acme2's, and not those of a
    # tenant called acme-models (group acme-models-models), whose names start like acme's.
    others = (("globex", DENIED), ("acme2", DENIED), ("acme-models", DENIED))
    for tenant, expected in (("acme", ALLOWED), *others):
        cases.append(
            Case(acme, "sagemaker:DescribeModelPackage", p.model_package(tenant, 1), expected)
        )
        cases.append(
            Case(
                acme, "sagemaker:DescribeModelPackageGroup", p.model_package_group(tenant), expected
            )
        )
        for decision in ("Approved", "Rejected"):
            cases.append(
                Case(
                    acme,
                    "sagemaker:UpdateModelPackage",
                    p.model_package(tenant, 2),
                    expected,
                    {"sagemaker:ModelApprovalStatus": decision},
                )
            )
    own = p.model_package("acme", 3)
    cases += [
        # Only a decision: not back to pending, and not an update that sets no status.
        Case(
            acme,
            "sagemaker:UpdateModelPackage",
            own,
            DENIED,
            {"sagemaker:ModelApprovalStatus": "PendingManualApproval"},
        ),
        Case(acme, "sagemaker:UpdateModelPackage", own, DENIED),
        Case(untagged, "sagemaker:DescribeModelPackage", own, DENIED),
        Case(
            untagged,
            "sagemaker:UpdateModelPackage",
            own,
            DENIED,
            {"sagemaker:ModelApprovalStatus": "Approved"},
        ),
        Case(
            untagged, "sagemaker:DescribeModelPackageGroup", p.model_package_group("acme"), DENIED
        ),
        # Registering, deleting and listing are not the tenant's (the portal lists from DynamoDB).
        Case(
            acme,
            "sagemaker:CreateModelPackage",
            p.model_package("acme", 4),
            DENIED,
            {"sagemaker:ModelApprovalStatus": "PendingManualApproval"},
        ),
        Case(acme, "sagemaker:DeleteModelPackage", own, DENIED),
        Case(
            acme,
            "sagemaker:CreateModelPackageGroup",
            p.model_package_group("acme"),
            DENIED,
            {"aws:RequestTag/tenant": "acme"},
        ),
        Case(acme, "sagemaker:ListModelPackages", "*", DENIED),
        Case(acme, "sagemaker:ListHyperParameterTuningJobs", "*", DENIED),
    ]
    return cases


def tenant_trials_and_models_cases(p: Platform, acme: Principal, untagged: Principal) -> list[Case]:
    """Trials are read-only for tenants; model versions readable and their decisions writable,
    only in the tenant's own partition."""
    d = p.deployed
    trials = d.arn(*p.trials)
    by_objective = f"{trials}/index/ByObjective"
    models = d.arn(*p.models)
    cases: list[Case] = []

    def item(principal: Principal, action: str, table: str, keys: list[str], expected: str) -> None:
        cases.append(Case(principal, action, table, expected, {"dynamodb:LeadingKeys": keys}))

    for table, actions in (
        (trials, ("dynamodb:Query",)),
        (models, ("dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem")),
    ):
        for action in actions:
            item(acme, action, table, ["acme"], ALLOWED)
            item(acme, action, table, ["globex"], DENIED)
            item(acme, action, table, ["acme2"], DENIED)
            item(untagged, action, table, ["acme"], DENIED)
        item(acme, "dynamodb:PutItem", table, ["acme"], DENIED)  # the handler writes them
        item(acme, "dynamodb:DeleteItem", table, ["acme"], DENIED)
        item(acme, "dynamodb:GetItem", table, ["acme", "globex"], DENIED)
        item(acme, "dynamodb:BatchGetItem", table, ["acme"], DENIED)
        item(acme, "dynamodb:Scan", table, [], DENIED)
    item(acme, "dynamodb:UpdateItem", trials, ["acme"], DENIED)
    item(acme, "dynamodb:GetItem", trials, ["acme"], DENIED)  # the portal only queries them

    def decision(attributes: list[str], expected: str, **extra: str) -> None:
        context: dict[str, object] = {
            "dynamodb:LeadingKeys": ["acme"],
            "dynamodb:Attributes": attributes,
            **extra,
        }
        cases.append(Case(acme, "dynamodb:UpdateItem", models, expected, context))

    # Recording a decision touches only the decision; the status, the package and the artifact
    # of a version are the handler's to write.
    decision(["tenant_id", "job_id", "decisions", "updated_at"], ALLOWED)
    decision(["tenant_id", "job_id", "approval_status"], DENIED)
    decision(["tenant_id", "job_id", "model_artifact_key"], DENIED)
    decision(["tenant_id", "job_id", "decisions"], DENIED, **{"dynamodb:ReturnValues": "ALL_NEW"})
    item(acme, "dynamodb:Query", by_objective, ["acme"], ALLOWED)
    item(acme, "dynamodb:Query", by_objective, ["globex"], DENIED)
    item(acme, "dynamodb:Query", by_objective, ["acme", "globex"], DENIED)
    item(untagged, "dynamodb:Query", by_objective, ["acme"], DENIED)
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
        Case(
            instance,
            "sagemaker:StopHyperParameterTuningJob",
            p.tuning_job(tuning_job_name("acme-0001")),
            DENIED,
            {"aws:ResourceTag/tenant": "acme"},
        ),
        Case(
            instance,
            "sagemaker:DescribeHyperParameterTuningJob",
            p.tuning_job(tuning_job_name("acme-0001")),
            DENIED,
            {"aws:ResourceTag/tenant": "acme"},
        ),
        Case(instance, "sagemaker:DescribeModelPackage", p.model_package("acme", 1), DENIED),
        Case(
            instance,
            "sagemaker:UpdateModelPackage",
            p.model_package("acme", 1),
            DENIED,
            {"sagemaker:ModelApprovalStatus": "Approved"},
        ),
        Case(
            instance, "sagemaker:DescribeModelPackageGroup", p.model_package_group("acme"), DENIED
        ),
        Case(
            instance, "dynamodb:Query", d.arn(*p.trials), DENIED, {"dynamodb:LeadingKeys": ["acme"]}
        ),
        Case(
            instance,
            "dynamodb:Query",
            f"{d.arn(*p.trials)}/index/ByObjective",
            DENIED,
            {"dynamodb:LeadingKeys": ["acme"]},
        ),
        Case(
            instance,
            "dynamodb:GetItem",
            d.arn(*p.models),
            DENIED,
            {"dynamodb:LeadingKeys": ["acme"]},
        ),
        Case(
            instance,
            "dynamodb:UpdateItem",
            d.arn(*p.models),
            DENIED,
            {"dynamodb:LeadingKeys": ["acme"]},
        ),
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
    cases += create_tuning_job_cases(p, launch)
    cases += job_events_registry_cases(p, events)
    deploy = Principal(
        "deploy handler", p.session(p.deploy_role, "deploy"), d.role_policies(*p.deploy_role)
    )
    cases += deploy_cases(p, deploy)
    cases += serving_role_cases(p, instance, events)
    cases += retraining_role_cases(p, launch, events)
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


def isolated_job_request(launch: Principal, action: str) -> dict[str, Any]:
    """The request context of a job the launch handler builds: network isolated, encrypted
    inter-container traffic, one training subnet, the training group, the data key, tags."""
    [statement] = [
        s
        for document in launch.policies
        for s in document["policy"]["Statement"]
        if s.get("Action") == action
    ]
    subnets = statement["Condition"]["ForAllValues:StringEquals"]["sagemaker:VpcSubnets"]
    groups = statement["Condition"]["ForAllValues:StringEquals"]["sagemaker:VpcSecurityGroupIds"]
    key = statement["Condition"]["ArnEquals"]["sagemaker:VolumeKmsKeyArn"]
    return {
        "sagemaker:NetworkIsolation": "true",
        "sagemaker:InterContainerTrafficEncryption": "true",
        "sagemaker:VpcSubnets": subnets[:1],
        "sagemaker:VpcSecurityGroupIds": groups,
        "sagemaker:VolumeKmsKeyArn": key,
        "sagemaker:OutputKmsKeyArn": key,
        "aws:RequestTag/tenant": "acme",
        "aws:TagKeys": ["tenant", "job"],
    }


def create_training_job_cases(p: Platform, launch: Principal) -> list[Case]:
    """The launch handler creates only network-isolated jobs in the training subnets and
    security group, with the data key, tagged with a tenant."""
    return isolated_job_cases(launch, "sagemaker:CreateTrainingJob", p.training_job("acme-0001"))


def create_tuning_job_cases(p: Platform, launch: Principal) -> list[Case]:
    """Tuning jobs under the same guardrails (SageMaker starts their training jobs from the
    checked definition); describing and tagging them for idempotent redelivery."""
    job = p.tuning_job(tuning_job_name("acme-0001"))
    return [
        *isolated_job_cases(launch, "sagemaker:CreateHyperParameterTuningJob", job),
        Case(launch, "sagemaker:DescribeHyperParameterTuningJob", job, ALLOWED),
        Case(
            launch,
            "sagemaker:AddTags",
            job,
            ALLOWED,
            {"aws:RequestTag/tenant": "acme", "aws:TagKeys": ["tenant", "job"]},
        ),
        Case(launch, "sagemaker:StopHyperParameterTuningJob", job, DENIED),
        Case(
            launch,
            "sagemaker:CreateModelPackage",
            p.model_package("acme", 1),
            DENIED,
            {"sagemaker:ModelApprovalStatus": "PendingManualApproval"},
        ),
    ]


def isolated_job_cases(launch: Principal, action: str, job: str) -> list[Case]:
    """``action`` on ``job`` allowed as the launch handler builds it, denied with any guardrail
    missing."""
    allowed = isolated_job_request(launch, action)
    return [
        Case(launch, action, job, ALLOWED, allowed),
        Case(launch, action, job, DENIED, {**allowed, "sagemaker:NetworkIsolation": "false"}),
        Case(
            launch,
            action,
            job,
            DENIED,
            {**allowed, "sagemaker:InterContainerTrafficEncryption": "false"},
        ),
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


def job_events_registry_cases(p: Platform, events: Principal) -> list[Case]:
    """The job-events handler follows jobs, keeps the registry (groups with a tenant tag,
    versions only pending approval; a decision only Approved or Rejected, a retraining run's
    promotion rule), reads metrics, writes trials, model versions and the metrics document into
    the job's prefix."""
    d = p.deployed
    tuning = p.tuning_job(tuning_job_name("acme-0001"))
    version = p.model_package("acme", 1)
    group = p.model_package_group("acme")
    pending = {"sagemaker:ModelApprovalStatus": "PendingManualApproval"}
    artifacts_policy = d.resource_policy(*p.artifacts_bucket)
    metrics = p.object(
        p.artifacts_bucket, "tenants/acme/jobs/acme-0001/registry/model-metrics.json"
    )
    via_s3 = {"kms:ViaService": f"s3.{p.region}.amazonaws.com"}

    def item(action: str, table: tuple[str, str], expected: str) -> Case:
        return Case(events, action, d.arn(*table), expected, {"dynamodb:LeadingKeys": ["acme"]})

    return [
        Case(events, "sagemaker:DescribeHyperParameterTuningJob", tuning, ALLOWED),
        Case(events, "sagemaker:DescribeTrainingJob", p.training_job("acme-0001"), ALLOWED),
        Case(events, "sagemaker:StopHyperParameterTuningJob", tuning, DENIED),
        Case(
            events,
            "sagemaker:CreateModelPackageGroup",
            group,
            ALLOWED,
            {"aws:RequestTag/tenant": "acme", "aws:TagKeys": ["tenant"]},
        ),
        Case(events, "sagemaker:CreateModelPackageGroup", group, DENIED, {"aws:TagKeys": []}),
        Case(
            events,
            "sagemaker:CreateModelPackageGroup",
            p.sagemaker("model-package-group/acme-experiments"),
            DENIED,
            {"aws:RequestTag/tenant": "acme", "aws:TagKeys": ["tenant"]},
        ),
        Case(events, "sagemaker:DescribeModelPackageGroup", group, ALLOWED),
        Case(events, "sagemaker:DescribeModelPackage", version, ALLOWED),
        Case(
            events,
            "sagemaker:DescribeModelPackage",
            p.sagemaker("model-package/acme-experiments/1"),
            DENIED,
        ),
        Case(
            events,
            "s3:GetObject",
            p.object(p.catalog_bucket, "algorithms/xgboost.json"),
            ALLOWED,
            resource_policy=d.resource_policy(*p.catalog_bucket),
        ),
        Case(events, "sagemaker:CreateModelPackage", version, ALLOWED, pending),
        Case(
            events,
            "sagemaker:CreateModelPackage",
            version,
            DENIED,
            {"sagemaker:ModelApprovalStatus": "Approved"},
        ),
        Case(events, "sagemaker:CreateModelPackage", p.model_package("acme", 2), DENIED),
        Case(
            events,
            "sagemaker:CreateModelPackage",
            p.sagemaker("model-package/acme-experiments/1"),
            DENIED,
            pending,
        ),
        # A retraining run's promotion rule approves or rejects its version; nothing else.
        Case(
            events,
            "sagemaker:UpdateModelPackage",
            version,
            ALLOWED,
            {"sagemaker:ModelApprovalStatus": "Approved"},
        ),
        Case(
            events,
            "sagemaker:UpdateModelPackage",
            version,
            ALLOWED,
            {"sagemaker:ModelApprovalStatus": "Rejected"},
        ),
        Case(
            events,
            "sagemaker:UpdateModelPackage",
            version,
            DENIED,
            {"sagemaker:ModelApprovalStatus": "PendingManualApproval"},
        ),
        Case(events, "sagemaker:UpdateModelPackage", version, DENIED),
        Case(
            events,
            "sagemaker:UpdateModelPackage",
            p.sagemaker("model-package/acme-experiments/1"),
            DENIED,
            {"sagemaker:ModelApprovalStatus": "Approved"},
        ),
        Case(events, "sagemaker:DeleteModelPackage", version, DENIED),
        Case(
            events,
            "sagemaker:AddTags",
            group,
            ALLOWED,
            {"aws:RequestTag/tenant": "acme", "aws:TagKeys": ["tenant"]},
        ),
        Case(
            events,
            "sagemaker:CreateModelPackageGroup",
            group,
            DENIED,
            {"aws:RequestTag/tenant": "acme", "aws:TagKeys": ["tenant", "owner"]},
        ),
        Case(events, "sagemaker:ListTags", group, DENIED),
        Case(
            events,
            "s3:PutObject",
            p.object(p.artifacts_bucket, "tenants/acme/jobs/acme-0001/output/model.tar.gz"),
            DENIED,
            resource_policy=artifacts_policy,
        ),
        Case(events, "cloudwatch:GetMetricData", "*", ALLOWED),
        Case(events, "s3:PutObject", metrics, ALLOWED, resource_policy=artifacts_policy),
        Case(
            events,
            "s3:PutObject",
            p.object(p.artifacts_bucket, "tenants/acme/datasets/readings.csv"),
            DENIED,
            resource_policy=artifacts_policy,
        ),
        Case(events, "s3:GetObject", metrics, DENIED, resource_policy=artifacts_policy),
        Case(
            events,
            "kms:GenerateDataKey",
            d.arn(*p.data_key),
            ALLOWED,
            via_s3,
            d.resource_policy(*p.data_key),
        ),
        Case(
            events,
            "kms:Decrypt",
            d.arn(*p.data_key),
            DENIED,
            {},
            d.resource_policy(*p.data_key),
        ),
        item("dynamodb:PutItem", p.trials, ALLOWED),
        item("dynamodb:Query", p.trials, DENIED),
        item("dynamodb:UpdateItem", p.trials, DENIED),
        item("dynamodb:GetItem", p.models, ALLOWED),
        item("dynamodb:PutItem", p.models, ALLOWED),
        item("dynamodb:UpdateItem", p.models, ALLOWED),
        item("dynamodb:DeleteItem", p.models, DENIED),
        item("dynamodb:Scan", p.models, DENIED),
    ]


def scheduler_principals(p: Platform) -> tuple[Principal, Principal]:
    """(the scheduler role's session, the retraining handler's session)."""
    d = p.deployed
    scheduler = Principal(
        "scheduler role",
        p.session(p.scheduler_role, "schedule"),
        d.role_policies(*p.scheduler_role),
    )
    retraining = Principal(
        "retraining handler",
        p.session(p.retraining_role, "retraining"),
        d.role_policies(*p.retraining_role),
    )
    return scheduler, retraining


def scheduler_role_cases(p: Platform, scheduler: Principal) -> list[Case]:
    """The scheduler role sends to the training-requests queue and the scheduler's DLQ, with the
    training key through SQS, and nothing else; only Scheduler assumes it, for this account's
    schedules of the platform's group."""
    d = p.deployed
    key = d.arn(*p.training_key)
    key_policy = d.resource_policy(*p.training_key)
    via_sqs = {"kms:ViaService": f"sqs.{p.region}.amazonaws.com"}
    cases = [
        Case(scheduler, "sqs:SendMessage", d.arn(*p.requests_queue), ALLOWED),
        Case(scheduler, "sqs:SendMessage", d.arn(*p.scheduler_dlq), ALLOWED),
        Case(scheduler, "sqs:SendMessage", d.arn(*p.retraining_queue), DENIED),
        Case(scheduler, "sqs:SendMessage", d.arn(*p.retraining_dlq), DENIED),
        Case(scheduler, "sqs:SendMessage", d.arn(*p.deployment_queue), DENIED),
        Case(scheduler, "sqs:SendMessage", d.arn(*p.events_queue), DENIED),
        Case(scheduler, "sqs:ReceiveMessage", d.arn(*p.requests_queue), DENIED),
        Case(scheduler, "sqs:DeleteMessage", d.arn(*p.scheduler_dlq), DENIED),
        Case(scheduler, "kms:GenerateDataKey", key, ALLOWED, via_sqs, key_policy),
        Case(scheduler, "kms:Decrypt", key, ALLOWED, via_sqs, key_policy),
        Case(scheduler, "kms:Decrypt", key, DENIED, {}, key_policy),
        Case(
            scheduler,
            "kms:Decrypt",
            key,
            DENIED,
            {"kms:ViaService": f"dynamodb.{p.region}.amazonaws.com"},
            key_policy,
        ),
        Case(
            scheduler,
            "dynamodb:GetItem",
            d.arn(*p.policies),
            DENIED,
            {"dynamodb:LeadingKeys": ["acme"]},
        ),
        Case(scheduler, "scheduler:CreateSchedule", p.schedule("acme-weekly"), DENIED),
    ]
    service = Principal("scheduler.amazonaws.com", "scheduler.amazonaws.com", [])
    role = d.arn(*p.scheduler_role)
    trust = d.resource_policy(*p.scheduler_role)
    group = d.arn(*p.schedule_group)
    other_group = group.rsplit("/", 1)[0] + "/default"
    for account, source, expected in (
        (p.account, group, ALLOWED),
        (p.account, other_group, DENIED),
        ("222222222222", group.replace(p.account, "222222222222"), DENIED),
    ):
        cases.append(
            Case(
                service,
                "sts:AssumeRole",
                role,
                expected,
                {"aws:SourceAccount": account, "aws:SourceArn": source},
                trust,
            )
        )
    return cases


def retraining_handler_cases(p: Platform, retraining: Principal) -> list[Case]:
    """The retraining handler: schedules of the platform's group only, the scheduler role only
    to Scheduler, the policies table, its own queues; no run, no other group, no group itself."""
    d = p.deployed

    def item(action: str, table: tuple[str, str], expected: str) -> Case:
        return Case(retraining, action, d.arn(*table), expected, {"dynamodb:LeadingKeys": ["acme"]})

    cases = []
    for action in (
        "scheduler:CreateSchedule",
        "scheduler:UpdateSchedule",
        "scheduler:DeleteSchedule",
        "scheduler:GetSchedule",
    ):
        cases += [
            Case(retraining, action, p.schedule("acme-weekly"), ALLOWED),
            Case(retraining, action, p.schedule("acme-weekly", group="default"), DENIED),
            Case(retraining, action, p.schedule("acme-weekly", group="other-retraining"), DENIED),
        ]
    group = d.arn(*p.schedule_group)
    cases += [
        Case(retraining, "scheduler:DeleteScheduleGroup", group, DENIED),
        Case(retraining, "scheduler:CreateScheduleGroup", group, DENIED),
        Case(retraining, "scheduler:ListSchedules", "*", DENIED),
        Case(
            retraining,
            "iam:PassRole",
            d.arn(*p.scheduler_role),
            ALLOWED,
            {"iam:PassedToService": "scheduler.amazonaws.com"},
        ),
        Case(
            retraining,
            "iam:PassRole",
            d.arn(*p.scheduler_role),
            DENIED,
            {"iam:PassedToService": "lambda.amazonaws.com"},
        ),
        Case(
            retraining,
            "iam:PassRole",
            d.arn(*p.execution_role),
            DENIED,
            {"iam:PassedToService": "scheduler.amazonaws.com"},
        ),
        item("dynamodb:GetItem", p.policies, ALLOWED),
        item("dynamodb:PutItem", p.policies, ALLOWED),
        item("dynamodb:DeleteItem", p.policies, DENIED),
        item("dynamodb:PutItem", p.runs, DENIED),
        item("dynamodb:GetItem", p.jobs, DENIED),
        Case(retraining, "sqs:SendMessage", d.arn(*p.retraining_dlq), ALLOWED),
        Case(retraining, "sqs:ChangeMessageVisibility", d.arn(*p.retraining_queue), ALLOWED),
        Case(retraining, "sqs:SendMessage", d.arn(*p.requests_queue), DENIED),
        Case(retraining, "sqs:SendMessage", d.arn(*p.scheduler_dlq), DENIED),
    ]
    return cases


def retraining_role_cases(p: Platform, launch: Principal, events: Principal) -> list[Case]:
    """The scheduler role, the retraining handler, and what the launch handler (plans a run,
    writes its manifest) and the job-events handler (decides) may do with retraining's tables."""
    d = p.deployed
    scheduler, retraining = scheduler_principals(p)
    data_policy = d.resource_policy(*p.data_bucket)
    manifest = "tenants/acme/retraining/weekly/20261207030000/manifest.json"

    def item(principal: Principal, action: str, table: tuple[str, str], expected: str) -> Case:
        return Case(principal, action, d.arn(*table), expected, {"dynamodb:LeadingKeys": ["acme"]})

    def data(principal: Principal, action: str, key: str, expected: str) -> Case:
        return Case(principal, action, p.object(p.data_bucket, key), expected, {}, data_policy)

    return [
        *scheduler_role_cases(p, scheduler),
        *retraining_handler_cases(p, retraining),
        item(launch, "dynamodb:GetItem", p.policies, ALLOWED),
        item(launch, "dynamodb:PutItem", p.policies, ALLOWED),
        item(launch, "dynamodb:PutItem", p.runs, ALLOWED),
        item(launch, "dynamodb:PutItem", p.jobs, ALLOWED),
        item(launch, "dynamodb:GetItem", p.models, ALLOWED),
        item(launch, "dynamodb:GetItem", p.deployments, ALLOWED),
        item(launch, "dynamodb:PutItem", p.deployments, DENIED),
        item(launch, "dynamodb:PutItem", p.models, DENIED),
        item(launch, "dynamodb:DeleteItem", p.runs, DENIED),
        data(launch, "s3:PutObject", manifest, ALLOWED),
        data(launch, "s3:PutObject", "tenants/acme/datasets/readings.csv", DENIED),
        data(launch, "s3:GetObject", manifest, ALLOWED),
        data(launch, "s3:DeleteObject", manifest, DENIED),
        Case(
            launch,
            "s3:ListBucket",
            d.arn(*p.data_bucket),
            ALLOWED,
            {"s3:prefix": "tenants/acme/datasets/readings/"},
            data_policy,
        ),
        Case(
            launch,
            "s3:ListBucket",
            d.arn(*p.data_bucket),
            DENIED,
            {"s3:prefix": "algorithms/"},
            data_policy,
        ),
        Case(launch, "scheduler:CreateSchedule", p.schedule("acme-weekly"), DENIED),
        item(events, "dynamodb:GetItem", p.runs, ALLOWED),
        item(events, "dynamodb:PutItem", p.runs, ALLOWED),
        item(events, "dynamodb:PutItem", p.policies, ALLOWED),
        item(events, "dynamodb:DeleteItem", p.policies, DENIED),
        Case(events, "scheduler:DeleteSchedule", p.schedule("acme-weekly"), DENIED),
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


def _any_model_package_group(policies: list[dict[str, Any]]) -> None:
    for statement in _statements(policies):
        if "sagemaker:" in json.dumps(statement["Action"]):
            resources = json.dumps(statement.get("Resource", []))
            statement["Resource"] = json.loads(resources.replace(TENANT_VARIABLE, "*"))


def _without_approval_status(policies: list[dict[str, Any]]) -> None:
    for statement in _statements(policies):
        statement.get("Condition", {}).get("StringEquals", {}).pop(
            "sagemaker:ModelApprovalStatus", None
        )


def _without_decision_attributes(policies: list[dict[str, Any]]) -> None:
    for statement in _statements(policies):
        statement.get("Condition", {}).get("ForAllValues:StringEquals", {}).pop(
            "dynamodb:Attributes", None
        )


@pytest.mark.parametrize(
    ("mutation", "must_flip"),
    [
        (_without_leading_keys, "acme | dynamodb:GetItem | {jobs} dynamodb:LeadingKeys=['globex']"),
        (
            _without_leading_keys,
            "acme | dynamodb:Query | {trials}/index/ByObjective dynamodb:LeadingKeys=['globex']",
        ),
        (
            _without_leading_keys,
            "acme | dynamodb:UpdateItem | {models} dynamodb:LeadingKeys=['globex']",
        ),
        (_any_prefix, "acme | s3:GetObject | {data}/tenants/globex/datasets/readings.csv"),
        (
            _without_resource_tag,
            "acme | sagemaker:StopTrainingJob | {job} aws:ResourceTag/tenant=globex",
        ),
        (
            _without_resource_tag,
            "acme | sagemaker:StopHyperParameterTuningJob | {tuning} aws:ResourceTag/tenant=globex",
        ),
        (_any_model_package_group, "acme | sagemaker:DescribeModelPackage | {acme2_version}"),
        (
            _without_approval_status,
            "acme | sagemaker:UpdateModelPackage | {own_version} "
            "sagemaker:ModelApprovalStatus=PendingManualApproval",
        ),
        (
            _without_decision_attributes,
            "acme | dynamodb:UpdateItem | {models} "
            "dynamodb:Attributes=['tenant_id', 'job_id', 'approval_status'] "
            "dynamodb:LeadingKeys=['acme']",
        ),
        (_without_leading_keys, "acme | dynamodb:GetItem | {runs} dynamodb:LeadingKeys=['globex']"),
        (
            _without_leading_keys,
            "acme | dynamodb:PutItem | {policies} dynamodb:LeadingKeys=['acme2']",
        ),
    ],
    ids=[
        "no LeadingKeys condition",
        "no LeadingKeys condition on the trials index",
        "no LeadingKeys condition on the models table",
        "no tenant in the S3 prefix",
        "no ResourceTag condition",
        "no ResourceTag condition on tuning jobs",
        "no tenant in the model package ARN",
        "no approval status condition",
        "no attribute limit on decisions",
        "no LeadingKeys condition on the retraining runs",
        "no LeadingKeys condition on the retraining policies",
    ],
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
        trials=platform.deployed.arn(*platform.trials),
        models=platform.deployed.arn(*platform.models),
        data=platform.deployed.arn(*platform.data_bucket),
        job=platform.training_job("globex-0001"),
        tuning=platform.tuning_job(tuning_job_name("globex-0001")),
        acme2_version=platform.model_package("acme2", 1),
        own_version=platform.model_package("acme", 3),
        runs=platform.deployed.arn(*platform.runs),
        policies=platform.deployed.arn(*platform.policies),
    )
    assert any(line.startswith(f"{expected}: expected Denied, got Allowed") for line in flipped), (
        "\n".join(flipped) or table(decisions)
    )


# The handlers' guardrails, removed one at a time: the request without it must then pass.


def _without_condition(action: str, operator: str, key: str) -> Callable[[list[Any]], None]:
    def mutate(policies: list[dict[str, Any]]) -> None:
        [statement] = [s for s in _statements(policies) if s.get("Action") == action]
        del statement["Condition"][operator][key]
        if not statement["Condition"][operator]:
            del statement["Condition"][operator]

    return mutate


@pytest.mark.parametrize(
    ("role", "mutation", "action", "context"),
    [
        (
            "launch",
            _without_condition(
                "sagemaker:CreateHyperParameterTuningJob", "Bool", "sagemaker:NetworkIsolation"
            ),
            "sagemaker:CreateHyperParameterTuningJob",
            {"sagemaker:NetworkIsolation": "false"},
        ),
        (
            "launch",
            _without_condition(
                "sagemaker:CreateHyperParameterTuningJob",
                "Bool",
                "sagemaker:InterContainerTrafficEncryption",
            ),
            "sagemaker:CreateHyperParameterTuningJob",
            {"sagemaker:InterContainerTrafficEncryption": "false"},
        ),
        (
            "launch",
            _without_condition(
                "sagemaker:CreateHyperParameterTuningJob", "ArnEquals", "sagemaker:OutputKmsKeyArn"
            ),
            "sagemaker:CreateHyperParameterTuningJob",
            {"sagemaker:OutputKmsKeyArn": "arn:aws:kms:eu-west-1:111111111111:key/other"},
        ),
        (
            "launch",
            _without_condition(
                "sagemaker:CreateTrainingJob", "Bool", "sagemaker:InterContainerTrafficEncryption"
            ),
            "sagemaker:CreateTrainingJob",
            {"sagemaker:InterContainerTrafficEncryption": "false"},
        ),
        (
            "events",
            _without_condition(
                "sagemaker:CreateModelPackage", "StringEquals", "sagemaker:ModelApprovalStatus"
            ),
            "sagemaker:CreateModelPackage",
            {"sagemaker:ModelApprovalStatus": "Approved"},
        ),
        (
            "events",
            _without_condition(
                "sagemaker:CreateModelPackageGroup", "Null", "aws:RequestTag/tenant"
            ),
            "sagemaker:CreateModelPackageGroup",
            {"aws:TagKeys": []},
        ),
    ],
    ids=[
        "tuning without network isolation",
        "tuning without inter-container encryption",
        "tuning with another output key",
        "training without inter-container encryption",
        "a version registered as approved",
        "a group without a tenant tag",
    ],
)
def test_the_handler_matrix_fails_when_a_guardrail_is_removed(
    platform: Platform,
    role: str,
    mutation: Callable[[list[dict[str, Any]]], None],
    action: str,
    context: dict[str, Any],
) -> None:
    d = platform.deployed
    role_id = platform.launch_role if role == "launch" else platform.events_role
    policies = copy.deepcopy(d.role_policies(*role_id))
    mutation(policies)
    principal = Principal(f"{role} handler", platform.session(role_id, role), policies)
    cases = (
        create_training_job_cases(platform, principal)
        + create_tuning_job_cases(platform, principal)
        if role == "launch"
        else job_events_registry_cases(platform, principal)
    )
    decisions = evaluate(cases, platform)
    flipped = [
        case
        for case, decision, _ in decisions
        if case.expected == DENIED and decision == ALLOWED and case.action == action
    ]
    assert any(all(case.context.get(k) == v for k, v in context.items()) for case in flipped), (
        table(decisions)
    )


# --- serving: the deploy handler, the SageMaker roles, the instance role's API clients ------------


def deploy_request(deploy: Principal, sid: str) -> dict[str, Any]:
    """The request context the deploy handler's creates carry: its tags, network isolation,
    the endpoint subnets and group (one subnet), the data key, read from the statement ``sid``."""
    [statement] = [
        s
        for document in deploy.policies
        for s in document["policy"]["Statement"]
        if s.get("Sid") == sid
    ]
    conditions = statement["Condition"]
    context: dict[str, Any] = {
        "aws:RequestTag/tenant": "acme",
        "aws:RequestTag/deployment": "thermostat",
        "aws:TagKeys": ["tenant", "deployment"],
    }
    vpc = conditions.get("ForAllValues:StringEquals", {})
    if "sagemaker:VpcSubnets" in vpc:
        context["sagemaker:VpcSubnets"] = vpc["sagemaker:VpcSubnets"][:1]
        context["sagemaker:VpcSecurityGroupIds"] = vpc["sagemaker:VpcSecurityGroupIds"]
    for key, value in conditions.get("Bool", {}).items():
        context[key] = value
    for key, value in conditions.get("ArnEquals", {}).items():
        context[key] = value
    return context


OTHER_KEY = "arn:aws:kms:eu-west-1:111111111111:key/other"


def deploy_cases(p: Platform, deploy: Principal) -> list[Case]:
    """The deploy handler creates only network-isolated models in the endpoint subnets,
    encrypted real-time or serverless configurations, isolated encrypted monitoring jobs, all
    tagged tenant + deployment only; alarms only under the prefix; passes only its two roles."""
    d = p.deployed
    model = p.sagemaker("model/acme-m0123456789abcdef0123")
    config = p.sagemaker("endpoint-config/acme-c0123456789abcdef0123")
    endpoint = p.sagemaker("endpoint/acme-thermostat")
    job = p.sagemaker("processing-job/acme-b0123456789abcdef0123")
    create_model = deploy_request(deploy, "CreateIsolatedModelsOnly")
    realtime = deploy_request(deploy, "CreateEncryptedRealtimeConfigs")
    tags = {k: v for k, v in realtime.items() if k.startswith("aws:")}
    serverless = {**tags, "sagemaker:ServerlessMemorySize": "2048"}
    processing = deploy_request(deploy, "CreateIsolatedMonitoringJobsOnly")
    alarm = p.alarm(f"{p.alarm_prefix}-acme-thermostat-model-latency")
    cases = [
        Case(deploy, "sagemaker:CreateModel", model, ALLOWED, create_model),
        Case(
            deploy,
            "sagemaker:CreateModel",
            model,
            DENIED,
            {**create_model, "sagemaker:NetworkIsolation": "false"},
        ),
        Case(
            deploy,
            "sagemaker:CreateModel",
            model,
            DENIED,
            {**create_model, "sagemaker:VpcSubnets": ["subnet-other"]},
        ),
        Case(
            deploy,
            "sagemaker:CreateModel",
            model,
            DENIED,
            {**create_model, "aws:TagKeys": ["tenant", "deployment", "owner"]},
        ),
        Case(
            deploy,
            "sagemaker:CreateModel",
            model,
            DENIED,
            {k: v for k, v in create_model.items() if k != "aws:RequestTag/deployment"},
        ),
        Case(deploy, "sagemaker:CreateEndpointConfig", config, ALLOWED, realtime),
        Case(
            deploy,
            "sagemaker:CreateEndpointConfig",
            config,
            DENIED,
            {**realtime, "sagemaker:VolumeKmsKeyArn": OTHER_KEY},
        ),
        Case(
            deploy,
            "sagemaker:CreateEndpointConfig",
            config,
            DENIED,
            {**tags, "sagemaker:InstanceTypes": ["ml.m5.large"]},
        ),
        Case(deploy, "sagemaker:CreateEndpointConfig", config, ALLOWED, serverless),
        Case(
            deploy,
            "sagemaker:CreateEndpointConfig",
            config,
            DENIED,
            {**serverless, "sagemaker:InstanceTypes": ["ml.m5.large"]},
        ),
        Case(deploy, "sagemaker:CreateEndpoint", endpoint, ALLOWED, tags),
        Case(deploy, "sagemaker:CreateEndpoint", endpoint, DENIED, {"aws:TagKeys": []}),
        Case(
            deploy,
            "sagemaker:UpdateEndpoint",
            endpoint,
            ALLOWED,
            {"aws:ResourceTag/tenant": "acme"},
        ),
        Case(deploy, "sagemaker:UpdateEndpoint", p.sagemaker("endpoint/someone-elses"), DENIED),
        Case(
            deploy,
            "sagemaker:DeleteEndpoint",
            endpoint,
            ALLOWED,
            {"aws:ResourceTag/tenant": "acme"},
        ),
        Case(deploy, "sagemaker:DeleteEndpoint", p.sagemaker("endpoint/someone-elses"), DENIED),
        Case(
            deploy, "sagemaker:InvokeEndpoint", endpoint, DENIED, {"aws:ResourceTag/tenant": "acme"}
        ),
        Case(deploy, "sagemaker:CreateProcessingJob", job, ALLOWED, processing),
        Case(
            deploy,
            "sagemaker:CreateProcessingJob",
            job,
            DENIED,
            {**processing, "sagemaker:NetworkIsolation": "false"},
        ),
        Case(
            deploy,
            "sagemaker:CreateProcessingJob",
            job,
            DENIED,
            {**processing, "sagemaker:OutputKmsKeyArn": OTHER_KEY},
        ),
        Case(
            deploy,
            "sagemaker:CreateProcessingJob",
            job,
            DENIED,
            {k: v for k, v in processing.items() if not k.startswith("sagemaker:Vpc")},
        ),
        Case(
            deploy, "sagemaker:CreateTrainingJob", p.training_job("acme-0001"), DENIED, processing
        ),
        Case(deploy, "cloudwatch:PutMetricAlarm", alarm, ALLOWED, tags),
        Case(deploy, "cloudwatch:PutMetricAlarm", alarm, DENIED, {"aws:TagKeys": []}),
        Case(
            deploy, "cloudwatch:PutMetricAlarm", p.alarm("TrainingPlatform-ops-alarm"), DENIED, tags
        ),
        Case(deploy, "cloudwatch:DeleteAlarms", alarm, ALLOWED),
        Case(deploy, "cloudwatch:DeleteAlarms", p.alarm("TrainingPlatform-ops-alarm"), DENIED),
        Case(
            deploy,
            "iam:PassRole",
            d.arn(*p.endpoint_role),
            ALLOWED,
            {"iam:PassedToService": "sagemaker.amazonaws.com"},
        ),
        Case(
            deploy,
            "iam:PassRole",
            d.arn(*p.monitoring_role),
            ALLOWED,
            {"iam:PassedToService": "sagemaker.amazonaws.com"},
        ),
        Case(
            deploy,
            "iam:PassRole",
            d.arn(*p.endpoint_role),
            DENIED,
            {"iam:PassedToService": "lambda.amazonaws.com"},
        ),
        Case(
            deploy,
            "iam:PassRole",
            d.arn(*p.execution_role),
            DENIED,
            {"iam:PassedToService": "sagemaker.amazonaws.com"},
        ),
        Case(
            deploy,
            "dynamodb:UpdateItem",
            d.arn(*p.deployments),
            ALLOWED,
            {"dynamodb:LeadingKeys": ["acme"]},
        ),
        Case(
            deploy,
            "dynamodb:GetItem",
            d.arn(*p.models),
            ALLOWED,
            {"dynamodb:LeadingKeys": ["acme"]},
        ),
        Case(
            deploy,
            "dynamodb:PutItem",
            d.arn(*p.tenants),
            DENIED,
            {"dynamodb:LeadingKeys": ["acme"]},
        ),
        Case(
            deploy,
            "dynamodb:PutItem",
            d.arn(*p.api_clients),
            DENIED,
            {"dynamodb:LeadingKeys": ["acme"]},
        ),
        Case(
            deploy,
            "s3:GetObject",
            p.object(p.data_bucket, "tenants/acme/datasets/readings.csv"),
            DENIED,
            resource_policy=d.resource_policy(*p.data_bucket),
        ),
    ]
    return cases


def serving_role_cases(p: Platform, instance: Principal, events: Principal) -> list[Case]:
    """The SageMaker roles read and write only what serving needs; the instance role manages API
    clients but reaches no deployment, endpoint or tenant data; job-events follows endpoints."""
    d = p.deployed
    endpoint = Principal(
        "endpoint role", p.session(p.endpoint_role, "sm"), d.role_policies(*p.endpoint_role)
    )
    monitoring = Principal(
        "monitoring role", p.session(p.monitoring_role, "sm"), d.role_policies(*p.monitoring_role)
    )
    data_policy = d.resource_policy(*p.data_bucket)
    artifacts_policy = d.resource_policy(*p.artifacts_bucket)
    artifact = p.object(p.artifacts_bucket, "tenants/acme/jobs/acme-0001/output/model.tar.gz")
    capture = p.object(p.data_bucket, "tenants/acme/monitoring/acme-thermostat/capture/a.jsonl")
    report = p.object(p.data_bucket, "tenants/acme/monitoring/acme-thermostat/reports/r.json")
    dataset = p.object(p.data_bucket, "tenants/acme/datasets/readings.csv")
    endpoint_arn = p.sagemaker("endpoint/acme-thermostat")
    clients = d.arn(*p.api_clients)
    return [
        Case(endpoint, "s3:GetObject", artifact, ALLOWED, resource_policy=artifacts_policy),
        Case(endpoint, "s3:PutObject", artifact, DENIED, resource_policy=artifacts_policy),
        Case(endpoint, "s3:PutObject", capture, ALLOWED, resource_policy=data_policy),
        Case(endpoint, "s3:PutObject", report, DENIED, resource_policy=data_policy),
        Case(endpoint, "s3:GetObject", dataset, DENIED, resource_policy=data_policy),
        Case(
            endpoint,
            "cloudwatch:DescribeAlarms",
            p.alarm(f"{p.alarm_prefix}-acme-thermostat-invocation-5xx"),
            ALLOWED,
        ),
        Case(endpoint, "sagemaker:InvokeEndpoint", endpoint_arn, DENIED),
        Case(monitoring, "s3:GetObject", dataset, ALLOWED, resource_policy=data_policy),
        Case(monitoring, "s3:GetObject", capture, ALLOWED, resource_policy=data_policy),
        Case(monitoring, "s3:PutObject", report, ALLOWED, resource_policy=data_policy),
        Case(monitoring, "s3:PutObject", dataset, DENIED, resource_policy=data_policy),
        Case(monitoring, "s3:GetObject", artifact, DENIED, resource_policy=artifacts_policy),
        Case(
            monitoring,
            "s3:ListBucket",
            d.arn(*p.data_bucket),
            ALLOWED,
            {"s3:prefix": "tenants/acme/monitoring/"},
            data_policy,
        ),
        Case(
            instance,
            "cognito-idp:CreateUserPoolClient",
            d.arn(*p.user_pool),
            ALLOWED,
        ),
        Case(instance, "cognito-idp:DeleteUserPoolClient", d.arn(*p.user_pool), ALLOWED),
        Case(instance, "cognito-idp:DeleteUserPool", d.arn(*p.user_pool), DENIED),
        Case(instance, "dynamodb:PutItem", clients, ALLOWED, {"dynamodb:LeadingKeys": ["acme"]}),
        Case(instance, "dynamodb:Query", clients, DENIED, {"dynamodb:LeadingKeys": ["acme"]}),
        Case(
            instance,
            "dynamodb:GetItem",
            d.arn(*p.deployments),
            DENIED,
            {"dynamodb:LeadingKeys": ["acme"]},
        ),
        Case(instance, "sqs:SendMessage", d.arn(*p.deployment_queue), DENIED),
        Case(
            instance,
            "sagemaker:InvokeEndpoint",
            endpoint_arn,
            DENIED,
            {"aws:ResourceTag/tenant": "acme"},
        ),
        Case(instance, "cloudwatch:GetMetricData", "*", ALLOWED),
        Case(events, "sagemaker:DescribeEndpoint", endpoint_arn, ALLOWED),
        Case(events, "sagemaker:ListTags", endpoint_arn, ALLOWED),
        Case(events, "sagemaker:CreateEndpoint", endpoint_arn, DENIED, {"aws:TagKeys": []}),
        Case(events, "sqs:SendMessage", d.arn(*p.deployment_queue), ALLOWED),
        Case(
            events,
            "cloudwatch:PutMetricData",
            "*",
            ALLOWED,
            {"cloudwatch:namespace": "TrainingPlatform/Monitoring"},
        ),
        Case(
            events,
            "cloudwatch:PutMetricData",
            "*",
            DENIED,
            {"cloudwatch:namespace": "AWS/SageMaker"},
        ),
        Case(
            events,
            "cloudwatch:ListTagsForResource",
            p.alarm(f"{p.alarm_prefix}-acme-thermostat-data-quality"),
            ALLOWED,
        ),
        Case(
            events,
            "dynamodb:UpdateItem",
            d.arn(*p.deployments),
            ALLOWED,
            {"dynamodb:LeadingKeys": ["acme"]},
        ),
    ]


def test_the_invoke_role_reaches_its_tenants_endpoints_only(platform: Platform) -> None:
    policies = platform.deployed.role_policies(*platform.invoke_role)
    decisions = evaluate(invoke_matrix(platform, policies), platform)
    assert mismatches(decisions) == [], table(decisions)


def test_the_invoke_matrix_fails_without_the_tenant_condition(platform: Platform) -> None:
    policies = copy.deepcopy(platform.deployed.role_policies(*platform.invoke_role))
    _without_resource_tag(policies)
    flipped = mismatches(evaluate(invoke_matrix(platform, policies), platform))
    globex = platform.sagemaker("endpoint/globex-thermostat")
    expected = f"acme invoke | sagemaker:InvokeEndpoint | {globex} aws:ResourceTag/tenant=globex"
    assert any(line.startswith(f"{expected}: expected Denied, got Allowed") for line in flipped), (
        "\n".join(flipped)
    )


def test_the_tenant_serving_rows_fail_without_leading_keys(platform: Platform) -> None:
    policies = copy.deepcopy(platform.deployed.role_policies(*platform.tenant_role))
    _without_leading_keys(policies)
    acme = Principal(
        "acme", platform.session(platform.tenant_role, "portal-acme"), policies, {"tenant": "acme"}
    )
    untagged = Principal("untagged", platform.session(platform.tenant_role, "portal-x"), policies)
    flipped = mismatches(evaluate(tenant_serving_cases(platform, acme, untagged), platform))
    deployments = platform.deployed.arn(*platform.deployments)
    expected = f"acme | dynamodb:PutItem | {deployments} dynamodb:LeadingKeys=['globex']"
    assert any(line.startswith(f"{expected}: expected Denied, got Allowed") for line in flipped), (
        "\n".join(flipped)
    )


def _without_sid_condition(sid: str, operator: str, key: str) -> Callable[[list[Any]], None]:
    def mutate(policies: list[dict[str, Any]]) -> None:
        [statement] = [s for s in _statements(policies) if s.get("Sid") == sid]
        del statement["Condition"][operator][key]
        if not statement["Condition"][operator]:
            del statement["Condition"][operator]

    return mutate


@pytest.mark.parametrize(
    ("mutation", "action", "context"),
    [
        (
            _without_sid_condition(
                "CreateIsolatedModelsOnly", "Bool", "sagemaker:NetworkIsolation"
            ),
            "sagemaker:CreateModel",
            {"sagemaker:NetworkIsolation": "false"},
        ),
        (
            _without_sid_condition(
                "CreateEncryptedRealtimeConfigs", "ArnEquals", "sagemaker:VolumeKmsKeyArn"
            ),
            "sagemaker:CreateEndpointConfig",
            {"sagemaker:VolumeKmsKeyArn": OTHER_KEY},
        ),
        (
            _without_sid_condition(
                "CreateIsolatedMonitoringJobsOnly", "ArnEquals", "sagemaker:OutputKmsKeyArn"
            ),
            "sagemaker:CreateProcessingJob",
            {"sagemaker:OutputKmsKeyArn": OTHER_KEY},
        ),
        (
            _without_sid_condition(
                "CreateIsolatedModelsOnly", "ForAllValues:StringEquals", "aws:TagKeys"
            ),
            "sagemaker:CreateModel",
            {"aws:TagKeys": ["tenant", "deployment", "owner"]},
        ),
        (
            _without_sid_condition(
                "UpdateAndDeletePlatformResources", "Null", "aws:ResourceTag/tenant"
            ),
            "sagemaker:UpdateEndpoint",
            {},
        ),
    ],
    ids=[
        "a model without network isolation",
        "a configuration with another volume key",
        "a monitoring job with another output key",
        "a model with a tag key beyond tenant and deployment",
        "an update of an endpoint the platform did not create",
    ],
)
def test_the_deploy_matrix_fails_when_a_guardrail_is_removed(
    platform: Platform,
    mutation: Callable[[list[dict[str, Any]]], None],
    action: str,
    context: dict[str, Any],
) -> None:
    d = platform.deployed
    policies = copy.deepcopy(d.role_policies(*platform.deploy_role))
    mutation(policies)
    principal = Principal("deploy handler", platform.session(platform.deploy_role, "d"), policies)
    decisions = evaluate(deploy_cases(platform, principal), platform)
    flipped = [
        case
        for case, decision, _ in decisions
        if case.expected == DENIED and decision == ALLOWED and case.action == action
    ]
    assert any(all(case.context.get(k) == v for k, v in context.items()) for case in flipped), (
        table(decisions)
    )


# The retraining guardrails, removed one at a time: the row that checks each must then flip.


def _any_schedule_group(policies: list[dict[str, Any]]) -> None:
    for statement in _statements(policies):
        if "scheduler:" in json.dumps(statement["Action"]):
            resources = json.dumps(statement["Resource"])
            statement["Resource"] = json.loads(
                re.sub(r"schedule/[^/]+/\*", "schedule/*", resources)
            )


def _without_source_arn(trust: dict[str, Any]) -> None:
    for statement in trust["Statement"]:
        statement.get("Condition", {}).pop("ArnEquals", None)


@pytest.mark.parametrize(
    ("principal", "mutation", "must_flip"),
    [
        (
            "retraining",
            _without_sid_condition(
                "PassTheSchedulerRoleToSchedulerOnly", "StringEquals", "iam:PassedToService"
            ),
            "retraining handler | iam:PassRole | {scheduler_role} "
            "iam:PassedToService=lambda.amazonaws.com",
        ),
        (
            "retraining",
            _any_schedule_group,
            "retraining handler | scheduler:CreateSchedule | {other_group_schedule}",
        ),
        (
            "scheduler",
            lambda policies: [
                s.update(Resource="*")
                for s in _statements(policies)
                if s.get("Sid") == "SendTriggersAndUndeliveredTriggers"
            ],
            "scheduler role | sqs:SendMessage | {retraining_queue}",
        ),
        (
            "scheduler",
            _without_sid_condition("TrainingKeyThroughSqsOnly", "StringEquals", "kms:ViaService"),
            "scheduler role | kms:Decrypt | {training_key}",
        ),
    ],
    ids=[
        "PassRole without the service condition",
        "schedules of any group",
        "the scheduler role on every queue",
        "the training key outside SQS",
    ],
)
def test_the_retraining_matrix_fails_when_a_guardrail_is_removed(
    platform: Platform,
    principal: str,
    mutation: Callable[[list[dict[str, Any]]], None],
    must_flip: str,
) -> None:
    d = platform.deployed
    scheduler, retraining = scheduler_principals(platform)
    chosen = retraining if principal == "retraining" else scheduler
    policies = copy.deepcopy(chosen.policies)
    mutation(policies)
    mutated = Principal(chosen.label, chosen.arn, policies)
    cases = (
        retraining_handler_cases(platform, mutated)
        if principal == "retraining"
        else scheduler_role_cases(platform, mutated)
    )
    flipped = mismatches(evaluate(cases, platform))
    expected = must_flip.format(
        scheduler_role=d.arn(*platform.scheduler_role),
        other_group_schedule=platform.schedule("acme-weekly", group="default"),
        retraining_queue=d.arn(*platform.retraining_queue),
        training_key=d.arn(*platform.training_key),
    )
    assert any(
        line.startswith(f"{expected}") and "expected Denied, got Allowed" in line
        for line in flipped
    ), "\n".join(flipped)


def test_the_scheduler_trust_fails_without_the_source_condition(platform: Platform) -> None:
    """Without aws:SourceArn, Scheduler could assume the role for any group's schedules."""
    d = platform.deployed
    scheduler, _ = scheduler_principals(platform)
    cases = scheduler_role_cases(platform, scheduler)
    trust = copy.deepcopy(d.resource_policy(*platform.scheduler_role))
    assert trust is not None
    _without_source_arn(trust)
    mutated = [
        dataclasses.replace(c, resource_policy=trust) if c.action == "sts:AssumeRole" else c
        for c in cases
    ]
    flipped = mismatches(evaluate(mutated, platform))
    assert any(
        line.startswith("scheduler.amazonaws.com | sts:AssumeRole")
        and "schedule-group/default" in line
        and "expected Denied, got Allowed" in line
        for line in flipped
    ), "\n".join(flipped)
