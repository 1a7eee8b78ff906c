"""The deployment pipeline (environments/pipeline.toml): stages in order, approvals, the synth
step, encryption, least privilege, notifications; and every stage's templates pass the gates."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.json import JSONSnapshotExtension

from tests import cfn_lint
from tests.cfn_lint import CfnLint
from tests.conftest import CDK_CONTEXT, ROOT
from tests.test_gates import normalized
from training_platform.pipeline_app import PIPELINE_STACK, build_pipeline_app
from training_platform.pipeline_config import PipelineConfig, load_pipeline_config
from training_platform.stacks.pipeline import SYNTH_COMMANDS


class SynthesizedPipeline:
    def __init__(self, config: PipelineConfig, outdir: Path, *, lint: bool) -> None:
        self.config = config
        self.outdir = outdir
        build_pipeline_app(config, outdir=str(outdir), context=CDK_CONTEXT).app.synth()
        self.template = json.loads((outdir / f"{PIPELINE_STACK}.template.json").read_text())
        self.report = json.loads((outdir / "validation-report.json").read_text())
        # 16 templates: in two processes, so the findings are ready sooner
        self.cfn_lint = (
            CfnLint(sorted(outdir.rglob("*.template.json")), processes=2) if lint else None
        )

    def of_type(self, type_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.template["Resources"].items() if v["Type"] == type_}

    def one(self, type_: str) -> dict[str, Any]:
        [resource] = self.of_type(type_).values()
        return resource["Properties"]  # type: ignore[no-any-return]


@pytest.fixture(scope="session")  # session: the cfn-lint test runs after every other module
def pipeline(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> SynthesizedPipeline:
    config = load_pipeline_config(ROOT / "environments" / "pipeline.toml")
    outdir = tmp_path_factory.mktemp("cdk.out.pipeline")
    return SynthesizedPipeline(config, outdir, lint=cfn_lint.wanted(request.session))


def stages(pipeline: SynthesizedPipeline) -> list[dict[str, Any]]:
    return pipeline.one("AWS::CodePipeline::Pipeline")["Stages"]  # type: ignore[no-any-return]


def test_stages_deploy_the_environments_in_order(pipeline: SynthesizedPipeline) -> None:
    names = [stage["Name"] for stage in stages(pipeline)]
    assert names == ["Source", "Build", "UpdatePipeline", "Assets", "Dev", "Staging", "Production"]
    properties = pipeline.one("AWS::CodePipeline::Pipeline")
    assert properties["PipelineType"] == "V2"


def test_each_stage_holds_its_environments_stacks_under_their_own_names(
    pipeline: SynthesizedPipeline,
) -> None:
    manifest = json.loads((pipeline.outdir / "manifest.json").read_text())
    for environment in pipeline.config.environments:
        nested = manifest["artifacts"][f"assembly-{environment.name.title()}"]
        inner = json.loads(
            (pipeline.outdir / nested["properties"]["directoryName"] / "manifest.json").read_text()
        )
        stacks = {
            a["properties"]["stackName"]: a["environment"]
            for a in inner["artifacts"].values()
            if a["type"] == "aws:cloudformation:stack"
        }
        prefix = f"TrainingPlatform-{environment.name}"
        assert sorted(stacks) == sorted(
            f"{prefix}-{s}" for s in ("Network", "DataLake", "Training", "Portal", "Observability")
        )
        assert set(stacks.values()) == {f"aws://{environment.account}/{environment.region}"}
        assert not inner.get("missing"), "synth must need no lookup in the target account"


def test_a_person_approves_after_the_diff_and_before_any_deployment(
    pipeline: SynthesizedPipeline,
) -> None:
    by_name = {stage["Name"]: stage["Actions"] for stage in stages(pipeline)}
    assert not [a for a in by_name["Dev"] if a["ActionTypeId"]["Category"] == "Approval"]
    for stage, environment in (("Staging", "staging"), ("Production", "production")):
        actions = {a["Name"]: a for a in by_name[stage]}
        diff = actions[f"Diff-{environment}"]["RunOrder"]
        approve = actions[f"Approve-{environment}"]
        assert approve["ActionTypeId"]["Category"] == "Approval"
        deploys = [
            a["RunOrder"] for a in by_name[stage] if a["ActionTypeId"]["Category"] == "Deploy"
        ]
        assert diff < approve["RunOrder"] < min(deploys)


def buildspec(pipeline: SynthesizedPipeline, prefix: str) -> dict[str, Any]:
    [project] = [
        p["Properties"]
        for k, p in pipeline.of_type("AWS::CodeBuild::Project").items()
        if k.startswith(prefix)
    ]
    return json.loads(project["Source"]["BuildSpec"])  # type: ignore[no-any-return]


def test_the_synth_step_runs_the_readmes_two_commands(pipeline: SynthesizedPipeline) -> None:
    spec = buildspec(pipeline, "CodePipelineBuildSynth")
    assert spec["phases"]["build"]["commands"] == list(SYNTH_COMMANDS)
    assert SYNTH_COMMANDS == ("make synth ENV=pipeline", "make test")
    assert spec["artifacts"]["base-directory"] == "cdk.out"


def test_the_diff_step_reads_the_stage_assembly(pipeline: SynthesizedPipeline) -> None:
    spec = buildspec(pipeline, "CodePipelineProductionDiff")
    [command] = spec["phases"]["build"]["commands"]
    assert command.startswith("npx cdk diff --app assembly-Production ")


def test_artifacts_logs_and_notifications_are_encrypted_with_the_rotating_key(
    pipeline: SynthesizedPipeline,
) -> None:
    [key_id] = pipeline.of_type("AWS::KMS::Key")
    assert pipeline.template["Resources"][key_id]["Properties"]["EnableKeyRotation"] is True
    key = {"Fn::GetAtt": [key_id, "Arn"]}
    store = pipeline.one("AWS::CodePipeline::Pipeline")["ArtifactStore"]
    assert store["EncryptionKey"] == {"Id": key, "Type": "KMS"}
    [bucket] = pipeline.of_type("AWS::S3::Bucket").values()
    [rule] = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == key
    log_group = pipeline.one("AWS::Logs::LogGroup")
    assert log_group["KmsKeyId"] == key and log_group["RetentionInDays"] == 365
    assert pipeline.one("AWS::SNS::Topic")["KmsMasterKeyId"] == key
    for project in pipeline.of_type("AWS::CodeBuild::Project").values():
        assert project["Properties"]["EncryptionKey"] == key


def test_failures_and_approvals_notify_the_operators(pipeline: SynthesizedPipeline) -> None:
    rule = pipeline.one("AWS::CodeStarNotifications::NotificationRule")
    assert {
        "codepipeline-pipeline-pipeline-execution-failed",
        "codepipeline-pipeline-action-execution-failed",
        "codepipeline-pipeline-manual-approval-needed",
    } <= set(rule["EventTypeIds"])
    [topic_id] = pipeline.of_type("AWS::SNS::Topic")
    assert rule["Targets"] == [{"TargetAddress": {"Ref": topic_id}, "TargetType": "SNS"}]
    subscriptions = [s["Properties"] for s in pipeline.of_type("AWS::SNS::Subscription").values()]
    assert [s["Endpoint"] for s in subscriptions] == list(
        pipeline.config.pipeline.notification_emails
    )


def test_diff_roles_may_only_assume_their_environments_lookup_role(
    pipeline: SynthesizedPipeline,
) -> None:
    for environment in ("staging", "production"):
        [policy] = [
            p["Properties"]
            for k, p in pipeline.of_type("AWS::IAM::Policy").items()
            if k.startswith(f"CodePipeline{environment.title()}Diff")
        ]
        assumes = [
            s for s in policy["PolicyDocument"]["Statement"] if "sts:AssumeRole" in json.dumps(s)
        ]
        config = next(e for e in pipeline.config.environments if e.name == environment)
        assert assumes == [
            {
                "Action": "sts:AssumeRole",
                "Effect": "Allow",
                "Resource": (
                    f"arn:aws:iam::{config.account}:role/"
                    f"cdk-hnb659fds-lookup-role-{config.account}-{config.region}"
                ),
                "Sid": "ReadDeployedTemplatesThroughTheLookupRole",
            }
        ]


def test_no_role_of_the_pipeline_has_administrator_access(pipeline: SynthesizedPipeline) -> None:
    for policy in pipeline.of_type("AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = (
                statement["Action"]
                if isinstance(statement["Action"], list)
                else [statement["Action"]]
            )
            assert "*" not in actions and not any(a.endswith(":*") for a in actions), statement
    for role in pipeline.of_type("AWS::IAM::Role").values():
        assert "ManagedPolicyArns" not in role["Properties"]


# cdk-assets destinations end in a short hash of the asset hash: normalized like the asset hashes.
_DESTINATION_HASH = re.compile(r"(\d{12}-[a-z]{2}(?:-[a-z]+)+-\d)-[0-9a-f]{8}")


def test_snapshot(pipeline: SynthesizedPipeline, snapshot: SnapshotAssertion) -> None:
    """The pipeline stack's reviewable template diff. Update with `pytest --snapshot-update`."""
    template = json.loads(_DESTINATION_HASH.sub(r"\1-HASH", json.dumps(pipeline.template)))
    assert normalized(template) == snapshot.use_extension(JSONSnapshotExtension)


