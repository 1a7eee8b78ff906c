"""Model Monitor requests of a real-time deployment: the data-quality baseline processing job
over the model's training dataset, the data-quality job definition over the endpoint's
captured data, and the hourly monitoring schedule.

The shapes follow what the SageMaker Python SDK's ``DefaultModelMonitor.suggest_baseline`` and
``create_monitoring_schedule`` send (the analyzer reads ``dataset_format``, ``dataset_source``
and ``output_path`` from its environment and writes ``statistics.json`` and
``constraints.json``). The training datasets are headerless CSV (the catalog's algorithms read
them so), so the baseline is told ``header: false``.
"""

from __future__ import annotations

import json
from typing import Any

from training_common import (
    Deployment,
    ModelVersion,
    baseline_prefix,
    reports_prefix,
    s3_uri,
)

from .resources import baseline_job_name, job_definition_name, schedule_name, tags, vpc_config
from .settings import DeploySettings

BASELINE_INPUT = "/opt/ml/processing/input/baseline_dataset_input"
ENDPOINT_INPUT = "/opt/ml/processing/input/endpoint"
OUTPUT_PATH = "/opt/ml/processing/output"
BASELINE_MAX_RUNTIME_SECONDS = 3600
MONITORING_MAX_RUNTIME_SECONDS = 1800
"""Below the hourly schedule's interval, as SageMaker requires."""
VOLUME_SIZE_GB = 20


def _cluster(settings: DeploySettings) -> dict[str, Any]:
    return {
        "ClusterConfig": {
            "InstanceCount": 1,
            "InstanceType": settings.monitoring_instance_type,
            "VolumeSizeInGB": VOLUME_SIZE_GB,
            "VolumeKmsKeyId": settings.data_key_arn,
        }
    }


def _network(settings: DeploySettings) -> dict[str, Any]:
    return {
        "EnableInterContainerTrafficEncryption": True,
        "EnableNetworkIsolation": True,
        "VpcConfig": vpc_config(settings),
    }


def create_baseline_job_request(
    settings: DeploySettings, deployment: Deployment, model: ModelVersion, image_uri: str
) -> dict[str, Any]:
    """``CreateProcessingJob`` of the analyzer over the model's training dataset; output (the
    suggested statistics and constraints) under ``baseline_prefix``."""
    return {
        "ProcessingJobName": baseline_job_name(deployment),
        "ProcessingInputs": [
            {
                "InputName": "baseline_dataset_input",
                "S3Input": {
                    "S3Uri": s3_uri(settings.data_bucket, model.dataset_key),
                    "LocalPath": BASELINE_INPUT,
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                    "S3DataDistributionType": "FullyReplicated",
                },
            }
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "monitoring_output",
                    "S3Output": {
                        "S3Uri": _baseline_uri(settings, deployment),
                        "LocalPath": OUTPUT_PATH,
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ],
            "KmsKeyId": settings.data_key_arn,
        },
        "ProcessingResources": _cluster(settings),
        "StoppingCondition": {"MaxRuntimeInSeconds": BASELINE_MAX_RUNTIME_SECONDS},
        "AppSpecification": {"ImageUri": image_uri},
        "Environment": {
            "dataset_format": json.dumps({"csv": {"header": False}}),
            "dataset_source": BASELINE_INPUT,
            "output_path": OUTPUT_PATH,
            "publish_cloudwatch_metrics": "Disabled",
        },
        "NetworkConfig": _network(settings),
        "RoleArn": settings.monitoring_role_arn,
        "Tags": tags(deployment),
    }


def _baseline_uri(settings: DeploySettings, deployment: Deployment) -> str:
    return s3_uri(
        settings.data_bucket, baseline_prefix(deployment.tenant_id, deployment.endpoint_name)
    )


def create_job_definition_request(
    settings: DeploySettings, deployment: Deployment, baseline_job: str, image_uri: str
) -> dict[str, Any]:
    """``CreateDataQualityJobDefinition``: the analyzer over the endpoint's captured data,
    against the baseline's constraints and statistics; reports under ``reports_prefix``."""
    baseline = _baseline_uri(settings, deployment)
    return {
        "JobDefinitionName": job_definition_name(deployment, baseline_job),
        "DataQualityBaselineConfig": {
            "BaseliningJobName": baseline_job,
            "ConstraintsResource": {"S3Uri": f"{baseline}constraints.json"},
            "StatisticsResource": {"S3Uri": f"{baseline}statistics.json"},
        },
        "DataQualityAppSpecification": {"ImageUri": image_uri},
        "DataQualityJobInput": {
            "EndpointInput": {
                "EndpointName": deployment.endpoint_name,
                "LocalPath": ENDPOINT_INPUT,
                "S3InputMode": "File",
                "S3DataDistributionType": "FullyReplicated",
            }
        },
        "DataQualityJobOutputConfig": {
            "MonitoringOutputs": [
                {
                    "S3Output": {
                        "S3Uri": s3_uri(
                            settings.data_bucket,
                            reports_prefix(deployment.tenant_id, deployment.endpoint_name),
                        ),
                        "LocalPath": OUTPUT_PATH,
                        "S3UploadMode": "EndOfJob",
                    }
                }
            ],
            "KmsKeyId": settings.data_key_arn,
        },
        "JobResources": _cluster(settings),
        "NetworkConfig": _network(settings),
        "RoleArn": settings.monitoring_role_arn,
        "StoppingCondition": {"MaxRuntimeInSeconds": MONITORING_MAX_RUNTIME_SECONDS},
        "Tags": tags(deployment),
    }


def monitoring_schedule_config(settings: DeploySettings, job_definition: str) -> dict[str, Any]:
    return {
        "ScheduleConfig": {"ScheduleExpression": settings.monitoring_schedule},
        "MonitoringJobDefinitionName": job_definition,
        "MonitoringType": "DataQuality",
    }


def create_schedule_request(
    settings: DeploySettings, deployment: Deployment, job_definition: str
) -> dict[str, Any]:
    """``CreateMonitoringSchedule``: the job definition, hourly by default."""
    return {
        "MonitoringScheduleName": schedule_name(deployment),
        "MonitoringScheduleConfig": monitoring_schedule_config(settings, job_definition),
        "Tags": tags(deployment),
    }
