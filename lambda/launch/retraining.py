"""A retraining policy's trigger becomes (at most) one warm-started tuning job per slot.

The launch handler (``launch.service``) hands every training-requests message with
``is_retraining_trigger(body)`` to :meth:`RetrainingPlanner.plan`, which says what to do with it
(:class:`Planned`): launch the :class:`~training_common.TrainingRequest` it built (the job and
run records are written by then) through the normal launch path, or acknowledge it (a run
SKIPPED, or the policy not active), or dead-letter it (forged, stale). The local simulator
(``portal/local/simulator.py``) calls the same planner.

Constructing it needs no Lambda globals::

    planner = RetrainingPlanner.from_tables(
        session=session,  # a boto3.Session (None: a new one)
        policies_table="retraining-policies",
        runs_table="retraining-runs",
        jobs_table="jobs",
        models_table="models",
        deployments_table="deployments",
        tenants_table="tenants",
        data_bucket="data-bucket",
        data_key_arn="arn:aws:kms:...",  # SSE-KMS of the manifests (None: bucket default)
    )
    planned = planner.plan(RetrainingTrigger.model_validate_json(body), utc_now())
    if planned.outcome is PlanOutcome.LAUNCH:
        ...  # check_request(planned.request, ...) and launch it; on a rejection:
        planner.fail_run(tenant_id, planned.run.run_id, reason, job_id=planned.request.job_id)

or the dataclass itself with the repositories and an S3 client.

Idempotent per policy and slot: the job id is :func:`~training_common.retraining_job_id`, the run
and the job are written only when absent, and a delivery for a slot whose job exists rebuilds the
request from the job record (never from the policy, which may have been edited since), so it
matches the record and launches at most once.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from pydantic import ValidationError
from training_common import (
    MAX_TRIGGER_AGE_HOURS,
    DataSelection,
    DatasetType,
    DeploymentRepository,
    DeploymentStatus,
    Job,
    JobAlreadyExistsError,
    JobKind,
    JobRepository,
    ModelRepository,
    PolicyStatus,
    RetrainingLink,
    RetrainingPolicy,
    RetrainingPolicyRepository,
    RetrainingRun,
    RetrainingRunRepository,
    RetrainingTrigger,
    RunDecision,
    TenantRepository,
    TenantStatus,
    TrainingRequest,
    TuningSpec,
    WarmStart,
    describe_schema_errors,
    feedback_prefix,
    is_tenant_dataset_key,
    iso_utc,
    manifest_key,
    new_session,
    retraining_job_id,
    run_id,
    s3_uri,
    tenant_prefix,
    tuning_job_name,
    utc_now,
    warm_start_problem,
)
from training_common.validation import is_retraining_manifest_key

logger = Logger(child=True)

FORGED_REASON = "retraining trigger does not match a policy"
MAX_FUTURE_MINUTES = 10
"""A trigger's slot may be this far ahead of the handler's clock (clock skew), no further."""
TENANT_SUSPENDED_REASON = "tenant suspended"
MAX_MANIFEST_ENTRIES = 100_000
"""The most objects one run trains on (a manifest of a few MB)."""


class PlanOutcome(StrEnum):
    """What the launch handler does with a trigger."""

    LAUNCH = "LAUNCH"
    """Launch :attr:`Planned.request` (its job and run records exist)."""
    SKIPPED = "SKIPPED"
    """Acknowledge: the run is recorded SKIPPED with the reason, nothing launched."""
    FORGED = "FORGED"
    """Dead-letter: no such policy, or the token does not match."""
    IGNORED = "IGNORED"
    """Acknowledge: the policy is not active (paused or being deleted); no run recorded."""
    STALE = "STALE"
    """Dead-letter: the slot is too old, or in the future."""


@dataclass(frozen=True)
class Planned:
    """The planner's answer for one trigger."""

    outcome: PlanOutcome
    reason: str = ""
    request: TrainingRequest | None = None
    run: RetrainingRun | None = None


@dataclass(frozen=True)
class DataChoice:
    """The training channel of a run: a prefix, or a manifest of selected objects."""

    dataset_key: str
    dataset_type: DatasetType
    objects: int | None = None


