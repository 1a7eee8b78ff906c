"""The serving simulator against moto in process: the portal's deploy requests go through the
real deploy service, and the events AWS would send through the real job-events service."""

from __future__ import annotations

from typing import Any

import pytest
from local.endpoints import SimulatedRuntime
from local.serving import ALARM_PREFIX, ServingSimulator
from portal_helpers import Platform, PortalClient, put_model
from training_common import (
    AlarmKind,
    Deployment,
    DeploymentStatus,
    ModelApprovalStatus,
    NotificationRepository,
    alarm_name,
)
from training_common.repositories import DeploymentRepository

JSON = {"accept": "application/json"}
ENDPOINT = "acme-thermostat"


class Forgotten(list[str]):
    def __call__(self, name: str) -> None:
        self.append(name)


def _simulator(platform: Platform, forgotten: Forgotten | None = None) -> ServingSimulator:
    return ServingSimulator(
        platform.settings,
        platform.session,
        None,
        forget=Forgotten() if forgotten is None else forgotten,
        drift_steps=2,
    )


def _record(platform: Platform, tenant: str = "acme", name: str = "thermostat") -> Deployment:
    repository = DeploymentRepository(platform.table(platform.settings.deployments_table))
    record = repository.get(tenant, name)
    assert record is not None
    return record


def _deploy(client: PortalClient, model_job_id: str) -> None:
    form = {
        "deployment_id": "thermostat",
        "model_job_id": model_job_id,
        "kind": "realtime",
        "instance_type": "ml.m5.large",
        "instance_count": "1",
    }
    assert client.post_form("/deployments", form).status_code == 303


def _steps(simulator: ServingSimulator, count: int) -> None:
    for _ in range(count):
        simulator.step()


def _sagemaker(platform: Platform) -> Any:
    return platform.session.client("sagemaker", region_name=platform.settings.aws_region)


def _notifications(platform: Platform, tenant: str) -> list[Any]:
    repository = NotificationRepository(platform.table(platform.settings.notifications_table))
    return list(repository.list_page(tenant, limit=50).items)


def test_a_deploy_goes_pending_creating_in_service_with_a_baseline_and_a_schedule(
    platform: Platform,
) -> None:
    simulator = _simulator(platform)
    model = platform.seeded.approved_models["acme"]
    _deploy(platform.client("alice"), model)
    assert _record(platform).status == DeploymentStatus.PENDING
    simulator.step()
    record = _record(platform)
    assert record.status == DeploymentStatus.CREATING
    endpoint = _sagemaker(platform).describe_endpoint(EndpointName=ENDPOINT)
    assert endpoint["EndpointConfigName"] == record.endpoint_config_name
    assert record.baseline_job_name is not None
    _steps(simulator, 3)
    record = _record(platform)
    assert record.status == DeploymentStatus.IN_SERVICE
    assert record.serving_model_job_id == model
    assert [c.status for c in record.history][:3] == [
        DeploymentStatus.PENDING,
        DeploymentStatus.CREATING,
        DeploymentStatus.IN_SERVICE,
    ]
    assert record.monitoring_schedule_name in simulator.shim.schedules
    schedule = simulator.shim.schedules[record.monitoring_schedule_name]
    assert {t["Key"]: t["Value"] for t in schedule["Tags"]} == {
        "tenant": "acme",
        "deployment": "thermostat",
    }


def test_a_second_version_updates_the_endpoint_in_place_and_the_runtime_forgets_it(
    platform: Platform,
) -> None:
    forgotten = Forgotten()
    simulator = _simulator(platform, forgotten)
    first = platform.seeded.approved_models["acme"]
    second = platform.seeded.jobs["acme"][0]
    put_model(platform, "acme", second, status=ModelApprovalStatus.APPROVED)
    client = platform.client("alice")
    _deploy(client, first)
    _steps(simulator, 3)
    assert _record(platform).status == DeploymentStatus.IN_SERVICE
    arn = _sagemaker(platform).describe_endpoint(EndpointName=ENDPOINT)["EndpointArn"]
    response = client.post_form("/deployments/thermostat/redeploy", {"model_job_id": second})
    assert response.status_code == 303
    simulator.step()
    record = _record(platform)
    assert record.status == DeploymentStatus.UPDATING and record.serving_model_job_id == first
    (update,) = simulator.shim.updates
    assert update["EndpointConfigName"] == record.endpoint_config_name
    assert "BlueGreenUpdatePolicy" in update["DeploymentConfig"]
    assert forgotten == [ENDPOINT]
    endpoint = _sagemaker(platform).describe_endpoint(EndpointName=ENDPOINT)
    assert endpoint["EndpointConfigName"] == record.endpoint_config_name
    tags = _sagemaker(platform).list_tags(ResourceArn=endpoint["EndpointArn"])["Tags"]
    assert endpoint["EndpointArn"] == arn
    assert {t["Key"]: t["Value"] for t in tags} == {"tenant": "acme", "deployment": "thermostat"}
    _steps(simulator, 2)
    record = _record(platform)
    assert record.status == DeploymentStatus.IN_SERVICE
    assert record.serving_model_job_id == second


