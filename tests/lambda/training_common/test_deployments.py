"""Deployments contract helpers, the DeploymentRepository and ApiClientRepository in moto, and
validate_deployment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from training_common import ModelApprovalStatus, ModelVersion
from training_common.deployments import (
    ApiClient,
    DeploymentRequest,
    DeploymentStatus,
    EndpointKind,
    RealtimeCapacity,
    capacity_of_endpoint_config,
    new_request_id,
    open_interval,
    open_service_interval,
)
from training_common.repositories import (
    ApiClientRepository,
    DeploymentRepository,
    create_tables,
)
from training_common.validation import ProblemCode, validate_deployment

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def request(**overrides: Any) -> DeploymentRequest:
    values: dict[str, Any] = {
        "action": "deploy",
        "tenant_id": "acme",
        "deployment_id": "thermostat",
        "request_id": new_request_id(),
        "model_job_id": "acme-job-1",
        "kind": "realtime",
        "realtime": {"instance_type": "ml.m5.large", "instance_count": 1},
        "submitted_by": "alice@example.com",
        "submitted_at": T0,
    }
    values.update(overrides)
    return DeploymentRequest.model_validate(values)


def model(**overrides: Any) -> ModelVersion:
    values: dict[str, Any] = {
        "tenant_id": "acme",
        "job_id": "acme-job-1",
        "training_job_name": "acme-job-1",
        "algorithm_id": "xgboost",
        "dataset_key": "tenants/acme/datasets/houses/",
        "image_uri": "img",
        "model_artifact_key": "k",
        "model_package_group": "acme-models",
        "model_package_arn": "arn:aws:sagemaker:us-east-1:1:model-package/acme-models/1",
        "model_version": 1,
        "approval_status": ModelApprovalStatus.APPROVED,
        "created_at": T0,
        "updated_at": T0,
    }
    values.update(overrides)
    return ModelVersion.model_validate(values)


def test_opening_an_interval_closes_the_open_one_at_its_start() -> None:
    first = open_interval(
        [],
        kind=EndpointKind.REALTIME,
        realtime=RealtimeCapacity(instance_type="ml.m5.large", instance_count=2),
        serverless=None,
        start=T0,
    )
    later = T0 + timedelta(hours=3)
    both = open_interval(
        first, kind=EndpointKind.SERVERLESS, realtime=None, serverless=None, start=later
    )

    assert [(i.start, i.end) for i in both] == [(T0, later), (later, None)]
    assert both[0].instance_count == 2
    assert open_service_interval(both) == both[1]


def test_capacity_is_read_from_the_endpoint_configuration() -> None:
    kind, realtime, serverless, name = capacity_of_endpoint_config(
        {
            "ProductionVariants": [
                {"ModelName": "m", "InstanceType": "ml.m5.xlarge", "InitialInstanceCount": 3}
            ]
        }
    )
    assert (kind, realtime, serverless, name) == (
        EndpointKind.REALTIME,
        RealtimeCapacity(instance_type="ml.m5.xlarge", instance_count=3),
        None,
        "m",
    )


def test_quota_counts_the_tenants_other_live_realtime_endpoints(make: Any, platform: Any) -> None:
    tenant = make.tenant(max_endpoint_instances=3)
    create_tables(platform.session.client("dynamodb"), deployments="deployments")
    repo = DeploymentRepository.from_table_name("deployments", platform.session)
    repo.submit(
        request(
            deployment_id="other", realtime={"instance_type": "ml.m5.large", "instance_count": 2}
        )
    )
    repo.submit(
        request(
            deployment_id="gone", realtime={"instance_type": "ml.m5.large", "instance_count": 2}
        )
    )
    repo.update("acme", "gone", lambda d: d.model_copy(update={"status": DeploymentStatus.DELETED}))
    others = repo.list_all("acme")

    fits = validate_deployment(request(), tenant=tenant, model=model(), deployments=others)
    too_many = validate_deployment(
        request(realtime={"instance_type": "ml.m5.large", "instance_count": 2}),
        tenant=tenant,
        model=model(),
        deployments=others,
    )

    assert fits.ok
    assert too_many.codes == {ProblemCode.ENDPOINT_INSTANCES_LIMIT}


def test_serverless_model_and_instance_type_rules(make: Any) -> None:
    strict = make.tenant(require_vpc_inference=True, max_serverless_concurrency=4)
    serverless = request(
        kind="serverless", realtime=None, serverless={"memory_mb": 2048, "max_concurrency": 5}
    )

    result = validate_deployment(serverless, tenant=strict, model=model(), deployments=[])
    assert result.codes == {
        ProblemCode.SERVERLESS_NOT_ALLOWED,
        ProblemCode.SERVERLESS_CONCURRENCY_TOO_HIGH,
    }
    pending = model(approval_status=ModelApprovalStatus.PENDING)
    other_type = request(realtime={"instance_type": "ml.p3.2xlarge", "instance_count": 1})
    result = validate_deployment(other_type, tenant=make.tenant(), model=pending, deployments=[])
    assert result.codes == {
        ProblemCode.MODEL_NOT_APPROVED,
        ProblemCode.ENDPOINT_INSTANCE_TYPE_NOT_ALLOWED,
    }
    globex_model = model(tenant_id="globex")
    result = validate_deployment(
        request(), tenant=make.tenant(), model=globex_model, deployments=[]
    )
    assert result.codes == {ProblemCode.MODEL_UNKNOWN}


def test_submit_refuses_a_busy_deployment_and_undeploy_of_nothing(platform: Any) -> None:
    create_tables(platform.session.client("dynamodb"), deployments="deployments")
    repo = DeploymentRepository.from_table_name("deployments", platform.session)
    undeploy = request(action="undeploy", model_job_id=None, kind=None, realtime=None)

    assert repo.submit(undeploy) is None
    first = repo.submit(request())
    assert first is not None and first.status is DeploymentStatus.PENDING
    assert first.endpoint_name == "acme-thermostat"
    assert repo.submit(request(model_job_id="acme-job-2")) is None
    repo.update(
        "acme", "thermostat", lambda d: d.model_copy(update={"status": DeploymentStatus.IN_SERVICE})
    )
    again = repo.submit(request(model_job_id="acme-job-2"))
    assert again is not None and again.model_job_id == "acme-job-2"
    assert [h.status for h in again.history] == [DeploymentStatus.PENDING, DeploymentStatus.PENDING]


def test_a_client_id_has_one_owner_and_only_the_owner_deletes_it(platform: Any) -> None:
    create_tables(platform.session.client("dynamodb"), api_clients="api-clients")
    repo = ApiClientRepository.from_table_name("api-clients", platform.session)
    client = ApiClient(
        tenant_id="acme", client_id="abc123", name="fleet", created_by="alice", created_at=T0
    )

    assert repo.put(client)
    assert not repo.put(client.model_copy(update={"tenant_id": "globex"}))
    assert repo.tenant_of_client("abc123") == "acme"
    assert repo.tenant_of_client("nope") is None
    assert [c.client_id for c in repo.list_page("acme").items] == ["abc123"]
    assert not repo.delete("globex", "abc123")
    assert repo.delete("acme", "abc123")
    assert repo.tenant_of_client("abc123") is None
