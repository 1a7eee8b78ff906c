"""The synthesized IAM policies of the platform as an IAM evaluator sees them once deployed.

CloudFormation templates hold intrinsics (``Ref``, ``Fn::GetAtt``, ``Fn::Join``, cross-stack
``Fn::GetStackOutput``); :class:`DeployedPolicies` resolves them to the names and ARNs the
resources would have in the environment's account and region (logical ids stand in for the
generated physical names), and collects every policy document that applies to a role: its
inline policies, the customer managed policies it lists, and the policies of any stack that name
it. :func:`simulate` runs requests through ``tests/iam/simulate.js`` (the npm package
``@cloud-copilot/iam-simulate``, test-only).
"""

from __future__ import annotations

import atexit
import json
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("simulate.js")

_ARN_FORMATS = {
    "AWS::S3::Bucket": "arn:{p}:s3:::{name}",
    "AWS::DynamoDB::Table": "arn:{p}:dynamodb:{r}:{a}:table/{name}",
    "AWS::IAM::Role": "arn:{p}:iam::{a}:role/{name}",
    "AWS::IAM::ManagedPolicy": "arn:{p}:iam::{a}:policy/{name}",
    "AWS::KMS::Key": "arn:{p}:kms:{r}:{a}:key/{name}",
    "AWS::SQS::Queue": "arn:{p}:sqs:{r}:{a}:{name}",
    "AWS::SNS::Topic": "arn:{p}:sns:{r}:{a}:{name}",
    "AWS::Lambda::Function": "arn:{p}:lambda:{r}:{a}:function:{name}",
    "AWS::Logs::LogGroup": "arn:{p}:logs:{r}:{a}:log-group:{name}:*",
    "AWS::ECR::Repository": "arn:{p}:ecr:{r}:{a}:repository/{name}",
    "AWS::EFS::FileSystem": "arn:{p}:elasticfilesystem:{r}:{a}:file-system/{name}",
    "AWS::EC2::SecurityGroup": "arn:{p}:ec2:{r}:{a}:security-group/{name}",
    "AWS::EC2::Subnet": "arn:{p}:ec2:{r}:{a}:subnet/{name}",
    "AWS::Cognito::UserPool": "arn:{p}:cognito-idp:{r}:{a}:userpool/{name}",
    "AWS::Scheduler::ScheduleGroup": "arn:{p}:scheduler:{r}:{a}:schedule-group/{name}",
}
_NAME_PROPERTIES = {
    "AWS::S3::Bucket": "BucketName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::IAM::Role": "RoleName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::ECR::Repository": "RepositoryName",
    "AWS::Scheduler::ScheduleGroup": "Name",
}


