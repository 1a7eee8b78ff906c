"""The SageMaker and CloudWatch requests of one deployment, as plain dictionaries.

Pure functions of the settings, the deployment record and the model version, so tests check
every field SageMaker gets without calling it. Names come from
``training_common.resource_name`` over (deployment id, request id): a redelivered request
builds exactly the same requests. Every resource is tagged ``tenant`` and ``deployment`` and
nothing else (IAM conditions and the job-events handler read those two tags).
"""

from __future__ import annotations

from typing import Any

from training_common import (
    DEPLOYMENT_TAG,
    INFERENCE_METRICS_NAMESPACE,
    MONITORING_METRICS_NAMESPACE,
    ROLLBACK_ALARMS,
    VARIANT_NAME,
    AlarmKind,
    Deployment,
    EndpointKind,
    ModelVersion,
    alarm_name,
    capture_prefix,
    resource_name,
    s3_uri,
)

from .settings import DeploySettings

MAX_BLUE_GREEN_SECONDS = 28_800
"""SageMaker's ceiling on ``MaximumExecutionTimeoutInSeconds``."""
BLUE_GREEN_MARGIN_SECONDS = 1_800
"""Time a blue/green update may take beyond the bake time (the green fleet's start)."""


def tags(deployment: Deployment) -> list[dict[str, str]]:
    """``tenant`` and ``deployment``: the only tags of every per-deployment resource."""
    return [
        {"Key": "tenant", "Value": deployment.tenant_id},
        {"Key": DEPLOYMENT_TAG, "Value": deployment.deployment_id},
    ]


def model_name(deployment: Deployment) -> str:
    return resource_name("m", deployment.tenant_id, deployment.deployment_id, deployment.request_id)


def endpoint_config_name(deployment: Deployment) -> str:
    return resource_name("c", deployment.tenant_id, deployment.deployment_id, deployment.request_id)


def baseline_job_name(deployment: Deployment) -> str:
    return resource_name("b", deployment.tenant_id, deployment.deployment_id, deployment.request_id)


def job_definition_name(deployment: Deployment, baseline_job: str) -> str:
    """The data-quality job definition of one baseline (a new baseline, a new definition)."""
    return resource_name("q", deployment.tenant_id, deployment.deployment_id, baseline_job)


def schedule_name(deployment: Deployment) -> str:
    """One monitoring schedule per deployment for its whole life."""
    return resource_name("s", deployment.tenant_id, deployment.deployment_id)


def vpc_config(settings: DeploySettings) -> dict[str, list[str]]:
    return {
        "SecurityGroupIds": list(settings.security_group_ids),
        "Subnets": list(settings.subnet_ids),
    }


def create_model_request(
    settings: DeploySettings, deployment: Deployment, model: ModelVersion
) -> dict[str, Any]:
    """``CreateModel`` from the approved model package: network isolation always; the VPC's
    private subnets for real-time (serverless endpoints can't use a VPC)."""
    assert model.model_package_arn is not None
    request: dict[str, Any] = {
        "ModelName": model_name(deployment),
        "PrimaryContainer": {"ModelPackageName": model.model_package_arn},
        "ExecutionRoleArn": settings.endpoint_role_arn,
        "EnableNetworkIsolation": True,
        "Tags": tags(deployment),
    }
    if deployment.kind == EndpointKind.REALTIME:
        request["VpcConfig"] = vpc_config(settings)
    return request


def create_endpoint_config_request(
    settings: DeploySettings, deployment: Deployment
) -> dict[str, Any]:
    """``CreateEndpointConfig``: one variant; real-time with the data key on the volume and
    data capture (requests and responses) to ``capture_prefix``; serverless with neither
    (SageMaker supports neither for serverless variants)."""
    variant: dict[str, Any] = {"VariantName": VARIANT_NAME, "ModelName": model_name(deployment)}
    request: dict[str, Any] = {
        "EndpointConfigName": endpoint_config_name(deployment),
        "ProductionVariants": [variant],
        "Tags": tags(deployment),
    }
    if deployment.kind == EndpointKind.SERVERLESS:
        assert deployment.serverless is not None
        variant["ServerlessConfig"] = {
            "MemorySizeInMB": deployment.serverless.memory_mb,
            "MaxConcurrency": deployment.serverless.max_concurrency,
        }
        return request
    assert deployment.realtime is not None
    variant.update(
        InstanceType=deployment.realtime.instance_type,
        InitialInstanceCount=deployment.realtime.instance_count,
        InitialVariantWeight=1.0,
    )
    request["KmsKeyId"] = settings.data_key_arn
    request["DataCaptureConfig"] = {
        "EnableCapture": True,
        "InitialSamplingPercentage": settings.capture_sampling_percentage,
        "DestinationS3Uri": s3_uri(
            settings.data_bucket, capture_prefix(deployment.tenant_id, deployment.endpoint_name)
        ),
        "KmsKeyId": settings.data_key_arn,
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
    }
    return request


