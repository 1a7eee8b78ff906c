"""The parts of a cloud assembly (``cdk.out``) the reports read: stacks, templates, dependencies
and the validation report that aws-cdk-lib writes when validation plugins (the nag packs) run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VALIDATION_REPORT = "validation-report.json"
COMPLIANCE_REPORT = "compliance-report.md"
"""Written next to the templates by ``scripts/compliance_report.py``."""


@dataclass(frozen=True)
class StackArtifact:
    """One CloudFormation stack of the assembly."""

    artifact_id: str
    name: str
    """The CloudFormation stack name."""
    path: str
    """The stack's construct path; every construct path in the stack starts with it."""
    template: dict[str, Any]
    dependencies: tuple[str, ...]
    """Artifact ids of the other stacks this one is deployed after."""

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        resources: dict[str, dict[str, Any]] = self.template.get("Resources", {})
        return resources


@dataclass(frozen=True)
class Finding:
    """One resource's finding for one rule, as the validation report lists it."""

    pack: str
    rule: str
    """The rule id, with the finding in brackets where the rule reports several per resource,
    e.g. ``AwsSolutions-IAM5[Resource::*]``."""
    description: str
    severity: str
    construct_path: str
    stack: str
    """Artifact id of the stack the resource belongs to."""
    reason: str | None = None
    acknowledged_at: str | None = None

    @property
    def base_rule(self) -> str:
        return self.rule.split("[", 1)[0]

    @property
    def detail(self) -> str | None:
        """The part in brackets, e.g. ``Resource::*``, if any."""
        return self.rule[len(self.base_rule) + 1 : -1] if "[" in self.rule else None


@dataclass(frozen=True)
class ValidationReport:
    """What the validation plugins reported at synth, one entry per resource and rule."""

    plugins: tuple[str, ...]
    acknowledged: tuple[Finding, ...]
    violations: tuple[Finding, ...]


def load_stacks(assembly: Path) -> list[StackArtifact]:
    """Every CloudFormation stack in the assembly, nested ones (a pipeline's stages) included,
    sorted by stack name."""
    stacks: list[StackArtifact] = []
    for directory, artifact_id, artifact, stack_ids in _stack_artifacts(assembly):
        properties = artifact["properties"]
        stacks.append(
            StackArtifact(
                artifact_id=artifact_id,
                name=properties.get("stackName") or artifact.get("displayName") or artifact_id,
                path=artifact.get("displayName") or artifact_id,
                template=json.loads((directory / properties["templateFile"]).read_text()),
                dependencies=tuple(
                    sorted(d for d in artifact.get("dependencies", []) if d in stack_ids)
                ),
            )
        )
    return sorted(stacks, key=lambda stack: (stack.path.count("/"), stack.name))


def _stack_artifacts(
    directory: Path,
) -> list[tuple[Path, str, dict[str, Any], set[str]]]:
    """(assembly directory, artifact id, artifact, ids of its assembly's stacks) of every stack,
    descending into nested assemblies (``cdk:cloud-assembly``, one per CDK ``Stage``)."""
    manifest = json.loads((directory / "manifest.json").read_text())
    artifacts: dict[str, dict[str, Any]] = manifest["artifacts"]
    stack_ids = {k for k, a in artifacts.items() if a["type"] == "aws:cloudformation:stack"}
    found = [(directory, k, artifacts[k], stack_ids) for k in sorted(stack_ids)]
    for artifact in artifacts.values():
        if artifact["type"] == "cdk:cloud-assembly":
            found += _stack_artifacts(directory / artifact["properties"]["directoryName"])
    return found


def stack_of(construct_path: str, stacks: list[StackArtifact]) -> str:
    """Artifact id of the stack that holds ``construct_path`` (the longest matching stack path)."""
    matches = [s for s in stacks if construct_path.startswith(s.path + "/")]
    if not matches:
        raise ValueError(f"{construct_path!r} is in none of the stacks {[s.path for s in stacks]}")
    return max(matches, key=lambda s: len(s.path)).artifact_id


def _findings(
    plugin: str, entries: list[dict[str, Any]], stacks: list[StackArtifact]
) -> list[Finding]:
    findings = []
    for entry in entries:
        # aws-cdk-lib names them violatingConstructs; a plugin's own report violatingResources.
        constructs = entry.get("violatingConstructs") or entry.get("violatingResources") or []
        for construct in constructs:
            path = construct["constructPath"]
            findings.append(
                Finding(
                    pack=plugin,
                    rule=entry["ruleName"],
                    description=entry.get("description", ""),
                    severity=entry.get("severity", ""),
                    construct_path=path,
                    stack=stack_of(path, stacks),
                    reason=entry.get("reason"),
                    acknowledged_at=entry.get("acknowledgedAt"),
                )
            )
    return sorted(findings, key=lambda f: (f.stack, f.pack, f.rule, f.construct_path))


def load_validation_report(assembly: Path, stacks: list[StackArtifact]) -> ValidationReport:
    """The validation report of the assembly; raises FileNotFoundError without one (no plugins
    were registered, so there is nothing a reviewer could rely on)."""
    report = json.loads((assembly / VALIDATION_REPORT).read_text())
    plugins, acknowledged, violations = [], [], []
    for plugin in report.get("pluginReports", []):
        name = plugin["pluginName"]
        plugins.append(name)
        acknowledged += _findings(name, plugin.get("suppressedViolations", []), stacks)
        violations += _findings(name, plugin.get("violations", []), stacks)
    return ValidationReport(
        plugins=tuple(plugins), acknowledged=tuple(acknowledged), violations=tuple(violations)
    )


def construct_classes(assembly: Path) -> dict[str, str]:
    """Construct path -> fully qualified class name, from the assembly's construct tree
    (``tree.json``); empty when synth wrote no tree."""
    manifest = json.loads((assembly / "manifest.json").read_text())
    files = [
        a["properties"]["file"] for a in manifest["artifacts"].values() if a["type"] == "cdk:tree"
    ]
    classes: dict[str, str] = {}
    pending = [json.loads((assembly / f).read_text())["tree"] for f in files]
    while pending:
        node = pending.pop()
        fqn = node.get("constructInfo", {}).get("fqn")
        if fqn:
            classes[node["path"]] = fqn
        pending += node.get("children", {}).values()
    return classes
