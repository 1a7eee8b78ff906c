"""A retraining run's tuning job ends: its registered model is compared with the one the
deployment serves, on the same held-out validation channel; a better one (by the margin) is
approved and deployed, an equal or worse one rejected with the comparison, an incomparable one
left to the tenant; a failed tuning job fails the run. Each decision is taken once."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from unittest.mock import MagicMock

import pytest
from job_events import service as service_module
from job_events.retraining import DeploymentBusyError, deployment_request_id
from job_events.service import JobEventsService, Outcome
from training_common import (
    JobStatus,
    ModelApprovalStatus,
    ModelObjective,
    ModelVersion,
    PromotionMode,
    RetrainingLink,
    RetrainingRun,
    RunDecision,
    run_id,
)
from training_common.deployments import DeploymentRequest, DeploymentStatus

ACCOUNT = "123456789012"
REGION = "us-east-1"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
HOLDOUT = "tenants/acme/datasets/holdout/"
SLOT = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
DEPLOYED_JOB = "acme-20261130020000-aaaaaa"


@pytest.fixture(autouse=True)
def _fresh_metrics() -> Any:
    service_module.metrics.clear_metrics()
    yield
    service_module.metrics.clear_metrics()


@pytest.fixture
def promo(
    platform: Any, jobs_kit: Any, deploy_kit: Any, retraining: Any, sample: Any
) -> SimpleNamespace:
    """acme's deployment ``thermostat`` serving a model with validation:auc 0.90 on the
    holdout, policy ``weekly`` for it, and helpers that run a retraining job to its end."""
    models = jobs_kit.models
    now = datetime.now(UTC)
    models.put_if_absent(
        ModelVersion(
            tenant_id="acme",
            job_id=DEPLOYED_JOB,
            training_job_name="tune-deployed-001-00000001",
            algorithm_id="xgboost",
            dataset_key="tenants/acme/datasets/houses/",
            validation_key=HOLDOUT,
            image_uri=IMAGE,
            model_artifact_key=f"tenants/acme/jobs/{DEPLOYED_JOB}/output/model.tar.gz",
            objective=ModelObjective(name="validation:auc", type="Maximize", value=0.90),
            model_package_group="acme-models",
            model_package_arn=f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/acme-models/1",
            model_version=1,
            approval_status=ModelApprovalStatus.APPROVED,
            created_at=now,
            updated_at=now,
        )
    )
    deployments = deploy_kit.deployments
    deploy_kit.started(DEPLOYED_JOB, 1)
    serving(deployments)
    platform.receive_all(deploy_kit.queue)
    retraining.policies.put_if_absent(retraining.policy(last_tuning_job_id=DEPLOYED_JOB))

    def service(**overrides: str) -> JobEventsService:
        built: JobEventsService = deploy_kit.service(**{**retraining.env, **overrides})
        return built

    def start(slot: datetime = SLOT, **overrides: Any) -> Any:
        """The job and run the launch handler writes for ``slot``, and the tuning job."""
        rid = run_id("weekly", slot)
        job = jobs_kit.starting_job(
            tuning=retraining.policy().tuning,  # what the planner gives the run's job
            hyperparameters={"num_round": "50"},
            validation_key=HOLDOUT,
            retraining=RetrainingLink(policy_id="weekly", run_id=rid),
            submitted_by="retraining:weekly",
            **overrides,
        )
        jobs_kit.sagemaker_tuning_job(job)
        created = datetime.now(UTC)
        retraining.runs.put_if_absent(
            RetrainingRun(
                tenant_id="acme",
                run_id=rid,
                policy_id="weekly",
                slot=slot,
                deployment_id="thermostat",
                job_id=job.job_id,
                tuning_job_name=job.tuning_job_name,
                objective_metric="validation:auc",
                objective_type="Maximize",
                margin=retraining.policies.get("acme", "weekly").margin,
                deployed_model_job_id=DEPLOYED_JOB,
                deployed_objective=0.90,
                created_at=created,
                updated_at=created,
            )
        )
        return job

    def completed(job: Any, auc: float | None) -> Any:
        """The tuning job's Completed event, its best training job reporting ``auc``."""
        best = jobs_kit.trial_job(job, 1)
        jobs_kit.set_best(job, best, 0.0 if auc is None else auc)
        if auc is None:
            from moto.sagemaker.models import sagemaker_backends

            tuning = sagemaker_backends[ACCOUNT][REGION].hyper_parameter_tuning_jobs[
                str(job.tuning_job_name)
            ]
            del tuning.best_training_job["FinalHyperParameterTuningJobObjectiveMetric"]
        return sample.tuning(
            job.tuning_job_name, "Completed", sample.T0, tags=jobs_kit.tags(job), completed=5
        )

    def run(job: Any) -> RetrainingRun:
        assert job.retraining is not None
        found: RetrainingRun = retraining.runs.get("acme", job.retraining.run_id)
        return found

    def set_policy(**changes: Any) -> None:
        retraining.policies.update(
            "acme", "weekly", lambda current: current.model_copy(update=changes)
        )

    def notifications() -> list[Any]:
        return [
            n for n in platform.notifications.list_page("acme").items if n.policy_id is not None
        ]

    return SimpleNamespace(
        service=service,
        start=start,
        completed=completed,
        run=run,
        set_policy=set_policy,
        notifications=notifications,
        models=models,
        deployments=deployments,
        policies=retraining.policies,
        runs=retraining.runs,
        requests=lambda: platform.receive_all(deploy_kit.queue),
        sagemaker=platform.sagemaker,
    )


