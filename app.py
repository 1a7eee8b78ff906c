#!/usr/bin/env python3
"""Entry point: build and validate one environment's configuration, then create the stacks.

Choose the environment with ``-c env=<name>`` (or ``PLATFORM_ENV``); it is read from
``environments/<name>.toml``. The default is the committed ``example`` environment; a file with a
``[pipeline]`` section (``environments/pipeline.toml``) builds the deployment pipeline instead.
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

from aws_cdk import App

from training_platform.config import ConfigError, load_config
from training_platform.pipeline_config import is_pipeline_file, load_pipeline_config
from training_platform.platform_app import build_platform

ENVIRONMENTS = Path(__file__).parent / "environments"


def main() -> None:
    name = App().node.try_get_context("env") or os.environ.get("PLATFORM_ENV") or "example"
    path = ENVIRONMENTS / f"{name}.toml"
    try:
        if path.is_file() and is_pipeline_file(tomllib.loads(path.read_text())):
            # Imported here: CDK Pipelines and the CodePipeline and CodeBuild modules take
            # about 0.15 s to import, which no other environment's synth needs.
            from training_platform.pipeline_app import build_pipeline_app

            build_pipeline_app(load_pipeline_config(path)).app.synth()
            return
        config = load_config(path)
    except (ConfigError, tomllib.TOMLDecodeError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    build_platform(config).app.synth()


if __name__ == "__main__":
    main()
