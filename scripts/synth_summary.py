"""Print what `make synth` produced: stacks, resource counts, nag findings acknowledged per pack.

Reads the cloud assembly (manifest.json, the templates and validation-report.json, which
aws-cdk-lib writes when validation plugins such as cdk-nag are registered).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any


def stack_templates(assembly: Path) -> dict[str, dict[str, Any]]:
    """Stack name -> template, for every CloudFormation stack in the assembly."""
    manifest = json.loads((assembly / "manifest.json").read_text())
    templates = {}
    for artifact in manifest["artifacts"].values():
        if artifact["type"] != "aws:cloudformation:stack":
            continue
        properties = artifact["properties"]
        name = properties.get("stackName") or artifact["displayName"]
        templates[name] = json.loads((assembly / properties["templateFile"]).read_text())
    return dict(sorted(templates.items()))


def acknowledged_per_pack(assembly: Path) -> dict[str, Counter[str]]:
    """Pack -> stack -> number of acknowledged findings (one per resource and rule)."""
    report_file = assembly / "validation-report.json"
    result: dict[str, Counter[str]] = {}
    if not report_file.exists():
        return result
    report = json.loads(report_file.read_text())
    for plugin in report.get("pluginReports", []):
        counts: Counter[str] = Counter()
        for finding in plugin.get("suppressedViolations", []):
            for construct in finding.get("violatingConstructs", []):
                counts[construct["constructPath"].split("/")[0]] += 1
        result[plugin["pluginName"]] = counts
    return result


def main(argv: list[str]) -> int:
    assembly = Path(argv[1] if len(argv) > 1 else "cdk.out")
    templates = stack_templates(assembly)
    acknowledged = acknowledged_per_pack(assembly)
    packs = sorted(acknowledged)
    header = ["stack", "resources", *(f"{pack} acked" for pack in packs)]
    rows = [
        [
            name,
            str(len(template.get("Resources", {}))),
            *(str(acknowledged[p][name]) for p in packs),
        ]
        for name, template in templates.items()
    ]
    totals = ["total", str(sum(int(row[1]) for row in rows))]
    totals += [str(sum(acknowledged[p].values())) for p in packs]
    widths = [max(len(row[i]) for row in [header, *rows, totals]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))

    print(
        f"\nSynthesized {len(templates)} stacks into {assembly}/ (nag: 0 unacknowledged findings)"
    )
    print(line(header))
    for row in rows:
        print(line(row))
    print(line(totals))
    if not acknowledged:
        print("warning: no validation-report.json; were the nag packs registered?")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
