"""Fixtures of the launch handler's tuning tests: a tunable catalog entry and tuning requests."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from training_common import (
    CatalogEntry,
    Deployment,
    Job,
    MetricDefinition,
    ModelObjective,
    ModelVersion,
    ObjectiveType,
    ParameterRange,
    ParameterType,
    ScalingType,
    TrainingRequest,
    TunableHyperparameter,
    TuningSpec,
    TuningStrategy,
)


def tunable_algorithm(make: SimpleNamespace, **overrides: Any) -> CatalogEntry:
    """``xgboost`` with two metrics (one a tuning objective) and three tunable hyperparameters,
    one of them (``max_depth``) also among the defaults."""
    values: dict[str, Any] = {
        "default_hyperparameters": {
            "num_round": "100",
            "objective": "reg:squarederror",
            "max_depth": "6",
        },
        "metric_definitions": [
            MetricDefinition(name="validation:rmse", regex="rmse=([0-9.]+)"),
            MetricDefinition(name="train:rmse", regex="train-rmse=([0-9.]+)"),
        ],
        "objective_metrics": ["validation:rmse"],
        "tunable_hyperparameters": [
            TunableHyperparameter(
                name="eta", type=ParameterType.CONTINUOUS, min_value=0.001, max_value=1.0
            ),
            TunableHyperparameter(
                name="max_depth", type=ParameterType.INTEGER, min_value=1, max_value=20
            ),
            TunableHyperparameter(
                name="booster",
                type=ParameterType.CATEGORICAL,
                values=("gbtree", "dart", "gblinear"),
            ),
            TunableHyperparameter(
                name="tree_method", type=ParameterType.CATEGORICAL, values=("auto", "exact", "hist")
            ),
        ],
    }
    values.update(overrides)
    entry: CatalogEntry = make.algorithm(**values)
    return entry


RANGES = (
    ParameterRange(
        name="eta",
        type=ParameterType.CONTINUOUS,
        min_value=0.01,
        max_value=0.3,
        scaling=ScalingType.LOGARITHMIC,
    ),
    ParameterRange(
        name="max_depth",
        type=ParameterType.INTEGER,
        min_value=3,
        max_value=9,
        scaling=ScalingType.LINEAR,
    ),
    ParameterRange(name="booster", type=ParameterType.CATEGORICAL, values=("gbtree", "dart")),
)
"""One range of each type, within the tunable entry's bounds."""


def spec(**overrides: Any) -> TuningSpec:
    """A Bayesian search of :data:`RANGES` minimising ``validation:rmse``: 6 jobs, 2 at once."""
    values: dict[str, Any] = {
        "objective_metric": "validation:rmse",
        "objective_type": ObjectiveType.MINIMIZE,
        "strategy": TuningStrategy.BAYESIAN,
        "ranges": RANGES,
        "max_training_jobs": 6,
        "max_parallel_training_jobs": 2,
        "early_stopping": False,
    }
    values.update(overrides)
    return TuningSpec.model_validate(values)


@pytest.fixture
def tune(make: SimpleNamespace) -> SimpleNamespace:
    """Factories for tuning tests: ``algorithm()``, ``spec()``, ``request()``."""

    def request(tenant_id: str = "acme", **overrides: Any) -> TrainingRequest:
        tuning = overrides.pop("tuning", None) or spec(**overrides.pop("spec", {}))
        req: TrainingRequest = make.request(tenant_id, tuning=tuning, **overrides)
        return req

    return SimpleNamespace(
        algorithm=lambda **overrides: tunable_algorithm(make, **overrides),
        spec=spec,
        request=request,
        ranges=RANGES,
    )


# Retraining (issue 12): a deployed, tuned model and a policy that retrains it ---------------

PARENT_JOB_ID = "acme-20261101030000-abcdef"
"""The deployed model's tuning job (COMPLETED), the first run's warm-start parent."""


def _ensure_tables(platform: Any, **names: str) -> None:
    """Create the tables not there yet (the shared fixtures may create some of them too)."""
    from training_common import create_tables

    client = platform.session.client("dynamodb")
    existing = set(client.list_tables()["TableNames"])
    missing = {kind: name for kind, name in names.items() if name not in existing}
    if missing:
        create_tables(client, **missing)


