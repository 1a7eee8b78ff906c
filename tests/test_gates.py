"""The gates every stack passes: snapshot, nag packs and their acknowledgements, cfn-lint."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Stack, Validations
from aws_cdk import aws_s3 as s3
from cdk_nag import AwsSolutionsChecks, NIST80053R5Checks
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.json import JSONSnapshotExtension

from tests.cfn_lint import CfnLint
from tests.conftest import ROOT, Synthesized
from training_platform.constructs.nag import PACKS, acknowledge

STACKS = ["Network", "DataLake", "Training", "Portal", "Observability"]
_ASSET_HASH = re.compile(r"[0-9a-f]{64}")


def normalized(template: dict[str, Any]) -> Any:
    """The template with asset hashes replaced, so a snapshot changes only with the template."""
    return json.loads(_ASSET_HASH.sub("ASSET-HASH", json.dumps(template)))


@pytest.fixture
def snapshot_json(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    return snapshot.use_extension(JSONSnapshotExtension)


@pytest.mark.parametrize("stack", STACKS)
def test_snapshot(full: Synthesized, stack: str, snapshot_json: SnapshotAssertion) -> None:
    """The reviewable template diff of every change. Update with `pytest --snapshot-update`."""
    assert normalized(full.raw(stack)) == snapshot_json


def test_every_stack_is_snapshotted(full: Synthesized) -> None:
    assert sorted(name.rsplit("-", 1)[1] for name in full.templates) == sorted(STACKS)


def test_nag_packs_ran_and_passed(synthesized: Synthesized) -> None:
    report = synthesized.validation_report
    plugins = {plugin["pluginName"]: plugin for plugin in report["pluginReports"]}
    assert sorted(plugins) == sorted(PACKS)  # both environments run all four
    for plugin in plugins.values():
        assert plugin["conclusion"] == "success"
        assert plugin["violations"] == []


def test_acknowledgements_carry_reasons_a_reviewer_can_check(synthesized: Synthesized) -> None:
    for plugin in synthesized.validation_report["pluginReports"]:
        for finding in plugin["suppressedViolations"]:
            reason = finding["reason"]
            where = f"{finding['ruleName']} at {finding['acknowledgedAt']}"
            assert len(reason) >= 40, f"{where}: reason too short: {reason!r}"
            assert not re.search(r"\b(todo|tbd|fixme|placeholder)\b", reason, re.I), where


def test_every_acknowledgement_matches_a_finding(synthesized: Synthesized) -> None:
    """An acknowledgement that no longer matches a finding is noise a reviewer would read in the
    code but never see in the report: remove it when the finding goes away."""
    packs = tuple(f"{pack}::" for pack in PACKS)
    used = {
        (finding["acknowledgedAt"], finding["acknowledgedId"])
        for plugin in synthesized.validation_report["pluginReports"]
        for finding in plugin["suppressedViolations"]
    }
    unused = []
    for metadata_file in synthesized.outdir.glob("*.metadata.json"):
        for path, entries in json.loads(metadata_file.read_text()).items():
            for entry in entries:
                if entry.get("type") != "aws:cdk:acknowledged-rules":
                    continue
                for rule in entry["data"]:
                    if rule.startswith(packs) and (path.lstrip("/"), rule) not in used:
                        unused.append(f"{path}: {rule}")
    assert unused == []


def test_an_unacknowledged_finding_fails_synth(tmp_path: Path) -> None:
    app = App(outdir=str(tmp_path))
    stack = Stack(app, "Probe")
    s3.CfnBucket(stack, "PlainBucket")
    Validations.of(app).add_plugins(AwsSolutionsChecks(app), NIST80053R5Checks(app))
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()


def test_a_nist_acknowledgement_covers_the_same_rule_of_the_other_packs(tmp_path: Path) -> None:
    """HIPAA and PCI DSS reuse NIST rules by name; one decision is recorded under each pack."""
    app = App(outdir=str(tmp_path))
    bucket = s3.CfnBucket(Stack(app, "Probe"), "Logs")
    reason = "A probe bucket that holds nothing: replication would copy nothing to nowhere."
    acknowledge(bucket, "NIST.800.53.R5-S3BucketReplicationEnabled", reason)
    acknowledge(bucket, "NIST.800.53.R5-LambdaDLQ", reason)  # HIPAA has the rule, PCI DSS not
    recorded = [
        rule
        for m in bucket.node.metadata
        if m.type == "aws:cdk:acknowledged-rules"
        for rule in m.data
    ]
    assert sorted(recorded) == sorted(
        [
            "NIST.800.53.R5::NIST.800.53.R5-S3BucketReplicationEnabled",
            "HIPAA.Security::HIPAA.Security-S3BucketReplicationEnabled",
            "PCI.DSS.321::PCI.DSS.321-S3BucketReplicationEnabled",
            "NIST.800.53.R5::NIST.800.53.R5-LambdaDLQ",
            "HIPAA.Security::HIPAA.Security-LambdaDLQ",
        ]
    )
    with pytest.raises(ValueError, match="add 'EFSEncrypted' to NIST_RULES_IN_OTHER_PACKS"):
        acknowledge(bucket, "NIST.800.53.R5-EFSEncrypted", reason)


def test_cfn_lint_is_clean(synthesized: Synthesized) -> None:
    """No cfn-lint error or warning on any synthesized template (informational notes allowed)."""
    assert synthesized.cfn_lint.templates == sorted(
        str(p) for p in synthesized.outdir.glob("*.template.json")
    )
    problems = synthesized.cfn_lint.problems()
    assert problems == [], "\n".join(problems)


def test_cfn_lint_reports_a_broken_template(tmp_path: Path) -> None:
    """The gate can fail: a bucket with an unknown property and a Ref to nothing."""
    template = tmp_path / "Broken.template.json"
    template.write_text(
        json.dumps(
            {
                "Resources": {
                    "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"Colour": "blue"}},
                    "Queue": {
                        "Type": "AWS::SQS::Queue",
                        "Properties": {"QueueName": {"Ref": "Nothing"}},
                    },
                }
            }
        )
    )
    problems = CfnLint([template]).problems()
    assert any("Colour" in line for line in problems), problems
    assert any("Nothing" in line for line in problems), problems


def test_synthesized_with_the_feature_flags_of_cdk_json(synthesized: Synthesized) -> None:
    """The tests build what `make synth` builds: cdk.json's feature flags are in the app."""
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    node = synthesized.platform.app.node
    assert {flag: node.try_get_context(flag) for flag in context} == context
