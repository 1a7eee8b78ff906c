"""Moto set-up of the deploy tests: the deployments table, the request queues, an approved
model version of acme, and the portal's submit."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from deploy.service import DeployService
from deploy.settings import DeploySettings
from training_common import ModelApprovalStatus, ModelRepository, ModelVersion, QueueMessage
from training_common.deployments import DeploymentRequest, EndpointKind, new_request_id
from training_common.repositories import DeploymentRepository, create_tables

ACCOUNT = "123456789012"
REGION = "us-east-1"
DATA_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/99999999-2222-3333-4444-555555555555"


def approved_model(
    job_id: str, version: int, tenant: str = "acme", **overrides: Any
) -> ModelVersion:
    values: dict[str, Any] = {
        "tenant_id": tenant,
        "job_id": job_id,
        "training_job_name": job_id,
        "algorithm_id": "xgboost",
        "dataset_key": f"tenants/{tenant}/datasets/houses/",
        "image_uri": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1",
        "model_artifact_key": f"tenants/{tenant}/jobs/{job_id}/output/model.tar.gz",
        "model_package_group": f"{tenant}-models",
        "model_package_arn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/"
        f"{tenant}-models/{version}",
        "model_version": version,
        "approval_status": ModelApprovalStatus.APPROVED,
        "created_at": datetime.now(UTC),
        "updated_at": datetime.now(UTC),
    }
    values.update(overrides)
    return ModelVersion.model_validate(values)


@pytest.fixture
def kit(platform: Any, make: Any) -> SimpleNamespace:
    """Services, repositories and request builders of the deploy tests."""
    create_tables(
        platform.session.client("dynamodb"), deployments="deployments", api_clients="api-clients"
    )
    sqs = platform.sqs
    dlq = sqs.create_queue(QueueName="deployment-requests-dlq")["QueueUrl"]
    queue = sqs.create_queue(QueueName="deployment-requests")["QueueUrl"]
    env = {
        **platform.env,
        "DEPLOYMENTS_TABLE": "deployments",
        "DEAD_LETTER_QUEUE_URL": dlq,
        "DEPLOYMENT_REQUESTS_QUEUE_URL": queue,
        "DATA_KEY_ARN": DATA_KEY,
        "ENDPOINT_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/endpoint",
        "MONITORING_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/monitoring",
        "ENDPOINT_SUBNET_IDS": "subnet-aaa,subnet-bbb",
        "ENDPOINT_SECURITY_GROUP_IDS": "sg-endpoint",
        "ALARM_PREFIX": "tp-test",
        "BLUE_GREEN_BAKE_SECONDS": "300",
    }
    models = ModelRepository.from_table_name("models", platform.session)
    deployments = DeploymentRepository.from_table_name("deployments", platform.session)
    platform.tenants.put(make.tenant(allowed_instance_types=["ml.m5.large", "ml.m5.xlarge"]))
    models.put_if_absent(approved_model("acme-job-1", 1))
    models.put_if_absent(approved_model("acme-job-2", 2))

    def service(sagemaker: Any = None, **overrides: str) -> DeployService:
        built = DeployService.from_settings(
            DeploySettings.from_env({**env, **overrides}), platform.session
        )
        if sagemaker is not None:
            built.sagemaker = sagemaker
        return built

    def deploy_request(deployment_id: str = "thermostat", **overrides: Any) -> DeploymentRequest:
        values: dict[str, Any] = {
            "action": "deploy",
            "tenant_id": "acme",
            "deployment_id": deployment_id,
            "request_id": new_request_id(),
            "model_job_id": "acme-job-1",
            "kind": EndpointKind.REALTIME,
            "realtime": {"instance_type": "ml.m5.large", "instance_count": 1},
            "submitted_by": "alice@example.com",
            "submitted_at": datetime.now(UTC),
        }
        values.update(overrides)
        return DeploymentRequest.model_validate(values)

    def other_request(action: str, deployment_id: str = "thermostat") -> DeploymentRequest:
        return DeploymentRequest.model_validate(
            {
                "action": action,
                "tenant_id": "acme",
                "deployment_id": deployment_id,
                "request_id": new_request_id(),
                "submitted_by": "alice@example.com",
                "submitted_at": datetime.now(UTC),
            }
        )

    def submit(request: DeploymentRequest) -> DeploymentRequest:
        assert deployments.submit(request) is not None
        return request

    def message(request: DeploymentRequest | str, receive_count: int = 1) -> QueueMessage:
        body = request if isinstance(request, str) else request.to_message_body()
        return QueueMessage(
            message_id="m-1", body=body, receipt_handle="rh-1", receive_count=receive_count
        )

    return SimpleNamespace(
        env=env,
        service=service,
        deploy_request=deploy_request,
        other_request=other_request,
        submit=submit,
        message=message,
        models=models,
        approved_model=approved_model,
        deployments=deployments,
        sagemaker=platform.sagemaker,
        cloudwatch=platform.session.client("cloudwatch"),
        dead_letters=lambda: platform.receive_all(dlq),
    )
