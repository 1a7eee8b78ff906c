"""Print what `make synth` produced: stacks, resource counts, nag findings acknowledged per pack.

Reads the cloud assembly (manifest.json, the templates and validation-report.json, which
aws-cdk-lib writes when validation plugins such as cdk-nag are registered) with
``training_platform.reporting.assembly``, as the compliance report does, and points to that report.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from training_platform.reporting.assembly import (
    COMPLIANCE_REPORT,
    StackArtifact,
    ValidationReport,
    load_stacks,
    load_validation_report,
)


def acknowledged_per_pack(
    stacks: list[StackArtifact], report: ValidationReport
) -> dict[str, Counter[str]]:
    """Pack -> stack artifact id -> number of acknowledged findings (one per resource and rule)."""
    result: dict[str, Counter[str]] = {plugin: Counter() for plugin in report.plugins}
    for finding in report.acknowledged:
        result[finding.pack][finding.stack] += 1
    return result


def main(argv: list[str]) -> int:
    assembly = Path(argv[1] if len(argv) > 1 else "cdk.out")
    stacks = load_stacks(assembly)
    try:
        acknowledged = acknowledged_per_pack(stacks, load_validation_report(assembly, stacks))
    except FileNotFoundError:
        acknowledged = {}
    packs = sorted(acknowledged)
    header = ["stack", "resources", *(f"{pack} acked" for pack in packs)]
    rows = [
        [
            stack.name,
            str(len(stack.resources)),
            *(str(acknowledged[p][stack.artifact_id]) for p in packs),
        ]
        for stack in stacks
    ]
    totals = ["total", str(sum(int(row[1]) for row in rows))]
    totals += [str(sum(acknowledged[p].values())) for p in packs]
    widths = [max(len(row[i]) for row in [header, *rows, totals]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))

    print(f"\nSynthesized {len(stacks)} stacks into {assembly}/ (nag: 0 unacknowledged findings)")
    print(line(header))
    for row in rows:
        print(line(row))
    print(line(totals))
    if not acknowledged:
        print("warning: no validation-report.json; were the nag packs registered?")
        return 1
    report = assembly / COMPLIANCE_REPORT
    if report.exists():
        print(f"Compliance report (acknowledged findings with reasons, rules passed): {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