def serving(deployments: Any) -> None:
    """The deploy handler and the endpoint events took the deployment to IN_SERVICE."""

    def change(current: Any) -> Any:
        return current.model_copy(
            update={
                "status": DeploymentStatus.IN_SERVICE,
                "serving_model_job_id": current.model_job_id,
                "serving_model_version": current.model_version,
            }
        )

    deployments.update("acme", "thermostat", change)


def package_of(promo: Any, job: Any) -> dict[str, Any]:
    version = promo.models.get("acme", job.job_id)
    described: dict[str, Any] = promo.sagemaker.describe_model_package(
        ModelPackageName=version.model_package_arn
    )
    return described


def test_a_better_model_is_approved_and_deployed(promo: Any) -> None:
    job = promo.start()

    assert promo.service().handle(promo.completed(job, 0.93)) is Outcome.APPLIED

    run = promo.run(job)
    assert run.decision is RunDecision.PROMOTED
    assert run.reason.startswith("Promoted: validation:auc 0.93 vs 0.9 deployed")
    assert (run.best_objective, run.deployed_objective) == (0.93, 0.90)
    assert run.deployed_model_job_id == DEPLOYED_JOB
    assert run.best_training_job_name.startswith(job.tuning_job_name)
    assert run.decided_at is not None
    version = promo.models.get("acme", job.job_id)
    assert version.validation_key == HOLDOUT
    assert version.approval_status is ModelApprovalStatus.APPROVED
    [decision] = version.decisions
    assert decision.status is ModelApprovalStatus.APPROVED
    assert decision.by == "retraining:weekly"
    assert decision.comment == run.reason
    assert package_of(promo, job)["ModelApprovalStatus"] == "Approved"
    deployment = promo.deployments.get("acme", "thermostat")
    assert deployment.status is DeploymentStatus.PENDING
    assert deployment.model_job_id == job.job_id
    assert deployment.serving_model_job_id == DEPLOYED_JOB, "the old version serves until swap"
    assert deployment.request_id == run.deployment_request_id
    assert run.deployment_request_id == deployment_request_id("acme", run.run_id)
    [sent] = promo.requests()
    request = DeploymentRequest.model_validate_json(sent["Body"])
    assert request.action.value == "deploy"
    assert request.model_job_id == job.job_id
    assert request.request_id == run.deployment_request_id
    assert request.kind.value == "realtime"
    assert request.realtime.instance_type == "ml.m5.large"
    assert request.submitted_by == "retraining:weekly"
    assert promo.policies.get("acme", "weekly").last_tuning_job_id == job.job_id
    assert service_module.metrics.metric_set["RetrainingPromoted"]["Value"] == [1.0]


