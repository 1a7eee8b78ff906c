"""The reports a reviewer reads: the compliance report that `make synth` writes next to the
templates, and the one-screen summary that points to it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scripts import compliance_report, synth_summary
from tests.conftest import Synthesized
from training_platform.reporting.assembly import COMPLIANCE_REPORT

_reports: dict[Path, tuple[compliance_report.ComplianceReport, str]] = {}


def report_of(synthesized: Synthesized) -> tuple[compliance_report.ComplianceReport, str]:
    """The report of one fixture assembly, built once per session (it runs Node)."""
    if synthesized.outdir not in _reports:
        report = compliance_report.build_report(synthesized.outdir)
        _reports[synthesized.outdir] = (report, compliance_report.render_markdown(report))
    return _reports[synthesized.outdir]


def sections(markdown: str, level: int) -> dict[str, str]:
    """Heading text -> the text under it, for headings of exactly ``level``."""
    marker = "#" * level + " "
    parts = re.split(rf"^{marker}(.+)$", markdown, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def pack_section(markdown: str, stack: str, pack: str) -> str:
    return sections(sections(markdown, 2)[stack], 3)[pack]


def cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def acknowledged_in(synthesized: Synthesized, stack: str, pack: str) -> int:
    """Findings (resource and rule) that synth reported as acknowledged in ``stack``."""
    plugin = next(
        p for p in synthesized.validation_report["pluginReports"] if p["pluginName"] == pack
    )
    return sum(
        construct["constructPath"].startswith(stack + "/")
        for finding in plugin["suppressedViolations"]
        for construct in finding["violatingConstructs"]
    )


def test_report_has_a_section_and_summary_rows_for_every_stack(synthesized: Synthesized) -> None:
    _, markdown = report_of(synthesized)
    stacks = sections(markdown, 2)
    assert set(synthesized.templates) <= set(stacks)
    summary = stacks["Summary"]
    packs = [p["pluginName"] for p in synthesized.validation_report["pluginReports"]]
    for stack in synthesized.templates:
        for pack in packs:
            row = re.search(rf"^\| {re.escape(stack)} \| {re.escape(pack)} \|(.*)$", summary, re.M)
            assert row, f"no summary row for {stack} / {pack}"
            passed, acknowledged, unacknowledged = (c.strip() for c in row[1].split("|")[:3])
            assert int(passed) > 0 and unacknowledged == "0", row[0]
            assert int(acknowledged) == acknowledged_in(synthesized, stack, pack), row[0]


def test_every_acknowledged_finding_is_listed_with_path_and_reason(
    synthesized: Synthesized,
) -> None:
    _, markdown = report_of(synthesized)
    listed = 0
    for plugin in synthesized.validation_report["pluginReports"]:
        for finding in plugin["suppressedViolations"]:
            rule = finding["ruleName"]
            base, _, detail = rule.partition("[")
            for construct in finding["violatingConstructs"]:
                path = construct["constructPath"]
                stack = next(s for s in synthesized.templates if path.startswith(s + "/"))
                section = pack_section(markdown, stack, plugin["pluginName"])
                findings = sections(section, 4)["Acknowledged findings"]
                rule_block = findings.split(f"**{base}**", 1)[1].split("\n**", 1)[0]
                expected = (
                    f"| `{path}` | {f'`{cell(detail[:-1])}`' if detail else 'the rule'} "
                    f"| `{finding['acknowledgedAt']}` | {cell(finding['reason'])} |"
                )
                assert expected in rule_block, f"{rule} on {path} missing from the report"
                listed += 1
    assert listed > 0
    total_rows = len(re.findall(r"^\| `[^`]+` \|", markdown, re.M))
    assert total_rows == listed, "the report lists findings that synth did not report"


def test_every_pack_lists_rules_that_passed_and_none_with_a_finding(
    synthesized: Synthesized,
) -> None:
    report, markdown = report_of(synthesized)
    for stack_result in report.stacks:
        for pack in stack_result.packs:
            assert pack.evaluated and pack.passed, f"{stack_result.stack.name} / {pack.pack}"
            flagged = {f.base_rule for f in pack.acknowledged}
            passed = {p.rule.rule_id for p in pack.passed}
            assert not passed & flagged, f"{passed & flagged} both passed and acknowledged"
            table = sections(pack_section(markdown, stack_result.stack.name, pack.pack), 4)[
                "Rules passed"
            ]
            rows = re.findall(
                r"^\| ([\w.-]+) \| (Error|Warning|Info) \| (\d+) \| .+ \|$", table, re.M
            )
            assert {r[0] for r in rows} == passed
            assert all(int(r[2]) > 0 for r in rows)


def test_the_report_states_its_method_and_holds_no_placeholder(synthesized: Synthesized) -> None:
    _, markdown = report_of(synthesized)
    assert "## How to read it" in markdown
    assert "cdk-nag 3 reports only findings" in markdown
    placeholder = re.search(r"\b(todo|tbd|fixme|placeholder|lorem|xxx)\b", markdown, re.I)
    assert not placeholder, placeholder
    leaked = re.search(r"\bNone\b|\bnull\b|\bundefined\b|\{\}|\[\]", markdown)
    assert not leaked, f"a Python or JSON value leaked into the report: {leaked}"


def test_a_rule_that_applied_to_nothing_is_not_passed(example: Synthesized) -> None:
    """The example has no buckets: bucket rules ran (on every resource) but applied to none."""
    report, _ = report_of(example)
    passed = {p.rule.rule_id for s in report.stacks for pack in s.packs for p in pack.passed}
    assert "AwsSolutions-S1" in report.rules["AwsSolutions"]
    if not any(
        r["Type"] == "AWS::S3::Bucket"
        for t in example.templates.values()
        for r in t["Resources"].values()
    ):
        assert "AwsSolutions-S1" not in passed


def test_cli_writes_the_report_next_to_the_templates(
    example: Synthesized, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / COMPLIANCE_REPORT
    assert compliance_report.main([str(example.outdir), "--output", str(output)]) == 0
    assert output.read_text() == report_of(example)[1]
    assert str(output) in capsys.readouterr().out


def test_summary_lists_every_stack_and_points_to_the_report(
    example: Synthesized, capsys: pytest.CaptureFixture[str]
) -> None:
    (example.outdir / COMPLIANCE_REPORT).write_text(report_of(example)[1])
    assert synth_summary.main(["synth_summary", str(example.outdir)]) == 0
    out = capsys.readouterr().out
    for stack in example.templates:
        assert stack in out
    assert f"{example.outdir}/{COMPLIANCE_REPORT}" in out
