"""Helpers for the portal tests: signed identities, an AWS call recorder, a signed-in client."""

from __future__ import annotations

import copy
import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "portal"))

from local.metrics import LocalMetrics
from local.signin import EcSigner
from local.stack import REGION, Seeded, create_resources, seed
from moto import mock_aws
from portal_app.settings import PortalSettings
from training_common import (
    BestTrainingJob,
    FinalMetric,
    Job,
    JobRepository,
    JobStateUpdate,
    JobStatus,
    ModelApprovalStatus,
    ModelRepository,
    ModelVersion,
    ObjectiveType,
    ParameterRange,
    ParameterType,
    TrainingRequest,
    Trial,
    TrialRepository,
    TuningProgress,
    TuningSpec,
    model_artifact_key,
    model_package_group_name,
    model_version_of_arn,
    new_job_id,
    new_session,
    objective_key,
    utc_now,
)

from tests.moto_state import MotoState

USERS: dict[str, dict[str, Any]] = {
    "alice": {
        "sub": "sub-alice",
        "username": "alice",
        "email": "alice@acme.example",
        "custom:tenant_id": "acme",
        "cognito:groups": [],
    },
    "bob": {
        "sub": "sub-bob",
        "username": "bob",
        "email": "bob@acme.example",
        "custom:tenant_id": "acme",
        "cognito:groups": [],
    },
    "gina": {
        "sub": "sub-gina",
        "username": "gina",
        "email": "gina@globex.example",
        "custom:tenant_id": "globex",
        "cognito:groups": [],
    },
    "admin": {
        "sub": "sub-admin",
        "username": "admin",
        "email": "admin@platform.example",
        "cognito:groups": ["admins"],
    },
}


