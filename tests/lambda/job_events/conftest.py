"""Realistic SageMaker events (shapes from "Events that Amazon SageMaker AI sends to Amazon
EventBridge": the detail is the Describe* response, times in epoch milliseconds or ISO 8601,
tags as a map) and moto set-up for the job-events tests."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from job_events.service import JobEventsService
from job_events.settings import JobEventsSettings
from moto.sagemaker.models import sagemaker_backends
from training_common import (
    Job,
    JobStatus,
    ModelRepository,
    QueueMessage,
    TrialRepository,
    TuningSpec,
)

ACCOUNT = "123456789012"
REGION = "us-east-1"
T0 = 1_700_000_000_000  # epoch milliseconds
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/sagemaker-training"


def envelope(detail_type: str, resource: str, detail: dict[str, Any], at_ms: int) -> QueueMessage:
    """An EventBridge event of source aws.sagemaker as an SQS message."""
    event = {
        "version": "0",
        "id": f"evt-{detail_type[10:20].strip()}-{at_ms}",
        "detail-type": detail_type,
        "source": "aws.sagemaker",
        "account": ACCOUNT,
        "time": "2023-11-14T22:13:20Z",
        "region": REGION,
        "resources": [resource],
        "detail": detail,
    }
    return QueueMessage(message_id=f"m-{at_ms}", body=json.dumps(event), receipt_handle="rh")


def training_event(
    name: str,
    status: str,
    at_ms: int,
    *,
    tags: dict[str, str] | None,
    secondary: str | None = None,
    **detail: Any,
) -> QueueMessage:
    """A "SageMaker Training Job State Change" event."""
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{name}"
    body = {
        "TrainingJobName": name,
        "TrainingJobArn": arn,
        "TrainingJobStatus": status,
        "SecondaryStatus": secondary or status,
        "HyperParameters": {"num_round": "50"},
        "AlgorithmSpecification": {
            "TrainingImage": IMAGE,
            "TrainingInputMode": "File",
            "MetricDefinitions": [
                {"Name": "validation:rmse", "Regex": "rmse=([0-9.]+)"},
                {"Name": "train:rmse", "Regex": "train-rmse=([0-9.]+)"},
            ],
        },
        "RoleArn": ROLE,
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 50},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "CreationTime": T0 - 600_000,
        "TrainingStartTime": T0 - 540_000,
        "LastModifiedTime": at_ms,
        "SecondaryStatusTransitions": [],
        "Tags": tags or {},
    }
    body.update(detail)
    return envelope("SageMaker Training Job State Change", arn, body, at_ms)


def tuning_event(
    tuning_job_name: str,
    status: str,
    at_ms: int,
    *,
    tags: dict[str, str] | None,
    completed: int = 0,
    in_progress: int = 0,
    failed: int = 0,
    stopped: int = 0,
    **detail: Any,
) -> QueueMessage:
    """A "SageMaker HyperParameter Tuning Job State Change" event (no BestTrainingJob)."""
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:hyper-parameter-tuning-job/{tuning_job_name}"
    body = {
        "HyperParameterTuningJobName": tuning_job_name,
        "HyperParameterTuningJobArn": arn,
        "TrainingJobDefinition": {
            "StaticHyperParameters": {"objective": "binary:logistic"},
            "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
            "RoleArn": ROLE,
            "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        },
        "HyperParameterTuningJobStatus": status,
        "CreationTime": str(T0 - 600_000),
        "LastModifiedTime": str(at_ms),
        "TrainingJobStatusCounters": {
            "Completed": completed,
            "InProgress": in_progress,
            "RetryableError": 0,
            "NonRetryableError": failed,
            "Stopped": stopped,
        },
        "ObjectiveStatusCounters": {
            "Succeeded": completed,
            "Pending": in_progress,
            "Failed": failed,
        },
        "Tags": tags or {},
    }
    body.update(detail)
    return envelope("SageMaker HyperParameter Tuning Job State Change", arn, body, at_ms)


def model_package_event(
    group: str, version: int, status: str, at: str, *, job_id: str | None, **detail: Any
) -> QueueMessage:
    """A "SageMaker Model Package State Change" event (times ISO 8601, as documented)."""
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{group}/{version}"
    body: dict[str, Any] = {
        "ModelPackageGroupName": group,
        "ModelPackageVersion": version,
        "ModelPackageArn": arn,
        "CreationTime": "2023-11-14T22:00:00Z",
        "InferenceSpecification": {
            "Containers": [{"Image": IMAGE, "ModelDataUrl": "s3://artifacts-bucket/x"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        "ModelPackageStatus": "Completed",
        "ModelPackageStatusDetails": {"ValidationStatuses": [], "ImageScanStatuses": []},
        "CertifyForMarketplace": False,
        "ModelApprovalStatus": status,
        "LastModifiedTime": at,
    }
    if job_id is not None:
        body["CustomerMetadataProperties"] = {"job_id": job_id, "dataset": "tenants/acme/d/"}
    body.update(detail)
    return envelope("SageMaker Model Package State Change", arn, body, 0)


def tuning_spec(**overrides: Any) -> TuningSpec:
    """Maximise validation:auc over eta and max_depth."""
    values: dict[str, Any] = {
        "objective_metric": "validation:auc",
        "objective_type": "Maximize",
        "strategy": "Bayesian",
        "ranges": [
            {"name": "eta", "type": "Continuous", "min_value": 0.01, "max_value": 0.5},
            {"name": "max_depth", "type": "Integer", "min_value": 2, "max_value": 10},
        ],
        "max_training_jobs": 6,
        "max_parallel_training_jobs": 2,
    }
    values.update(overrides)
    return TuningSpec.model_validate(values)


def state_change(
    job_id: str,
    status: str,
    at_ms: int,
    *,
    tenant: str | None = "acme",
    secondary: str | None = None,
    **detail: Any,
) -> QueueMessage:
    """A plain training job's event (training job name = job id), tagged for ``tenant``."""
    tags = {"tenant": tenant, "job": job_id} if tenant else {}
    return training_event(job_id, status, at_ms, tags=tags, secondary=secondary, **detail)


