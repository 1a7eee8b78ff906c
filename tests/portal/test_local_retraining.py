"""Continuous retraining through the local stack, without a browser (moto in process).

A policy record and its request go where the portal puts them; the real retraining service
makes the schedule in moto's EventBridge Scheduler, the local scheduler fires it (a fake clock),
the job simulator plans the run with the launch handler's planner and plays its tuning job, the
job-events handler's promotion service decides, and the serving simulator carries out the
promotion with the real deploy service. The script: the first run scores below the deployed
model (REJECTED, the comparison as the reason), the second above it (PROMOTED, deployed).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import boto3
import portal_helpers  # noqa: F401 - puts portal/ on sys.path first
import pytest
from local.common import REGION, FakeClock
from local.endpoints import capture_key, capture_record
from local.retraining import DataFeed, RetrainingRequests, scripted_objective
from local.scheduler import LocalScheduler, interval_from_env, slot_text
from local.seed_tuning import SEED_SPEC
from local.serving import ServingSimulator
from local.signin import EcSigner
from local.simulator import JobSimulator
from local.stack import (
    ALB_ARN,
    SCHEDULE_GROUP,
    Seeded,
    holdout_key,
)
from portal_app.app import create_app
from portal_app.aws import AwsClients
from portal_app.settings import PortalSettings
from portal_helpers import AwsCalls, BuiltStack, Platform, PortalClient
from training_common import (
    DataSelection,
    DeploymentStatus,
    JobRepository,
    JobStatus,
    ModelApprovalStatus,
    ModelRepository,
    NotificationRepository,
    PolicyAction,
    PolicyRequest,
    PolicyStatus,
    RetrainingPolicy,
    RetrainingPolicyRepository,
    RetrainingRun,
    RetrainingRunRepository,
    RunDecision,
    ScheduleState,
    new_trigger_token,
    schedule_name,
    trigger_input,
    utc_now,
)
from training_common.repositories import DeploymentRepository

STEP = 1.0
INTERVAL = 20.0
DEPLOYMENT = "thermostat"
POLICY = "weekly"


@dataclass
class Loop:
    settings: PortalSettings
    seeded: Seeded
    session: boto3.Session
    clock: FakeClock
    simulator: JobSimulator
    serving: ServingSimulator
    requests: RetrainingRequests
    scheduler: LocalScheduler
    feed: DataFeed
    client: PortalClient

    def table(self, name: str) -> Any:
        return self.session.resource("dynamodb", region_name=REGION).Table(name)

    @property
    def policies(self) -> RetrainingPolicyRepository:
        return RetrainingPolicyRepository(self.table("RetrainingPolicies"))

    @property
    def runs(self) -> RetrainingRunRepository:
        return RetrainingRunRepository(self.table("RetrainingRuns"))

    @property
    def deployments(self) -> DeploymentRepository:
        return DeploymentRepository(self.table(self.settings.deployments_table))

    @property
    def models(self) -> ModelRepository:
        return ModelRepository(self.table(self.settings.models_table))

    def sqs(self) -> Any:
        return self.session.client("sqs", region_name=REGION)

    def tick(self) -> None:
        """One step of every part of the local stack."""
        self.clock.advance(STEP)
        self.requests.step()
        self.scheduler.step()
        self.simulator.step()
        self.serving.step()

    def until(self, done: Any, ticks: int = 120) -> None:
        for _ in range(ticks):
            if done():
                return
            self.tick()
        raise AssertionError("the local stack did not get there")

    def policy_runs(self, tenant: str = "acme") -> list[RetrainingRun]:
        return list(reversed(self.runs.list_page(tenant, POLICY).items))  # oldest first

    def send(self, policy: RetrainingPolicy, action: PolicyAction = PolicyAction.APPLY) -> None:
        request = PolicyRequest(
            action=action,
            tenant_id=policy.tenant_id,
            policy_id=policy.policy_id,
            request_id=policy.request_id,
            submitted_by="alice@acme.example",
            submitted_at=utc_now(),
        )
        url = self.sqs().get_queue_url(QueueName="retraining-requests")["QueueUrl"]
        self.sqs().send_message(QueueUrl=url, MessageBody=request.to_message_body())


@pytest.fixture(scope="module")
def built() -> BuiltStack:
    """The local stack, created and seeded once for the module's tests."""
    return BuiltStack.build(tuning_job=False, retraining=True)