@dataclass
class AwsCalls:
    """Every AWS call the portal makes, with the access key that signed it."""

    instance_key: str = ""
    calls: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)
    assume_params: list[dict[str, Any]] = field(default_factory=list)
    assumed_keys: list[str] = field(default_factory=list)
    stops: list[tuple[str, str]] = field(default_factory=list)
    tuning_stops: list[tuple[str, str]] = field(default_factory=list)

    def mark(self) -> int:
        return len(self.calls)

    def since(self, mark: int) -> list[tuple[str, str, str, dict[str, Any]]]:
        return self.calls[mark:]

    def tenant_of_key(self, access_key: str) -> str | None:
        for params, key in zip(self.assume_params, self.assumed_keys, strict=True):
            if key == access_key:
                return str(params["Tags"][0]["Value"])
        return None

    def hook(self, session: boto3.Session) -> None:
        key = session.get_credentials().access_key
        if not self.instance_key:
            self.instance_key = key

        def record(params: dict[str, Any], model: Any, **_: Any) -> None:
            self.calls.append((model.service_model.service_name, model.name, key, dict(params)))

        def assume_params(params: dict[str, Any], **_: Any) -> None:
            self.assume_params.append(params)

        def assumed(parsed: dict[str, Any], **_: Any) -> None:
            self.assumed_keys.append(parsed["Credentials"]["AccessKeyId"])

        def stop(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
            self.stops.append((json.loads(params["body"])["TrainingJobName"], key))
            return AWSResponse("https://sagemaker.test/", 200, {}, None), {}

        def stop_tuning(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
            # moto has no StopHyperParameterTuningJob: answer it as SageMaker does (empty 200).
            self.tuning_stops.append(
                (json.loads(params["body"])["HyperParameterTuningJobName"], key)
            )
            return AWSResponse("https://sagemaker.test/", 200, {}, None), {}

        session.events.register("provide-client-params.*.*", record)
        session.events.register("provide-client-params.sts.AssumeRole", assume_params)
        session.events.register("after-call.sts.AssumeRole", assumed)
        session.events.register("before-call.sagemaker.StopTrainingJob", stop)
        session.events.register("before-call.sagemaker.StopHyperParameterTuningJob", stop_tuning)


@dataclass
class Platform:
    settings: PortalSettings
    seeded: Seeded
    session: boto3.Session
    signer: EcSigner
    calls: AwsCalls
    app: Any
    metrics: LocalMetrics = field(default_factory=LocalMetrics)
    """CloudWatch data points for the usage view (moto has no percentile statistics)."""

    def token(self, user: str, **overrides: Any) -> str:
        return self.signer.sign({**USERS[user], **overrides})

    def client(self, user: str | None) -> PortalClient:
        return PortalClient(self, user)

    def table(self, name: str) -> Any:
        return self.session.resource("dynamodb", region_name=REGION).Table(name)


class PortalClient(TestClient):
    """A TestClient signed in as ``user`` (a fresh ALB header on every request)."""

    def __init__(self, platform: Platform, user: str | None) -> None:
        super().__init__(platform.app, base_url="https://testserver", follow_redirects=False)
        self.platform = platform
        self.user = user

    def request(self, method: str, url: Any, **kwargs: Any) -> Any:
        headers = dict(kwargs.pop("headers", None) or {})
        if self.user is not None:
            headers.setdefault("x-amzn-oidc-data", self.platform.token(self.user))
        return super().request(method, url, headers=headers, **kwargs)

    def csrf(self) -> str:
        page = self.get(
            "/jobs" if USERS[self.user or "admin"].get("custom:tenant_id") else "/admin/tenants"
        )
        assert page.status_code == 200, page.text
        token: str | None = self.cookies.get("__Host-portal-csrf")
        assert token and re.fullmatch(r"[0-9a-f]{16}\.[0-9a-f]{32}", token)
        return token

    def post_form(self, url: str, data: dict[str, str], **kwargs: Any) -> Any:
        return self.post(url, data={"csrf_token": self.csrf(), **data}, **kwargs)


TUNE_FORM = {
    "algorithm_id": "xgboost",
    "dataset_key": "tenants/acme/datasets/iris/",
    "hyperparameters": "num_round=50\nobjective=binary:logistic",
    "objective_metric": "validation:auc",
    "objective_type": "Maximize",
    "strategy": "Bayesian",
    "max_training_jobs": "6",
    "max_parallel_training_jobs": "2",
    "instance_type": "ml.m5.large",
    "instance_count": "1",
    "max_runtime_seconds": "3600",
    "tune__xgboost__eta": "on",
    "min__xgboost__eta": "0.01",
    "max__xgboost__eta": "0.5",
    "scaling__xgboost__eta": "Logarithmic",
    "tune__xgboost__max_depth": "on",
    "min__xgboost__max_depth": "2",
    "max__xgboost__max_depth": "8",
    "scaling__xgboost__max_depth": "Linear",
    "tune__xgboost__tree_method": "on",
    "values__xgboost__tree_method": "hist, approx",
    # linear-learner's fields, posted too when the browser runs no script: ignored for xgboost.
    "tune__linear-learner__learning_rate": "on",
    "min__linear-learner__learning_rate": "not a number",
    "max__linear-learner__learning_rate": "1",
}
"""A valid tune form for acme's xgboost (what the page posts without JavaScript)."""

JOB_FORM = {
    "algorithm_id": "xgboost",
    "dataset_key": "tenants/acme/datasets/iris/",
    "hyperparameters": "num_round=10\nobjective=binary:logistic",
    "instance_type": "ml.m5.large",
    "instance_count": "1",
    "max_runtime_seconds": "3600",
}


def api_routes(app: Any) -> set[tuple[str, str]]:
    """Every (method, path) the app serves, through included routers (FastAPI nests them).

    Routers are included without an extra prefix, so each APIRoute's path is its full path.
    """
    from fastapi.routing import APIRoute

    found: set[tuple[str, str]] = set()

    def walk(routes: list[Any]) -> None:
        for route in routes:
            if isinstance(route, APIRoute):
                found.update((method, route.path) for method in route.methods or ())
            elif hasattr(route, "original_router"):
                walk(route.original_router.routes)

    walk(app.routes)
    assert ("GET", "/health") in found, "route discovery broke: /health not found"
    return found


def put_tuning_job(
    platform: Platform,
    tenant_id: str,
    *,
    status: JobStatus = JobStatus.IN_PROGRESS,
    trials: int = 0,
    objective_type: ObjectiveType = ObjectiveType.MAXIMIZE,
    hours_ago: int = 1,
) -> str:
    """A tuning job record of ``tenant_id`` in ``status`` with ``trials`` trials written to the
    Trials table (objective 0.5 + 0.01 * n, except every fourth, which reports none); its id."""
    submitted = utc_now() - timedelta(hours=hours_ago)
    job_id = new_job_id(tenant_id, submitted)
    request = TrainingRequest(
        tenant_id=tenant_id,
        job_id=job_id,
        algorithm_id="xgboost",
        dataset_key=f"tenants/{tenant_id}/datasets/{'iris' if tenant_id == 'acme' else 'churn'}/",
        hyperparameters={"objective": "binary:logistic"},
        instance_type="ml.m5.large",
        instance_count=1,
        max_runtime_seconds=3600,
        submitted_by=f"seed@{tenant_id}.example",
        submitted_at=submitted,
        tuning=TuningSpec(
            objective_metric="validation:auc",
            objective_type=objective_type,
            ranges=(
                ParameterRange(
                    name="eta", type=ParameterType.CONTINUOUS, min_value=0.01, max_value=0.5
                ),
            ),
            max_training_jobs=max(trials, 2),
            max_parallel_training_jobs=2,
        ),
    )
    jobs = JobRepository(platform.table(platform.settings.jobs_table))
    jobs.create(Job.from_request(request))
    job = jobs.get(tenant_id, job_id)
    assert job is not None and job.tuning_job_name
    written = [put_trial(platform, job, number) for number in range(1, trials + 1)]
    scored = [t for t in written if t.objective_value is not None]
    best = None
    if scored:
        pick = max if objective_type == ObjectiveType.MAXIMIZE else min
        top = pick(scored, key=lambda t: t.objective_value or 0.0)
        best = BestTrainingJob(
            training_job_name=top.training_job_name,
            objective_value=top.objective_value,
            hyperparameters=top.hyperparameters,
        )
    jobs.apply_state_update(
        tenant_id,
        job_id,
        JobStateUpdate(
            status=status,
            event_time=submitted + timedelta(minutes=5),
            tuning_job_arn=f"arn:aws:sagemaker:eu-west-1:123456789012:hyper-parameter-tuning-job/"
            f"{job.tuning_job_name}",
            tuning_progress=TuningProgress(
                completed=len(written), objective_succeeded=len(scored), in_progress=0
            ),
            best_training_job=best,
        ),
    )
    return job_id


def put_trial(platform: Platform, job: Job, number: int) -> Trial:
    """Trial ``number`` (1-based, launch order) of tuning job ``job``, written to the table."""
    assert job.tuning is not None and job.tuning_job_name
    name = f"{job.tuning_job_name}-{number:03d}-{number:08x}"
    value = None if number % 4 == 0 else round(0.5 + 0.01 * number, 4)
    now = utc_now()
    trial = Trial(
        tenant_id=job.tenant_id,
        trial_id=Trial.make_id(job.job_id, name),
        job_id=job.job_id,
        training_job_name=name,
        status="Completed",
        objective_value=value,
        objective_key=objective_key(job.job_id, value, job.tuning.objective_type),
        hyperparameters={"eta": f"{0.01 * number:.2f}"},
        final_metrics={} if value is None else {"validation:auc": value},
        last_event_time=now,
        updated_at=now,
    )
    assert TrialRepository(platform.table(platform.settings.trials_table)).apply(trial)
    return trial


def put_model(
    platform: Platform,
    tenant_id: str,
    job_id: str,
    *,
    status: ModelApprovalStatus = ModelApprovalStatus.PENDING,
    metrics: dict[str, float] | None = None,
    artifact_key: str | None = None,
) -> ModelVersion:
    """A model version of ``job_id``: a real moto model package in ``<tenant>-models`` (unless
    still Registering) and its record in the Models table; the archive in the artifacts bucket."""
    key = artifact_key or model_artifact_key(tenant_id, job_id)
    platform.session.client("s3", region_name=REGION).put_object(
        Bucket=platform.settings.artifacts_bucket,
        Key=key,
        Body=b"model archive of " + job_id.encode(),
    )
    group = model_package_group_name(tenant_id)
    arn = None
    if status != ModelApprovalStatus.REGISTERING:
        sagemaker = platform.session.client("sagemaker", region_name=REGION)
        try:
            sagemaker.describe_model_package_group(ModelPackageGroupName=group)
        except sagemaker.exceptions.ClientError:
            sagemaker.create_model_package_group(
                ModelPackageGroupName=group, Tags=[{"Key": "tenant", "Value": tenant_id}]
            )
        arn = sagemaker.create_model_package(
            ModelPackageGroupName=group,
            ModelApprovalStatus=status.value,
            InferenceSpecification={
                "Containers": [
                    {
                        "Image": "685385470294.dkr.ecr.eu-west-1.amazonaws.com/xgb:1",
                        "ModelDataUrl": f"s3://{platform.settings.artifacts_bucket}/{key}",
                    }
                ],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["text/csv"],
            },
        )["ModelPackageArn"]
    now = utc_now()
    values = metrics if metrics is not None else {"validation:auc": 0.91}
    model = ModelVersion(
        tenant_id=tenant_id,
        job_id=job_id,
        training_job_name=job_id,
        algorithm_id="xgboost",
        dataset_key=f"tenants/{tenant_id}/datasets/iris/",
        image_uri="685385470294.dkr.ecr.eu-west-1.amazonaws.com/xgb:1",
        model_artifact_key=key,
        metrics=[FinalMetric(name=name, value=value) for name, value in values.items()],
        hyperparameters={"num_round": "100"},
        model_package_group=group,
        model_package_arn=arn,
        model_version=None if arn is None else model_version_of_arn(arn),
        approval_status=status,
        created_at=now,
        updated_at=now,
    )
    stored, created = ModelRepository(platform.table(platform.settings.models_table)).put_if_absent(
        model
    )
    assert created
    return stored


def model_item(platform: Platform, tenant_id: str, job_id: str) -> dict[str, Any]:
    """The Models table item as stored (test-side read, not through the portal)."""
    item: dict[str, Any] = platform.table(platform.settings.models_table).get_item(
        Key={"tenant_id": tenant_id, "job_id": job_id}
    )["Item"]
    return item


@dataclass(frozen=True)
class BuiltStack:
    """The local stack (``create_resources`` and ``seed``) built once, for tests to restore."""

    settings: PortalSettings
    seeded: Seeded
    state: MotoState

    @classmethod
    def build(cls, **seed_options: bool) -> BuiltStack:
        """Create and seed the stack in a mock of its own (about half a second of moto calls)
        and take its state; ``seed_options`` go to :func:`local.stack.seed`."""
        with mock_aws():
            session = new_session(region_name=REGION)
            settings = create_resources(session)
            seeded = seed(settings, session, **seed_options)
            return cls(settings, seeded, MotoState.take())

    @contextmanager
    def restored(self) -> Iterator[tuple[PortalSettings, Seeded, boto3.Session]]:
        """A fresh ``mock_aws()`` holding a copy of the stack: the settings, what was seeded and
        a session, each the test's own."""
        with mock_aws():
            self.state.restore()
            yield (
                self.settings.model_copy(deep=True),
                copy.deepcopy(self.seeded),
                new_session(region_name=REGION),
            )
