"""Hyperparameter tuning jobs for a tenant: the tune form, its request, the trials.

A tuning job is submitted like a training job (:func:`portal_app.services.jobs.submit`: the
first check, the QUEUED record, the training-requests message); only the form and the request's
``tuning`` part differ. The form posts every tunable algorithm's fields (so it works without
JavaScript); only the chosen algorithm's are read, the others are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import ValidationError
from training_common import (
    MAX_TUNING_PARALLEL_JOBS,
    MAX_TUNING_TRAINING_JOBS,
    CatalogEntry,
    CatalogRepository,
    Job,
    ObjectiveType,
    Page,
    ParameterRange,
    ParameterType,
    ScalingType,
    TrainingRequest,
    Trial,
    TunableHyperparameter,
    TuningSpec,
    TuningStrategy,
    new_job_id,
    utc_now,
)

from ..aws import TenantAws
from ..errors import BadRequest
from . import forms, jobs

T = TypeVar("T")

TRIALS_PAGE_SIZE = 50
"""Trials per page of a tuning job's page."""

CHART_PAGE_SIZE = 100
MAX_CHART_TRIALS = 500
"""The objective chart draws at most this many trials (five queries of a hundred)."""

_MINIMIZED = re.compile(r"(loss|error|mse|rmse|mae|mape|logloss|perplexity)", re.IGNORECASE)


def field_name(prefix: str, algorithm_id: str, hyperparameter: str) -> str:
    """The form field of one algorithm's tunable hyperparameter: ``tune__xgboost__eta``,
    ``min__xgboost__eta``, … (per algorithm: two algorithms may share a hyperparameter's name,
    and without JavaScript the form posts every algorithm's fields)."""
    return f"{prefix}__{algorithm_id}__{hyperparameter}"


def tunable_algorithms(entries: list[CatalogEntry]) -> list[CatalogEntry]:
    """The entries that can be tuned (tunable hyperparameters and an objective metric)."""
    return [entry for entry in entries if entry.can_tune]


def suggested_direction(metric: str) -> ObjectiveType:
    """Minimize for metrics named like a loss or an error, Maximize otherwise (a default for
    the form; the tenant chooses)."""
    return ObjectiveType.MINIMIZE if _MINIMIZED.search(metric) else ObjectiveType.MAXIMIZE


@dataclass
class _Problems:
    """Collects one message per malformed field, so the form lists them all at once."""

    messages: list[str] = field(default_factory=list)

    def check(self, parse: Callable[[], T]) -> T | None:
        try:
            return parse()
        except BadRequest as error:
            self.messages.extend([error.message, *error.details])
            return None

    def schema(self, error: ValidationError) -> None:
        for item in error.errors(include_url=False, include_input=False):
            message = str(item["msg"]).removeprefix("Value error, ")
            location = ".".join(str(part) for part in item["loc"])
            self.messages.append(f"{location}: {message}" if location else message)


def request_from_form(
    tenant_id: str, submitted_by: str, form: dict[str, str], catalog: CatalogRepository
) -> TrainingRequest:
    """The tuning request the tune form describes; BadRequest listing every malformed field.

    A hyperparameter that is both tuned and given a static value is tuned: the form says the
    range overrides the static line. The tenant id comes from the verified identity only.
    """
    problems = _Problems()
    fields = problems.check(lambda: jobs.job_fields_from_form(tenant_id, form))
    algorithm_id = form.get("algorithm_id", "").strip()
    entry = catalog.get(algorithm_id) if algorithm_id else None
    spec = _spec_from_form(form, entry, algorithm_id, problems)
    if fields is None or spec is None or problems.messages:
        raise BadRequest("The tuning job request is invalid.", details=problems.messages)
    tuned = {item.name for item in spec.ranges}
    fields["hyperparameters"] = {
        key: value for key, value in fields["hyperparameters"].items() if key not in tuned
    }
    try:
        return TrainingRequest(
            tenant_id=tenant_id,
            job_id=new_job_id(tenant_id),
            submitted_by=submitted_by,
            submitted_at=utc_now(),
            tuning=spec,
            **fields,
        )
    except ValidationError as error:
        problems.schema(error)
        raise BadRequest("The tuning job request is invalid.", details=problems.messages) from error


def _spec_from_form(
    form: dict[str, str], entry: CatalogEntry | None, algorithm_id: str, problems: _Problems
) -> TuningSpec | None:
    objective = problems.check(lambda: forms.required(form, "objective_metric", "Objective metric"))
    direction = problems.check(
        lambda: forms.choice(form, "objective_type", "Objective direction", ObjectiveType)
    )
    strategy = problems.check(
        lambda: forms.choice(
            form, "strategy", "Strategy", TuningStrategy, default=TuningStrategy.BAYESIAN
        )
    )
    total = problems.check(
        lambda: forms.integer(
            form,
            "max_training_jobs",
            "Maximum training jobs",
            minimum=1,
            maximum=MAX_TUNING_TRAINING_JOBS,
        )
    )
    parallel = problems.check(
        lambda: forms.integer(
            form,
            "max_parallel_training_jobs",
            "Maximum parallel training jobs",
            minimum=1,
            maximum=MAX_TUNING_PARALLEL_JOBS,
        )
    )
    ranges = _ranges_from_form(form, entry, algorithm_id, problems)
    if (
        objective is None
        or direction is None
        or strategy is None
        or total is None
        or parallel is None
        or not ranges
    ):
        return None
    try:
        return TuningSpec(
            objective_metric=objective,
            objective_type=direction,
            strategy=strategy,
            ranges=tuple(ranges),
            max_training_jobs=total,
            max_parallel_training_jobs=parallel,
            early_stopping=forms.checkbox(form, "early_stopping"),
        )
    except ValidationError as error:
        problems.schema(error)
        return None