@pytest.fixture
def loop(built: BuiltStack) -> Iterator[Loop]:
    with built.restored() as (settings, seeded, session):
        clock = FakeClock()
        simulator = JobSimulator(settings, session, None, step_seconds=STEP, clock=clock)
        serving = ServingSimulator(settings, session, None, drift_steps=1000)
        requests = RetrainingRequests(settings, session, None)
        feed = DataFeed(simulator.policies, simulator.s3, settings.data_bucket)
        # slots two minutes in the past: the readings the feed writes are newer than any slot
        scheduler = LocalScheduler(
            session,
            None,
            group=SCHEDULE_GROUP,
            interval_seconds=INTERVAL,
            clock=clock,
            now=lambda: utc_now() - timedelta(minutes=2),
            before_fire=feed,
        )
        signer = EcSigner(ALB_ARN, kid="alb-test-key")
        calls = AwsCalls()
        app = create_app(
            settings,
            key_fetcher=signer.key_fetcher,
            aws=AwsClients(settings, session_hook=calls.hook),
        )
        platform = Platform(settings, seeded, session, signer, calls, app)
        yield Loop(
            settings,
            seeded,
            session,
            clock,
            simulator,
            serving,
            requests,
            scheduler,
            feed,
            PortalClient(platform, "alice"),
        )


def _deploy(loop: Loop) -> str:
    """acme's approved model, deployed through the portal and the serving simulator."""
    model = loop.seeded.approved_models["acme"]
    form = {
        "deployment_id": DEPLOYMENT,
        "model_job_id": model,
        "kind": "realtime",
        "instance_type": "ml.m5.large",
        "instance_count": "1",
    }
    assert loop.client.post_form("/deployments", form).status_code == 303

    def in_service() -> bool:
        record = loop.deployments.get("acme", DEPLOYMENT)
        return record is not None and record.status == DeploymentStatus.IN_SERVICE

    loop.until(in_service)
    return model


def _policy(loop: Loop, model: str, **changes: Any) -> RetrainingPolicy:
    """What the portal writes for the form's defaults (then it sends the apply request)."""
    now = utc_now()
    policy = RetrainingPolicy(
        tenant_id="acme",
        policy_id=POLICY,
        deployment_id=DEPLOYMENT,
        algorithm_id="xgboost",
        dataset_prefix=loop.seeded.datasets["acme"],
        validation_key=holdout_key("acme"),
        feedback_prefix=f"tenants/acme/feedback/{DEPLOYMENT}/labelled/",
        tuning=SEED_SPEC.model_copy(
            update={"max_training_jobs": 4, "max_parallel_training_jobs": 2}
        ),
        hyperparameters={"num_round": "100", "objective": "binary:logistic"},
        instance_type="ml.m5.large",
        instance_count=1,
        max_runtime_seconds=3600,
        margin=0.005,
        request_id=uuid.uuid4().hex,
        token=new_trigger_token(),
        last_tuning_job_id=model,
        created_at=now,
        updated_at=now,
        submitted_by="alice@acme.example",
    ).model_copy(update=changes)
    stored, created = loop.policies.put_if_absent(policy)
    assert created
    loop.send(stored)
    return stored


def _decided(loop: Loop, count: int) -> Any:
    def done() -> bool:
        runs = loop.policy_runs()
        return len(runs) >= count and all(r.decision != RunDecision.RUNNING for r in runs)

    return done


