"""A tenant's retraining policies: create, edit, pause, resume, delete; their runs.

The portal writes the :class:`RetrainingPolicy` record with the tenant's credentials first (a
new ``request_id`` on every change, ``schedule_state`` PENDING, the trigger ``token`` once at
creation), then sends a :class:`PolicyRequest` to the retraining-requests queue; the retraining
handler makes the policy's EventBridge Scheduler schedule match the record and acts only on the
record's latest request id. A request that never reached the queue leaves the record FAILED with
a reason, so it never stays PENDING for nothing.

A new policy's defaults come from the deployment's serving model: its model version (algorithm,
the dataset's folder, the validation channel) and its tuning job (the search without warm start,
the static hyperparameters, instance and runtime). The policy is checked by the contract's
validators and, as a representative training request, against the tenant's quota, so what the
schedule launches later is what the tenant could submit today.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from training_common import (
    CatalogRepository,
    DataSelection,
    Deployment,
    DeploymentStatus,
    Job,
    JobKind,
    ModelVersion,
    Page,
    PolicyAction,
    PolicyRequest,
    PolicyStatus,
    PromotionMode,
    RetrainingPolicy,
    RetrainingRun,
    RunDecision,
    ScheduleState,
    TrainingRequest,
    TuningStrategy,
    WarmStartType,
    datasets_prefix,
    describe_schema_errors,
    is_policy_id,
    is_tenant_dataset_key,
    new_request_id,
    new_trigger_token,
    retraining_job_id,
    schedule_expression_problem,
    timezone_problem,
    utc_now,
    validate_request,
    warm_start_problem,
)
from training_common.repositories import RetrainingPolicyRepository, RetrainingRunRepository
from training_common.validation import TRANSIENT_PROBLEMS

from ..aws import TenantAws
from ..errors import BadRequest, Conflict, NotFound, Unavailable
from ..settings import PortalSettings
from . import deployments, forms
from .feedback import labelled_prefix

log = logging.getLogger("portal.retraining")

POLICIES_PAGE_SIZE = 50
RUNS_PAGE_SIZE = 25
"""Runs per page of a policy's history."""

QUEUE_FAILURE = "The portal could not queue the request; save the policy again."
NO_WARM_START = "none"
"""The form's value for "search from scratch every run"."""

PROMOTION_RULE = (
    "A retrained model replaces the deployed one only when its objective, measured on the same "
    "validation channel, is better by more than zero and by at least the margin; an equal score "
    "never promotes."
)

MODEL_DECISIONS = frozenset({RunDecision.PROMOTED, RunDecision.REJECTED, RunDecision.WAITING})
"""Decisions of a run whose model was registered (so the run links to its model page)."""


@dataclass(frozen=True)
class Source:
    """What a new policy for a deployment starts from: its serving model and that model's job.

    ``problem`` says why the deployment can't be retrained (then the form explains it)."""

    deployment: Deployment
    model: ModelVersion | None
    job: Job | None
    problem: str | None

    @property
    def tuned(self) -> bool:
        return self.problem is None and self.job is not None and self.job.tuning is not None


def policies(aws: TenantAws) -> RetrainingPolicyRepository:
    if aws.retraining_policies is None:
        raise Unavailable("Retraining is not set up in this environment.")
    return aws.retraining_policies


def runs_repository(aws: TenantAws) -> RetrainingRunRepository:
    if aws.retraining_runs is None:
        raise Unavailable("Retraining is not set up in this environment.")
    return aws.retraining_runs


def queue_url(settings: PortalSettings) -> str:
    if not settings.retraining_requests_queue_url:
        raise Unavailable("Retraining is not set up in this environment.")
    return settings.retraining_requests_queue_url


def list_page(aws: TenantAws, token: str | None) -> Page[RetrainingPolicy]:
    """One page of the tenant's policies, by name (PageTokenError: 400)."""
    return policies(aws).list_page(aws.tenant_id, limit=POLICIES_PAGE_SIZE, token=token or None)


