"""The ``CreateTrainingJob`` request the launch handler sends, built only from the tenant's
own prefixes, the catalog entry and the platform's settings (never from free-form input).

:func:`training_definition` is the part a training job shares with a tuning job's
``TrainingJobDefinition`` (``launch.tuning_job``): one place decides the isolation, the VPC, the
keys, the prefixes and the stopping condition of every training job the platform starts.
"""

from __future__ import annotations

from typing import Any

from training_common import (
    MAX_RUNTIME_LIMIT_SECONDS,
    CatalogEntry,
    TrainingRequest,
    checkpoint_prefix,
    output_prefix,
    s3_uri,
)

from .settings import LaunchSettings

TRAINING_CHANNEL = "train"
VALIDATION_CHANNEL = "validation"


def input_channel(
    name: str, bucket: str, key: str, content_type: str, data_type: str = "S3Prefix"
) -> dict[str, Any]:
    """One ``InputDataConfig`` channel reading ``key`` in ``bucket`` (a prefix, or a manifest
    file for ``data_type`` ``ManifestFile``), fully replicated to every instance."""
    return {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {
                "S3DataType": data_type,
                "S3Uri": s3_uri(bucket, key),
                "S3DataDistributionType": "FullyReplicated",
            }
        },
        "ContentType": content_type,
    }


def input_data_config(
    request: TrainingRequest, algorithm: CatalogEntry, settings: LaunchSettings
) -> list[dict[str, Any]]:
    """The ``train`` channel (the dataset prefix, or a retraining run's manifest), and the
    ``validation`` channel when the request names held-out validation data."""
    channels = [
        input_channel(
            TRAINING_CHANNEL,
            settings.data_bucket,
            request.dataset_key,
            algorithm.input_content_type,
            request.dataset_type.value,
        )
    ]
    if request.validation_key is not None:
        channels.append(
            input_channel(
                VALIDATION_CHANNEL,
                settings.data_bucket,
                request.validation_key,
                algorithm.input_content_type,
            )
        )
    return channels


def job_tags(request: TrainingRequest) -> list[dict[str, str]]:
    """The tags ``tenant`` and ``job`` that the tenant role's ``aws:ResourceTag/tenant``
    conditions and the job-events handler use (SageMaker copies a tuning job's tags to the
    training jobs it starts)."""
    return [
        {"Key": "tenant", "Value": request.tenant_id},
        {"Key": "job", "Value": request.job_id},
    ]


def stopping_condition(request: TrainingRequest, settings: LaunchSettings) -> dict[str, int]:
    """``StoppingCondition``: the runtime, plus a spot wait time when spot is requested (never
    below the runtime nor above SageMaker's 28-day ceiling)."""
    stopping: dict[str, int] = {"MaxRuntimeInSeconds": request.max_runtime_seconds}
    if request.use_spot:
        stopping["MaxWaitTimeInSeconds"] = max(
            request.max_runtime_seconds,
            min(
                int(request.max_runtime_seconds * settings.spot_wait_factor),
                MAX_RUNTIME_LIMIT_SECONDS,
            ),
        )
    return stopping


def training_definition(
    request: TrainingRequest, algorithm: CatalogEntry, settings: LaunchSettings
) -> dict[str, Any]:
    """The fields ``CreateTrainingJob`` and a tuning job's ``TrainingJobDefinition`` share.

    Network isolation, encrypted inter-container traffic, the VPC, KMS keys for the volume and
    the output, the stopping condition, checkpoints and output under the tenant's job prefix in
    the artifacts bucket, the input channels from the tenant's data (``train``, and
    ``validation`` when given), and the catalog's image
    and metric definitions. Names, hyperparameters and tags are the callers'.
    """
    algorithm_specification: dict[str, Any] = {
        "TrainingImage": algorithm.image_uri,
        "TrainingInputMode": "File",
    }
    if algorithm.metric_definitions:
        algorithm_specification["MetricDefinitions"] = [
            metric.to_sagemaker() for metric in algorithm.metric_definitions
        ]
    return {
        "AlgorithmSpecification": algorithm_specification,
        "RoleArn": settings.sagemaker_role_arn,
        "InputDataConfig": input_data_config(request, algorithm, settings),
        "OutputDataConfig": {
            "S3OutputPath": s3_uri(
                settings.artifacts_bucket, output_prefix(request.tenant_id, request.job_id)
            ),
            "KmsKeyId": settings.kms_key_arn,
        },
        "ResourceConfig": {
            "InstanceType": request.instance_type,
            "InstanceCount": request.instance_count,
            "VolumeSizeInGB": settings.volume_size_gb,
            "VolumeKmsKeyId": settings.kms_key_arn,
        },
        "VpcConfig": {
            "SecurityGroupIds": list(settings.security_group_ids),
            "Subnets": list(settings.subnet_ids),
        },
        "StoppingCondition": stopping_condition(request, settings),
        "EnableNetworkIsolation": True,
        "EnableInterContainerTrafficEncryption": True,
        "EnableManagedSpotTraining": request.use_spot,
        "CheckpointConfig": {
            "S3Uri": s3_uri(
                settings.artifacts_bucket, checkpoint_prefix(request.tenant_id, request.job_id)
            )
        },
    }


def build_create_training_job_request(
    request: TrainingRequest, algorithm: CatalogEntry, settings: LaunchSettings
) -> dict[str, Any]:
    """Keyword arguments for ``sagemaker.create_training_job`` (job name = job id).

    :func:`training_definition`, the catalog's default hyperparameters overlaid by the
    request's, and the tags of :func:`job_tags`.
    """
    return {
        "TrainingJobName": request.job_id,
        **training_definition(request, algorithm, settings),
        "HyperParameters": {**algorithm.default_hyperparameters, **request.hyperparameters},
        "Tags": job_tags(request),
    }