def alarm_kinds(kind: EndpointKind) -> tuple[AlarmKind, ...]:
    """Every alarm of a real-time endpoint; serverless ones have no Model Monitor."""
    if kind == EndpointKind.SERVERLESS:
        return tuple(k for k in AlarmKind if k != AlarmKind.DATA_QUALITY)
    return tuple(AlarmKind)


def alarm_names(settings: DeploySettings, deployment: Deployment) -> list[str]:
    return [
        alarm_name(settings.alarm_prefix, deployment.endpoint_name, kind)
        for kind in alarm_kinds(deployment.kind)
    ]


def rollback_alarm_names(settings: DeploySettings, deployment: Deployment) -> list[str]:
    return [alarm_name(settings.alarm_prefix, deployment.endpoint_name, k) for k in ROLLBACK_ALARMS]


def put_metric_alarm_requests(
    settings: DeploySettings, deployment: Deployment
) -> list[dict[str, Any]]:
    """``PutMetricAlarm`` for each alarm of the endpoint. No alarm actions: the state changes
    reach the tenant through EventBridge and the job-events handler, the operators through the
    Observability stack's rule. Missing data is not breaching (an idle endpoint is healthy)."""
    endpoint = deployment.endpoint_name
    sagemaker_dimensions = [
        {"Name": "EndpointName", "Value": endpoint},
        {"Name": "VariantName", "Value": VARIANT_NAME},
    ]
    platform_dimensions = [
        {"Name": "tenant", "Value": deployment.tenant_id},
        {"Name": "endpoint", "Value": endpoint},
    ]
    shapes: dict[AlarmKind, dict[str, Any]] = {
        AlarmKind.INVOCATION_5XX: {
            "AlarmDescription": f"{endpoint}: the model answered with 5xx errors.",
            "Namespace": "AWS/SageMaker",
            "MetricName": "Invocation5XXErrors",
            "Dimensions": sagemaker_dimensions,
            "Statistic": "Sum",
            "Period": 60,
            "EvaluationPeriods": 1,
            "Threshold": 1.0,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        },
        AlarmKind.MODEL_LATENCY: {
            "AlarmDescription": f"{endpoint}: p99 model latency over "
            f"{settings.model_latency_alarm_ms} ms.",
            "Namespace": "AWS/SageMaker",
            "MetricName": "ModelLatency",
            "Dimensions": sagemaker_dimensions,
            "ExtendedStatistic": "p99",
            "Period": 60,
            "EvaluationPeriods": 3,
            "DatapointsToAlarm": 2,
            # SageMaker reports ModelLatency in microseconds.
            "Threshold": float(settings.model_latency_alarm_ms * 1000),
            "ComparisonOperator": "GreaterThanThreshold",
        },
        AlarmKind.INVOCATION_ERRORS: {
            "AlarmDescription": f"{endpoint}: the inference API returned server errors.",
            "Namespace": INFERENCE_METRICS_NAMESPACE,
            "MetricName": "ServerErrors",
            "Dimensions": platform_dimensions,
            "Statistic": "Sum",
            "Period": 300,
            "EvaluationPeriods": 1,
            "Threshold": 5.0,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        },
        AlarmKind.DATA_QUALITY: {
            "AlarmDescription": f"{endpoint}: Model Monitor found data-quality violations "
            "(drift from the training data's baseline).",
            "Namespace": MONITORING_METRICS_NAMESPACE,
            "MetricName": "Violations",
            "Dimensions": platform_dimensions,
            "Statistic": "Maximum",
            "Period": 3600,
            "EvaluationPeriods": 1,
            "Threshold": 1.0,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        },
    }
    return [
        {
            "AlarmName": alarm_name(settings.alarm_prefix, endpoint, kind),
            "ActionsEnabled": False,
            "TreatMissingData": "notBreaching",
            "Tags": tags(deployment),
            **shapes[kind],
        }
        for kind in alarm_kinds(deployment.kind)
    ]


def deployment_config(settings: DeploySettings, deployment: Deployment) -> dict[str, Any]:
    """``UpdateEndpoint``'s guardrails: blue/green, all traffic at once, then the bake time in
    which the rollback alarms (5xx, latency) roll the endpoint back to the old fleet."""
    bake = settings.blue_green_bake_seconds
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": bake},
            "TerminationWaitInSeconds": 0,
            "MaximumExecutionTimeoutInSeconds": min(
                MAX_BLUE_GREEN_SECONDS, max(600, bake + BLUE_GREEN_MARGIN_SECONDS)
            ),
        },
        "AutoRollbackConfiguration": {
            "Alarms": [{"AlarmName": name} for name in rollback_alarm_names(settings, deployment)]
        },
    }