@dataclass
class RetrainingPlanner:
    """Turns triggers into runs and requests; every repository and client is injected."""

    policies: RetrainingPolicyRepository
    runs: RetrainingRunRepository
    jobs: JobRepository
    models: ModelRepository
    deployments: DeploymentRepository
    tenants: TenantRepository
    s3: Any
    data_bucket: str
    data_key_arn: str | None = None
    """The KMS key of the manifests (SSE-KMS); None: the bucket's default encryption."""
    max_trigger_age_hours: int = MAX_TRIGGER_AGE_HOURS

    @classmethod
    def from_tables(
        cls,
        *,
        session: boto3.Session | None = None,
        policies_table: str,
        runs_table: str,
        jobs_table: str,
        models_table: str,
        deployments_table: str,
        tenants_table: str,
        data_bucket: str,
        data_key_arn: str | None = None,
        max_trigger_age_hours: int = MAX_TRIGGER_AGE_HOURS,
        s3: Any = None,
    ) -> RetrainingPlanner:
        """The planner over the tables called so, with clients from ``session`` (``s3``: an S3
        client to share, else a new one)."""
        session = session or new_session()
        return cls(
            policies=RetrainingPolicyRepository.from_table_name(policies_table, session),
            runs=RetrainingRunRepository.from_table_name(runs_table, session),
            jobs=JobRepository.from_table_name(jobs_table, session),
            models=ModelRepository.from_table_name(models_table, session),
            deployments=DeploymentRepository.from_table_name(deployments_table, session),
            tenants=TenantRepository.from_table_name(tenants_table, session),
            s3=s3 if s3 is not None else session.client("s3"),
            data_bucket=data_bucket,
            data_key_arn=data_key_arn,
            max_trigger_age_hours=max_trigger_age_hours,
        )

    # -- the plan --------------------------------------------------------------------------

    def plan(self, trigger: RetrainingTrigger, now: datetime) -> Planned:
        """What to do with ``trigger`` at ``now`` (see :class:`PlanOutcome`)."""
        policy = self._policy_of(trigger)
        if policy is None:
            return Planned(PlanOutcome.FORGED, FORGED_REASON)
        slot = trigger.slot
        key = run_id(policy.policy_id, slot)
        existing = self._existing_request(trigger)
        if existing is not None:  # a redelivery (or a deferral) of a slot that has its job
            return Planned(PlanOutcome.LAUNCH, "", existing, self.runs.get(policy.tenant_id, key))
        if slot > now + timedelta(minutes=MAX_FUTURE_MINUTES):
            return Planned(
                PlanOutcome.STALE, f"retraining trigger for {iso_utc(slot)} is in the future"
            )
        if slot < now - timedelta(hours=self.max_trigger_age_hours):
            return Planned(
                PlanOutcome.STALE,
                f"retraining trigger for {iso_utc(slot)} is older than "
                f"{self.max_trigger_age_hours} hours",
            )
        recorded = self.runs.get(policy.tenant_id, key)
        if recorded is not None and recorded.decision == RunDecision.SKIPPED:
            return Planned(PlanOutcome.SKIPPED, recorded.reason or "", None, recorded)
        if policy.status != PolicyStatus.ACTIVE:
            return Planned(
                PlanOutcome.IGNORED, f"policy {policy.policy_id} is {policy.status.value}"
            )
        return self._plan_run(policy, slot, now)

    def _policy_of(self, trigger: RetrainingTrigger) -> RetrainingPolicy | None:
        """The trigger's policy when the token matches it (compared in constant time)."""
        policy = self.policies.get(trigger.tenant_id, trigger.policy_id)
        if policy is None or not hmac.compare_digest(policy.token.encode(), trigger.token.encode()):
            return None
        return policy

    def request_of(self, trigger: RetrainingTrigger) -> TrainingRequest | None:
        """The request of the trigger's slot from its job record, when the trigger matches its
        policy and the job exists (for the launch handler's last-receive bookkeeping)."""
        if self._policy_of(trigger) is None:
            return None
        return self._existing_request(trigger)

    def _existing_request(self, trigger: RetrainingTrigger) -> TrainingRequest | None:
        job = self.jobs.get(
            trigger.tenant_id,
            retraining_job_id(trigger.tenant_id, trigger.policy_id, trigger.slot),
        )
        return None if job is None else request_from_job(job)

    def _plan_run(self, policy: RetrainingPolicy, slot: datetime, now: datetime) -> Planned:
        tenant = self.tenants.get(policy.tenant_id)
        if tenant is None or tenant.status == TenantStatus.SUSPENDED:
            return self._skip(policy, slot, now, TENANT_SUSPENDED_REASON)
        deployment = self.deployments.get(policy.tenant_id, policy.deployment_id)
        if deployment is None or deployment.status != DeploymentStatus.IN_SERVICE:
            state = "gone" if deployment is None else deployment.status.value
            return self._skip(
                policy,
                slot,
                now,
                f"deployment {policy.deployment_id} is not in service ({state})",
            )
        serving = deployment.serving_model_job_id
        model = self.models.get(policy.tenant_id, serving) if serving else None
        if model is None:
            return self._skip(
                policy,
                slot,
                now,
                f"the model deployment {policy.deployment_id} serves is not in the registry",
            )
        data = self._select_data(policy, slot)
        if data is None:
            since = (
                f"since {iso_utc(policy.last_run_slot)}"
                if policy.last_run_slot is not None
                else "yet"
            )
            where = policy.dataset_prefix + (
                f" or {policy.feedback_prefix}" if policy.feedback_prefix else ""
            )
            return self._skip(policy, slot, now, f"no new data {since} under {where}")
        job_id = retraining_job_id(policy.tenant_id, policy.policy_id, slot)
        key = run_id(policy.policy_id, slot)
        tuning, warm_note = self._tuning_of(policy)
        try:
            request = TrainingRequest(
                tenant_id=policy.tenant_id,
                job_id=job_id,
                algorithm_id=policy.algorithm_id,
                dataset_key=data.dataset_key,
                dataset_type=data.dataset_type,
                hyperparameters=dict(policy.hyperparameters),
                instance_type=policy.instance_type,
                instance_count=policy.instance_count,
                max_runtime_seconds=policy.max_runtime_seconds,
                submitted_by=f"retraining:{policy.policy_id}",
                submitted_at=slot,
                tuning=tuning,
                validation_key=policy.validation_key,
                retraining=RetrainingLink(policy_id=policy.policy_id, run_id=key),
            )
        except ValidationError as error:
            return self._skip(
                policy,
                slot,
                now,
                "the policy does not make a valid training request: "
                + "; ".join(describe_schema_errors(error)),
            )
        objective = model.objective
        run = RetrainingRun(
            tenant_id=policy.tenant_id,
            run_id=key,
            policy_id=policy.policy_id,
            slot=slot,
            deployment_id=policy.deployment_id,
            job_id=job_id,
            tuning_job_name=tuning_job_name(job_id),
            decision=RunDecision.RUNNING,
            reason=warm_note,
            objective_metric=policy.objective_metric,
            objective_type=policy.tuning.objective_type,
            margin=policy.margin,
            deployed_model_job_id=serving,
            deployed_objective=(
                objective.value
                if objective is not None and objective.name == policy.objective_metric
                else None
            ),
            training_objects=data.objects,
            created_at=now,
            updated_at=now,
        )
        stored_run, _ = self.runs.put_if_absent(run)
        try:
            self.jobs.create(Job.from_request(request))
        except JobAlreadyExistsError:  # a concurrent delivery won: launch what it recorded
            job = self.jobs.get(policy.tenant_id, job_id)
            if job is not None:
                request = request_from_job(job)
        self._advance_last_run_slot(policy, slot)
        logger.info(
            "Retraining run planned",
            tenant_id=policy.tenant_id,
            policy_id=policy.policy_id,
            run_id=key,
            job_id=job_id,
            dataset_type=request.dataset_type.value,
            warm_start=None if tuning.warm_start is None else tuning.warm_start.type.value,
        )
        return Planned(PlanOutcome.LAUNCH, warm_note or "", request, stored_run)

    def _tuning_of(self, policy: RetrainingPolicy) -> tuple[TuningSpec, str | None]:
        """The run's tuning spec: the policy's, warm-started from ``last_tuning_job_id`` when
        the policy asks for a warm start and SageMaker's limits allow it (else a note why not)."""
        tuning = policy.tuning.model_copy(update={"warm_start": None})
        if policy.warm_start is None or policy.last_tuning_job_id is None:
            return tuning, None
        parent = self.jobs.get(policy.tenant_id, policy.last_tuning_job_id)
        if parent is None or parent.kind != JobKind.TUNING or parent.tuning is None:
            return tuning, (
                f"No warm start: job {policy.last_tuning_job_id} is not a tuning job of yours."
            )
        problem = warm_start_problem(policy.tuning, parent.tuning.max_training_jobs)
        if problem is not None:
            return tuning, f"No warm start: {problem}."
        warm = WarmStart(type=policy.warm_start, parent_job_ids=(policy.last_tuning_job_id,))
        return policy.tuning.model_copy(update={"warm_start": warm}), None

    def _skip(
        self, policy: RetrainingPolicy, slot: datetime, now: datetime, reason: str
    ) -> Planned:
        run = RetrainingRun(
            tenant_id=policy.tenant_id,
            run_id=run_id(policy.policy_id, slot),
            policy_id=policy.policy_id,
            slot=slot,
            deployment_id=policy.deployment_id,
            decision=RunDecision.SKIPPED,
            reason=reason,
            objective_metric=policy.objective_metric,
            objective_type=policy.tuning.objective_type,
            margin=policy.margin,
            created_at=now,
            updated_at=now,
            decided_at=now,
        )
        stored, _ = self.runs.put_if_absent(run)
        logger.info(
            "Retraining run skipped",
            tenant_id=policy.tenant_id,
            policy_id=policy.policy_id,
            run_id=run.run_id,
            reason=reason,
        )
        return Planned(PlanOutcome.SKIPPED, stored.reason or reason, None, stored)

    def _advance_last_run_slot(self, policy: RetrainingPolicy, slot: datetime) -> None:
        def forward(current: RetrainingPolicy) -> RetrainingPolicy | None:
            if current.last_run_slot is not None and current.last_run_slot >= slot:
                return None
            return current.model_copy(update={"last_run_slot": slot})

        self.policies.update(policy.tenant_id, policy.policy_id, forward)

    # -- data selection ----------------------------------------------------------------------

    def _select_data(self, policy: RetrainingPolicy, slot: datetime) -> DataChoice | None:
        """The run's training channel; None when there is nothing (new) to train on."""
        if policy.data_selection == DataSelection.WHOLE_PREFIX and not policy.feedback_prefix:
            return DataChoice(policy.dataset_prefix, DatasetType.S3_PREFIX)
        since = (
            policy.last_run_slot
            if policy.data_selection == DataSelection.NEW_SINCE_LAST_RUN
            else None
        )
        keys = [
            key
            for key, modified in self._objects(policy.dataset_prefix)
            if since is None or modified > since
        ]
        if policy.feedback_prefix:
            keys.extend(key for key, _ in self._objects(policy.feedback_prefix))
        own = tenant_prefix(policy.tenant_id)
        keys = [
            key
            for key in dict.fromkeys(keys)
            if key.startswith(own)
            and (
                is_tenant_dataset_key(policy.tenant_id, key)
                or key.startswith(feedback_prefix(policy.tenant_id))
            )
            and not key.startswith(policy.validation_key)
        ][:MAX_MANIFEST_ENTRIES]
        if not keys:
            return None
        key = manifest_key(policy.tenant_id, policy.policy_id, slot)
        manifest: list[Any] = [{"prefix": s3_uri(self.data_bucket, own)}]
        manifest.extend(item[len(own) :] for item in keys)
        extra: dict[str, str] = {"ServerSideEncryption": "aws:kms"}
        if self.data_key_arn:
            extra["SSEKMSKeyId"] = self.data_key_arn
        self.s3.put_object(
            Bucket=self.data_bucket,
            Key=key,
            Body=json.dumps(manifest).encode(),
            ContentType="application/json",
            **extra,
        )
        return DataChoice(key, DatasetType.MANIFEST_FILE, len(keys))

    def _objects(self, prefix: str) -> Iterator[tuple[str, datetime]]:
        """Every object under ``prefix`` in the data bucket (not folder markers)."""
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.data_bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                key = str(item["Key"])
                if not key.endswith("/"):
                    yield key, item["LastModified"]

    # -- failures ------------------------------------------------------------------------------

    def fail_run(
        self, tenant_id: str, run_key: str, reason: str, *, job_id: str | None = None
    ) -> RetrainingRun | None:
        """Mark a RUNNING run FAILED with ``reason`` (the job's, tenant-readable). With
        ``job_id``, only the run of that job. The updated run, or None (none, or decided)."""

        def failed(run: RetrainingRun) -> RetrainingRun | None:
            if run.decision != RunDecision.RUNNING or (job_id is not None and run.job_id != job_id):
                return None
            return run.model_copy(
                update={
                    "decision": RunDecision.FAILED,
                    "reason": reason,
                    "decided_at": utc_now(),
                }
            )

        updated = self.runs.update(tenant_id, run_key, failed)
        if updated is not None:
            logger.info("Retraining run failed", tenant_id=tenant_id, run_id=run_key, reason=reason)
        return updated