def get(aws: TenantAws, policy_id: str) -> RetrainingPolicy:
    """The tenant's policy; NotFound for any other (another tenant's looks like a missing one:
    the key is under the session's tenant, which IAM pins)."""
    if not is_policy_id(policy_id):
        raise NotFound(f"You have no retraining policy called {policy_id[:64]!r}.")
    policy = policies(aws).get(aws.tenant_id, policy_id)
    if policy is None:
        raise NotFound(f"You have no retraining policy called {policy_id!r}.")
    return policy


def runs_page(aws: TenantAws, policy: RetrainingPolicy, token: str | None) -> Page[RetrainingRun]:
    """One page of the policy's runs, newest first (PageTokenError: 400)."""
    return runs_repository(aws).list_page(
        aws.tenant_id, policy.policy_id, limit=RUNS_PAGE_SIZE, token=token or None
    )


def policy_json(policy: RetrainingPolicy) -> dict[str, Any]:
    """The policy for JSON callers, without the trigger token (the schedule's secret)."""
    return policy.model_dump(mode="json", exclude={"token"})


def is_live(policy: RetrainingPolicy, runs: list[RetrainingRun]) -> bool:
    """True while the page should refresh itself: the schedule or a run is still changing."""
    return policy.schedule_state == ScheduleState.PENDING or any(
        run.decision == RunDecision.RUNNING for run in runs
    )


# --- defaults from the deployment -----------------------------------------------------------


def source(aws: TenantAws, deployment_id: str) -> Source:
    """The deployment (NotFound if not the tenant's), its serving model and that model's job."""
    deployment = deployments.get(aws, deployment_id)
    if deployment.status == DeploymentStatus.DELETED:
        return Source(deployment, None, None, f"Deployment {deployment_id} was undeployed.")
    job_id = deployment.serving_model_job_id
    if not job_id:
        return Source(
            deployment,
            None,
            None,
            f"Deployment {deployment_id} serves no model yet; set up retraining once it is "
            "in service.",
        )
    model = aws.models.get(aws.tenant_id, job_id)
    job = aws.jobs.get(aws.tenant_id, job_id)
    if model is None or job is None:
        return Source(
            deployment, model, job, f"The serving model's job {job_id} is no longer recorded."
        )
    if job.kind != JobKind.TUNING or job.tuning is None:
        return Source(
            deployment,
            model,
            job,
            "Retraining needs a tuned model: the deployed model comes from a training job, not a "
            "hyperparameter tuning job, so there is no search to repeat and warm-start. Deploy "
            "the model of a tuning job first.",
        )
    return Source(deployment, model, job, None)


def _folder(key: str) -> str:
    return key if key.endswith("/") else key.rpartition("/")[0] + "/"


def default_dataset_prefix(aws: TenantAws, src: Source) -> str:
    """The deployed model's dataset folder; for a model a retraining run trained on selected
    objects (a manifest), that run's policy's dataset prefix."""
    if src.model is None:
        return ""
    folder = _folder(src.model.dataset_key)
    if folder.startswith(datasets_prefix(aws.tenant_id)):
        return folder
    if src.job is not None and src.job.retraining is not None and aws.retraining_policies:
        parent = aws.retraining_policies.get(aws.tenant_id, src.job.retraining.policy_id)
        if parent is not None:
            return parent.dataset_prefix
    return ""


def default_warm_start(src: Source) -> WarmStartType | None:
    """TransferLearning, unless the search can't be warm-started (Grid/Hyperband, or too many
    training jobs with the parent's)."""
    if src.job is None or src.job.tuning is None:
        return None
    tuning = src.job.tuning
    if tuning.strategy in {TuningStrategy.GRID, TuningStrategy.HYPERBAND}:
        return None
    if warm_start_problem(tuning, tuning.max_training_jobs):
        return None
    return WarmStartType.TRANSFER_LEARNING