def test_the_promotion_is_notified_with_the_policy_and_its_link(promo: Any) -> None:
    job = promo.start()

    promo.service().handle(promo.completed(job, 0.93))

    [notification] = promo.notifications()
    assert notification.policy_id == "weekly"
    assert notification.link == "/retraining/weekly"
    assert notification.deployment_id == "thermostat"
    assert notification.subject == "Retraining weekly: promoted"
    assert notification.notification_id.endswith(f"#{job.job_id}#retraining-promoted")
    assert notification.published
    assert "validation:auc 0.93 vs 0.9 deployed" in notification.message
    assert "https://portal.example.com/retraining/weekly" in notification.message


@pytest.mark.parametrize(
    ("auc", "margin", "verdict"),
    [
        (0.90, 0.0, "no improvement"),
        (0.85, 0.0, "no improvement"),
        (0.92, 0.05, "improvement below the margin"),
    ],
)
def test_an_equal_worse_or_small_improvement_is_rejected_with_the_comparison(
    promo: Any, auc: float, margin: float, verdict: str
) -> None:
    promo.set_policy(margin=margin)
    job = promo.start()

    promo.service().handle(promo.completed(job, auc))

    run = promo.run(job)
    assert run.decision is RunDecision.REJECTED
    assert run.reason.startswith(f"Rejected, {verdict}: validation:auc {auc:g} vs 0.9 deployed")
    assert f"margin {margin:g}" in run.reason
    package = package_of(promo, job)
    assert package["ModelApprovalStatus"] == "Rejected"
    assert package["ApprovalDescription"] == run.reason
    version = promo.models.get("acme", job.job_id)
    assert version.approval_status is ModelApprovalStatus.REJECTED
    assert version.decisions[0].by == "retraining:weekly"
    assert promo.deployments.get("acme", "thermostat").status is DeploymentStatus.IN_SERVICE
    assert promo.deployments.get("acme", "thermostat").model_job_id == DEPLOYED_JOB
    assert promo.requests() == []
    assert run.deployment_request_id is None
    assert promo.policies.get("acme", "weekly").last_tuning_job_id == job.job_id
    [notification] = promo.notifications()
    assert notification.subject == "Retraining weekly: rejected"
    assert run.reason in notification.message
    assert service_module.metrics.metric_set["RetrainingRejected"]["Value"] == [1.0]


def test_an_improvement_beyond_the_margin_promotes(promo: Any) -> None:
    promo.set_policy(margin=0.05)
    job = promo.start()

    promo.service().handle(promo.completed(job, 0.96))

    assert promo.run(job).decision is RunDecision.PROMOTED


def test_a_missing_objective_is_rejected(promo: Any) -> None:
    job = promo.start()

    promo.service().handle(promo.completed(job, None))

    run = promo.run(job)
    assert run.decision is RunDecision.REJECTED
    assert "reported no validation:auc" in run.reason
    assert package_of(promo, job)["ModelApprovalStatus"] == "Rejected"
    assert promo.requests() == []


def test_a_best_job_of_the_warm_start_parent_is_rejected(promo: Any, platform: Any) -> None:
    """SageMaker's BestTrainingJob is the tuning job's own; should a parent's ever come back,
    the run found nothing better."""
    job = promo.start()
    promo.service(RETRAINING_POLICIES_TABLE="", RETRAINING_RUNS_TABLE="").handle(
        promo.completed(job, 0.99)
    )
    version = promo.models.get("acme", job.job_id)
    record = platform.jobs.get("acme", job.job_id)
    promotion = promo.service().promotion
    assert promotion is not None

    run = promotion.on_registered(
        record, version.model_copy(update={"training_job_name": "tune-parent-001-00000001"})
    )

    assert run is not None and run.decision is RunDecision.REJECTED
    assert "beat its warm-start parent" in run.reason
    assert package_of(promo, job)["ModelApprovalStatus"] == "Rejected"


