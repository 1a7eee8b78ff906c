"""Continuous retraining: a tenant's policy for a deployment, the schedule that triggers it, each
run, and the rule that promotes a retrained model only when it beats the one in service.

A tenant is data here too: a policy is a record in ``RETRAINING_POLICIES_TABLE`` and an
EventBridge Scheduler schedule that the retraining handler creates at run time in the platform's
schedule group, never a template resource.

- The portal (a tenant session) writes the :class:`RetrainingPolicy` and sends a
  :class:`PolicyRequest` to ``RETRAINING_REQUESTS_QUEUE``; the retraining handler
  (``lambda/retraining``) creates, updates, disables or deletes the schedule to match the record.
- The schedule sends a :class:`RetrainingTrigger` (:func:`trigger_input`, with the slot filled in
  by EventBridge Scheduler's ``<aws.scheduler.scheduled-time>``) to the training-requests queue.
  The launch handler turns it into a warm-started tuning job (``launch.retraining``): one job per
  policy and slot (:func:`retraining_job_id`), so a schedule that fires twice launches once.
- ``RETRAINING_RUNS_TABLE`` holds a :class:`RetrainingRun` per policy and slot
  (``run_id = <policy>#<slot>``, so a policy's history is one ``begins_with`` query, oldest
  first). When the run's model is registered the job-events handler applies :func:`decide`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .ids import TENANT_ID_PATTERN, UtcDatetime, is_tenant_id, iso_utc
from .keys import tenant_prefix
from .tuning import (
    MAX_TUNING_TRAINING_JOBS,
    ObjectiveType,
    TuningSpec,
    TuningStrategy,
    WarmStartType,
)

POLICY_ID_PATTERN = r"^[a-z][a-z0-9]{2,31}$"
"""Like a deployment id: no hyphen, so the schedule name ``<tenant>-<policy>`` is injective."""
_POLICY_ID_RE = re.compile(POLICY_ID_PATTERN)
DEFAULT_SCHEDULE = "cron(0 3 ? * MON *)"
"""Weekly, Mondays at 03:00 in the policy's time zone."""
DEFAULT_TIMEZONE = "UTC"
SCHEDULED_TIME_PLACEHOLDER = "<aws.scheduler.scheduled-time>"
"""EventBridge Scheduler's context attribute, replaced by the slot's time in the target input."""
TRIGGER_TYPE: Literal["retraining"] = "retraining"
RUNS_BY_POLICY_SEPARATOR = "#"
MAX_TRIGGER_AGE_HOURS = 48
"""A trigger for a slot older than this is refused (a replayed or forged message); Scheduler
itself gives up on a delivery after 24 hours."""

_RATE = re.compile(r"^rate\((?P<value>[1-9][0-9]{0,3}) (?P<unit>minutes?|hours?|days?)\)$")
_CRON = re.compile(r"^cron\((?P<fields>[^()]+)\)$")
_CRON_MINUTE = re.compile(r"^[0-5]?[0-9]$")


class DataSelection(StrEnum):
    """Which objects of the dataset prefix a run trains on."""

    NEW_SINCE_LAST_RUN = "new"
    """Objects modified after the previous run's slot (the whole prefix on the first run)."""
    WHOLE_PREFIX = "all"


class PromotionMode(StrEnum):
    """What happens to a retrained model that beats the deployed one."""

    AUTOMATIC = "automatic"
    """Approved in the registry and deployed (blue/green) by the platform."""
    APPROVAL = "approval"
    """Left ``PendingManualApproval``: the tenant approves and deploys it in the portal."""


class PolicyStatus(StrEnum):
    """A policy's state; the retraining handler makes the schedule match it."""

    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    DELETING = "DELETING"
    DELETED = "DELETED"


class ScheduleState(StrEnum):
    """What the retraining handler last made of the policy's schedule."""

    PENDING = "PENDING"
    """The request is queued; the schedule may not match the record yet."""
    ENABLED = "ENABLED"
    DISABLED = "DISABLED"
    ABSENT = "ABSENT"
    FAILED = "FAILED"
    """The schedule could not be applied; ``failure_reason`` says why."""


class PolicyAction(StrEnum):
    APPLY = "apply"
    """Create or update the schedule from the record (enabled when ACTIVE, disabled when PAUSED)."""
    DELETE = "delete"
    """Delete the schedule and mark the record DELETED (its runs stay in the history)."""


