"""Promotion: what happens to a retraining run's model once its tuning job has ended.

``on_registered(job, version)`` after the run's model is registered (tuning job Completed):

1. The candidate is the version's objective value; the incumbent is the objective of the version
   the deployment serves (``serving_model_job_id``), by the same metric name. They are
   comparable when both were measured on the same held-out ``validation_key``; the candidate
   counts only when its best training job is the run's own (a warm-started tuning job's best
   may be a parent's). :func:`training_common.decide` says PROMOTED, REJECTED or WAITING.
2. The decision is stored on the run first, conditional on the run still being RUNNING, so a
   redelivered event never decides twice; then it is applied (again on a redelivery: every step
   is idempotent):

   - PROMOTED: an :class:`~training_common.ApprovalDecision` by ``retraining:<policy>`` on the
     version (``ModelRepository.record_decision``, as the portal's approval does), then
     ``UpdateModelPackage`` Approved, then a :class:`DeploymentRequest` (deploy, the
     deployment's own kind and capacity) through ``DeploymentRepository.submit`` and the
     deployment-requests queue. Its request id derives from the run, and the run records it,
     so the request is submitted once. A busy deployment raises :class:`DeploymentBusyError`:
     the event is delivered again later, and the request submitted then.
   - REJECTED: the same with ``Rejected`` and the comparison as ``ApprovalDescription``.
   - WAITING: the version stays pending; the tenant decides in the portal.

   The approval status the platform set is written to the version's record at once, dated just
   before the call (so SageMaker's own state-change event, later, still applies): the deploy
   handler then finds the version approved.
3. The policy's ``last_tuning_job_id`` becomes the job (the next run warm-starts from it), and
   the tenant is notified once (the id derives from the run's ``decided_at``).

``on_job_ended(job, reason)`` for a run whose tuning job failed, was stopped, completed without
a model, or whose model could not be registered: the run becomes FAILED with the reason, and
the tenant is notified.

Metrics: ``RetrainingPromoted``, ``RetrainingRejected``, ``RetrainingWaiting``,
``RetrainingFailed``, each counted when the run takes that decision.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import ClientError
from training_common import (
    ApprovalDecision,
    Job,
    JobKind,
    JobStatus,
    ModelApprovalStatus,
    ModelRepository,
    ModelVersion,
    Notification,
    PolicyStatus,
    PromotionMode,
    RetrainingPolicy,
    RetrainingPolicyRepository,
    RetrainingRun,
    RetrainingRunRepository,
    RunDecision,
    decide,
    iso_utc,
    utc_now,
)
from training_common.deployments import (
    Deployment,
    DeploymentAction,
    DeploymentRequest,
    DeploymentStatus,
)
from training_common.repositories import DeploymentRepository

from .notify import Notifier
from .telemetry import logger, metrics

APPLIED_DECISIONS = frozenset({RunDecision.PROMOTED, RunDecision.REJECTED, RunDecision.WAITING})
"""Decisions about a registered model (applied again on a redelivery)."""
GONE_DEPLOYMENT_STATUSES = frozenset({DeploymentStatus.UNDEPLOYING, DeploymentStatus.DELETED})
_REQUEST_NAMESPACE = uuid.UUID("0b6f5c1e-8d0a-4c57-9a3e-6d1f2e7c4b90")
_MAX_COMMENT = 1000


class DeploymentBusyError(Exception):
    """The deployment has a request in flight: retry the event later, then submit."""


def deployment_request_id(tenant_id: str, run_id: str) -> str:
    """The promoted run's deployment request id (32 hex digits), the same on every delivery."""
    return uuid.uuid5(_REQUEST_NAMESPACE, f"{tenant_id}\0{run_id}").hex


def objective_of(version: ModelVersion, metric: str) -> float | None:
    """The version's value of ``metric``: its objective when it is that metric, else the final
    metric of that name (a plain training job's model has no objective)."""
    if version.objective is not None and version.objective.name == metric:
        value = version.objective.value
    else:
        value = version.metric(metric)
    return None if value is None or not math.isfinite(value) else value


def decided_by(policy_id: str) -> str:
    return f"retraining:{policy_id}"


