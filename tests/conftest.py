"""Session-wide fixtures: each environment is synthesized once, with all four nag packs; and how
the tests are shared out between pytest-xdist workers.

Synthesis is the expensive step (a Node process runs the whole app and the nag packs), so the
tests share one cloud assembly per environment instead of calling ``Template.from_stack`` per test,
and a scheduler (below) keeps every test of a synthesized environment on one worker, and the
browser tests on one worker, while the other tests go to whichever worker is free.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

# Read by the jsii Node process when aws_cdk is first imported: keep them above that import.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("CDK_VALIDATION", "false")

import pytest
from aws_cdk.assertions import Template
from xdist.scheduler import LoadScopeScheduling

from tests import cfn_lint
from tests.cfn_lint import CfnLint
from training_platform.config import PlatformConfig, load_config
from training_platform.constructs.nag import PACKS
from training_platform.platform_app import Platform, build_platform

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
# The feature flags `cdk synth` applies (cdk.json's context): without them the tests would
# synthesize an app with older defaults than the one `make synth` and `make deploy` build.
CDK_CONTEXT: dict[str, Any] = json.loads((ROOT / "cdk.json").read_text())["context"]


class Synthesized:
    """One synthesized platform: the assembly directory and each stack's template."""

    def __init__(self, platform: Platform, outdir: Path, *, lint: bool) -> None:
        """``lint``: start cfn-lint over the templates now, in the background."""
        self.platform = platform
        self.assembly = platform.app.synth()
        self.outdir = outdir
        self.templates: dict[str, dict[str, Any]] = {
            stack.stack_name: stack.template for stack in self.assembly.stacks
        }
        self._cfn_lint = self._start_cfn_lint() if lint else None

    def _start_cfn_lint(self) -> CfnLint:
        return CfnLint(sorted(self.outdir.glob("*.template.json")))

    @property
    def cfn_lint(self) -> CfnLint:
        """cfn-lint over the templates (started now if it wasn't at synthesis)."""
        if self._cfn_lint is None:
            self._cfn_lint = self._start_cfn_lint()
        return self._cfn_lint

    def template(self, stack: str) -> Template:
        """Assertions on the stack whose name ends with ``-<stack>`` (e.g. 'Network')."""
        return Template.from_json(self.raw(stack))

    def raw(self, stack: str) -> dict[str, Any]:
        matches = [name for name in self.templates if name.endswith(f"-{stack}")]
        assert len(matches) == 1, f"expected one {stack} stack, found {sorted(self.templates)}"
        return self.templates[matches[0]]

    @property
    def validation_report(self) -> dict[str, Any]:
        return json.loads((self.outdir / "validation-report.json").read_text())


def _synthesize(
    config: PlatformConfig, tmp_path_factory: pytest.TempPathFactory, session: pytest.Session
) -> Synthesized:
    outdir = tmp_path_factory.mktemp(f"cdk.out.{config.name}")
    platform = build_platform(config, outdir=str(outdir), context=CDK_CONTEXT)
    return Synthesized(platform, outdir, lint=cfn_lint.wanted(session))


@pytest.fixture(scope="session")
def full_config() -> PlatformConfig:
    return load_config(FIXTURES / "full.toml")


@pytest.fixture(scope="session")
def example_config() -> PlatformConfig:
    return load_config(ROOT / "environments" / "example.toml")


@pytest.fixture(scope="session")
def full(
    full_config: PlatformConfig,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Synthesized:
    """Every optional part enabled, production settings, fixed account and region."""
    return _synthesize(full_config, tmp_path_factory, request.session)


@pytest.fixture(scope="session")
def example(
    example_config: PlatformConfig,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Synthesized:
    """The committed example environment, as `make synth` builds it, checked by every nag pack
    (HIPAA Security and PCI DSS 3.2.1 on top of its own two, as environments/regulated.toml)."""
    return _synthesize(with_all_packs(example_config), tmp_path_factory, request.session)


def with_all_packs(config: PlatformConfig) -> PlatformConfig:
    compliance = config.compliance.model_copy(update={"packs": PACKS})
    return config.model_copy(update={"compliance": compliance})


@pytest.fixture(scope="session", params=["full", "example"])
def synthesized(request: pytest.FixtureRequest) -> Synthesized:
    """Each environment in turn, for the gates every stack passes."""
    return request.getfixturevalue(request.param)


# Tests that share an expensive session-scoped fixture, kept on one pytest-xdist worker each.
_GROUPS = {
    # the browser tests mostly wait on the local portal's simulated jobs: they share one local
    # portal on one worker while the other works through the rest
    "tests/portal/test_browser.py": "browser",
    # every test of a synthesized environment: each environment is synthesized by one worker
    "tests/stacks/": "synthesis",
    "tests/test_gates.py": "synthesis",
    "tests/test_reports.py": "synthesis",
    "tests/test_architecture.py": "synthesis",
    "tests/test_config.py": "synthesis",
}


class _GroupedScheduling(LoadScopeScheduling):
    """``--dist load`` (``make test``), except that each group of :data:`_GROUPS` is one unit
    of work, given whole to one worker, largest first; every other test is a unit of its own.
    (xdist's ``loadgroup`` does this by mark, but it cannot rename nodes on pytest 9.2.)"""

    def _split_scope(self, nodeid: str) -> str:
        for prefix, group in _GROUPS.items():
            if nodeid.startswith(prefix):
                return group
        return nodeid


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The cfn-lint tests last: they collect what cfn-lint has been finding in the background
    since each assembly was synthesized (tests/cfn_lint.py), so the later they ask, the less they
    wait."""
    items.sort(key=lambda item: item.name.startswith(cfn_lint.TEST_PREFIX))


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> LoadScopeScheduling | None:
    return _GroupedScheduling(config, log) if config.getvalue("dist") == "load" else None