def completed(job_id: str, at_ms: int, tenant: str = "acme") -> QueueMessage:
    """A plain training job's Completed event with metrics and its model artifact."""
    return state_change(
        job_id,
        "Completed",
        at_ms,
        tenant=tenant,
        BillableTimeInSeconds=842,
        FinalMetricDataList=[{"MetricName": "validation:rmse", "Value": 0.25, "Timestamp": at_ms}],
        ModelArtifacts={
            "S3ModelArtifacts": f"s3://artifacts-bucket/tenants/{tenant}/jobs/{job_id}/output/"
            f"{job_id}/output/model.tar.gz"
        },
        TrainingEndTime=at_ms,
    )


@pytest.fixture
def sample() -> SimpleNamespace:
    """The sample event builders."""
    return SimpleNamespace(
        T0=T0,
        IMAGE=IMAGE,
        training=training_event,
        tuning=tuning_event,
        model_package=model_package_event,
        state_change=state_change,
        completed=completed,
    )


@pytest.fixture
def jobs_kit(platform: Any, make: Any) -> SimpleNamespace:
    """Services, records and moto resources for the job-events tests."""

    def service() -> JobEventsService:
        return JobEventsService.from_settings(
            JobEventsSettings.from_env(platform.env), platform.session
        )

    def starting_job(**overrides: Any) -> Job:
        req = make.queue(platform, make.request(**overrides))
        platform.jobs.transition("acme", req.job_id, JobStatus.STARTING)
        job: Job = platform.jobs.get("acme", req.job_id)
        return job

    def tuning_job(**spec: Any) -> Job:
        """A STARTING tuning job record and its tuning job in moto."""
        job = starting_job(tuning=tuning_spec(**spec), hyperparameters={"num_round": "50"})
        sagemaker_tuning_job(job)
        return job

    def sagemaker_tuning_job(job: Job) -> None:
        """The tuning job of record ``job`` in moto (what the launch handler creates)."""
        assert job.tuning_job_name is not None
        platform.sagemaker.create_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=job.tuning_job_name,
            HyperParameterTuningJobConfig={
                "Strategy": "Bayesian",
                "HyperParameterTuningJobObjective": {
                    "Type": "Maximize",
                    "MetricName": "validation:auc",
                },
                "ResourceLimits": {"MaxNumberOfTrainingJobs": 6, "MaxParallelTrainingJobs": 2},
            },
            TrainingJobDefinition={
                "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
                "RoleArn": ROLE,
                "OutputDataConfig": {
                    "S3OutputPath": f"s3://artifacts-bucket/tenants/acme/jobs/{job.job_id}/output"
                },
                "ResourceConfig": {
                    "InstanceType": "ml.m5.large",
                    "InstanceCount": 1,
                    "VolumeSizeInGB": 50,
                },
                "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
            },
            Tags=[{"Key": "tenant", "Value": "acme"}, {"Key": "job", "Value": job.job_id}],
        )

    def trial_job(job: Job, number: int, prefix: str | None = None) -> str:
        """A training job of the tuning job in moto (what SageMaker starts); its name."""
        name = f"{job.tuning_job_name}-{number:03d}-{number:08x}"
        output = prefix or f"tenants/acme/jobs/{job.job_id}/output"
        platform.sagemaker.create_training_job(
            TrainingJobName=name,
            HyperParameters={"num_round": "50", "eta": "0.2", "max_depth": "6"},
            AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
            RoleArn=ROLE,
            OutputDataConfig={"S3OutputPath": f"s3://artifacts-bucket/{output}"},
            ResourceConfig={
                "InstanceType": "ml.m5.large",
                "InstanceCount": 1,
                "VolumeSizeInGB": 50,
            },
            StoppingCondition={"MaxRuntimeInSeconds": 3600},
            Tags=[{"Key": "tenant", "Value": "acme"}, {"Key": "job", "Value": job.job_id}],
        )
        return name

    def set_best(job: Job, training_job_name: str, value: float) -> None:
        """Moto's tuning job reports a fixed placeholder best job: make it this one."""
        backend = sagemaker_backends[ACCOUNT][REGION]
        tuning = backend.hyper_parameter_tuning_jobs[str(job.tuning_job_name)]
        tuning.best_training_job = {
            "TrainingJobName": training_job_name,
            "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/"
            f"{training_job_name}",
            "TrainingJobStatus": "Completed",
            "TunedHyperParameters": {"eta": "0.2", "max_depth": "6"},
            "FinalHyperParameterTuningJobObjectiveMetric": {
                "Type": "Maximize",
                "MetricName": "validation:auc",
                "Value": value,
            },
            "ObjectiveStatus": "Succeeded",
        }

    def subscribe(tenant: str) -> str:
        """A queue subscribed to the topic with the per-tenant filter policy; its URL."""
        url = platform.sqs.create_queue(QueueName=f"inbox-{tenant}")["QueueUrl"]
        arn = platform.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        platform.session.client("sns").subscribe(
            TopicArn=platform.env["NOTIFICATIONS_TOPIC_ARN"],
            Protocol="sqs",
            Endpoint=arn,
            Attributes={"FilterPolicy": json.dumps({"tenant_id": [tenant]})},
        )
        return str(url)

    def dead_letters() -> list[dict[str, Any]]:
        parked: list[dict[str, Any]] = platform.receive_all(platform.env["JOB_EVENTS_DLQ_URL"])
        return parked

    return SimpleNamespace(
        service=service,
        starting_job=starting_job,
        tuning_job=tuning_job,
        sagemaker_tuning_job=sagemaker_tuning_job,
        trial_job=trial_job,
        set_best=set_best,
        subscribe=subscribe,
        dead_letters=dead_letters,
        trials=TrialRepository.from_table_name("trials", platform.session),
        models=ModelRepository.from_table_name("models", platform.session),
        tags=lambda job: {"tenant": "acme", "job": job.job_id},
    )