def test_a_policy_runs_twice_rejected_then_promoted_and_deployed(loop: Loop) -> None:
    model = _deploy(loop)
    _policy(loop, model)
    loop.requests.step()
    scheduler = loop.session.client("scheduler", region_name=REGION)
    schedule = scheduler.get_schedule(GroupName=SCHEDULE_GROUP, Name=schedule_name("acme", POLICY))
    assert schedule["State"] == "ENABLED"
    assert json.loads(schedule["Target"]["Input"])["scheduled_time"] == (
        "<aws.scheduler.scheduled-time>"
    )
    record = loop.policies.get("acme", POLICY)
    assert record is not None and record.schedule_state == ScheduleState.ENABLED

    approved = loop.models.get("acme", model)
    assert approved is not None and approved.objective is not None
    assert approved.validation_key == holdout_key("acme")
    deployed_objective = approved.objective.value
    assert deployed_objective is not None

    loop.until(_decided(loop, 1))
    first = loop.policy_runs()[0]
    assert first.decision == RunDecision.REJECTED, first
    assert first.deployed_model_job_id == model
    assert first.deployed_objective == deployed_objective
    assert first.best_objective is not None and first.best_objective < deployed_objective
    assert first.reason and "validation:auc" in first.reason
    assert f"vs {deployed_objective:.6g} deployed" in first.reason
    assert first.training_objects and first.training_objects >= 2  # train.csv + new readings
    rejected = loop.models.get("acme", str(first.job_id))
    assert rejected is not None and rejected.approval_status == ModelApprovalStatus.REJECTED
    assert rejected.validation_key == holdout_key("acme")

    loop.until(_decided(loop, 2))
    second = loop.policy_runs()[1]
    assert second.decision == RunDecision.PROMOTED, second
    assert second.best_objective is not None
    assert second.best_objective > deployed_objective + second.margin
    job = JobRepository(loop.table(loop.settings.jobs_table)).get("acme", str(second.job_id))
    assert job is not None and job.tuning is not None and job.tuning.warm_start is not None
    assert job.tuning.warm_start.parent_job_ids == (first.job_id,)  # from the previous run
    assert job.submitted_by == f"retraining:{POLICY}"

    def deployed() -> bool:
        record = loop.deployments.get("acme", DEPLOYMENT)
        return (
            record is not None
            and record.status == DeploymentStatus.IN_SERVICE
            and record.serving_model_job_id == second.job_id
        )

    loop.until(deployed)
    assert loop.serving.shim.updates, "a blue/green UpdateEndpoint"
    promoted = loop.models.get("acme", str(second.job_id))
    assert promoted is not None and promoted.approval_status == ModelApprovalStatus.APPROVED

    notifications = NotificationRepository(loop.table(loop.settings.notifications_table))
    ids = [n.notification_id for n in notifications.list_page("acme", limit=100).items]
    assert any(i.endswith(f"#{first.job_id}#retraining-rejected") for i in ids), ids
    assert any(i.endswith(f"#{second.job_id}#retraining-promoted") for i in ids), ids
    assert loop.policy_runs("globex") == []
    assert loop.policies.list_page("globex").items == []
    globex = [n.notification_id for n in notifications.list_page("globex", limit=100).items]
    assert not any("retraining" in i for i in globex)


def test_a_paused_or_deleted_policy_stops_firing(loop: Loop) -> None:
    model = _deploy(loop)
    policy = _policy(loop, model)
    loop.requests.step()
    loop.until(lambda: len(loop.scheduler.fired) == 1)
    paused = loop.policies.update(
        "acme",
        POLICY,
        lambda p: p.model_copy(
            update={
                "status": PolicyStatus.PAUSED,
                "request_id": uuid.uuid4().hex,
                "schedule_state": ScheduleState.PENDING,
            }
        ),
    )
    assert paused is not None and paused.token == policy.token
    loop.send(paused)
    loop.requests.step()
    scheduler = loop.session.client("scheduler", region_name=REGION)
    name = schedule_name("acme", POLICY)
    assert scheduler.get_schedule(GroupName=SCHEDULE_GROUP, Name=name)["State"] == "DISABLED"
    for _ in range(int(3 * INTERVAL / STEP)):
        loop.tick()
    assert len(loop.scheduler.fired) == 1
    record = loop.policies.get("acme", POLICY)
    assert record is not None and record.schedule_state == ScheduleState.DISABLED

    resumed = loop.policies.update(
        "acme",
        POLICY,
        lambda p: p.model_copy(
            update={"status": PolicyStatus.ACTIVE, "request_id": uuid.uuid4().hex}
        ),
    )
    assert resumed is not None
    loop.send(resumed)
    loop.until(lambda: len(loop.scheduler.fired) == 2)
    first, second = loop.scheduler.fired
    assert second.slot == first.slot + timedelta(minutes=1)  # slots never repeat

    deleting = loop.policies.update(
        "acme",
        POLICY,
        lambda p: p.model_copy(
            update={"status": PolicyStatus.DELETING, "request_id": uuid.uuid4().hex}
        ),
    )
    assert deleting is not None
    loop.send(deleting, PolicyAction.DELETE)
    loop.requests.step()
    assert scheduler.list_schedules(GroupName=SCHEDULE_GROUP)["Schedules"] == []
    for _ in range(int(3 * INTERVAL / STEP)):
        loop.tick()
    assert len(loop.scheduler.fired) == 2  # a deleted schedule fires no more
    gone = loop.policies.get("acme", POLICY)
    assert gone is not None and gone.status == PolicyStatus.DELETED


