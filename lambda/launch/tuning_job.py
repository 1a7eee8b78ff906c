"""The ``CreateHyperParameterTuningJob`` request the launch handler sends for a tuning request.

The training jobs SageMaker starts for the tuning job get the same definition as a training job
of the platform (``launch.training_job.training_definition``: isolation, VPC, KMS keys, the
tenant's dataset and prefixes), the catalog's default hyperparameters overlaid by the request's
static ones, and the tags ``tenant`` and ``job``, which SageMaker copies to each of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from training_common import (
    CatalogEntry,
    ParameterRange,
    ParameterType,
    TrainingRequest,
    TuningSpec,
    TuningStrategy,
    WarmStart,
    tuning_job_name,
)

from .settings import LaunchSettings
from .training_job import job_tags, training_definition

RANGE_LISTS: dict[ParameterType, str] = {
    ParameterType.INTEGER: "IntegerParameterRanges",
    ParameterType.CONTINUOUS: "ContinuousParameterRanges",
    ParameterType.CATEGORICAL: "CategoricalParameterRanges",
}
"""The ``ParameterRanges`` list each kind of range goes into."""


def parameter_ranges(ranges: Iterable[ParameterRange]) -> dict[str, list[dict[str, object]]]:
    """``ParameterRanges``: the integer, continuous and categorical lists (each present, possibly
    empty), items in the request's order."""
    lists: dict[str, list[dict[str, object]]] = {name: [] for name in RANGE_LISTS.values()}
    for item in ranges:
        lists[RANGE_LISTS[item.type]].append(item.to_sagemaker())
    return lists


def resource_limits(tuning: TuningSpec) -> dict[str, int]:
    """``ResourceLimits``: the most training jobs in all and at once.

    For grid search SageMaker requires ``MaxNumberOfTrainingJobs``, when given, to equal the
    number of combinations ("How hyperparameter tuning works", Grid search); ``TuningSpec``
    refuses any other number, so the tenant hears it on the form rather than from SageMaker.
    """
    return {
        "MaxNumberOfTrainingJobs": tuning.max_training_jobs,
        "MaxParallelTrainingJobs": tuning.max_parallel_training_jobs,
    }


def tuning_job_config(tuning: TuningSpec) -> dict[str, Any]:
    """``HyperParameterTuningJobConfig``: strategy, objective, limits, ranges and early stopping.

    ``TrainingJobEarlyStoppingType`` is left out for Hyperband, which stops training jobs early
    by itself and requires the setting off (its default); ``TuningSpec`` refuses Hyperband with
    ``early_stopping``.
    """
    config: dict[str, Any] = {
        "Strategy": tuning.strategy.value,
        "HyperParameterTuningJobObjective": {
            "Type": tuning.objective_type.value,
            "MetricName": tuning.objective_metric,
        },
        "ResourceLimits": resource_limits(tuning),
        "ParameterRanges": parameter_ranges(tuning.ranges),
    }
    if tuning.strategy != TuningStrategy.HYPERBAND:
        config["TrainingJobEarlyStoppingType"] = "Auto" if tuning.early_stopping else "Off"
    return config


def warm_start_config(warm_start: WarmStart) -> dict[str, Any]:
    """``WarmStartConfig``: the parents by their tuning job names (``check_request`` made sure
    each is a finished tuning job of the tenant with the same algorithm) and the type."""
    return {
        "ParentHyperParameterTuningJobs": [
            {"HyperParameterTuningJobName": tuning_job_name(parent_id)}
            for parent_id in warm_start.parent_job_ids
        ],
        "WarmStartType": warm_start.type.value,
    }


def static_hyperparameters(request: TrainingRequest, algorithm: CatalogEntry) -> dict[str, str]:
    """The catalog's default hyperparameters overlaid by the request's static ones, without any
    hyperparameter the tuning job searches (SageMaker refuses a name that is both)."""
    tuned = {item.name for item in request.tuning.ranges} if request.tuning else set()
    merged = {**algorithm.default_hyperparameters, **request.hyperparameters}
    return {name: value for name, value in merged.items() if name not in tuned}


def build_create_tuning_job_request(
    request: TrainingRequest,
    algorithm: CatalogEntry,
    settings: LaunchSettings,
    *,
    name: str | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``sagemaker.create_hyper_parameter_tuning_job``.

    ``name`` is the job record's ``tuning_job_name`` (default: ``tuning_job_name(job_id)``), so a
    redelivered request finds the tuning job its first delivery created. The request has been
    through ``check_request``: its objective is one of the catalog's metric definitions, which
    the definition carries (SageMaker reads the objective from the training jobs' logs with
    them). A retraining run's warm start becomes ``WarmStartConfig``. ValueError for a request
    without ``tuning``.
    """
    if request.tuning is None:
        raise ValueError(f"request {request.job_id} is a training request, not a tuning request")
    definition = training_definition(request, algorithm, settings)
    # No CheckpointConfig: every training job of a tuning job would get the same S3 location,
    # so trials could resume from one another's checkpoints. A trial that a spot interruption
    # ends restarts from the beginning instead.
    definition.pop("CheckpointConfig")
    built: dict[str, Any] = {
        "HyperParameterTuningJobName": name or tuning_job_name(request.job_id),
        "HyperParameterTuningJobConfig": tuning_job_config(request.tuning),
        "TrainingJobDefinition": {
            **definition,
            "StaticHyperParameters": static_hyperparameters(request, algorithm),
        },
        "Tags": job_tags(request),
    }
    if request.tuning.warm_start is not None:
        built["WarmStartConfig"] = warm_start_config(request.tuning.warm_start)
    return built