# Deployments: endpoint, processing job and alarm events -----------------------------------

ALARM_PREFIX = "tp-test"


def _event(
    detail_type: str, source: str, resource: str, detail: dict[str, Any], at: str, key: str
) -> QueueMessage:
    event = {
        "version": "0",
        "id": f"evt-{key}",
        "detail-type": detail_type,
        "source": source,
        "account": ACCOUNT,
        "time": at,
        "region": REGION,
        "resources": [resource],
        "detail": detail,
    }
    return QueueMessage(message_id=f"m-{key}", body=json.dumps(event), receipt_handle="rh")


def endpoint_event(
    endpoint: str,
    status: str,
    at_ms: int,
    *,
    config: str | None,
    tags: dict[str, str] | None = None,
    **detail: Any,
) -> QueueMessage:
    """A "SageMaker Endpoint State Change" event (the ``DescribeEndpoint`` shape)."""
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{endpoint}"
    body: dict[str, Any] = {
        "EndpointName": endpoint,
        "EndpointArn": arn,
        "EndpointStatus": status,
        "CreationTime": T0 - 600_000,
        "LastModifiedTime": at_ms,
    }
    if config is not None:
        body["EndpointConfigName"] = config
    if tags is not None:
        body["Tags"] = tags
    body.update(detail)
    return _event(
        "SageMaker Endpoint State Change",
        "aws.sagemaker",
        arn,
        body,
        "2023-11-14T22:13:20Z",
        f"{endpoint}-{status}-{at_ms}",
    )