def test_a_model_measured_on_another_validation_channel_waits_for_the_tenant(
    promo: Any,
) -> None:
    job = promo.start()
    promo.models.table.update_item(
        Key={"tenant_id": "acme", "job_id": DEPLOYED_JOB},
        UpdateExpression="SET validation_key = :other",
        ExpressionAttributeValues={":other": "tenants/acme/datasets/other-holdout/"},
    )

    promo.service().handle(promo.completed(job, 0.99))

    run = promo.run(job)
    assert run.decision is RunDecision.WAITING
    assert "measured on another validation channel" in run.reason
    version = promo.models.get("acme", job.job_id)
    assert version.approval_status is ModelApprovalStatus.PENDING
    assert version.decisions == []
    assert package_of(promo, job)["ModelApprovalStatus"] == "PendingManualApproval"
    assert promo.requests() == []
    assert promo.policies.get("acme", "weekly").last_tuning_job_id == job.job_id
    [notification] = promo.notifications()
    assert notification.subject == "Retraining weekly: waiting"
    assert service_module.metrics.metric_set["RetrainingWaiting"]["Value"] == [1.0]


def test_approval_mode_leaves_a_better_model_waiting(promo: Any) -> None:
    promo.set_policy(promotion=PromotionMode.APPROVAL)
    job = promo.start()

    promo.service().handle(promo.completed(job, 0.99))

    run = promo.run(job)
    assert run.decision is RunDecision.WAITING
    assert run.reason.startswith("Better, waiting for approval")
    assert promo.models.get("acme", job.job_id).approval_status is ModelApprovalStatus.PENDING
    assert promo.deployments.get("acme", "thermostat").status is DeploymentStatus.IN_SERVICE
    assert promo.requests() == []


def test_a_redelivered_event_neither_decides_nor_deploys_twice(promo: Any) -> None:
    job = promo.start()
    service = promo.service()
    done = promo.completed(job, 0.93)
    service.handle(done)
    first = promo.run(job)
    assert len(promo.requests()) == 1

    assert service.handle(done) is Outcome.STALE

    again = promo.run(job)
    assert again.decision is RunDecision.PROMOTED
    assert again.decided_at == first.decided_at
    assert again.deployment_request_id == first.deployment_request_id
    assert promo.requests() == []
    assert len(promo.models.get("acme", job.job_id).decisions) == 1
    assert len(promo.notifications()) == 1
    assert service_module.metrics.metric_set["RetrainingPromoted"]["Value"] == [1.0]


def test_a_busy_deployment_is_retried_then_deployed(
    promo: Any, deploy_kit: Any, platform: Any
) -> None:
    job = promo.start()
    deploy_kit.started(DEPLOYED_JOB, 1)  # a tenant's own update is in flight
    promo.requests()
    queue = platform.queue_url("job-events")
    service = promo.service(JOB_EVENTS_QUEUE_URL=queue)
    service.sqs = MagicMock(wraps=platform.sqs)
    done = promo.completed(job, 0.93)

    with pytest.raises(DeploymentBusyError):
        service.handle(done)

    service.sqs.change_message_visibility.assert_called_once_with(
        QueueUrl=queue, ReceiptHandle=done.receipt_handle, VisibilityTimeout=60
    )

    run = promo.run(job)
    assert run.decision is RunDecision.PROMOTED
    assert run.deployment_request_id is None
    assert promo.requests() == []
    assert promo.notifications() == [], "told once the promotion is under way"

    serving(promo.deployments)
    assert service.handle(done) is Outcome.STALE

    run = promo.run(job)
    deployment = promo.deployments.get("acme", "thermostat")
    assert deployment.status is DeploymentStatus.PENDING
    assert deployment.model_job_id == job.job_id
    assert run.deployment_request_id == deployment.request_id
    [sent] = promo.requests()
    assert json.loads(sent["Body"])["model_job_id"] == job.job_id
    assert len(promo.notifications()) == 1
    assert len(promo.models.get("acme", job.job_id).decisions) == 1