def form_defaults(aws: TenantAws, settings: PortalSettings, src: Source) -> dict[str, str]:
    """The new-policy form's prefilled values."""
    validation = ""
    if src.model is not None and src.model.validation_key:
        validation = src.model.validation_key
    elif src.job is not None and src.job.validation_key:
        validation = src.job.validation_key
    warm = default_warm_start(src)
    return {
        "deployment_id": src.deployment.deployment_id,
        "policy_id": src.deployment.deployment_id,
        "schedule_expression": settings.default_schedule,
        "schedule_timezone": settings.default_timezone,
        "flexible_window_minutes": str(settings.flexible_window_minutes),
        "dataset_prefix": default_dataset_prefix(aws, src),
        "data_selection": DataSelection.NEW_SINCE_LAST_RUN.value,
        "validation_key": validation,
        "include_feedback": "on",
        "warm_start": warm.value if warm else NO_WARM_START,
        "margin": "0",
        "promotion": PromotionMode.AUTOMATIC.value,
    }


def policy_values(policy: RetrainingPolicy) -> dict[str, str]:
    """The edit form's values: the policy as it is."""
    return {
        "deployment_id": policy.deployment_id,
        "policy_id": policy.policy_id,
        "schedule_expression": policy.schedule_expression,
        "schedule_timezone": policy.schedule_timezone,
        "flexible_window_minutes": str(policy.flexible_window_minutes),
        "dataset_prefix": policy.dataset_prefix,
        "data_selection": policy.data_selection.value,
        "validation_key": policy.validation_key,
        "include_feedback": "on" if policy.feedback_prefix else "",
        "warm_start": policy.warm_start.value if policy.warm_start else NO_WARM_START,
        "margin": f"{policy.margin:g}",
        "promotion": policy.promotion.value,
    }


# --- the form ---------------------------------------------------------------------------------