def _ranges_from_form(
    form: dict[str, str], entry: CatalogEntry | None, algorithm_id: str, problems: _Problems
) -> list[ParameterRange]:
    if not algorithm_id:
        if "Algorithm is required." not in problems.messages:
            problems.messages.append("Algorithm is required.")
        return []
    if entry is None:
        problems.messages.append(f"Algorithm {algorithm_id[:64]!r} is not in the catalog.")
        return []
    if not entry.can_tune:
        problems.messages.append(
            f"Algorithm {entry.id!r} lists no tunable hyperparameters in the catalog, so it "
            "can't be tuned; submit a training job instead."
        )
        return []
    chosen = [
        item
        for item in entry.tunable_hyperparameters
        if forms.checkbox(form, field_name("tune", entry.id, item.name))
    ]
    if not chosen:
        problems.messages.append(
            f"Choose at least one hyperparameter of {entry.id} to tune (tick its 'Tune' box)."
        )
    ranges = [_range_from_form(form, entry.id, item, problems) for item in chosen]
    return [item for item in ranges if item is not None]


def _range_from_form(
    form: dict[str, str], algorithm_id: str, allowed: TunableHyperparameter, problems: _Problems
) -> ParameterRange | None:
    name = allowed.name

    def field(prefix: str) -> str:
        return field_name(prefix, algorithm_id, name)

    if allowed.type == ParameterType.CATEGORICAL:
        values = [
            value.strip() for value in form.get(field("values"), "").split(",") if value.strip()
        ]
        if not values:
            problems.messages.append(f"Values of {name}: list at least one, comma-separated.")
            return None
        return _checked_range(
            problems, name=name, type=ParameterType.CATEGORICAL, values=tuple(values)
        )
    low = problems.check(lambda: forms.number(form, field("min"), f"Minimum of {name}"))
    high = problems.check(lambda: forms.number(form, field("max"), f"Maximum of {name}"))
    scaling = problems.check(
        lambda: forms.choice(
            form, field("scaling"), f"Scaling of {name}", ScalingType, ScalingType.AUTO
        )
    )
    if low is None or high is None or scaling is None:
        return None
    if allowed.type == ParameterType.INTEGER and not (low.is_integer() and high.is_integer()):
        problems.messages.append(f"{name} is an integer: give whole-number bounds.")
        return None
    return _checked_range(
        problems, name=name, type=allowed.type, min_value=low, max_value=high, scaling=scaling
    )


def _checked_range(problems: _Problems, **values: Any) -> ParameterRange | None:
    try:
        return ParameterRange(**values)
    except ValidationError as error:
        problems.schema(error)
        return None


def trials_page(aws: TenantAws, job: Job, token: str | None) -> Page[Trial]:
    """One page of the tuning job's trials, best objective first (PageTokenError: 400)."""
    return aws.trials.best_first(
        aws.tenant_id, job.job_id, limit=TRIALS_PAGE_SIZE, token=token or None
    )


def trials_for_chart(aws: TenantAws, job: Job) -> tuple[list[Trial], bool]:
    """The first :data:`MAX_CHART_TRIALS` trials in launch order, and whether there are more."""
    trials: list[Trial] = []
    token: str | None = None
    while len(trials) < MAX_CHART_TRIALS:
        page = aws.trials.in_launch_order(
            aws.tenant_id,
            job.job_id,
            limit=min(CHART_PAGE_SIZE, MAX_CHART_TRIALS - len(trials)),
            token=token,
        )
        trials.extend(page.items)
        token = page.next_token
        if token is None:
            return trials, False
    return trials, True


def form_defaults(entry: CatalogEntry) -> dict[str, str]:
    """The tune form's initial values for one algorithm's hyperparameters: the allowed bounds,
    every allowed categorical value."""
    defaults: dict[str, str] = {}
    for item in entry.tunable_hyperparameters:
        if item.type == ParameterType.CATEGORICAL:
            defaults[field_name("values", entry.id, item.name)] = ", ".join(item.values)
            continue
        assert item.min_value is not None and item.max_value is not None
        defaults[field_name("min", entry.id, item.name)] = f"{item.min_value:g}"
        defaults[field_name("max", entry.id, item.name)] = f"{item.max_value:g}"
    return defaults
