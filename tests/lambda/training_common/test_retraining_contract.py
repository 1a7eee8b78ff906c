"""The retraining contract (``training_common.retraining``): the promotion rule, schedule
expressions and time zones, ids and keys, the policy's validators and the trigger's format."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError
from training_common import (
    JOB_ID_PATTERN,
    SCHEDULED_TIME_PLACEHOLDER,
    DataSelection,
    ObjectiveType,
    PromotionMode,
    RetrainingPolicy,
    RetrainingTrigger,
    RunDecision,
    TuningSpec,
    WarmStartType,
    decide,
    is_job_id_of_tenant,
    is_retraining_trigger,
    manifest_key,
    new_trigger_token,
    retraining_job_id,
    run_id,
    schedule_expression_problem,
    schedule_name,
    slot_of,
    timezone_problem,
    trigger_input,
    warm_start_problem,
)

MAX = ObjectiveType.MAXIMIZE
MIN = ObjectiveType.MINIMIZE
SLOT = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


def decision(candidate: float | None, incumbent: float | None, **kwargs: Any) -> Any:
    values: dict[str, Any] = {
        "metric": "validation:auc",
        "objective_type": MAX,
        "candidate": candidate,
        "incumbent": incumbent,
        "margin": 0.0,
        "mode": PromotionMode.AUTOMATIC,
    }
    values.update(kwargs)
    return decide(**values)


# -- decide -------------------------------------------------------------------------------------


def test_better_is_promoted() -> None:
    result = decision(0.91, 0.90)
    assert result.decision is RunDecision.PROMOTED
    assert result.reason.startswith("Promoted: validation:auc 0.91 vs 0.9 deployed")


def test_equal_is_not_better() -> None:
    result = decision(0.90, 0.90)
    assert result.decision is RunDecision.REJECTED
    assert "no improvement" in result.reason


def test_worse_is_rejected() -> None:
    result = decision(0.85, 0.90)
    assert result.decision is RunDecision.REJECTED
    assert "no improvement" in result.reason and "higher is better" in result.reason


def test_improvement_below_the_margin_is_rejected_and_at_the_margin_promoted() -> None:
    below = decision(0.905, 0.90, margin=0.01)
    assert below.decision is RunDecision.REJECTED
    assert "below the margin" in below.reason
    assert decision(0.75, 0.5, margin=0.25).decision is RunDecision.PROMOTED  # exactly
    assert decision(0.93, 0.90, margin=0.02).decision is RunDecision.PROMOTED


@pytest.mark.parametrize("candidate", [None, math.nan, math.inf])
def test_missing_candidate_is_rejected(candidate: float | None) -> None:
    result = decision(candidate, 0.90)
    assert result.decision is RunDecision.REJECTED
    assert "reported no validation:auc" in result.reason


@pytest.mark.parametrize("incumbent", [None, math.nan])
def test_missing_incumbent_waits_for_the_tenant(incumbent: float | None) -> None:
    result = decision(0.95, incumbent)
    assert result.decision is RunDecision.WAITING
    assert "has no recorded validation:auc" in result.reason


def test_incomparable_incumbent_waits_for_the_tenant() -> None:
    result = decision(0.95, 0.90, comparable=False)
    assert result.decision is RunDecision.WAITING
    assert "another validation channel" in result.reason


def test_parents_best_is_rejected() -> None:
    result = decision(0.99, 0.90, candidate_from_this_run=False)
    assert result.decision is RunDecision.REJECTED
    assert "warm-start parent" in result.reason


def test_minimize_prefers_lower() -> None:
    lower = decision(0.25, 0.30, objective_type=MIN, metric="validation:rmse")
    assert lower.decision is RunDecision.PROMOTED
    assert "lower is better" in lower.reason
    higher = decision(0.35, 0.30, objective_type=MIN, metric="validation:rmse")
    assert higher.decision is RunDecision.REJECTED
    assert decision(0.29, 0.30, objective_type=MIN, margin=0.05).decision is RunDecision.REJECTED


def test_approval_mode_turns_a_promotion_into_waiting() -> None:
    better = decision(0.95, 0.90, mode=PromotionMode.APPROVAL)
    assert better.decision is RunDecision.WAITING
    assert better.reason.startswith("Better, waiting for approval")
    worse = decision(0.80, 0.90, mode=PromotionMode.APPROVAL)
    assert worse.decision is RunDecision.REJECTED


# -- schedule expressions and time zones --------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    [
        "cron(0 3 ? * MON *)",
        "cron(30 2 1 * ? *)",
        "rate(1 hour)",
        "rate(2 hours)",
        "rate(60 minutes)",
        "rate(1 day)",
        "rate(7 days)",
    ],
)
def test_valid_schedule_expressions(expression: str) -> None:
    assert schedule_expression_problem(expression) is None


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("rate(30 minutes)", "at most once an hour"),
        ("rate(1 hours)", "write rate(1 hour)"),
        ("rate(2 hour)", "write rate(2 hours)"),
        ("rate(0 hours)", "expected rate"),
        ("cron(*/5 * ? * * *)", "minutes field must be one number"),
        ("cron(0,30 * ? * * *)", "minutes field must be one number"),
        ("cron(0 3 * * MON)", "six fields"),
        ("cron(0 3 1 * MON *)", "either day-of-month or day-of-week"),
        ("at(2026-12-07T03:00:00)", "expected rate(...) or cron(...)"),
        ("", "expected rate(...) or cron(...)"),
    ],
)
def test_invalid_schedule_expressions_say_why(expression: str, words: str) -> None:
    problem = schedule_expression_problem(expression)
    assert problem is not None and words in problem


def test_timezone_problem() -> None:
    assert timezone_problem("UTC") is None
    assert timezone_problem("Europe/Berlin") is None
    problem = timezone_problem("Mars/Olympus")
    assert problem is not None and "unknown time zone 'Mars/Olympus'" in problem
    assert timezone_problem("../etc/passwd") is not None


# -- ids and keys -------------------------------------------------------------------------------


def test_retraining_job_id_is_a_deterministic_job_id_of_the_tenant() -> None:
    job_id = retraining_job_id("acme", "weekly", SLOT)

    assert re.fullmatch(JOB_ID_PATTERN, job_id)
    assert is_job_id_of_tenant(job_id, "acme")
    assert job_id.startswith("acme-20261207030000-")
    # Every delivery of the slot (seconds and offsets notwithstanding) gets the same id.
    assert retraining_job_id("acme", "weekly", SLOT + timedelta(seconds=42)) == job_id
    berlin = SLOT.astimezone(timezone(timedelta(hours=1)))
    assert retraining_job_id("acme", "weekly", berlin) == job_id
    others = {
        retraining_job_id("acme", "daily", SLOT),
        retraining_job_id("globex", "weekly", SLOT),
        retraining_job_id("acme", "weekly", SLOT + timedelta(minutes=1)),
    }
    assert job_id not in others and len(others) == 3
    longest = retraining_job_id("a" * 24, "weekly", SLOT)
    assert re.fullmatch(JOB_ID_PATTERN, longest) and len(longest) <= 63


def test_run_ids_keys_and_names() -> None:
    assert run_id("weekly", SLOT) == "weekly#2026-12-07T03:00:00.000Z"
    assert run_id("weekly", SLOT) < run_id("weekly", SLOT + timedelta(days=7))
    assert (
        manifest_key("acme", "weekly", SLOT)
        == "tenants/acme/retraining/weekly/20261207030000/manifest.json"
    )
    assert schedule_name("acme", "weekly") == "acme-weekly"
    with pytest.raises(ValueError, match="invalid policy id"):
        schedule_name("acme", "we-ekly")
    assert slot_of(datetime(2026, 12, 7, 3, 0, 59, 999)) == SLOT


def test_warm_start_problem_counts_the_parents_training_jobs() -> None:
    tuning = spec(max_training_jobs=400)
    assert warm_start_problem(tuning, 100) is None
    problem = warm_start_problem(tuning, 101)
    assert problem is not None and "exceed SageMaker's 500" in problem


# -- RetrainingPolicy ---------------------------------------------------------------------------


def spec(**overrides: Any) -> TuningSpec:
    values: dict[str, Any] = {
        "objective_metric": "validation:rmse",
        "objective_type": "Minimize",
        "strategy": "Bayesian",
        "ranges": [{"name": "eta", "type": "Continuous", "min_value": 0.01, "max_value": 0.5}],
        "max_training_jobs": 6,
        "max_parallel_training_jobs": 2,
    }
    values.update(overrides)
    return TuningSpec.model_validate(values)


def policy(**overrides: Any) -> RetrainingPolicy:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "tenant_id": "acme",
        "policy_id": "weekly",
        "deployment_id": "thermostat",
        "algorithm_id": "xgboost",
        "dataset_prefix": "tenants/acme/datasets/houses/",
        "validation_key": "tenants/acme/datasets/holdout/",
        "tuning": spec(),
        "instance_type": "ml.m5.large",
        "instance_count": 1,
        "max_runtime_seconds": 3600,
        "request_id": "a" * 32,
        "token": new_trigger_token(),
        "created_at": now,
        "updated_at": now,
        "submitted_by": "alice@example.com",
    }
    values.update(overrides)
    return RetrainingPolicy.model_validate(values)


def test_policy_defaults() -> None:
    record = policy()
    assert record.schedule_expression == "cron(0 3 ? * MON *)"
    assert record.schedule_timezone == "UTC"
    assert record.warm_start is WarmStartType.TRANSFER_LEARNING
    assert record.data_selection is DataSelection.NEW_SINCE_LAST_RUN
    assert record.objective_metric == "validation:rmse"


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"dataset_prefix": "tenants/globex/datasets/houses/"}, "dataset_prefix"),
        ({"validation_key": "tenants/acme/models/holdout/"}, "validation_key"),
        ({"validation_key": "tenants/acme/datasets/houses/holdout/"}, "held out"),
        ({"dataset_prefix": "tenants/acme/datasets/", "validation_key": "x"}, "validation_key"),
        ({"feedback_prefix": "tenants/acme/datasets/fb/"}, "feedback_prefix"),
        (
            {
                "tuning": spec(
                    strategy="Grid",
                    ranges=[{"name": "b", "type": "Categorical", "values": ["x", "y"]}],
                    max_training_jobs=2,
                )
            },
            "warm start is for Bayesian or Random",
        ),
        ({"warm_start": WarmStartType.IDENTICAL_DATA_AND_ALGORITHM}, "IdenticalDataAndAlgorithm"),
        (
            {
                "warm_start": WarmStartType.IDENTICAL_DATA_AND_ALGORITHM,
                "data_selection": DataSelection.WHOLE_PREFIX,
                "feedback_prefix": "tenants/acme/feedback/thermostat/labelled/",
            },
            "IdenticalDataAndAlgorithm",
        ),
        ({"schedule_expression": "rate(5 minutes)"}, "at most once an hour"),
        ({"schedule_timezone": "Nowhere/Town"}, "unknown time zone"),
        ({"margin": math.inf}, "margin must be a finite number"),
        ({"margin": -0.1}, "greater than or equal to 0"),
        ({"policy_id": "we-ekly"}, "policy_id"),
        ({"token": "short"}, "token"),
    ],
)
def test_policy_validators_refuse_inconsistent_records(
    overrides: dict[str, Any], words: str
) -> None:
    with pytest.raises(ValidationError) as error:
        policy(**overrides)
    assert words in str(error.value)


def test_identical_data_warm_start_with_the_whole_prefix_and_grid_without_warm_start() -> None:
    assert (
        policy(
            warm_start=WarmStartType.IDENTICAL_DATA_AND_ALGORITHM,
            data_selection=DataSelection.WHOLE_PREFIX,
        ).warm_start
        is WarmStartType.IDENTICAL_DATA_AND_ALGORITHM
    )
    grid = spec(
        strategy="Grid",
        ranges=[{"name": "b", "type": "Categorical", "values": ["x", "y"]}],
        max_training_jobs=2,
    )
    assert policy(tuning=grid, warm_start=None).warm_start is None


# -- the trigger --------------------------------------------------------------------------------


def test_trigger_input_round_trips_once_the_placeholder_is_replaced() -> None:
    record = policy()
    template = trigger_input(record)
    assert SCHEDULED_TIME_PLACEHOLDER in template
    assert is_retraining_trigger(template)
    with pytest.raises(ValidationError):
        RetrainingTrigger.model_validate_json(template)

    body = template.replace(SCHEDULED_TIME_PLACEHOLDER, "2026-12-07T03:00:00Z")
    trigger = RetrainingTrigger.model_validate_json(body)

    assert trigger.tenant_id == "acme" and trigger.policy_id == "weekly"
    assert trigger.token == record.token
    assert trigger.slot == SLOT
    assert json.loads(body)["type"] == "retraining"


def test_trigger_refuses_extra_fields() -> None:
    body = json.loads(
        trigger_input(policy()).replace(SCHEDULED_TIME_PLACEHOLDER, "2026-12-07T03:00:00Z")
    )
    with pytest.raises(ValidationError):
        RetrainingTrigger.model_validate({**body, "job_id": "acme-20261207030000-abcdef"})


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"type": "retraining"}', True),
        ('{"version": 1, "tenant_id": "acme", "job_id": "acme-20261207030000-abcdef"}', False),
        ('{"type": "training"}', False),
        ('["retraining"]', False),
        ("not json", False),
        ("", False),
    ],
)
def test_is_retraining_trigger(body: str, expected: bool) -> None:
    assert is_retraining_trigger(body) is expected
