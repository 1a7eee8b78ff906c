"""Which rules each nag pack evaluated against each stack, for the "passed" part of the report.

cdk-nag 3 reports only findings (violations and acknowledged ones) through aws-cdk-lib's
validation report; it has no logger or report of compliant rules any more. So this module runs the
same cdk-nag version, in Node, over the synthesized templates (``nag_rules.js``) and records, per
stack, pack, rule and resource, whether the rule applied (returned anything but N/A) and whether
the resource complied. The JavaScript comes from the jsii tarballs that the installed Python
packages already ship, so the rules are exactly the ones synth ran, and no npm package is added.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).with_name("nag_rules.js")
_JSII_PACKAGES = ("aws_cdk", "constructs", "cdk_nag")


@dataclass(frozen=True)
class Rule:
    rule_id: str
    pack: str
    level: str
    info: str
    """What a finding of this rule means, in cdk-nag's words."""


@dataclass(frozen=True)
class Outcome:
    """One rule applied to one resource when the templates were evaluated again."""

    stack: str
    """Artifact id of the stack."""
    pack: str
    rule_id: str
    logical_id: str
    compliant: bool


@dataclass(frozen=True)
class RuleCoverage:
    """Every rule of each pack, and what each rule returned for the resources it applied to."""

    nag_version: str
    rules: dict[str, dict[str, Rule]]
    """pack -> rule id -> rule."""
    outcomes: tuple[Outcome, ...]


def _tarballs() -> list[Path]:
    found: list[Path] = []
    for package in _JSII_PACKAGES:
        spec = importlib.util.find_spec(package)  # finds without importing (no jsii kernel)
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError(f"Python package {package} is not installed")
        for location in spec.submodule_search_locations:
            found += Path(location).rglob("*.jsii.tgz")
    return sorted(found, key=lambda path: path.name)


def node_modules() -> Path:
    """A node_modules directory with the JavaScript of the installed jsii packages, extracted
    once per set of versions into the temporary directory."""
    tarballs = _tarballs()
    key = hashlib.sha256("\n".join(t.name for t in tarballs).encode()).hexdigest()[:16]
    target = Path(tempfile.gettempdir()) / f"training-platform-nag-{key}" / "node_modules"
    if target.is_dir():
        return target
    staging = Path(tempfile.mkdtemp(prefix="nag-runtime-"))
    for tarball in tarballs:
        unpacked = staging / "unpacked"
        with tarfile.open(tarball) as archive:
            archive.extractall(unpacked, filter="data")
        name = json.loads((unpacked / "package" / "package.json").read_text())["name"]
        destination = staging / "node_modules" / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        (unpacked / "package").rename(destination)
        shutil.rmtree(unpacked)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        (staging / "node_modules").rename(target)
    except OSError:  # another process got there first
        if not target.is_dir():
            raise
    shutil.rmtree(staging, ignore_errors=True)
    return target


def rule_coverage(assembly: Path, packs: list[str]) -> RuleCoverage:
    """Run ``packs`` over the assembly's templates and record which rules applied where.

    Packs that are not cdk-nag packs (another validation plugin) are skipped."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not on PATH; the compliance report needs Node.js")
    env = {**os.environ, "NODE_PATH": str(node_modules())}
    completed = subprocess.run(  # noqa: S603 - fixed script, arguments are paths and pack names
        [node, str(SCRIPT), str(assembly), *packs],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    raw = json.loads(completed.stdout)
    rules = {
        pack: {
            rule_id: Rule(rule_id=rule_id, pack=pack, level=r["level"], info=r["info"])
            for rule_id, r in pack_rules.items()
        }
        for pack, pack_rules in raw["packs"].items()
    }
    outcomes = tuple(
        Outcome(
            stack=o["stack"],
            pack=o["pack"],
            rule_id=o["rule"],
            logical_id=o["logicalId"],
            compliant=o["compliant"],
        )
        for o in raw["outcomes"]
    )
    return RuleCoverage(nag_version=raw["version"], rules=rules, outcomes=outcomes)