@pytest.fixture
def relaunch(platform: Any, make: SimpleNamespace) -> SimpleNamespace:
    """acme (4 slots), the tunable xgboost entry, the COMPLETED tuning job
    :data:`PARENT_JOB_ID` with its registered model (``validation:rmse`` 0.30), deployment
    ``thermostat`` IN_SERVICE serving it, two dataset objects, and the env with the retraining
    tables. ``policy(**overrides)`` stores an ACTIVE policy ``weekly`` (TransferLearning from
    the parent, new data only) and returns it; ``env(**extra)`` the launch handler's env."""
    from datetime import UTC, datetime

    from training_common import (
        DeploymentRepository,
        DeploymentStatus,
        EndpointKind,
        JobStatus,
        ModelApprovalStatus,
        ModelRepository,
        RetrainingPolicy,
        RetrainingPolicyRepository,
        RetrainingRunRepository,
        new_request_id,
        new_trigger_token,
        to_item,
    )

    names = {
        "retraining_policies": "retraining-policies",
        "retraining_runs": "retraining-runs",
        "deployments": "deployments",
        "models": "models",
    }
    _ensure_tables(platform, **names)
    platform.tenants.put(make.tenant(max_running_jobs=4))
    platform.catalog.put(tunable_algorithm(make))
    now = datetime.now(UTC)
    parent = make.request(job_id=PARENT_JOB_ID, tuning=spec(), submitted_at=now)
    platform.jobs.create(
        Job.from_request(parent).model_copy(update={"status": JobStatus.COMPLETED})
    )
    models = ModelRepository.from_table_name("models", platform.session)
    models.table.put_item(
        Item=to_item(
            ModelVersion(
                tenant_id="acme",
                job_id=PARENT_JOB_ID,
                training_job_name="tune-parent-001-aaaaaaaa",
                algorithm_id="xgboost",
                dataset_key="tenants/acme/datasets/houses/",
                validation_key="tenants/acme/datasets/holdout/",
                image_uri="img",
                model_artifact_key="tenants/acme/jobs/x/output/model.tar.gz",
                objective=ModelObjective(
                    name="validation:rmse", type=ObjectiveType.MINIMIZE, value=0.30
                ),
                model_package_group="acme-models",
                model_package_arn="arn:aws:sagemaker:us-east-1:123456789012:model-package/x/1",
                model_version=1,
                approval_status=ModelApprovalStatus.APPROVED,
                created_at=now,
                updated_at=now,
            )
        )
    )
    deployments = DeploymentRepository.from_table_name("deployments", platform.session)

    def deployment(**overrides: Any) -> None:
        values: dict[str, Any] = {
            "tenant_id": "acme",
            "deployment_id": "thermostat",
            "endpoint_name": "acme-thermostat",
            "status": DeploymentStatus.IN_SERVICE,
            "kind": EndpointKind.REALTIME,
            "realtime": {"instance_type": "ml.m5.large", "instance_count": 1},
            "request_id": new_request_id(),
            "model_job_id": PARENT_JOB_ID,
            "serving_model_job_id": PARENT_JOB_ID,
            "created_at": now,
            "updated_at": now,
            "submitted_by": "alice@example.com",
        }
        values.update(overrides)
        deployments.table.put_item(Item=to_item(Deployment.model_validate(values)))

    deployment()
    s3 = platform.session.client("s3")
    for name in ("a.csv", "b.csv"):
        s3.put_object(Bucket="data-bucket", Key=f"tenants/acme/datasets/houses/{name}", Body=b"1")
    s3.put_object(Bucket="data-bucket", Key="tenants/acme/datasets/holdout/v.csv", Body=b"1")
    policies = RetrainingPolicyRepository.from_table_name("retraining-policies", platform.session)

    def policy(tenant_id: str = "acme", **overrides: Any) -> RetrainingPolicy:
        values: dict[str, Any] = {
            "tenant_id": tenant_id,
            "policy_id": "weekly",
            "deployment_id": "thermostat",
            "algorithm_id": "xgboost",
            "dataset_prefix": f"tenants/{tenant_id}/datasets/houses/",
            "validation_key": f"tenants/{tenant_id}/datasets/holdout/",
            "hyperparameters": {"num_round": "50"},
            "tuning": spec(),
            "instance_type": "ml.m5.large",
            "instance_count": 1,
            "max_runtime_seconds": 3600,
            "request_id": new_request_id(),
            "token": new_trigger_token(),
            "last_tuning_job_id": PARENT_JOB_ID,
            "created_at": now,
            "updated_at": now,
            "submitted_by": "alice@example.com",
        }
        values.update(overrides)
        record = RetrainingPolicy.model_validate(values)
        policies.put_if_absent(record)
        return record

    env = {
        **platform.env,
        "RETRAINING_POLICIES_TABLE": "retraining-policies",
        "RETRAINING_RUNS_TABLE": "retraining-runs",
        "MODELS_TABLE": "models",
        "DEPLOYMENTS_TABLE": "deployments",
        "DATA_KEY_ARN": platform.env["TRAINING_KMS_KEY_ARN"],
    }
    return SimpleNamespace(
        policy=policy,
        deployment=deployment,
        env=lambda **extra: {**env, **extra},
        policies=policies,
        runs=RetrainingRunRepository.from_table_name("retraining-runs", platform.session),
        models=models,
        deployments=deployments,
        s3=s3,
        parent_job_id=PARENT_JOB_ID,
    )