def test_undeploy_deletes_endpoint_schedule_and_alarms(platform: Platform) -> None:
    forgotten = Forgotten()
    simulator = _simulator(platform, forgotten)
    client = platform.client("alice")
    _deploy(client, platform.seeded.approved_models["acme"])
    _steps(simulator, 4)
    assert _record(platform).monitoring_schedule_name in simulator.shim.schedules
    response = client.post_form("/deployments/thermostat/undeploy", {}, headers=JSON)
    assert response.status_code == 202
    simulator.step()
    assert _record(platform).status == DeploymentStatus.DELETED
    assert simulator.shim.schedules == {} and simulator.shim.job_definitions == {}
    assert _sagemaker(platform).list_endpoints()["Endpoints"] == []
    cloudwatch = platform.session.client("cloudwatch", region_name=platform.settings.aws_region)
    alarms = cloudwatch.describe_alarms(AlarmNamePrefix=f"{ALARM_PREFIX}-{ENDPOINT}")
    assert alarms["MetricAlarms"] == []
    assert ENDPOINT in forgotten


def test_the_drift_alarm_becomes_a_notification_for_acme_and_none_for_globex(
    platform: Platform,
) -> None:
    simulator = _simulator(platform)
    _deploy(platform.client("alice"), platform.seeded.approved_models["acme"])
    globex_before = len(_notifications(platform, "globex"))
    _steps(simulator, 8)
    name = alarm_name(ALARM_PREFIX, ENDPOINT, AlarmKind.DATA_QUALITY)
    cloudwatch = platform.session.client("cloudwatch", region_name=platform.settings.aws_region)
    (alarm,) = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
    assert alarm["StateValue"] == "ALARM"
    drift = [n for n in _notifications(platform, "acme") if n.deployment_id == "thermostat"]
    assert drift and any("data-quality" in n.subject.lower() or name in n.message for n in drift)
    assert all(n.link == "/deployments/thermostat" for n in drift if n.link)
    assert len(_notifications(platform, "globex")) == globex_before
    page = platform.client("alice").get("/notifications").text
    assert "/deployments/thermostat" in page
    assert "thermostat" not in platform.client("gina").get("/notifications").text


def test_a_failing_create_ends_failed_with_its_reason_on_the_page(platform: Platform) -> None:
    simulator = _simulator(platform)
    reason = "The primary container for production variant AllTraffic did not pass the ping."
    simulator.fail_endpoints[ENDPOINT] = reason
    client = platform.client("alice")
    _deploy(client, platform.seeded.approved_models["acme"])
    _steps(simulator, 3)
    record = _record(platform)
    assert record.status == DeploymentStatus.FAILED
    assert record.failure_reason is not None and "did not pass the ping" in record.failure_reason
    assert "did not pass the ping" in client.get("/deployments/thermostat").text


@pytest.fixture
def runtime(platform: Platform) -> SimulatedRuntime:
    return SimulatedRuntime.for_moto(platform.session, None)


def test_the_simulator_forgets_the_runtime_cache_of_an_undeployed_endpoint(
    platform: Platform, runtime: SimulatedRuntime
) -> None:
    simulator = ServingSimulator(platform.settings, platform.session, None, forget=runtime.forget)
    client = platform.client("alice")
    _deploy(client, platform.seeded.approved_models["acme"])
    _steps(simulator, 3)
    assert runtime._endpoint(ENDPOINT) is not None  # cached InService
    response = client.post_form("/deployments/thermostat/undeploy", {}, headers=JSON)
    assert response.status_code == 202
    simulator.step()
    assert runtime._endpoint(ENDPOINT) is None