def request_from_job(job: Job) -> TrainingRequest:
    """The request a job record was created from (a retraining run's: the planner's)."""
    return TrainingRequest(
        tenant_id=job.tenant_id,
        job_id=job.job_id,
        algorithm_id=job.algorithm_id,
        dataset_key=job.dataset_key,
        dataset_type=job.dataset_type,
        hyperparameters=dict(job.hyperparameters),
        instance_type=job.instance_type,
        instance_count=job.instance_count,
        max_runtime_seconds=job.max_runtime_seconds,
        use_spot=job.use_spot,
        submitted_by=job.submitted_by,
        submitted_at=job.created_at,
        tuning=job.tuning,
        validation_key=job.validation_key,
        retraining=job.retraining,
    )


def manifest_problem(s3: Any, bucket: str, request: TrainingRequest) -> str | None:
    """Why the manifest a ``ManifestFile`` request names may not be trained on, or None.

    A tenant session can write objects under its own prefix, so the launch handler reads the
    manifest before SageMaker does: it must be a JSON list whose ``prefix`` is the tenant's own
    prefix in the data bucket, followed by keys of the tenant's datasets or feedback.
    """
    if request.dataset_type != DatasetType.MANIFEST_FILE:
        return None
    if not is_retraining_manifest_key(request.tenant_id, request.dataset_key):
        return f"The manifest '{request.dataset_key}' is not one of your retraining manifests."
    try:
        body = s3.get_object(Bucket=bucket, Key=request.dataset_key)["Body"].read()
        manifest = json.loads(body)
    except s3.exceptions.NoSuchKey:
        return f"The manifest '{request.dataset_key}' does not exist."
    except ValueError:
        return f"The manifest '{request.dataset_key}' is not JSON."
    own = tenant_prefix(request.tenant_id)
    if (
        not isinstance(manifest, list)
        or len(manifest) < 2
        or manifest[0] != {"prefix": s3_uri(bucket, own)}
    ):
        return (
            f"The manifest '{request.dataset_key}' must start with your prefix "
            f"{s3_uri(bucket, own)} and list at least one object."
        )
    for entry in manifest[1:]:
        key = f"{own}{entry}" if isinstance(entry, str) else ""
        if not (
            is_tenant_dataset_key(request.tenant_id, key)
            or (
                key.startswith(feedback_prefix(request.tenant_id))
                and all(part not in {"", ".", ".."} for part in key[len(own) :].split("/"))
            )
        ):
            return (
                f"The manifest '{request.dataset_key}' lists {str(entry)[:100]!r}, which is "
                "not one of your datasets or feedback files."
            )
    return None


__all__ = [
    "FORGED_REASON",
    "TENANT_SUSPENDED_REASON",
    "DataChoice",
    "PlanOutcome",
    "Planned",
    "RetrainingPlanner",
    "manifest_problem",
    "request_from_job",
]