def test_a_duplicate_trigger_for_one_slot_launches_once(loop: Loop) -> None:
    model = _deploy(loop)
    policy = _policy(loop, model, data_selection=DataSelection.WHOLE_PREFIX, feedback_prefix=None)
    loop.requests.step()
    slot = utc_now().replace(second=0, microsecond=0) - timedelta(minutes=5)
    body = trigger_input(policy).replace("<aws.scheduler.scheduled-time>", slot_text(slot))
    sqs = loop.sqs()
    for _ in range(2):
        sqs.send_message(QueueUrl=loop.settings.training_requests_queue_url, MessageBody=body)
    loop.simulator.step()
    loop.simulator.step()
    runs = loop.policy_runs()
    assert len(runs) == 1 and runs[0].decision == RunDecision.RUNNING
    assert runs[0].training_objects is None  # the whole prefix, no manifest
    jobs = JobRepository(loop.table(loop.settings.jobs_table))
    job = jobs.get("acme", str(runs[0].job_id))
    assert job is not None and job.status == JobStatus.STARTING and job.launch_attempts == 1
    sqs.send_message(QueueUrl=loop.settings.training_requests_queue_url, MessageBody=body)
    loop.until(_decided(loop, 1))
    assert len(loop.policy_runs()) == 1
    assert len(loop.simulator.finished_tuning) == 1  # one tuning job played for the slot


def test_a_forged_trigger_is_dead_lettered_and_feeds_no_data(loop: Loop) -> None:
    model = _deploy(loop)
    policy = _policy(loop, model)
    forged = policy.model_copy(update={"token": new_trigger_token()})
    body = trigger_input(forged).replace(
        "<aws.scheduler.scheduled-time>", slot_text(utc_now() - timedelta(minutes=3))
    )
    loop.feed(body, utc_now())
    assert loop.feed.written == []
    sqs = loop.sqs()
    sqs.send_message(QueueUrl=loop.settings.training_requests_queue_url, MessageBody=body)
    loop.simulator.step()
    assert loop.policy_runs() == []
    dlq = sqs.get_queue_url(QueueName="platform-dead-letters")["QueueUrl"]
    parked = sqs.receive_message(QueueUrl=dlq, MessageAttributeNames=["All"])["Messages"]
    assert [m["Body"] for m in parked] == [body]


def test_the_script_and_the_interval_setting() -> None:
    assert interval_from_env({}) == 120.0
    assert interval_from_env({"RETRAINING_LOCAL_INTERVAL_SECONDS": "3"}) == 3.0
    for bad in ("0", "-1", "soon"):
        with pytest.raises(ValueError, match="RETRAINING_LOCAL_INTERVAL_SECONDS"):
            interval_from_env({"RETRAINING_LOCAL_INTERVAL_SECONDS": bad})
    assert scripted_objective.__doc__ and "odd" in scripted_objective.__doc__


def test_capture_lines_are_sagemaker_shaped() -> None:
    at = utc_now()
    line = capture_record(b"5.1,3.5\n", "text/csv", b"0.7\n", "text/csv", at, event_id="e-1")
    assert line["eventVersion"] == "0"
    assert line["eventMetadata"]["eventId"] == "e-1"
    assert line["captureData"]["endpointInput"] == {
        "observedContentType": "text/csv",
        "mode": "INPUT",
        "data": "5.1,3.5\n",
        "encoding": "CSV",
    }
    assert line["captureData"]["endpointOutput"]["mode"] == "OUTPUT"
    binary = capture_record(b"\x00\x01", "application/x-recordio-protobuf", b"", "text/csv", at)
    assert binary["captureData"]["endpointInput"]["encoding"] == "BASE64"
    key = capture_key("tenants/acme/monitoring/acme-x/capture/", "acme-x", at, "e-1")
    assert key.startswith(
        f"tenants/acme/monitoring/acme-x/capture/acme-x/AllTraffic/{at:%Y/%m/%d/%H}/"
    )
    assert key.endswith("-e-1.jsonl")