@dataclass
class PromotionService:
    """Decides and applies retraining runs' outcomes; clients and repositories are injected.

    ``deployments`` None (no ``DEPLOYMENTS_TABLE``): nothing serves, so nothing compares and
    every registered run waits for the tenant. ``deployment_requests_queue_url`` None: the
    request is submitted on the record but not sent (logged)."""

    policies: RetrainingPolicyRepository
    runs: RetrainingRunRepository
    models: ModelRepository
    deployments: DeploymentRepository | None
    notifier: Notifier
    sagemaker: Any
    sqs: Any
    deployment_requests_queue_url: str | None = None

    # Entry points ------------------------------------------------------------------------

    def on_registered(self, job: Job, version: ModelVersion) -> RetrainingRun | None:
        """Decide about a retraining run's registered model and apply the decision. The run
        (None when the job is no retraining run, or its run is unknown). Raises
        DeploymentBusyError (retry later) and AWS errors."""
        run = self._run_of(job)
        if run is None:
            return None
        assert job.retraining is not None
        with logger.append_context_keys(policy_id=run.policy_id, run_id=run.run_id):
            policy = self.policies.get(job.tenant_id, job.retraining.policy_id)
            if run.decision == RunDecision.RUNNING:
                run = self._decide(job, version, run, policy)
            if run.decision not in APPLIED_DECISIONS:
                logger.info("Run already settled", decision=run.decision.value)
                return run
            run = self._apply(version, run)
            self._advance_policy(policy, job)
            self._notify(job, run)
            return run

    def on_job_ended(self, job: Job, reason: str | None = None) -> RetrainingRun | None:
        """A retraining run's job ended without a model to decide about: the run is FAILED
        with ``reason`` (else one from the job's status), and the tenant is told."""
        run = self._run_of(job)
        if run is None:
            return None
        with logger.append_context_keys(policy_id=run.policy_id, run_id=run.run_id):
            if run.decision == RunDecision.RUNNING:
                why = reason or ended_reason(job)
                now = utc_now()

                def change(current: RetrainingRun) -> RetrainingRun | None:
                    if current.decision != RunDecision.RUNNING:
                        return None
                    return current.model_copy(
                        update={
                            "decision": RunDecision.FAILED,
                            "reason": why,
                            "decided_at": now,
                            "tuning_job_name": current.tuning_job_name or job.tuning_job_name,
                        }
                    )

                updated = self.runs.update(run.tenant_id, run.run_id, change)
                if updated is not None:
                    metrics.add_metric(name="RetrainingFailed", unit=MetricUnit.Count, value=1)
                    logger.info("Retraining run failed", reason=why)
                run = updated or self.runs.get(run.tenant_id, run.run_id) or run
            if run.decision == RunDecision.FAILED:
                self._notify(job, run)
            return run

    # Deciding ----------------------------------------------------------------------------

    def _run_of(self, job: Job) -> RetrainingRun | None:
        link = job.retraining
        if link is None:
            return None
        run = self.runs.get(job.tenant_id, link.run_id)
        if run is None or (run.job_id is not None and run.job_id != job.job_id):
            logger.warning(
                "Retraining job without its run", run_id=link.run_id, policy_id=link.policy_id
            )
            return None
        return run

    def _decide(
        self,
        job: Job,
        version: ModelVersion,
        run: RetrainingRun,
        policy: RetrainingPolicy | None,
    ) -> RetrainingRun:
        metric = run.objective_metric
        candidate = objective_of(version, metric)
        incumbent_version = self._serving_version(run)
        incumbent = None if incumbent_version is None else objective_of(incumbent_version, metric)
        comparable = (
            incumbent_version is not None
            and version.validation_key is not None
            and version.validation_key == incumbent_version.validation_key
        )
        tuning_job_name = run.tuning_job_name or job.tuning_job_name
        from_this_run = tuning_job_name is None or version.training_job_name.lower().startswith(
            tuning_job_name.lower()
        )
        # A deleted (or half-deleted) policy deploys nothing by itself any more.
        mode = (
            policy.promotion
            if policy is not None and policy.status in {PolicyStatus.ACTIVE, PolicyStatus.PAUSED}
            else PromotionMode.APPROVAL
        )
        verdict = decide(
            metric=metric,
            objective_type=run.objective_type,
            candidate=candidate,
            incumbent=incumbent,
            margin=run.margin,
            mode=mode,
            comparable=comparable,
            candidate_from_this_run=from_this_run,
        )
        now = utc_now()
        facts: dict[str, Any] = {
            "decision": verdict.decision,
            "reason": verdict.reason,
            "decided_at": now,
            "best_objective": candidate,
            "best_training_job_name": version.training_job_name,
            "tuning_job_name": tuning_job_name,
        }
        if incumbent_version is not None:
            facts["deployed_model_job_id"] = incumbent_version.job_id
            facts["deployed_objective"] = incumbent

        def change(current: RetrainingRun) -> RetrainingRun | None:
            if current.decision != RunDecision.RUNNING:
                return None
            return current.model_copy(update=facts)

        updated = self.runs.update(run.tenant_id, run.run_id, change)
        if updated is None:
            logger.info("Run decided meanwhile; applying the stored decision")
            return self.runs.get(run.tenant_id, run.run_id) or run
        metrics.add_metric(
            name=f"Retraining{verdict.decision.value.title()}", unit=MetricUnit.Count, value=1
        )
        logger.info(
            "Retraining run decided",
            decision=verdict.decision.value,
            candidate=candidate,
            incumbent=incumbent,
            comparable=comparable,
        )
        return updated

    def _serving_version(self, run: RetrainingRun) -> ModelVersion | None:
        """The version the run's deployment serves now (None: nothing serves)."""
        deployment = self._deployment(run)
        if deployment is None or deployment.status in GONE_DEPLOYMENT_STATUSES:
            return None
        job_id = deployment.serving_model_job_id
        return None if job_id is None else self.models.get(run.tenant_id, job_id)

    def _deployment(self, run: RetrainingRun) -> Deployment | None:
        if self.deployments is None:
            return None
        return self.deployments.get(run.tenant_id, run.deployment_id)

    # Applying ----------------------------------------------------------------------------

    def _apply(self, version: ModelVersion, run: RetrainingRun) -> RetrainingRun:
        if run.decision == RunDecision.WAITING:
            return run
        status = (
            ModelApprovalStatus.APPROVED
            if run.decision == RunDecision.PROMOTED
            else ModelApprovalStatus.REJECTED
        )
        decided = self._set_status(version, run, status)
        if run.decision == RunDecision.PROMOTED and decided:
            return self._deploy(version, run)
        return run

    def _set_status(
        self, version: ModelVersion, run: RetrainingRun, status: ModelApprovalStatus
    ) -> bool:
        """Record the platform's decision on the version and tell SageMaker; False when the
        version was decided otherwise (by the tenant) and is left alone."""
        by = decided_by(run.policy_id)
        current = self.models.get(version.tenant_id, version.job_id) or version
        if current.approval_status == status:
            return True
        if current.approval_status != ModelApprovalStatus.PENDING or not current.model_package_arn:
            logger.warning("Version not pending approval", status=current.approval_status.value)
            return False
        decision = ApprovalDecision(
            status=status,
            by=by,
            at=run.decided_at or utc_now(),
            comment=(run.reason or "")[:_MAX_COMMENT],
        )
        if not current.decisions and not self.models.record_decision(
            current.tenant_id, current.job_id, decision
        ):
            current = self.models.get(current.tenant_id, current.job_id) or current
        if current.decisions and (
            current.decisions[-1].by != by or current.decisions[-1].status != status
        ):
            logger.warning("The tenant decided about the version first; left alone")
            return False
        before = utc_now()
        try:
            self.sagemaker.update_model_package(
                ModelPackageArn=current.model_package_arn,
                ModelApprovalStatus=status.value,
                ApprovalDescription=decision.comment,
            )
        except ClientError:
            self.models.withdraw_decision(current.tenant_id, current.job_id)
            raise
        self.models.apply_status_event(current.tenant_id, current.job_id, status, before)
        logger.info("Version decided", status=status.value, model_package=current.model_package_arn)
        return True

    def _deploy(self, version: ModelVersion, run: RetrainingRun) -> RetrainingRun:
        """Submit and send the deploy request once: a run that records its request id is done
        (a redelivery sends nothing); a record that already holds the request (an attempt that
        stopped after the submit) is sent, unless the deploy handler has taken it up."""
        if run.deployment_request_id is not None:
            return run
        request_id = deployment_request_id(run.tenant_id, run.run_id)
        deployment = self._deployment(run)
        if deployment is None or deployment.status in GONE_DEPLOYMENT_STATUSES:
            logger.warning("Deployment gone; the approved version is not deployed")
            return self._note(
                run,
                f"The deployment {run.deployment_id} is no longer in service, so the approved "
                "version was not deployed.",
            )
        request = DeploymentRequest(
            action=DeploymentAction.DEPLOY,
            tenant_id=run.tenant_id,
            deployment_id=run.deployment_id,
            request_id=request_id,
            model_job_id=version.job_id,
            kind=deployment.kind,
            realtime=deployment.realtime,
            serverless=deployment.serverless,
            submitted_by=decided_by(run.policy_id),
            submitted_at=utc_now(),
        )
        if deployment.request_id != request_id:
            assert self.deployments is not None
            submitted = self.deployments.submit(request)
            if submitted is None:
                logger.info("Deployment busy; retrying later", status=deployment.status.value)
                metrics.add_metric(
                    name="RetrainingDeploymentsDeferred", unit=MetricUnit.Count, value=1
                )
                raise DeploymentBusyError(
                    f"deployment {run.deployment_id} is {deployment.status.value}: the promoted "
                    "version is deployed once it settles"
                )
            deployment = submitted
        if deployment.status == DeploymentStatus.PENDING:
            self._send(request)

        def change(current: RetrainingRun) -> RetrainingRun | None:
            if current.deployment_request_id is not None:
                return None
            return current.model_copy(update={"deployment_request_id": request_id})

        return self.runs.update(run.tenant_id, run.run_id, change) or run

    def _send(self, request: DeploymentRequest) -> None:
        if not self.deployment_requests_queue_url:
            logger.warning("No DEPLOYMENT_REQUESTS_QUEUE_URL: the deploy request is not sent")
            return
        self.sqs.send_message(
            QueueUrl=self.deployment_requests_queue_url, MessageBody=request.to_message_body()
        )
        logger.info("Deploy request sent", deployment_request_id=request.request_id)

    def _note(self, run: RetrainingRun, sentence: str) -> RetrainingRun:
        def change(current: RetrainingRun) -> RetrainingRun | None:
            if current.reason and sentence in current.reason:
                return None
            return current.model_copy(update={"reason": f"{current.reason} {sentence}".strip()})

        return self.runs.update(run.tenant_id, run.run_id, change) or run

    def _advance_policy(self, policy: RetrainingPolicy | None, job: Job) -> None:
        """The next run warm-starts from this run's tuning job."""
        if policy is None or job.kind != JobKind.TUNING:
            return

        def change(current: RetrainingPolicy) -> RetrainingPolicy | None:
            if current.last_tuning_job_id == job.job_id:
                return None
            return current.model_copy(update={"last_tuning_job_id": job.job_id})

        self.policies.update(policy.tenant_id, policy.policy_id, change)

    # Telling the tenant ------------------------------------------------------------------

    def _notify(self, job: Job, run: RetrainingRun) -> Notification:
        decided_at: datetime = run.decided_at or job.updated_at
        word = run.decision.value.lower()
        page = self.notifier.portal_url(f"/retraining/{run.policy_id}")
        slot = iso_utc(run.slot)
        lines = [f"Retraining policy {run.policy_id}, run of {slot} (job {job.job_id}): {word}."]
        if run.reason:
            lines.append(run.reason)
        if run.decision == RunDecision.PROMOTED:
            lines.append(
                f"The new version is approved in your model registry and replaces the one "
                f"deployment {run.deployment_id} serves (blue/green, rolled back on alarms)."
            )
        elif run.decision == RunDecision.REJECTED:
            lines.append(
                f"The new version is rejected in your model registry; deployment "
                f"{run.deployment_id} keeps its model."
            )
        elif run.decision == RunDecision.WAITING:
            lines.append("The new version waits for your decision in the model registry.")
        else:
            lines.append(f"Deployment {run.deployment_id} keeps its model.")
        lines.append(f"The policy's runs and decisions: {page}.")
        return self.notifier.deliver(
            Notification(
                tenant_id=job.tenant_id,
                notification_id=f"{Notification.make_id(iso_utc(decided_at), job.job_id)}"
                f"#retraining-{word}",
                job_id=job.job_id,
                status=job.status,
                subject=f"Retraining {run.policy_id}: {word}"[:100],
                message="\n".join(lines),
                created_at=decided_at,
                deployment_id=run.deployment_id,
                policy_id=run.policy_id,
                link=f"/retraining/{run.policy_id}",
            )
        )


def ended_reason(job: Job) -> str:
    """Why a run whose job ended without a model to compare failed, for the tenant."""
    if job.status == JobStatus.FAILED:
        return f"The tuning job failed: {job.failure_reason or 'SageMaker gave no reason'}."
    if job.status == JobStatus.STOPPED:
        return "The tuning job was stopped before it finished, so no model was compared."
    return "The tuning job ended without a training job that reported the objective."
