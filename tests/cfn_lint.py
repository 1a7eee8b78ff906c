"""cfn-lint over synthesized templates, started in the background as soon as they exist.

cfn-lint takes about 0.7 s per template (26 templates across the example, full and pipeline
assemblies). When the session runs a cfn-lint test, the fixtures that synthesize an assembly start
it at once, in its own process, so it runs beside the tests that read the assembly, on whatever
CPU the other test worker leaves idle; the cfn-lint tests, run last, then only collect the
findings. A session without one (``pytest tests/stacks/test_network.py``) starts none.
"""

from __future__ import annotations

import atexit
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CFN_LINT = Path(sys.executable).with_name("cfn-lint")
TEST_PREFIX = "test_cfn_lint_is_clean"
"""The names of the tests that collect cfn-lint's findings (tests/conftest.py runs them last)."""


def wanted(session: pytest.Session) -> bool:
    """Whether ``session`` runs a cfn-lint test (on this worker's copy of the collection)."""
    return any(item.name.startswith(TEST_PREFIX) for item in session.items)


class CfnLint:
    """cfn-lint with the project's settings (``.cfnlintrc.yaml``) over some templates."""

    def __init__(self, templates: Sequence[Path | str], *, processes: int = 1) -> None:
        """``processes``: split the templates over this many cfn-lint processes."""
        names = sorted(str(t) for t in templates)
        assert names, "no templates to lint"
        self.templates = names
        chunks = [names[i::processes] for i in range(processes) if names[i::processes]]
        self._runs = [
            subprocess.Popen(
                [
                    str(CFN_LINT),
                    "--config-file",
                    str(ROOT / ".cfnlintrc.yaml"),
                    "--format",
                    "parseable",
                    "--",
                    *chunk,
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for chunk in chunks
        ]
        self._problems: list[str] | None = None
        atexit.register(self._stop)

    def _stop(self) -> None:
        for run in self._runs:
            if run.poll() is None:
                run.kill()

    def problems(self) -> list[str]:
        """Errors and warnings, one parseable line each (informational notes allowed)."""
        if self._problems is None:
            problems: list[str] = []
            for run in self._runs:
                stdout, stderr = run.communicate(timeout=900)
                findings = [line for line in stdout.splitlines() if line.strip()]
                found = [line for line in findings if not re.search(r":I\d+:", line)]
                # exit code 8: informational findings only
                assert found or run.returncode in (0, 8), stderr
                problems += found
            self._problems = problems
        return self._problems
