"""The CreateHyperParameterTuningJob request: every field, built from the tenant's prefixes, the
catalog and the settings, and the same training definition a training job gets."""

from __future__ import annotations

from typing import Any

import pytest
from launch.settings import LaunchSettings
from launch.training_job import build_create_training_job_request
from launch.tuning_job import build_create_tuning_job_request
from training_common import (
    TUNING_JOB_NAME_LENGTH,
    ParameterRange,
    ParameterType,
    TuningStrategy,
    tuning_job_name,
)

KMS = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"


def build(platform: Any, tune: Any, req: Any, **kwargs: Any) -> dict[str, Any]:
    settings = LaunchSettings.from_env(platform.env)
    return build_create_tuning_job_request(req, tune.algorithm(), settings, **kwargs)


def test_every_field_of_the_tuning_job_request(platform: Any, tune: Any) -> None:
    req = tune.request()

    built = build(platform, tune, req)

    job = req.job_id
    assert built["HyperParameterTuningJobName"] == tuning_job_name(job)
    assert len(built["HyperParameterTuningJobName"]) <= TUNING_JOB_NAME_LENGTH
    assert built["HyperParameterTuningJobConfig"] == {
        "Strategy": "Bayesian",
        "HyperParameterTuningJobObjective": {"Type": "Minimize", "MetricName": "validation:rmse"},
        "ResourceLimits": {"MaxNumberOfTrainingJobs": 6, "MaxParallelTrainingJobs": 2},
        "ParameterRanges": {
            "IntegerParameterRanges": [
                {"Name": "max_depth", "MinValue": "3", "MaxValue": "9", "ScalingType": "Linear"}
            ],
            "ContinuousParameterRanges": [
                {"Name": "eta", "MinValue": "0.01", "MaxValue": "0.3", "ScalingType": "Logarithmic"}
            ],
            "CategoricalParameterRanges": [{"Name": "booster", "Values": ["gbtree", "dart"]}],
        },
        "TrainingJobEarlyStoppingType": "Off",
    }
    assert built["TrainingJobDefinition"] == {
        # Catalog defaults overlaid by the request's static values; max_depth is tuned, so gone.
        "StaticHyperParameters": {"num_round": "50", "objective": "reg:squarederror"},
        "AlgorithmSpecification": {
            "TrainingImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/xgboost:1.7-1",
            "TrainingInputMode": "File",
            "MetricDefinitions": [
                {"Name": "validation:rmse", "Regex": "rmse=([0-9.]+)"},
                {"Name": "train:rmse", "Regex": "train-rmse=([0-9.]+)"},
            ],
        },
        "RoleArn": "arn:aws:iam::123456789012:role/sagemaker-training",
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": "s3://data-bucket/tenants/acme/datasets/houses/",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "ContentType": "text/csv",
            }
        ],
        "OutputDataConfig": {
            "S3OutputPath": f"s3://artifacts-bucket/tenants/acme/jobs/{job}/output/",
            "KmsKeyId": KMS,
        },
        "ResourceConfig": {
            "InstanceType": "ml.m5.large",
            "InstanceCount": 1,
            "VolumeSizeInGB": 50,
            "VolumeKmsKeyId": KMS,
        },
        "VpcConfig": {"SecurityGroupIds": ["sg-111"], "Subnets": ["subnet-aaa", "subnet-bbb"]},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "EnableNetworkIsolation": True,
        "EnableInterContainerTrafficEncryption": True,
        "EnableManagedSpotTraining": False,
    }
    assert built["Tags"] == [{"Key": "tenant", "Value": "acme"}, {"Key": "job", "Value": job}]
    assert set(built) == {
        "HyperParameterTuningJobName",
        "HyperParameterTuningJobConfig",
        "TrainingJobDefinition",
        "Tags",
    }


def test_tuning_definition_is_the_training_jobs_definition(platform: Any, tune: Any) -> None:
    """One function decides isolation, VPC, keys and prefixes for both kinds of job."""
    req = tune.request(use_spot=True, max_runtime_seconds=1800)
    settings = LaunchSettings.from_env(platform.env)
    algorithm = tune.algorithm()
    training = build_create_training_job_request(
        req.model_copy(update={"tuning": None}), algorithm, settings
    )

    definition = build_create_tuning_job_request(req, algorithm, settings)["TrainingJobDefinition"]

    shared = set(definition) - {"StaticHyperParameters"}
    assert {key: training[key] for key in shared} == {key: definition[key] for key in shared}
    # Trials would share one checkpoint location, so a tuning job's definition has none.
    assert set(training) - shared == {
        "TrainingJobName",
        "HyperParameters",
        "Tags",
        "CheckpointConfig",
    }
    assert definition["EnableManagedSpotTraining"] is True
    assert definition["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 1800,
        "MaxWaitTimeInSeconds": 3600,
    }