def test_an_interrupted_promotion_sends_the_submitted_request(promo: Any) -> None:
    """The first attempt submitted the deployment but stopped before the send: the
    redelivery sends it and records it."""
    job = promo.start()
    service = promo.service()
    done = promo.completed(job, 0.93)
    assert service.promotion is not None
    service.promotion.deployment_requests_queue_url = None
    service.handle(done)
    promo.runs.update(
        "acme",
        promo.run(job).run_id,
        lambda current: current.model_copy(update={"deployment_request_id": None}),
    )

    fixed = promo.service()
    fixed.handle(done)

    [sent] = promo.requests()
    assert json.loads(sent["Body"])["request_id"] == promo.run(job).deployment_request_id


def test_a_failed_tuning_job_fails_the_run(promo: Any, sample: Any, jobs_kit: Any) -> None:
    job = promo.start()
    event = sample.tuning(
        job.tuning_job_name,
        "Failed",
        sample.T0,
        tags=jobs_kit.tags(job),
        failed=6,
        FailureReason="All training jobs failed",
    )
    service = promo.service()

    service.handle(event)
    service.handle(event)

    run = promo.run(job)
    assert run.decision is RunDecision.FAILED
    assert run.reason == "The tuning job failed: All training jobs failed."
    assert promo.models.get("acme", job.job_id) is None
    assert promo.requests() == []
    assert promo.policies.get("acme", "weekly").last_tuning_job_id == DEPLOYED_JOB
    [notification] = promo.notifications()
    assert notification.subject == "Retraining weekly: failed"
    assert notification.link == "/retraining/weekly"
    assert notification.status is JobStatus.FAILED
    assert service_module.metrics.metric_set["RetrainingFailed"]["Value"] == [1.0]


def test_a_stopped_tuning_job_fails_the_run(promo: Any, sample: Any, jobs_kit: Any) -> None:
    job = promo.start()
    best = jobs_kit.trial_job(job, 1)
    jobs_kit.set_best(job, best, 0.99)

    promo.service().handle(
        sample.tuning(job.tuning_job_name, "Stopped", sample.T0, tags=jobs_kit.tags(job))
    )

    run = promo.run(job)
    assert run.decision is RunDecision.FAILED
    assert "stopped" in run.reason
    assert promo.deployments.get("acme", "thermostat").status is DeploymentStatus.IN_SERVICE


def test_without_the_retraining_tables_a_retraining_job_is_an_ordinary_job(
    promo: Any,
) -> None:
    job = promo.start()

    promo.service(RETRAINING_POLICIES_TABLE="", RETRAINING_RUNS_TABLE="").handle(
        promo.completed(job, 0.99)
    )

    assert promo.run(job).decision is RunDecision.RUNNING
    assert promo.models.get("acme", job.job_id).approval_status is ModelApprovalStatus.PENDING
    assert promo.notifications() == []


def test_a_model_that_cannot_be_registered_fails_the_run(
    promo: Any, sample: Any, jobs_kit: Any
) -> None:
    job = promo.start()  # moto's placeholder best job: no such training job to register
    done = sample.tuning(
        job.tuning_job_name, "Completed", sample.T0, tags=jobs_kit.tags(job), completed=5
    )

    assert promo.service().handle(done) is Outcome.DEAD_LETTERED

    run = promo.run(job)
    assert run.decision is RunDecision.FAILED
    assert run.reason == "The model could not be registered: no training job FakeTrainingJobName."
    [notification] = promo.notifications()
    assert notification.subject == "Retraining weekly: failed"
    assert len(jobs_kit.dead_letters()) == 1