class _Problems:
    """Collects every field's problem, so the form lists them all at once."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def check(self, parse: Callable[[], Any]) -> Any:
        try:
            return parse()
        except BadRequest as error:
            self.messages.append(error.message)
            return None


def _dataset_field(tenant_id: str, form: dict[str, str], name: str, label: str) -> str:
    value = forms.required(form, name, label)
    if not value.startswith("tenants/"):
        value = f"{datasets_prefix(tenant_id)}{value.strip('/')}"
    if not value.endswith("/"):
        value += "/"
    if not is_tenant_dataset_key(tenant_id, value):
        raise BadRequest(
            f"{label} {value[:120]!r} is not one of your datasets: give a folder under "
            f"'{datasets_prefix(tenant_id)}'."
        )
    return value


def _schedule(form: dict[str, str]) -> str:
    value = forms.required(form, "schedule_expression", "Schedule")
    problem = schedule_expression_problem(value)
    if problem:
        raise BadRequest(f"Schedule {value[:80]!r}: {problem}.")
    return value


def _timezone(form: dict[str, str]) -> str:
    value = forms.required(form, "schedule_timezone", "Time zone")
    problem = timezone_problem(value)
    if problem:
        raise BadRequest(f"Time zone: {problem}.")
    return value


def _margin(form: dict[str, str]) -> float:
    if not form.get("margin", "").strip():
        return 0.0
    value = forms.number(form, "margin", "Margin")
    if value < 0:
        raise BadRequest("Margin must be zero or more (in the objective's own units).")
    return value


def _warm_start(form: dict[str, str]) -> WarmStartType | None:
    raw = form.get("warm_start", "").strip()
    if not raw or raw == NO_WARM_START:
        return None
    return forms.choice(form, "warm_start", "Warm start", WarmStartType)


def _flexible_window(form: dict[str, str], default: int) -> int:
    if not form.get("flexible_window_minutes", "").strip():
        return default
    return forms.integer(
        form, "flexible_window_minutes", "Flexible window (minutes)", minimum=0, maximum=1440
    )


def settings_from_form(
    tenant_id: str, deployment_id: str, form: dict[str, str], default_window: int
) -> dict[str, Any]:
    """The fields of a policy that the form sets; BadRequest listing every malformed one."""
    problems = _Problems()
    fields: dict[str, Any] = {
        "schedule_expression": problems.check(lambda: _schedule(form)),
        "schedule_timezone": problems.check(lambda: _timezone(form)),
        "flexible_window_minutes": problems.check(lambda: _flexible_window(form, default_window)),
        "dataset_prefix": problems.check(
            lambda: _dataset_field(tenant_id, form, "dataset_prefix", "Training data")
        ),
        "data_selection": problems.check(
            lambda: forms.choice(
                form,
                "data_selection",
                "Data selection",
                DataSelection,
                DataSelection.NEW_SINCE_LAST_RUN,
            )
        ),
        "validation_key": problems.check(
            lambda: _dataset_field(tenant_id, form, "validation_key", "Validation channel")
        ),
        "feedback_prefix": (
            labelled_prefix(tenant_id, deployment_id)
            if forms.checkbox(form, "include_feedback")
            else None
        ),
        "warm_start": problems.check(lambda: _warm_start(form)),
        "margin": problems.check(lambda: _margin(form)),
        "promotion": problems.check(
            lambda: forms.choice(
                form, "promotion", "Promotion", PromotionMode, PromotionMode.AUTOMATIC
            )
        ),
    }
    if problems.messages:
        raise BadRequest("The policy is invalid.", details=problems.messages)
    return fields


def _validated(data: dict[str, Any]) -> RetrainingPolicy:
    try:
        return RetrainingPolicy.model_validate(data)
    except ValidationError as error:
        raise BadRequest(
            "The policy is invalid.",
            details=[line.removeprefix("Value error, ") for line in describe_schema_errors(error)],
        ) from error


def check_quota(aws: TenantAws, catalog: CatalogRepository, policy: RetrainingPolicy) -> None:
    """The tenant's quota and the catalog, applied to the training request a run would send
    today (BadRequest listing every problem; a full running-jobs quota is not one: runs wait)."""
    tenant = aws.tenants.get(aws.tenant_id)
    now = utc_now()
    try:
        request = TrainingRequest(
            tenant_id=aws.tenant_id,
            job_id=retraining_job_id(aws.tenant_id, policy.policy_id, now),
            algorithm_id=policy.algorithm_id,
            dataset_key=policy.dataset_prefix,
            hyperparameters=policy.hyperparameters,
            instance_type=policy.instance_type,
            instance_count=policy.instance_count,
            max_runtime_seconds=policy.max_runtime_seconds,
            submitted_by=f"retraining:{policy.policy_id}",
            submitted_at=now,
            tuning=policy.tuning,
            validation_key=policy.validation_key,
        )
    except ValidationError as error:
        raise BadRequest(
            "The policy's runs could not be requested.", details=describe_schema_errors(error)
        ) from error
    result = validate_request(
        request,
        tenant=tenant,
        algorithm=catalog.get(policy.algorithm_id),
        running_jobs=0,
    )
    problems = [p.message for p in result.problems if p.code not in TRANSIENT_PROBLEMS]
    if problems:
        raise BadRequest("The policy's runs could not launch as set up.", details=problems)


def _check_warm_start(policy: RetrainingPolicy, parent: Job | None) -> None:
    if policy.warm_start is None or parent is None or parent.tuning is None:
        return
    problem = warm_start_problem(policy.tuning, parent.tuning.max_training_jobs)
    if problem:
        raise BadRequest(
            "The policy is invalid.",
            details=[f"Warm start is not possible: {problem}; choose no warm start."],
        )


def new_policy(
    aws: TenantAws,
    settings: PortalSettings,
    catalog: CatalogRepository,
    form: dict[str, str],
    by: str,
) -> RetrainingPolicy:
    """The policy the new-policy form describes, for the deployment it names (BadRequest
    naming every problem; NotFound for a deployment that isn't the tenant's)."""
    deployment_id = forms.required(form, "deployment_id", "Deployment")
    src = source(aws, deployment_id)
    if src.problem is not None or src.job is None or src.job.tuning is None:
        raise BadRequest(src.problem or "Retraining needs a tuned model.")
    policy_id = forms.required(form, "policy_id", "Policy name").lower()
    if not is_policy_id(policy_id):
        raise BadRequest(
            "Policy name must be 3 to 32 lower-case letters and digits, starting with a letter."
        )
    fields = settings_from_form(
        aws.tenant_id, deployment_id, form, settings.flexible_window_minutes
    )
    job = src.job
    assert job.tuning is not None
    now = utc_now()
    policy = _validated(
        {
            "tenant_id": aws.tenant_id,
            "policy_id": policy_id,
            "deployment_id": deployment_id,
            "algorithm_id": job.algorithm_id,
            "hyperparameters": dict(job.hyperparameters),
            "tuning": job.tuning.model_copy(update={"warm_start": None}),
            "instance_type": job.instance_type,
            "instance_count": job.instance_count,
            "max_runtime_seconds": job.max_runtime_seconds,
            "status": PolicyStatus.ACTIVE,
            "request_id": new_request_id(),
            "token": new_trigger_token(),
            "schedule_state": ScheduleState.PENDING,
            "last_tuning_job_id": job.job_id,
            "created_at": now,
            "updated_at": now,
            "submitted_by": by,
            **fields,
        }
    )
    _check_warm_start(policy, job)
    check_quota(aws, catalog, policy)
    return policy


def create(aws: TenantAws, queue: str, policy: RetrainingPolicy) -> RetrainingPolicy:
    """Write the new policy (Conflict for a name in use, even a deleted one: its runs keep the
    name), then queue its apply request."""
    stored, created = policies(aws).put_if_absent(policy)
    if not created:
        raise Conflict(
            f"You already have a retraining policy called {policy.policy_id} "
            f"({stored.status.value}); choose another name."
        )
    return _send(aws, queue, stored, PolicyAction.APPLY, policy.submitted_by, stored.status)


# --- changes ----------------------------------------------------------------------------------


def _refuse_busy(policy: RetrainingPolicy) -> None:
    if policy.status == PolicyStatus.DELETING:
        raise Conflict(f"Policy {policy.policy_id} is being deleted; it can't be changed any more.")
    if policy.status == PolicyStatus.DELETED:
        raise Conflict(f"Policy {policy.policy_id} was deleted; only its history remains.")


def _renewed(current: RetrainingPolicy, **changes: Any) -> RetrainingPolicy:
    """``current`` with ``changes``, a new request id and the schedule PENDING, validated."""
    data = current.model_dump()
    data.update(changes)
    data.update(
        request_id=new_request_id(),
        schedule_state=ScheduleState.PENDING,
        failure_reason=None,
        updated_at=utc_now(),
    )
    return _validated(data)


def edit(
    aws: TenantAws,
    settings: PortalSettings,
    catalog: CatalogRepository,
    policy_id: str,
    form: dict[str, str],
    by: str,
) -> RetrainingPolicy:
    """Change the schedule, data, validation channel, warm start, margin or promotion mode of a
    policy (the search and the instances stay the deployed model's); queue an apply request."""
    current = get(aws, policy_id)
    _refuse_busy(current)
    fields = settings_from_form(
        aws.tenant_id, current.deployment_id, form, current.flexible_window_minutes
    )
    candidate = _renewed(current, **fields)
    parent = (
        aws.jobs.get(aws.tenant_id, current.last_tuning_job_id)
        if current.last_tuning_job_id
        else None
    )
    _check_warm_start(candidate, parent)
    check_quota(aws, catalog, candidate)

    def change(record: RetrainingPolicy) -> RetrainingPolicy | None:
        _refuse_busy(record)
        return _renewed(record, **fields)

    return _change(aws, queue_url(settings), policy_id, change, PolicyAction.APPLY, by)


def pause(aws: TenantAws, queue: str, policy_id: str, by: str) -> RetrainingPolicy:
    """Disable the schedule (the record says PAUSED; no run starts until resumed)."""
    return _switch(aws, queue, policy_id, by, PolicyStatus.PAUSED, "is already paused")


def resume(aws: TenantAws, queue: str, policy_id: str, by: str) -> RetrainingPolicy:
    """Enable the schedule again."""
    return _switch(aws, queue, policy_id, by, PolicyStatus.ACTIVE, "is not paused")


def _switch(
    aws: TenantAws, queue: str, policy_id: str, by: str, status: PolicyStatus, already: str
) -> RetrainingPolicy:
    """Set an ACTIVE or PAUSED policy to ``status`` and queue the apply request; Conflict when it
    is there already (``already`` says so) or the policy is being deleted."""
    current = get(aws, policy_id)
    _refuse_busy(current)
    if current.status == status:
        raise Conflict(f"Policy {policy_id} {already}.")

    def change(record: RetrainingPolicy) -> RetrainingPolicy | None:
        _refuse_busy(record)
        return _renewed(record, status=status)

    return _change(aws, queue, policy_id, change, PolicyAction.APPLY, by)


def delete(aws: TenantAws, queue: str, policy_id: str, by: str) -> RetrainingPolicy:
    """Mark the policy DELETING and queue the delete request (the schedule goes; the runs stay)."""
    current = get(aws, policy_id)
    _refuse_busy(current)

    def change(record: RetrainingPolicy) -> RetrainingPolicy | None:
        _refuse_busy(record)
        return _renewed(record, status=PolicyStatus.DELETING)

    return _change(aws, queue, policy_id, change, PolicyAction.DELETE, by, current.status)


def _change(
    aws: TenantAws,
    queue: str,
    policy_id: str,
    change: Callable[[RetrainingPolicy], RetrainingPolicy | None],
    action: PolicyAction,
    by: str,
    previous: PolicyStatus | None = None,
) -> RetrainingPolicy:
    stored = policies(aws).update(aws.tenant_id, policy_id, change)
    if stored is None:
        raise NotFound(f"You have no retraining policy called {policy_id!r}.")
    return _send(aws, queue, stored, action, by, previous or stored.status)


def _send(
    aws: TenantAws,
    queue: str,
    policy: RetrainingPolicy,
    action: PolicyAction,
    by: str,
    previous: PolicyStatus,
) -> RetrainingPolicy:
    request = PolicyRequest(
        action=action,
        tenant_id=policy.tenant_id,
        policy_id=policy.policy_id,
        request_id=policy.request_id,
        submitted_by=by,
        submitted_at=utc_now(),
    )
    try:
        aws.sqs.send_message(
            QueueUrl=queue,
            MessageBody=request.to_message_body(),
            MessageAttributes={
                "tenant_id": {"DataType": "String", "StringValue": request.tenant_id},
                "policy_id": {"DataType": "String", "StringValue": request.policy_id},
            },
        )
    except Exception:
        policies(aws).update(aws.tenant_id, policy.policy_id, _failed(request.request_id, previous))
        raise
    log.info(
        "retraining request queued",
        extra={
            "tenant_id": request.tenant_id,
            "policy_id": request.policy_id,
            "action": action.value,
            "request_id": request.request_id,
        },
    )
    return policy


def _failed(
    request_id: str, previous: PolicyStatus
) -> Callable[[RetrainingPolicy], RetrainingPolicy | None]:
    """The change that marks a record whose request never reached the queue FAILED, with the
    status it had before (a delete that was never sent leaves the policy changeable)."""

    def change(current: RetrainingPolicy) -> RetrainingPolicy | None:
        if current.request_id != request_id or current.schedule_state != ScheduleState.PENDING:
            return None
        return current.model_copy(
            update={
                "status": previous,
                "schedule_state": ScheduleState.FAILED,
                "failure_reason": QUEUE_FAILURE,
            }
        )

    return change
