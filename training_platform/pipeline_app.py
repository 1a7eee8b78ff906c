"""Builds the CDK app of the deployment pipeline (``environments/pipeline.toml``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import App, Tags

from training_platform.config import DEFAULT_NAG_PACKS
from training_platform.constructs.nag import add_nag_packs
from training_platform.pipeline_config import PipelineConfig
from training_platform.stacks.observability import PLATFORM_TAG
from training_platform.stacks.pipeline import PipelineStack

PIPELINE_STACK = "TrainingPlatform-Pipeline"


@dataclass(frozen=True)
class PipelinePlatform:
    app: App
    pipeline: PipelineStack


def nag_packs(config: PipelineConfig) -> list[str]:
    """The default packs and every pack an environment asks for, each once, in that order."""
    return list(
        dict.fromkeys(
            [*DEFAULT_NAG_PACKS, *(p for e in config.environments for p in e.compliance.packs)]
        )
    )


def build_pipeline_app(
    config: PipelineConfig, *, outdir: str | None = None, context: dict[str, Any] | None = None
) -> PipelinePlatform:
    """The pipeline stack in the tooling account and one stage per environment, with the nag
    packs of every environment checking every template (the pipeline's and the stages')."""
    app = App(outdir=outdir, context=context)
    pipeline = PipelineStack(
        app,
        PIPELINE_STACK,
        config=config,
        description="AI training platform: the deployment pipeline (CDK Pipelines)",
    )
    Tags.of(pipeline).add(*PLATFORM_TAG)
    Tags.of(pipeline).add("environment", config.name)
    add_nag_packs(app, nag_packs(config))
    return PipelinePlatform(app=app, pipeline=pipeline)