@pytest.mark.parametrize("max_jobs", [4, 10])
def test_a_grid_search_must_ask_for_every_combination(tune: Any, max_jobs: int) -> None:
    with pytest.raises(
        ValueError, match=r"the grid has 6 combinations .* set max_training_jobs to 6"
    ):
        tune.request(
            spec={
                "strategy": TuningStrategy.GRID,
                "ranges": GRID,
                "max_training_jobs": max_jobs,
                "max_parallel_training_jobs": 2,
            }
        )


@pytest.mark.parametrize(("early_stopping", "expected"), [(True, "Auto"), (False, "Off")])
def test_early_stopping_is_auto_or_off(
    platform: Any, tune: Any, early_stopping: bool, expected: str
) -> None:
    req = tune.request(spec={"early_stopping": early_stopping, "strategy": TuningStrategy.RANDOM})

    config = build(platform, tune, req)["HyperParameterTuningJobConfig"]

    assert config["Strategy"] == "Random"
    assert config["TrainingJobEarlyStoppingType"] == expected


def test_hyperband_sends_no_early_stopping_setting(platform: Any, tune: Any) -> None:
    req = tune.request(spec={"strategy": TuningStrategy.HYPERBAND})

    config = build(platform, tune, req)["HyperParameterTuningJobConfig"]

    assert config["Strategy"] == "Hyperband"
    assert "TrainingJobEarlyStoppingType" not in config


GRID = (
    ParameterRange(name="booster", type=ParameterType.CATEGORICAL, values=("gbtree", "dart")),
    ParameterRange(
        name="tree_method", type=ParameterType.CATEGORICAL, values=("auto", "exact", "hist")
    ),
)


@pytest.mark.parametrize(
    ("max_jobs", "parallel", "limits"),
    [
        # SageMaker: MaxNumberOfTrainingJobs, when given, equals the number of combinations
        # (TuningSpec refuses any other number, see the test below).
        (6, 2, {"MaxNumberOfTrainingJobs": 6, "MaxParallelTrainingJobs": 2}),
        (6, 6, {"MaxNumberOfTrainingJobs": 6, "MaxParallelTrainingJobs": 6}),
    ],
)
def test_grid_search_limits_follow_the_grid_within_the_requested_number(
    platform: Any, tune: Any, max_jobs: int, parallel: int, limits: dict[str, int]
) -> None:
    req = tune.request(
        spec={
            "strategy": TuningStrategy.GRID,
            "ranges": GRID,
            "max_training_jobs": max_jobs,
            "max_parallel_training_jobs": parallel,
        }
    )

    config = build(platform, tune, req)["HyperParameterTuningJobConfig"]

    assert config["Strategy"] == "Grid"
    assert config["ResourceLimits"] == limits
    assert config["ParameterRanges"] == {
        "IntegerParameterRanges": [],
        "ContinuousParameterRanges": [],
        "CategoricalParameterRanges": [
            {"Name": "booster", "Values": ["gbtree", "dart"]},
            {"Name": "tree_method", "Values": ["auto", "exact", "hist"]},
        ],
    }


def test_every_prefix_is_the_tenants(platform: Any, tune: Any) -> None:
    req = tune.request("globex", dataset_key="tenants/globex/datasets/sales/part-1.csv")

    definition = build(platform, tune, req)["TrainingJobDefinition"]

    uris = [
        definition["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"],
        definition["OutputDataConfig"]["S3OutputPath"],
    ]
    assert uris == [
        "s3://data-bucket/tenants/globex/datasets/sales/part-1.csv",
        f"s3://artifacts-bucket/tenants/globex/jobs/{req.job_id}/output/",
    ]
    assert "CheckpointConfig" not in definition


def test_the_job_records_name_is_used(platform: Any, tune: Any) -> None:
    built = build(platform, tune, tune.request(), name="tune-from-the-record")

    assert built["HyperParameterTuningJobName"] == "tune-from-the-record"


def test_a_training_request_is_not_a_tuning_request(platform: Any, tune: Any, make: Any) -> None:
    with pytest.raises(ValueError, match="is a training request, not a tuning request"):
        build(platform, tune, make.request())