class RunDecision(StrEnum):
    """Where a run stands, and what was decided about its model."""

    RUNNING = "RUNNING"
    """The tuning job was requested; no decision yet."""
    SKIPPED = "SKIPPED"
    """Nothing was launched (tenant suspended, no new data, deployment gone); ``reason`` says."""
    FAILED = "FAILED"
    """The tuning job failed, or its model could not be registered."""
    PROMOTED = "PROMOTED"
    """Better by the margin and promoted automatically: approved and sent for deployment."""
    REJECTED = "REJECTED"
    """Registered and rejected in the registry, with the comparison as the reason."""
    WAITING = "WAITING"
    """Registered, pending the tenant's approval (approval mode, or no comparable objective)."""


FINAL_DECISIONS: frozenset[RunDecision] = frozenset(
    {
        RunDecision.SKIPPED,
        RunDecision.FAILED,
        RunDecision.PROMOTED,
        RunDecision.REJECTED,
        RunDecision.WAITING,
    }
)


def schedule_expression_problem(expression: str) -> str | None:
    """Why ``expression`` is not a schedule the platform runs, or None when it is.

    ``rate(n minutes|hours|days)`` of at least an hour, or a six-field ``cron(...)`` whose
    minutes field is one number (so it fires at most hourly); one-time ``at(...)`` schedules are
    not retraining policies.
    """
    rate = _RATE.fullmatch(expression)
    if rate:
        value, unit = int(rate["value"]), rate["unit"]
        if (value == 1) != (not unit.endswith("s")):
            return f"write rate({value} {unit.rstrip('s') if value == 1 else unit + 's'})"
        if unit.startswith("minute") and value < 60:
            return "a retraining schedule runs at most once an hour: use 60 minutes or more"
        return None
    cron = _CRON.fullmatch(expression)
    if cron:
        fields = cron["fields"].split()
        if len(fields) != 6:
            return (
                "a cron expression has six fields: "
                "minutes hours day-of-month month day-of-week year"
            )
        if not _CRON_MINUTE.fullmatch(fields[0]):
            return "the minutes field must be one number (0-59): a policy runs at most once an hour"
        if fields[2] != "?" and fields[4] != "?":
            return "give either day-of-month or day-of-week, and ? for the other"
        return None
    return "expected rate(...) or cron(...), for example " + DEFAULT_SCHEDULE


def timezone_problem(name: str) -> str | None:
    """Why ``name`` is not an IANA time zone, or None."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin or UTC"
    return None


def is_policy_id(value: str) -> bool:
    return bool(_POLICY_ID_RE.fullmatch(value))


def schedule_name(tenant_id: str, policy_id: str) -> str:
    """``<tenant>-<policy>`` (at most 57 characters, Scheduler allows 64)."""
    if not is_tenant_id(tenant_id):
        raise ValueError(f"invalid tenant id {tenant_id!r}: expected {TENANT_ID_PATTERN}")
    if not is_policy_id(policy_id):
        raise ValueError(f"invalid policy id {policy_id!r}: expected {POLICY_ID_PATTERN}")
    return f"{tenant_id}-{policy_id}"


def retraining_prefix(tenant_id: str) -> str:
    """``tenants/<tenant>/retraining/`` in the data bucket: the runs' manifests."""
    return f"{tenant_prefix(tenant_id)}retraining/"


def feedback_prefix(tenant_id: str) -> str:
    """``tenants/<tenant>/feedback/`` in the data bucket: exported captures and their labels."""
    return f"{tenant_prefix(tenant_id)}feedback/"


def slot_of(value: datetime) -> datetime:
    """A schedule slot: the time in UTC, to the minute (Scheduler's slots are whole minutes)."""
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return value.replace(second=0, microsecond=0)


def slot_code(slot: datetime) -> str:
    """``YYYYMMDDHHMMSS`` of a slot (seconds are 00)."""
    return slot_of(slot).strftime("%Y%m%d%H%M%S")


def run_id(policy_id: str, slot: datetime) -> str:
    """``<policy>#<slot ISO>``: the run's sort key; a policy's runs sort by slot."""
    return f"{policy_id}{RUNS_BY_POLICY_SEPARATOR}{iso_utc(slot_of(slot))}"


