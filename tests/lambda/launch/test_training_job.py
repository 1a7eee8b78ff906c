"""The CreateTrainingJob request is built only from the tenant's prefixes and the catalog."""

from __future__ import annotations

from typing import Any

from launch.settings import LaunchSettings
from launch.training_job import build_create_training_job_request


def test_request_uses_catalog_metrics_and_tenant_prefixes_only(platform: Any, make: Any) -> None:
    settings = LaunchSettings.from_env(platform.env)
    req = make.request(use_spot=True, max_runtime_seconds=2_000_000)

    built = build_create_training_job_request(req, make.algorithm(), settings)

    assert built["AlgorithmSpecification"]["MetricDefinitions"] == [
        {"Name": "validation:rmse", "Regex": "rmse=([0-9.]+)"}
    ]
    assert built["TrainingJobName"] == req.job_id
    # The spot wait time never exceeds SageMaker's 28-day ceiling nor drops below the runtime.
    assert built["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 2_000_000,
        "MaxWaitTimeInSeconds": 28 * 24 * 3600,
    }
    uris = [
        built["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"],
        built["OutputDataConfig"]["S3OutputPath"],
        built["CheckpointConfig"]["S3Uri"],
    ]
    assert all(uri.split("/", 3)[3].startswith("tenants/acme/") for uri in uris)
    assert built["EnableInterContainerTrafficEncryption"] is True
