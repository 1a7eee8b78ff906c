"""The README's architecture picture is drawn from the synthesized example environment and must
match it: adding a stack (or changing one) without `make diagram` fails here."""

from __future__ import annotations

import dataclasses
from typing import Any

from scripts import architecture
from tests.conftest import ROOT, Synthesized
from training_platform.reporting.assembly import StackArtifact, load_stacks

README = ROOT / "README.md"


def stack(name: str, resources: dict[str, Any], **template: Any) -> StackArtifact:
    return StackArtifact(
        artifact_id=name,
        name=name,
        path=name,
        template={"Resources": resources, **template},
        dependencies=(),
    )


def test_readme_diagram_matches_the_example_assembly(example: Synthesized) -> None:
    problems = architecture.readme_problems(README.read_text(), load_stacks(example.outdir))
    assert not problems, "\n".join(problems)


def test_a_stack_added_without_make_diagram_is_named(example: Synthesized) -> None:
    stacks = load_stacks(example.outdir)
    added = stack("TrainingPlatform-example-Added", {"Data": {"Type": "AWS::S3::Bucket"}})
    problems = architecture.readme_problems(README.read_text(), [*stacks, added])
    assert "stack TrainingPlatform-example-Added is missing from the README's architecture " in (
        "\n".join(problems)
    )
    assert problems[-1] == "run `make diagram` and commit README.md"


def test_a_changed_stack_makes_the_diagram_out_of_date(example: Synthesized) -> None:
    [*others, last] = load_stacks(example.outdir)
    resources = {**last.resources, "Extra": {"Type": "AWS::SQS::Queue"}}
    changed = dataclasses.replace(last, template={**last.template, "Resources": resources})
    problems = architecture.readme_problems(README.read_text(), [*others, changed])
    assert "the README's architecture diagram is out of date" in problems


def test_updating_an_up_to_date_readme_changes_nothing(example: Synthesized) -> None:
    readme = README.read_text()
    assert architecture.update_readme(readme, load_stacks(example.outdir)) == readme


def test_resources_are_grouped_and_counted_by_kind(example: Synthesized) -> None:
    network = next(s for s in load_stacks(example.outdir) if s.name.endswith("-Network"))
    kinds = dict(architecture.resource_kinds(network))
    endpoints = [r for r in network.resources.values() if r["Type"] == "AWS::EC2::VPCEndpoint"]
    interface = [e for e in endpoints if e["Properties"]["VpcEndpointType"] == "Interface"]
    assert kinds["interface endpoints"] == len(interface)
    assert kinds["gateway endpoints"] == len(endpoints) - len(interface)
    assert kinds["VPC"] == 1
    shown = sum(count for label, count in kinds.items() if label != "other resources")
    metadata = sum(r["Type"] == "AWS::CDK::Metadata" for r in network.resources.values())
    assert shown + kinds.get("other resources", 0) + metadata == len(network.resources)
    assert len(kinds) <= 20, "one line per kind, not per resource"


def test_cross_stack_references_become_labelled_arrows() -> None:
    network = stack(
        "Net",
        {"Vpc": {"Type": "AWS::EC2::VPC"}},
        Outputs={
            "VpcId": {"Value": {"Ref": "Vpc"}, "Export": {"Name": "Net:VpcId"}},
            "SubnetA": {"Value": "subnet-a", "Export": {"Name": "Net:SubnetA"}},
        },
    )
    imports = {
        "Type": "AWS::EFS::MountTarget",
        "Properties": {
            "SubnetId": {"Fn::ImportValue": "Net:SubnetA"},
            "Tags": [{"Value": {"Fn::ImportValue": "Net:VpcId"}}],
        },
    }
    data = dataclasses.replace(stack("Data", {"Mount": imports}), dependencies=("Net",))
    later = dataclasses.replace(stack("Later", {}), dependencies=("Data",))
    assert architecture.edges([network, data, later]) == [("Data", "Later", 0), ("Net", "Data", 2)]
    diagram = architecture.mermaid([network, data, later])
    assert '  Net -- "2 imported values" --> Data' in diagram
    assert '  Data -- "deployed first" --> Later' in diagram
    assert 'Data__other_resources["other resources: 1"]' in diagram
