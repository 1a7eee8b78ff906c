#!/usr/bin/env python3
"""Entry point: build and validate one environment's configuration, then create the stacks.

Choose the environment with ``-c env=<name>`` (or ``PLATFORM_ENV``); it is read from
``environments/<name>.toml``. The default is the committed ``example`` environment.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from aws_cdk import App

from training_platform.config import ConfigError, load_config
from training_platform.platform_app import build_platform

ENVIRONMENTS = Path(__file__).parent / "environments"


def main() -> None:
    name = App().node.try_get_context("env") or os.environ.get("PLATFORM_ENV") or "example"
    try:
        config = load_config(ENVIRONMENTS / f"{name}.toml")
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    build_platform(config).app.synth()


if __name__ == "__main__":
    main()
