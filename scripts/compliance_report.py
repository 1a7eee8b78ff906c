"""Write the compliance report that `make synth` leaves next to the templates.

For each stack and nag pack: the acknowledged findings (rule, resource path, reason), the
unacknowledged ones (none after a successful synth) and the rules that passed.

    python scripts/compliance_report.py [cdk.out] [--output FILE]

Findings come from ``validation-report.json``, which aws-cdk-lib writes at synth from what the
packs found in the real construct tree. cdk-nag 3 reports nothing about compliant rules, so the
passed rules come from evaluating the same packs again over the synthesized templates
(``training_platform/reporting/nag_rules.py``); the report's header explains the method.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

from training_platform.reporting.assembly import (
    COMPLIANCE_REPORT,
    VALIDATION_REPORT,
    Finding,
    StackArtifact,
    construct_classes,
    load_stacks,
    load_validation_report,
)
from training_platform.reporting.nag_rules import Outcome, Rule, RuleCoverage, rule_coverage

GENERIC_RESOURCE = "aws-cdk-lib.CfnResource"
"""The class of resources CDK writes without a typed L1 class (custom resource providers): at
synth, the rules that look for a typed class (``instanceof CfnFunction``) skip them."""


@dataclass(frozen=True)
class PassedRule:
    rule: Rule
    resources: tuple[str, ...]
    """Construct paths of the resources the rule applied to and found compliant."""


@dataclass(frozen=True)
class Divergence:
    """A resource the re-evaluation flagged where synth reported nothing (see the header)."""

    rule_id: str
    construct_path: str


@dataclass(frozen=True)
class PackResult:
    pack: str
    evaluated: bool
    """Whether the pack's rules could be evaluated again (false for non-cdk-nag plugins)."""
    passed: tuple[PassedRule, ...]
    acknowledged: tuple[Finding, ...]
    unacknowledged: tuple[Finding, ...]
    divergences: tuple[Divergence, ...]


@dataclass(frozen=True)
class StackResult:
    stack: StackArtifact
    packs: tuple[PackResult, ...]


@dataclass(frozen=True)
class ComplianceReport:
    assembly: Path
    nag_version: str
    rules: dict[str, dict[str, Rule]]
    stacks: tuple[StackResult, ...]

    @property
    def unacknowledged(self) -> int:
        return sum(len(p.unacknowledged) for s in self.stacks for p in s.packs)


def _construct_path(stack: StackArtifact, logical_id: str) -> str:
    metadata = stack.resources.get(logical_id, {}).get("Metadata", {})
    path = metadata.get("aws:cdk:path")
    return path if isinstance(path, str) else f"{stack.path}/{logical_id}"


def _pack_result(
    stack: StackArtifact,
    pack: str,
    coverage: RuleCoverage,
    outcomes: list[Outcome],
    acknowledged: list[Finding],
    unacknowledged: list[Finding],
    classes: dict[str, str],
) -> PackResult:
    flagged = {f.base_rule for f in acknowledged + unacknowledged}
    compliant: dict[str, list[str]] = defaultdict(list)
    divergences = []
    for outcome in outcomes:
        path = _construct_path(stack, outcome.logical_id)
        if classes.get(path) == GENERIC_RESOURCE:
            continue  # synth saw a plain CfnResource here, which typed rules do not check
        if outcome.compliant:
            compliant[outcome.rule_id].append(path)
        elif outcome.rule_id not in flagged:
            divergences.append(Divergence(outcome.rule_id, path))
    passed = tuple(
        PassedRule(coverage.rules[pack][rule_id], tuple(sorted(paths)))
        for rule_id, paths in sorted(compliant.items())
        if rule_id not in flagged
    )
    return PackResult(
        pack=pack,
        evaluated=pack in coverage.rules,
        passed=passed,
        acknowledged=tuple(acknowledged),
        unacknowledged=tuple(unacknowledged),
        divergences=tuple(sorted(divergences, key=lambda d: (d.rule_id, d.construct_path))),
    )


def build_report(assembly: Path) -> ComplianceReport:
    """Read the assembly and evaluate the packs again; nothing is written."""
    stacks = load_stacks(assembly)
    validation = load_validation_report(assembly, stacks)
    coverage = rule_coverage(assembly, list(validation.plugins))
    classes = construct_classes(assembly)

    def select(findings: tuple[Finding, ...], stack: str, pack: str) -> list[Finding]:
        return [f for f in findings if f.stack == stack and f.pack == pack]

    results = []
    for stack in stacks:
        packs = []
        for pack in validation.plugins:
            outcomes = [
                o for o in coverage.outcomes if o.stack == stack.artifact_id and o.pack == pack
            ]
            packs.append(
                _pack_result(
                    stack,
                    pack,
                    coverage,
                    outcomes,
                    select(validation.acknowledged, stack.artifact_id, pack),
                    select(validation.violations, stack.artifact_id, pack),
                    classes,
                )
            )
        results.append(StackResult(stack=stack, packs=tuple(packs)))
    return ComplianceReport(
        assembly=assembly,
        nag_version=coverage.nag_version,
        rules=coverage.rules,
        stacks=tuple(results),
    )


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def _code(text: str) -> str:
    return f"`{text}`"