def processing_event(
    name: str, status: str, at_ms: int, *, schedule_arn: str | None = None, **detail: Any
) -> QueueMessage:
    """A "SageMaker Processing Job State Change" event (``DescribeProcessingJob`` shape)."""
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:processing-job/{name}"
    body: dict[str, Any] = {
        "ProcessingJobName": name,
        "ProcessingJobArn": arn,
        "ProcessingJobStatus": status,
        "CreationTime": T0 - 600_000,
        "LastModifiedTime": at_ms,
        "ProcessingEndTime": at_ms,
    }
    if schedule_arn is not None:
        body["MonitoringScheduleArn"] = schedule_arn
    body.update(detail)
    return _event(
        "SageMaker Processing Job State Change",
        "aws.sagemaker",
        arn,
        body,
        "2023-11-14T22:13:20Z",
        f"{name}-{status}-{at_ms}",
    )


def alarm_event(
    alarm_name: str, state: str, *, reason: str = "Threshold Crossed", previous: str = "OK"
) -> QueueMessage:
    """A "CloudWatch Alarm State Change" event of source aws.cloudwatch."""
    arn = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{alarm_name}"
    body = {
        "alarmName": alarm_name,
        "state": {"value": state, "reason": reason, "timestamp": "2023-11-14T22:13:20.000+0000"},
        "previousState": {"value": previous, "reason": "earlier"},
        "configuration": {"metrics": []},
    }
    return _event(
        "CloudWatch Alarm State Change",
        "aws.cloudwatch",
        arn,
        body,
        "2023-11-14T22:13:20Z",
        f"{alarm_name}-{state}",
    )


@pytest.fixture
def deploy_kit(platform: Any, jobs_kit: Any) -> SimpleNamespace:
    """The deployments table and request queue, and records in the states the deploy handler
    leaves them in (written through the repository, as the portal and the handler do)."""
    from datetime import UTC, datetime

    from training_common.deployments import (
        DeploymentRequest,
        DeploymentStatus,
        new_request_id,
        resource_name,
    )
    from training_common.repositories import DeploymentRepository, create_tables

    create_tables(platform.session.client("dynamodb"), deployments="deployments")
    queue = platform.sqs.create_queue(QueueName="deployment-requests")["QueueUrl"]
    env = {
        **platform.env,
        "DEPLOYMENTS_TABLE": "deployments",
        "DEPLOYMENT_REQUESTS_QUEUE_URL": queue,
        "ALARM_PREFIX": ALARM_PREFIX,
    }
    deployments = DeploymentRepository.from_table_name("deployments", platform.session)

    def service(**overrides: str) -> JobEventsService:
        values = {**env, **overrides}
        values = {k: v for k, v in values.items() if v}
        return JobEventsService.from_settings(JobEventsSettings.from_env(values), platform.session)

    def submit(action: str, tenant: str, deployment_id: str, **fields: Any) -> str:
        request = DeploymentRequest.model_validate(
            {
                "action": action,
                "tenant_id": tenant,
                "deployment_id": deployment_id,
                "request_id": new_request_id(),
                "submitted_by": "alice@example.com",
                "submitted_at": datetime.now(UTC),
                **fields,
            }
        )
        assert deployments.submit(request) is not None
        return request.request_id

    def started(
        job_id: str = "acme-job-1",
        version: int = 1,
        *,
        tenant: str = "acme",
        deployment_id: str = "thermostat",
    ) -> Any:
        """A deploy request submitted and started: CREATING (or UPDATING when a version
        serves) with the configuration and baseline names the deploy handler writes."""
        request_id = submit(
            "deploy",
            tenant,
            deployment_id,
            model_job_id=job_id,
            kind="realtime",
            realtime={"instance_type": "ml.m5.large", "instance_count": 1},
        )

        def change(current: Any) -> Any:
            status = (
                DeploymentStatus.UPDATING
                if current.serving_model_job_id
                else DeploymentStatus.CREATING
            )
            return current.model_copy(
                update={
                    "status": status,
                    "model_version": version,
                    "model_name": resource_name("m", tenant, deployment_id, request_id),
                    "endpoint_config_name": resource_name("c", tenant, deployment_id, request_id),
                    "baseline_job_name": current.baseline_job_name
                    or resource_name("b", tenant, deployment_id, request_id),
                }
            )

        return deployments.update(tenant, deployment_id, change)

    return SimpleNamespace(
        env=env,
        queue=queue,
        service=service,
        submit=submit,
        started=started,
        deployments=deployments,
        endpoint_event=endpoint_event,
        processing_event=processing_event,
        alarm_event=alarm_event,
        alarm_prefix=ALARM_PREFIX,
        cloudwatch=platform.session.client("cloudwatch"),
        requests=lambda: platform.receive_all(queue),
    )