def retraining_job_id(tenant_id: str, policy_id: str, slot: datetime) -> str:
    """The job id of a policy's run for ``slot``: ``<tenant>-<slot code>-<6 hex>``.

    The same for every delivery of one slot (the launch handler writes the job record with a
    condition, so a second delivery finds the first run's job), and a valid job id
    (``JOB_ID_PATTERN``), so the run is an ordinary job on the jobs pages.
    """
    digest = hashlib.sha256(f"{tenant_id}\0{policy_id}\0{slot_code(slot)}".encode()).hexdigest()
    return f"{tenant_id}-{slot_code(slot)}-{digest[:6]}"


def manifest_key(tenant_id: str, policy_id: str, slot: datetime) -> str:
    """``tenants/<tenant>/retraining/<policy>/<slot code>/manifest.json``: the run's training
    channel when it reads selected objects (a SageMaker ``ManifestFile``)."""
    return f"{retraining_prefix(tenant_id)}{policy_id}/{slot_code(slot)}/manifest.json"


def new_trigger_token() -> str:
    """32 hex digits, stored on the policy and carried by its schedule's trigger."""
    return secrets.token_hex(16)


class RetrainingPolicy(BaseModel):
    """A tenant's retraining policy in ``RETRAINING_POLICIES_TABLE`` (``tenant_id`` +
    ``policy_id``), written by the portal; the handlers write only their own fields
    (``schedule_*``, ``applied_request_id``, ``last_*``, ``failure_reason``)."""

    model_config = ConfigDict(extra="ignore")

    tenant_id: str = Field(pattern=TENANT_ID_PATTERN)
    policy_id: str = Field(pattern=POLICY_ID_PATTERN)
    deployment_id: str
    """The deployment whose model the runs try to beat, and which a promoted model updates."""
    algorithm_id: str
    schedule_expression: str = DEFAULT_SCHEDULE
    schedule_timezone: str = DEFAULT_TIMEZONE
    flexible_window_minutes: int = Field(default=15, ge=0, le=1440)
    """Scheduler's flexible time window (0: off, the run starts at the slot)."""
    dataset_prefix: str
    """``tenants/<tenant>/datasets/<name>/``: the training data."""
    data_selection: DataSelection = DataSelection.NEW_SINCE_LAST_RUN
    feedback_prefix: str | None = None
    """A prefix under ``tenants/<tenant>/feedback/`` whose labelled files join the training data."""
    validation_key: str
    """The held-out validation channel (a prefix under ``tenants/<tenant>/datasets/``): every run
    and the deployed model are compared on the objective measured on it."""
    hyperparameters: dict[str, str] = Field(default_factory=dict)
    tuning: TuningSpec
    """From the deployed model's tuning job by default; ``warm_start`` is set per run."""
    warm_start: WarmStartType | None = WarmStartType.TRANSFER_LEARNING
    """None: each run searches from scratch."""
    instance_type: str
    instance_count: int = Field(ge=1, le=100)
    max_runtime_seconds: int = Field(ge=1)
    margin: float = Field(default=0.0, ge=0.0)
    """How much the objective must improve (in its own units) for promotion; equal never does."""
    promotion: PromotionMode = PromotionMode.AUTOMATIC
    status: PolicyStatus = PolicyStatus.ACTIVE
    request_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    """The latest :class:`PolicyRequest`; the retraining handler acts only on it."""
    token: str = Field(pattern=r"^[0-9a-f]{32}$")
    """Carried by the schedule's trigger; a trigger without it is dead-lettered as forged."""
    schedule_name: str | None = None
    schedule_arn: str | None = None
    schedule_state: ScheduleState = ScheduleState.PENDING
    applied_request_id: str | None = None
    failure_reason: str | None = None
    last_run_slot: UtcDatetime | None = None
    """The newest slot a run launched for: with ``NEW_SINCE_LAST_RUN`` the next run reads objects
    modified after it."""
    last_tuning_job_id: str | None = None
    """The job whose tuning job the next run warm-starts from: the deployed model's job at first,
    then each completed run's job."""
    created_at: UtcDatetime
    updated_at: UtcDatetime
    submitted_by: str

    @field_validator("schedule_expression")
    @classmethod
    def _expression(cls, value: str) -> str:
        problem = schedule_expression_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("schedule_timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        problem = timezone_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        own = tenant_prefix(self.tenant_id)
        if not self.dataset_prefix.startswith(f"{own}datasets/"):
            raise ValueError("dataset_prefix must be one of the tenant's datasets")
        if not self.validation_key.startswith(f"{own}datasets/"):
            raise ValueError("validation_key must be one of the tenant's datasets")
        if self.validation_key.startswith(self.dataset_prefix) or self.dataset_prefix.startswith(
            self.validation_key
        ):
            raise ValueError("the validation channel must be held out of the training data")
        if self.feedback_prefix is not None and not self.feedback_prefix.startswith(
            feedback_prefix(self.tenant_id)
        ):
            raise ValueError("feedback_prefix must be under the tenant's feedback/ prefix")
        if self.warm_start is not None:
            if self.tuning.strategy in {TuningStrategy.GRID, TuningStrategy.HYPERBAND}:
                raise ValueError(
                    "warm start is for Bayesian or Random search: turn it off for "
                    f"{self.tuning.strategy.value}"
                )
            if self.warm_start == WarmStartType.IDENTICAL_DATA_AND_ALGORITHM and (
                self.data_selection != DataSelection.WHOLE_PREFIX or self.feedback_prefix
            ):
                raise ValueError(
                    "IdenticalDataAndAlgorithm needs the same data every run: read the whole "
                    "prefix without feedback, or use TransferLearning"
                )
        if not math.isfinite(self.margin):
            raise ValueError("margin must be a finite number")
        return self

    @property
    def objective_metric(self) -> str:
        return self.tuning.objective_metric


class PolicyRequest(BaseModel):
    """The retraining-requests queue's message body (version 1), sent by the portal after it
    wrote the policy record; the handler acts on it only while it is the record's latest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    action: PolicyAction
    tenant_id: str = Field(pattern=TENANT_ID_PATTERN)
    policy_id: str = Field(pattern=POLICY_ID_PATTERN)
    request_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    submitted_by: str = Field(min_length=1, max_length=256)
    submitted_at: UtcDatetime

    def to_message_body(self) -> str:
        return self.model_dump_json()


class RetrainingTrigger(BaseModel):
    """What a policy's schedule sends to the training-requests queue (version 1).

    ``scheduled_time`` is the slot, as Scheduler fills it in (``2026-12-07T03:00:00Z``);
    ``token`` must equal the policy's, so a message a tenant session forges for another tenant's
    policy (anyone with send rights on the queue could) is dead-lettered, never run.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    type: Literal["retraining"] = TRIGGER_TYPE
    tenant_id: str = Field(pattern=TENANT_ID_PATTERN)
    policy_id: str = Field(pattern=POLICY_ID_PATTERN)
    token: str = Field(pattern=r"^[0-9a-f]{32}$")
    scheduled_time: UtcDatetime

    @property
    def slot(self) -> datetime:
        return slot_of(self.scheduled_time)


def is_retraining_trigger(body: str) -> bool:
    """True when a training-requests message is a schedule's trigger (``"type": "retraining"``),
    not a :class:`~training_common.TrainingRequest`."""
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("type") == TRIGGER_TYPE


def trigger_input(policy: RetrainingPolicy) -> str:
    """The schedule target's ``Input``: the trigger with Scheduler's slot placeholder."""
    return json.dumps(
        {
            "version": 1,
            "type": TRIGGER_TYPE,
            "tenant_id": policy.tenant_id,
            "policy_id": policy.policy_id,
            "token": policy.token,
            "scheduled_time": SCHEDULED_TIME_PLACEHOLDER,
        },
        separators=(",", ":"),
    )


class RetrainingRun(BaseModel):
    """One run of a policy in ``RETRAINING_RUNS_TABLE`` (``tenant_id`` + ``run_id``)."""

    model_config = ConfigDict(extra="ignore")

    tenant_id: str = Field(pattern=TENANT_ID_PATTERN)
    run_id: str
    policy_id: str
    slot: UtcDatetime
    deployment_id: str
    job_id: str | None = None
    """The run's tuning job's platform job (None when the run was skipped)."""
    tuning_job_name: str | None = None
    decision: RunDecision = RunDecision.RUNNING
    reason: str | None = None
    objective_metric: str
    objective_type: ObjectiveType
    margin: float = 0.0
    best_objective: float | None = None
    best_training_job_name: str | None = None
    deployed_model_job_id: str | None = None
    deployed_objective: float | None = None
    training_objects: int | None = None
    """How many objects the run trained on (from the manifest), when it selected them."""
    deployment_request_id: str | None = None
    """A promoted run's :class:`~training_common.DeploymentRequest` id, once submitted (a
    redelivered event then does not submit it again)."""
    created_at: UtcDatetime
    updated_at: UtcDatetime
    decided_at: UtcDatetime | None = None


@dataclass(frozen=True)
class Decision:
    """What :func:`decide` concluded, and the sentence the tenant reads."""

    decision: RunDecision
    reason: str


def _number(value: float) -> str:
    return f"{value:.6g}"


def decide(
    *,
    metric: str,
    objective_type: ObjectiveType,
    candidate: float | None,
    incumbent: float | None,
    margin: float,
    mode: PromotionMode,
    comparable: bool = True,
    candidate_from_this_run: bool = True,
) -> Decision:
    """The promotion rule.

    The candidate (the run's best model) is promoted only when its objective on the held-out
    validation channel improves on the deployed model's by more than zero and by at least
    ``margin``, in the objective's direction. Equal is not better. A missing candidate value, or
    a best training job that belongs to a warm-start parent (the run found nothing better), is a
    rejection; a deployed model without a comparable value (``incumbent`` None, or
    ``comparable`` False: measured on another validation channel) leaves the decision to the
    tenant. ``mode`` APPROVAL turns a promotion into WAITING.
    """
    if candidate is None or not math.isfinite(candidate):
        return Decision(
            RunDecision.REJECTED,
            f"The tuning job reported no {metric}, so there is nothing to compare.",
        )
    if not candidate_from_this_run:
        return Decision(
            RunDecision.REJECTED,
            f"No training job of this run beat its warm-start parent's best ({metric} = "
            f"{_number(candidate)}).",
        )
    if incumbent is None or not math.isfinite(incumbent) or not comparable:
        why = (
            "has no recorded " + metric
            if incumbent is None or not math.isfinite(incumbent)
            else f"was measured on another validation channel ({metric} = {_number(incumbent)})"
        )
        return Decision(
            RunDecision.WAITING,
            f"New {metric} = {_number(candidate)}; the deployed model {why}, so the platform "
            "can't compare them: approve or reject the new version yourself.",
        )
    maximize = objective_type == ObjectiveType.MAXIMIZE
    gain = candidate - incumbent if maximize else incumbent - candidate
    direction = "higher" if maximize else "lower"
    comparison = (
        f"{metric} {_number(candidate)} vs {_number(incumbent)} deployed "
        f"({direction} is better): improvement {_number(gain)}, margin {_number(margin)}"
    )
    # Objective values are binary floats (0.95 - 0.90 = 0.04999...): a gain that equals the
    # margin to within rounding counts as reaching it.
    if gain <= 0 or gain < margin - 1e-9 * max(1.0, abs(margin)):
        verdict = "no improvement" if gain <= 0 else "improvement below the margin"
        return Decision(RunDecision.REJECTED, f"Rejected, {verdict}: {comparison}.")
    if mode == PromotionMode.APPROVAL:
        return Decision(RunDecision.WAITING, f"Better, waiting for approval: {comparison}.")
    return Decision(RunDecision.PROMOTED, f"Promoted: {comparison}.")


def warm_start_problem(policy_tuning: TuningSpec, parent_max_training_jobs: int) -> str | None:
    """Why a run can't warm-start from a parent that could run ``parent_max_training_jobs``:
    SageMaker counts the parents' training jobs against the new job's limit."""
    if parent_max_training_jobs + policy_tuning.max_training_jobs > MAX_TUNING_TRAINING_JOBS:
        return (
            f"the parent's {parent_max_training_jobs} training jobs and this run's "
            f"{policy_tuning.max_training_jobs} exceed SageMaker's {MAX_TUNING_TRAINING_JOBS}"
        )
    return None


__all__ = [
    "DEFAULT_SCHEDULE",
    "DEFAULT_TIMEZONE",
    "FINAL_DECISIONS",
    "MAX_TRIGGER_AGE_HOURS",
    "POLICY_ID_PATTERN",
    "SCHEDULED_TIME_PLACEHOLDER",
    "TRIGGER_TYPE",
    "DataSelection",
    "Decision",
    "PolicyAction",
    "PolicyRequest",
    "PolicyStatus",
    "PromotionMode",
    "RetrainingPolicy",
    "RetrainingRun",
    "RetrainingTrigger",
    "RunDecision",
    "ScheduleState",
    "decide",
    "feedback_prefix",
    "is_policy_id",
    "is_retraining_trigger",
    "manifest_key",
    "new_trigger_token",
    "retraining_job_id",
    "retraining_prefix",
    "run_id",
    "schedule_expression_problem",
    "schedule_name",
    "slot_code",
    "slot_of",
    "timezone_problem",
    "trigger_input",
    "warm_start_problem",
]