def _header(report: ComplianceReport) -> list[str]:
    packs = ", ".join(
        f"{pack} ({len(rules)} rules)" for pack, rules in sorted(report.rules.items())
    )
    return [
        "# Compliance report",
        "",
        f"Written by `scripts/compliance_report.py` from the cloud assembly in "
        f"`{report.assembly}` ({len(report.stacks)} stacks). Packs: {packs}; cdk-nag "
        f"{report.nag_version}.",
        "",
        "## How to read it",
        "",
        "- **Acknowledged findings**: what a pack found and an engineer accepted, exactly as synth "
        f"reported it in `{VALIDATION_REPORT}`: the rule (with the specific finding in brackets "
        "where the rule reports several, e.g. one wildcard), the construct path of the resource, "
        "the construct the acknowledgement is attached to (it covers that construct and everything "
        "below it), and the reason. The acknowledgements are written next to the resources, with "
        "`training_platform/constructs/nag.py`'s `acknowledge()`.",
        "- **Unacknowledged findings**: violations. Synth fails when there is one, so a report "
        "written by a successful `make synth` shows 0 everywhere.",
        "- **Rules passed**: cdk-nag 3 reports only findings, so this report evaluates the same "
        "packs again (the cdk-nag JavaScript the installed Python package ships) over the "
        "synthesized templates, loaded with `cloudformation-include`, and records for each rule "
        "the resources it applied to (returned anything other than N/A) and found compliant. A "
        "rule passed in a stack when it found at least one compliant resource there and synth "
        "reported no finding for it in that stack, neither acknowledged nor unacknowledged. Rules "
        "that applied to no resource of a stack (for example bucket rules in a stack without "
        "buckets) are not listed. Resources that synth saw as plain `CfnResource`s (the custom "
        "resource providers CDK adds; `tree.json` says which) are left out, because the "
        "type-specific rules skip them at synth.",
        "- **Evaluated differently at synth**: a few rules look at the construct tree rather than "
        "the template (for example whether the VPC construct restricts its default security "
        "group). Where the re-evaluation flags a resource that synth did not, the pair is listed "
        "for transparency and not counted as a pass on that resource; synth's result, which found "
        "nothing there, is the authoritative one.",
        "",
    ]


def _summary(report: ComplianceReport) -> list[str]:
    lines = [
        "## Summary",
        "",
        "| stack | pack | rules passed | acknowledged findings | unacknowledged findings |",
        "|---|---|---:|---:|---:|",
    ]
    for result in report.stacks:
        for pack in result.packs:
            passed = str(len(pack.passed)) if pack.evaluated else "not evaluated"
            lines.append(
                f"| {result.stack.name} | {pack.pack} | {passed} | {len(pack.acknowledged)} "
                f"| {len(pack.unacknowledged)} |"
            )
    return [*lines, ""]


def _findings_table(findings: tuple[Finding, ...]) -> list[str]:
    lines: list[str] = []
    for rule, group in groupby(findings, key=lambda f: f.base_rule):
        items = list(group)
        first = items[0]
        lines += [
            f"**{rule}** ({first.severity}): {_cell(first.description)}",
            "",
            "| resource | finding | acknowledged at | reason |",
            "|---|---|---|---|",
        ]
        for f in items:
            detail = _code(_cell(f.detail)) if f.detail else "the rule"
            at = _code(f.acknowledged_at) if f.acknowledged_at else "not acknowledged"
            reason = _cell(f.reason) if f.reason else "none: this finding fails synth"
            lines.append(f"| {_code(f.construct_path)} | {detail} | {at} | {reason} |")
        lines.append("")
    return lines


def _pack_section(pack: PackResult) -> list[str]:
    lines = [
        f"### {pack.pack}",
        "",
        f"{len(pack.passed)} rules passed, {len(pack.acknowledged)} acknowledged findings, "
        f"{len(pack.unacknowledged)} unacknowledged findings.",
        "",
    ]
    if pack.unacknowledged:
        lines += ["#### Unacknowledged findings", "", *_findings_table(pack.unacknowledged)]
    lines += ["#### Acknowledged findings", ""]
    if pack.acknowledged:
        lines += _findings_table(pack.acknowledged)
    else:
        lines += ["No finding of this pack needed an acknowledgement in this stack.", ""]
    lines += ["#### Rules passed", ""]
    if not pack.evaluated:
        lines += [f"Not evaluated: {pack.pack} is not a cdk-nag pack.", ""]
    elif not pack.passed:
        lines += ["No rule of this pack found a compliant resource in this stack.", ""]
    else:
        lines += [
            "| rule | level | compliant resources | what a finding would have meant |",
            "|---|---|---:|---|",
        ]
        lines += [
            f"| {p.rule.rule_id} | {p.rule.level} | {len(p.resources)} | {_cell(p.rule.info)} |"
            for p in pack.passed
        ]
        lines.append("")
    if pack.divergences:
        lines += [
            "#### Evaluated differently at synth",
            "",
            "| rule | resource |",
            "|---|---|",
            *(f"| {d.rule_id} | {_code(d.construct_path)} |" for d in pack.divergences),
            "",
        ]
    return lines


def render_markdown(report: ComplianceReport) -> str:
    lines = [*_header(report), *_summary(report)]
    for result in report.stacks:
        stack = result.stack
        lines += [
            f"## {stack.name}",
            "",
            f"{len(stack.resources)} resources; construct path `{stack.path}`.",
            "",
        ]
        for pack in result.packs:
            lines += _pack_section(pack)
    return "\n".join(lines).rstrip() + "\n"


def write_report(assembly: Path, output: Path | None = None) -> tuple[Path, ComplianceReport]:
    """Build the report for ``assembly`` and write it (by default next to the templates)."""
    report = build_report(assembly)
    target = output or assembly / COMPLIANCE_REPORT
    target.write_text(render_markdown(report))
    return target, report


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("assembly", nargs="?", default="cdk.out", type=Path)
    parser.add_argument("--output", type=Path, help=f"default: <assembly>/{COMPLIANCE_REPORT}")
    args = parser.parse_args(argv)
    target, report = write_report(args.assembly, args.output)
    print(f"Compliance report: {target}")
    return 1 if report.unacknowledged else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
