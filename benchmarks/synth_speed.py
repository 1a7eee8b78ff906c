#!/usr/bin/env python3
"""Synth speed of the example environment against a plain CDK app, side by side (not a test).

Prints two ratios, each from the median of ``--runs`` interleaved runs in this one process tree
(the machine is shared, so only figures taken side by side are compared):

1. seconds per 100 resources of ``cdk synth`` of the example environment, with the nag packs it
   configures, over the same figure for a plain CDK app of the same aws-cdk-lib version with a
   comparable number of resources and no nag (copies of a stack of buckets, queues and roles,
   written to a temporary directory). Target: at most 1.0.
2. a warm ``make synth`` (nothing changed: the build is up to date) over ``cdk synth`` alone, both
   starting from an empty cdk.out as ``make synth`` does. Target: at most 1.5.

Both apps are synthesized in the same mode, the one ``make synth`` uses: ``CDK_VALIDATION=false``
(aws-cdk-lib's built-in CloudFormation Validate plugin off; cdk-nag runs; cfn-lint checks the
templates in ``make test``). ``--validation`` adds a second round with that plugin on.

    .venv/bin/python benchmarks/synth_speed.py [--runs 5] [--validation]

Run ``make build`` first (``make synth`` does).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CDK = ROOT / "node_modules" / ".bin" / "cdk"
PYTHON = Path(sys.executable)

# One stack of the plain app: what most CDK apps are made of, written with L2 constructs and
# grants as an application would, with no nag pack.
PLAIN_APP = textwrap.dedent(
    """
    import os
    from aws_cdk import App, Duration, RemovalPolicy, Stack
    from aws_cdk import aws_iam as iam, aws_s3 as s3, aws_sqs as sqs

    class Plain(Stack):
        def __init__(self, scope, id):
            super().__init__(scope, id)
            bucket = s3.Bucket(self, "Data", enforce_ssl=True, versioned=True,
                               removal_policy=RemovalPolicy.DESTROY)
            dead = sqs.Queue(self, "Dead", retention_period=Duration.days(14))
            queue = sqs.Queue(self, "Work", visibility_timeout=Duration.minutes(5),
                              dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=3,
                                                                    queue=dead))
            role = iam.Role(self, "Worker",
                            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
            bucket.grant_read_write(role)
            queue.grant_consume_messages(role)
            dead.grant_send_messages(role)

    app = App()
    for number in range(int(os.environ["PLAIN_STACKS"])):
        Plain(app, f"Plain{number:03d}")
    app.synth()
    """
)


def environment(validation: bool) -> dict[str, str]:
    # As `make` runs them: with Python's bytecode caches written (the Makefile unexports
    # PYTHONDONTWRITEBYTECODE, which some machines set).
    inherited = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {
        **inherited,
        "PATH": f"{PYTHON.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "CDK_DISABLE_CLI_TELEMETRY": "true",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "CDK_VALIDATION": "true" if validation else "false",
    }


def timed(command: list[str], *, cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    completed = subprocess.run(  # noqa: S603 - the benchmark's own fixed commands
        command, cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{completed.stdout}\n{completed.stderr}")
    return elapsed


def resources(assembly: Path) -> int:
    manifest = json.loads((assembly / "manifest.json").read_text())
    total = 0
    for artifact in manifest["artifacts"].values():
        if artifact["type"] == "aws:cloudformation:stack":
            template = json.loads((assembly / artifact["properties"]["templateFile"]).read_text())
            total += len(template.get("Resources", {}))
    return total


def cdk_synth(app: str | None, outdir: Path, *, cwd: Path, env: dict[str, str]) -> float:
    shutil.rmtree(outdir, ignore_errors=True)
    command = [str(CDK), "synth", "--quiet", "--no-notices", "--output", str(outdir)]
    if app is not None:
        command += ["--app", app]
    else:
        command += ["-c", "env=example"]
    return timed(command, cwd=cwd, env=env)


def median_of(runs: int, *measures: Callable[[], float]) -> list[float]:
    """Run the measures interleaved ``runs`` times (one warm-up round first); their medians."""
    for measure in measures:
        measure()
    samples: list[list[float]] = [[] for _ in measures]
    for _ in range(runs):
        for index, measure in enumerate(measures):
            samples[index].append(measure())
    return [statistics.median(s) for s in samples]


def one_round(runs: int, validation: bool, work: Path) -> tuple[float, float]:
    env = environment(validation)
    example_out = work / "example.out"
    cdk_synth(None, example_out, cwd=ROOT, env=env)
    example_resources = resources(example_out)

    plain = work / "plain"
    plain.mkdir(exist_ok=True)
    (plain / "app.py").write_text(PLAIN_APP)
    # The same feature flags as the project (cdk.json's context): the same library behaviour.
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    (plain / "cdk.json").write_text(json.dumps({"app": "python3 app.py", "context": context}))
    (plain / "cdk.context.json").write_text("{}")
    env_plain = {**env, "PLAIN_STACKS": "1"}
    cdk_synth("python3 app.py", plain / "cdk.out", cwd=plain, env=env_plain)
    per_stack = resources(plain / "cdk.out")
    env_plain["PLAIN_STACKS"] = str(math.ceil(example_resources / per_stack))
    cdk_synth("python3 app.py", plain / "cdk.out", cwd=plain, env=env_plain)
    plain_resources = resources(plain / "cdk.out")

    make = ["make", "--no-print-directory", "synth"]
    example_s, plain_s, make_s, alone_s = median_of(
        runs,
        lambda: cdk_synth(None, example_out, cwd=ROOT, env=env),
        lambda: cdk_synth("python3 app.py", plain / "cdk.out", cwd=plain, env=env_plain),
        lambda: timed(make, cwd=ROOT, env=env),
        lambda: cdk_synth(None, ROOT / "cdk.out", cwd=ROOT, env=env),
    )
    mode = "CDK_VALIDATION=" + ("true" if validation else "false")
    example_rate = 100 * example_s / example_resources
    plain_rate = 100 * plain_s / plain_resources
    print(f"\n{mode}, median of {runs} interleaved runs")
    print(f"{'':38}{'resources':>10}{'seconds':>9}{'s/100 res':>11}")
    print(
        f"{'example environment (nag packs)':38}{example_resources:>10}"
        f"{example_s:>9.2f}{example_rate:>11.2f}"
    )
    print(f"{'plain CDK app, no nag':38}{plain_resources:>10}{plain_s:>9.2f}{plain_rate:>11.2f}")
    print(f"{'warm make synth':38}{'':>10}{make_s:>9.2f}")
    print(f"{'cdk synth alone (into cdk.out)':38}{'':>10}{alone_s:>9.2f}")
    synth_ratio = example_rate / plain_rate
    make_ratio = make_s / alone_s
    print(f"ratio 1, example / plain per 100 resources: {synth_ratio:.2f} (target <= 1.0)")
    print(f"ratio 2, warm make synth / cdk synth:       {make_ratio:.2f} (target <= 1.5)")
    return synth_ratio, make_ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--validation",
        action="store_true",
        help="also measure with aws-cdk-lib's CloudFormation Validate plugin on",
    )
    args = parser.parse_args()
    if not CDK.exists():
        raise SystemExit("node_modules/.bin/cdk is missing: run `make synth` first")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="synth-speed-") as work:
        results = [one_round(args.runs, False, Path(work))]
        if args.validation:
            results.append(one_round(args.runs, True, Path(work)))
    met = all(s <= 1.0 and m <= 1.5 for s, m in results)
    print("\ntargets met" if met else "\ntargets NOT met")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