@dataclass
class DeployedPolicies:
    """Every stack's template of one synthesized environment, with intrinsics resolved."""

    templates: dict[str, dict[str, Any]]
    account: str
    region: str
    partition: str = "aws"
    skipped_aws_managed: set[str] = field(default_factory=set)
    """AWS managed policies that roles attach: not in any template, so not evaluated."""

    # --- names and ARNs ---------------------------------------------------------------------

    def resource(self, stack: str, logical_id: str) -> dict[str, Any]:
        return self.templates[stack]["Resources"][logical_id]  # type: ignore[no-any-return]

    def find(self, stack_suffix: str, type_: str, prefix: str) -> tuple[str, str]:
        """(stack, logical id) of the one resource of ``type_`` whose id starts with ``prefix``."""
        matches = [
            (stack, logical_id)
            for stack, template in self.templates.items()
            if stack.endswith(f"-{stack_suffix}")
            for logical_id, resource in template["Resources"].items()
            if resource["Type"] == type_ and logical_id.startswith(prefix)
        ]
        assert len(matches) == 1, f"{type_} {prefix} in {stack_suffix}: {matches}"
        return matches[0]

    def name(self, stack: str, logical_id: str) -> str:
        resource = self.resource(stack, logical_id)
        prop = _NAME_PROPERTIES.get(resource["Type"])
        explicit = resource.get("Properties", {}).get(prop) if prop else None
        if explicit is not None:
            return str(self.resolve(stack, explicit))
        return logical_id.lower() if resource["Type"] == "AWS::S3::Bucket" else logical_id

    def arn(self, stack: str, logical_id: str) -> str:
        type_ = self.resource(stack, logical_id)["Type"]
        # Resources no request of the matrices names get a well-formed ARN of their service.
        _, service, kind = type_.split("::")
        fallback = f"arn:{{p}}:{service.lower()}:{{r}}:{{a}}:{kind.lower()}/{{name}}"
        return _ARN_FORMATS.get(type_, fallback).format(
            p=self.partition, r=self.region, a=self.account, name=self.name(stack, logical_id)
        )

    def _ref(self, stack: str, target: str) -> str:
        pseudo = {
            "AWS::Partition": self.partition,
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": stack,
            "AWS::StackId": (
                f"arn:{self.partition}:cloudformation:{self.region}:{self.account}:stack/{stack}/id"
            ),
        }
        if target in pseudo:
            return pseudo[target]
        type_ = self.resource(stack, target)["Type"]
        if type_ == "AWS::SQS::Queue":
            return f"https://sqs.{self.region}.amazonaws.com/{self.account}/{target}"
        if type_ in ("AWS::IAM::ManagedPolicy", "AWS::SNS::Topic"):
            return self.arn(stack, target)
        return self.name(stack, target)

    def resolve(self, stack: str, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(stack, v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self._ref(stack, arg)
            if key == "Fn::GetAtt":
                target, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                if attribute == "Arn":
                    return self.arn(stack, target)
                return f"{target}.{attribute}"
            if key == "Fn::Join":
                separator, parts = arg
                return separator.join(str(self.resolve(stack, p)) for p in parts)
            if key == "Fn::GetStackOutput":
                other = arg["StackName"]
                output = self.templates[other]["Outputs"][arg["OutputName"]]["Value"]
                return self.resolve(other, output)
            if key == "Fn::ImportValue":
                for other, template in self.templates.items():
                    for output in template.get("Outputs", {}).values():
                        if output.get("Export", {}).get("Name") == arg:
                            return self.resolve(other, output["Value"])
                raise KeyError(f"no export named {arg}")
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                return _SUB_VARIABLE.sub(
                    lambda m: str(self.resolve(stack, variables.get(m[1], _sub_target(m[1])))),
                    text,
                )
            if key.startswith("Fn::"):
                raise NotImplementedError(f"{key} in {stack}: extend DeployedPolicies.resolve")
        return {k: self.resolve(stack, v) for k, v in value.items()}

    # --- policies --------------------------------------------------------------------------

    def role_policies(self, stack: str, role_id: str) -> list[dict[str, Any]]:
        """Every policy document that applies to the role, as ``{name, policy}``."""
        properties = self.resource(stack, role_id).get("Properties", {})
        role_name = self.name(stack, role_id)
        documents = [
            {
                "name": f"{role_id}/{p['PolicyName']}",
                "policy": self.resolve(stack, p["PolicyDocument"]),
            }
            for p in properties.get("Policies", [])
        ]
        attached = set(self.resolve(stack, properties.get("ManagedPolicyArns", [])))
        for arn in attached:
            if ":iam::aws:policy/" in arn:
                self.skipped_aws_managed.add(arn.rsplit("/", 1)[1])
        for other, template in self.templates.items():
            for logical_id, resource in template["Resources"].items():
                if resource["Type"] not in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
                    continue
                props = resource["Properties"]
                roles = self.resolve(other, props.get("Roles", []))
                is_attached = (
                    resource["Type"] == "AWS::IAM::ManagedPolicy"
                    and self.arn(other, logical_id) in attached
                )
                if role_name in roles or is_attached:
                    documents.append(
                        {
                            "name": f"{other}/{logical_id}",
                            "policy": self.resolve(other, props["PolicyDocument"]),
                        }
                    )
        return documents

    def resource_policy(self, stack: str, logical_id: str) -> dict[str, Any] | None:
        """The bucket policy of a bucket, the key policy of a key, the trust policy of a role."""
        resource = self.resource(stack, logical_id)
        if resource["Type"] == "AWS::KMS::Key":
            return self.resolve(stack, resource["Properties"]["KeyPolicy"])  # type: ignore[no-any-return]
        if resource["Type"] == "AWS::IAM::Role":
            document = resource["Properties"]["AssumeRolePolicyDocument"]
            return self.resolve(stack, document)  # type: ignore[no-any-return]
        if resource["Type"] == "AWS::S3::Bucket":
            for candidate in self.templates[stack]["Resources"].values():
                if candidate["Type"] == "AWS::S3::BucketPolicy" and candidate["Properties"][
                    "Bucket"
                ] == {"Ref": logical_id}:
                    return self.resolve(stack, candidate["Properties"]["PolicyDocument"])  # type: ignore[no-any-return]
        return None


_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


def _sub_target(name: str) -> dict[str, Any]:
    """What ``${name}`` of an ``Fn::Sub`` stands for: a pseudo parameter, a resource's Ref, or a
    ``Logical.Attribute``."""
    if "." in name and not name.startswith("AWS::"):
        return {"Fn::GetAtt": name.split(".", 1)}
    return {"Ref": name}


class _Simulator:
    """One ``simulate.js --serve`` process, started on first use and kept for the session."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        atexit.register(self.close)

    def evaluate(self, cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
        with self._lock:
            process = self._running()
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(json.dumps(cases) + "\n")
            process.stdin.flush()
            line = process.stdout.readline()
            if not line:
                # the process died: say why, and start a new one for the next call
                stderr = process.stderr.read() if process.stderr else ""
                self._process = None
                raise AssertionError(f"simulate.js stopped: {stderr}")
            results: list[dict[str, Any]] = json.loads(line)
            return results

    def _running(self) -> subprocess.Popen[str]:
        if self._process is None or self._process.poll() is not None:
            node = shutil.which("node")
            assert node is not None, "node is not on PATH"
            self._process = subprocess.Popen(
                [node, str(SCRIPT), "--serve"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=ROOT,
            )
        return self._process

    def close(self) -> None:
        if self._process is not None and self._process.stdin is not None:
            self._process.stdin.close()
            self._process.wait(timeout=30)
        self._process = None


_SIMULATOR = _Simulator()


def simulate(cases: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Evaluate ``cases`` (see simulate.js) in this process's simulator; results by case id."""
    return {r["id"]: r for r in _SIMULATOR.evaluate(cases)}