# --- the gates, on the pipeline and every stage ---------------------------------------------------


def test_nag_packs_pass_on_the_pipeline_and_every_stage(pipeline: SynthesizedPipeline) -> None:
    plugins = {p["pluginName"]: p for p in pipeline.report["pluginReports"]}
    assert set(plugins) == {"AwsSolutions", "NIST.800.53.R5"}
    for plugin in plugins.values():
        assert plugin["conclusion"] == "success" and plugin["violations"] == []
        stacks = {f["acknowledgedAt"].split("/")[0] for f in plugin["suppressedViolations"]}
        assert {PIPELINE_STACK, "Dev", "Staging", "Production"} <= stacks
        for finding in plugin["suppressedViolations"]:
            assert len(finding["reason"]) >= 40, finding["ruleName"]


def test_every_acknowledgement_in_the_pipeline_matches_a_finding(
    pipeline: SynthesizedPipeline,
) -> None:
    ran = tuple(f"{p['pluginName']}::" for p in pipeline.report["pluginReports"])
    used = {
        (finding["acknowledgedAt"], finding["acknowledgedId"])
        for plugin in pipeline.report["pluginReports"]
        for finding in plugin["suppressedViolations"]
    }
    unused = [
        f"{path}: {rule}"
        for metadata_file in pipeline.outdir.rglob("*.metadata.json")
        for path, entries in json.loads(metadata_file.read_text()).items()
        for entry in entries
        if entry.get("type") == "aws:cdk:acknowledged-rules"
        for rule in entry["data"]
        if rule.startswith(ran) and (path.lstrip("/"), rule) not in used
    ]
    assert unused == []


def test_cfn_lint_is_clean_on_every_template(pipeline: SynthesizedPipeline) -> None:
    templates = sorted(str(p) for p in pipeline.outdir.rglob("*.template.json"))
    assert len(templates) == 1 + 5 * len(pipeline.config.environments)
    assert pipeline.cfn_lint is not None and pipeline.cfn_lint.templates == templates
    problems = pipeline.cfn_lint.problems()
    assert problems == [], "\n".join(problems)
