"""The ``CreateTrainingJob`` request the launch handler sends, built only from the tenant's
own prefixes, the catalog entry and the platform's settings (never from free-form input).
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


def build_create_training_job_request(
    request: TrainingRequest, algorithm: CatalogEntry, settings: LaunchSettings
) -> dict[str, Any]:
    """Keyword arguments for ``sagemaker.create_training_job`` (job name = job id).

    Network isolation, the VPC, KMS keys for the volume and the output, the stopping condition
    (with a spot wait time when spot is requested), checkpoints and output under the tenant's
    prefix in the artifacts bucket, one input channel from the tenant's dataset, and the tags
    ``tenant`` and ``job`` that the tenant role's ``aws:ResourceTag/tenant`` conditions use.
    """
    stopping: dict[str, int] = {"MaxRuntimeInSeconds": request.max_runtime_seconds}
    if request.use_spot:
        stopping["MaxWaitTimeInSeconds"] = max(
            request.max_runtime_seconds,
            min(
                int(request.max_runtime_seconds * settings.spot_wait_factor),
                MAX_RUNTIME_LIMIT_SECONDS,
            ),
        )
    algorithm_specification: dict[str, Any] = {
        "TrainingImage": algorithm.image_uri,
        "TrainingInputMode": "File",
    }
    if algorithm.metric_definitions:
        algorithm_specification["MetricDefinitions"] = [
            metric.to_sagemaker() for metric in algorithm.metric_definitions
        ]
    return {
        "TrainingJobName": request.job_id,
        "AlgorithmSpecification": algorithm_specification,
        "HyperParameters": {**algorithm.default_hyperparameters, **request.hyperparameters},
        "RoleArn": settings.sagemaker_role_arn,
        "InputDataConfig": [
            {
                "ChannelName": TRAINING_CHANNEL,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": s3_uri(settings.data_bucket, request.dataset_key),
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "ContentType": algorithm.input_content_type,
            }
        ],
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
        "StoppingCondition": stopping,
        "EnableNetworkIsolation": True,
        "EnableInterContainerTrafficEncryption": True,
        "EnableManagedSpotTraining": request.use_spot,
        "CheckpointConfig": {
            "S3Uri": s3_uri(
                settings.artifacts_bucket, checkpoint_prefix(request.tenant_id, request.job_id)
            )
        },
        "Tags": [
            {"Key": "tenant", "Value": request.tenant_id},
            {"Key": "job", "Value": request.job_id},
        ],
    }
