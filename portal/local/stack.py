"""The platform's AWS resources, built in moto the way the CDK stacks build them in AWS.

Used by the local runner (against a ``moto_server`` process) and by the tests (against moto in
process). Names are fixed; the account is moto's default.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import boto3
import httpx
from portal_app.settings import PortalSettings
from training_common import (
    DEFAULT_SCHEDULE,
    DEFAULT_TIMEZONE,
    INFERENCE_RESOURCE_SERVER,
    INFERENCE_SCOPE,
    ApprovalDecision,
    CatalogEntry,
    CatalogRepository,
    FinalMetric,
    Job,
    JobRepository,
    JobStateUpdate,
    JobStatus,
    MetricDefinition,
    ModelApprovalStatus,
    ModelObjective,
    ModelRepository,
    Notification,
    NotificationRepository,
    ObjectiveType,
    ParameterType,
    Tenant,
    TenantRepository,
    TenantStatus,
    TrainingRequest,
    TunableHyperparameter,
    create_tables,
    iso_utc,
    model_artifact_key,
    new_job_id,
    utc_now,
)

from .common import ACCOUNT as ACCOUNT  # re-exported: the tests and runner import them here
from .common import REGION as REGION
from .common import model_archive
from .registry import LocalRegistry
from .search import metric_series
from .seed_tuning import SEED_SPEC, seed_tuning_job

LOCAL_INFERENCE_API_URL = "http://127.0.0.1:8081"
DEAD_LETTER_QUEUE = "platform-dead-letters"
JOB_EVENTS_QUEUE = "job-events"
RETRAINING_POLICIES_TABLE = "RetrainingPolicies"
RETRAINING_RUNS_TABLE = "RetrainingRuns"
RETRAINING_REQUESTS_QUEUE = "retraining-requests"
RETRAINING_REQUESTS_DLQ = "retraining-requests-dead-letters"
SCHEDULER_DLQ = "scheduler-dead-letters"
"""Where EventBridge Scheduler puts a trigger it could not deliver (the local scheduler too)."""
SCHEDULE_GROUP = "local-retraining"
"""The platform's schedule group in moto's EventBridge Scheduler (``<environment>-retraining``)."""
SCHEDULER_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/retraining-scheduler"
LOCAL_FLEXIBLE_WINDOW_MINUTES = 0
"""The form's default flexible window locally: the local scheduler fires on its interval anyway."""
HOLDOUT_DATASET = "iris-holdout"
"""acme's held-out validation data: the approved model's objective was measured on it, and a
retraining policy compares every run on it."""
OPERATOR_ALARMS_TOPIC = "operator-alarms"
"""The Observability stack's topic: every endpoint alarm reaches it (an EventBridge rule)."""

ALB_ARN = (
    f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}"
    ":loadbalancer/app/portal-local/0123456789abcdef"
)


@dataclass
class Seeded:
    """What :func:`seed` created, for tests and the runner's banner."""

    jobs: dict[str, list[str]] = field(default_factory=dict)
    """Each tenant's seeded training jobs: acme's COMPLETED, FAILED, STOPPED; globex's COMPLETED."""
    datasets: dict[str, str] = field(default_factory=dict)
    tuning_jobs: dict[str, str] = field(default_factory=dict)
    """The finished tuning job seeded for acme (8 trials, its model pending approval)."""
    approved_models: dict[str, str] = field(default_factory=dict)
    """acme's approved model version, ready to deploy: the job id of a completed training job
    (not in ``jobs``) whose dataset exists, registered and approved."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MotoServer:
    """``moto_server`` in a child process on 127.0.0.1 and a free port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> MotoServer:
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/moto-api/", timeout=1).status_code < 500:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("moto_server did not start within 30 s")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
            self._process = None


def _client(session: boto3.Session, service: str, endpoint_url: str | None) -> Any:
    return session.client(service, region_name=REGION, endpoint_url=endpoint_url)


def create_resources(
    session: boto3.Session,
    endpoint_url: str | None = None,
    *,
    inference_api_url: str = LOCAL_INFERENCE_API_URL,
) -> PortalSettings:
    """Create tables, buckets, queues, topics, tenant role and user pool (with the inference
    API's resource server); their settings. ``inference_api_url`` is where the local inference
    API will listen (the runner picks the port first, so the portal's pages show it)."""
    dynamodb = _client(session, "dynamodb", endpoint_url)
    s3 = _client(session, "s3", endpoint_url)
    names = {
        "tenants": "Tenants",
        "jobs": "Jobs",
        "notifications": "Notifications",
        "trials": "Trials",
        "models": "Models",
        "deployments": "Deployments",
        "api_clients": "ApiClients",
        "retraining_policies": RETRAINING_POLICIES_TABLE,
        "retraining_runs": RETRAINING_RUNS_TABLE,
    }
    create_tables(dynamodb, **names)
    buckets = {
        "data": "platform-data",
        "artifacts": "platform-artifacts",
        "catalog": "platform-catalog",
    }
    for bucket in buckets.values():
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    sqs = _client(session, "sqs", endpoint_url)
    queue_url = sqs.create_queue(QueueName="training-requests")["QueueUrl"]
    deployment_queue_url = sqs.create_queue(QueueName="deployment-requests")["QueueUrl"]
    sqs.create_queue(QueueName=DEAD_LETTER_QUEUE)
    sqs.create_queue(QueueName=JOB_EVENTS_QUEUE)
    retraining_queue_url = sqs.create_queue(QueueName=RETRAINING_REQUESTS_QUEUE)["QueueUrl"]
    sqs.create_queue(QueueName=RETRAINING_REQUESTS_DLQ)
    sqs.create_queue(QueueName=SCHEDULER_DLQ)
    _client(session, "scheduler", endpoint_url).create_schedule_group(Name=SCHEDULE_GROUP)
    sns = _client(session, "sns", endpoint_url)
    topic_arn = sns.create_topic(Name="notifications")["TopicArn"]
    sns.create_topic(Name=OPERATOR_ALARMS_TOPIC)
    role_arn = _client(session, "iam", endpoint_url).create_role(
        RoleName="portal-tenant-access",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                        "Action": ["sts:AssumeRole", "sts:TagSession"],
                    }
                ],
            }
        ),
    )["Role"]["Arn"]
    cognito = _client(session, "cognito-idp", endpoint_url)
    pool_id = cognito.create_user_pool(
        PoolName="portal-users",
        Schema=[
            {
                "Name": "tenant_id",
                "AttributeDataType": "String",
                "Mutable": False,
                "StringAttributeConstraints": {"MinLength": "3", "MaxLength": "24"},
            }
        ],
    )["UserPool"]["Id"]
    cognito.create_group(GroupName="admins", UserPoolId=pool_id)
    cognito.create_resource_server(
        UserPoolId=pool_id,
        Identifier=INFERENCE_RESOURCE_SERVER,
        Name="Inference API",
        Scopes=[
            {
                "ScopeName": INFERENCE_SCOPE.split("/", 1)[1],
                "ScopeDescription": "Invoke the tenant's endpoints",
            }
        ],
    )
    return PortalSettings(
        aws_region=REGION,
        alb_arn=ALB_ARN,
        tenants_table=names["tenants"],
        jobs_table=names["jobs"],
        notifications_table=names["notifications"],
        trials_table=names["trials"],
        models_table=names["models"],
        data_bucket=buckets["data"],
        artifacts_bucket=buckets["artifacts"],
        catalog_bucket=buckets["catalog"],
        training_requests_queue_url=queue_url,
        notifications_topic_arn=topic_arn,
        tenant_role_arn=role_arn,
        user_pool_id=pool_id,
        deployments_table=names["deployments"],
        api_clients_table=names["api_clients"],
        deployment_requests_queue_url=deployment_queue_url,
        inference_api_url=inference_api_url,
        oauth_token_url=f"{inference_api_url}/oauth2/token",
        max_upload_bytes=50 * 1024 * 1024,
        retraining_policies_table=RETRAINING_POLICIES_TABLE,
        retraining_runs_table=RETRAINING_RUNS_TABLE,
        retraining_requests_queue_url=retraining_queue_url,
        default_schedule=DEFAULT_SCHEDULE,
        default_timezone=DEFAULT_TIMEZONE,
        flexible_window_minutes=LOCAL_FLEXIBLE_WINDOW_MINUTES,
    )


def _metric(name: str, regex: str) -> MetricDefinition:
    return MetricDefinition.model_validate({"Name": name, "Regex": regex})


def _numeric(name: str, kind: ParameterType, low: float, high: float) -> TunableHyperparameter:
    return TunableHyperparameter(name=name, type=kind, min_value=low, max_value=high)


def _categorical(name: str, *values: str) -> TunableHyperparameter:
    return TunableHyperparameter(name=name, type=ParameterType.CATEGORICAL, values=values)


CATALOG = [
    CatalogEntry(
        id="xgboost",
        name="XGBoost (built-in)",
        description="Gradient-boosted trees for tabular classification and regression.",
        image_uri="685385470294.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:1.7-1",
        default_hyperparameters={"num_round": "100", "objective": "binary:logistic"},
        metric_definitions=[
            _metric("validation:auc", r"validation-auc:([0-9.]+)"),
            _metric("train:auc", r"train-auc:([0-9.]+)"),
        ],
        supported_instance_types=["ml.m5.large", "ml.m5.xlarge", "ml.c5.2xlarge"],
        supports_spot=True,
        input_content_type="text/csv",
        tunable_hyperparameters=[
            _numeric("eta", ParameterType.CONTINUOUS, 0.001, 1.0),
            _numeric("max_depth", ParameterType.INTEGER, 1, 20),
            _numeric("min_child_weight", ParameterType.CONTINUOUS, 0.0, 120.0),
            _numeric("subsample", ParameterType.CONTINUOUS, 0.5, 1.0),
            _numeric("num_round", ParameterType.INTEGER, 10, 1000),
            _categorical("tree_method", "auto", "exact", "approx", "hist"),
        ],
        objective_metrics=["validation:auc"],
    ),
    CatalogEntry(
        id="linear-learner",
        name="Linear learner (built-in)",
        description="Linear models for regression and classification.",
        image_uri="438346466558.dkr.ecr.eu-west-1.amazonaws.com/linear-learner:1",
        default_hyperparameters={"predictor_type": "regressor", "epochs": "15"},
        metric_definitions=[_metric("test:mse", r"mse=([0-9.]+)")],
        supported_instance_types=["ml.m5.large", "ml.m5.xlarge"],
        supports_spot=False,
        input_content_type="text/csv",
        tunable_hyperparameters=[
            _numeric("learning_rate", ParameterType.CONTINUOUS, 1e-4, 1.0),
            _numeric("mini_batch_size", ParameterType.INTEGER, 100, 5000),
            _numeric("wd", ParameterType.CONTINUOUS, 1e-7, 1.0),
        ],
    ),
    CatalogEntry(
        id="anomaly-detector",
        name="Sensor anomaly detector (bring your own container)",
        description="Random cut forest over sensor time series from smart products.",
        image_uri=f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/anomaly-detector:2.1.0",
        default_hyperparameters={"num_trees": "50", "num_samples_per_tree": "256"},
        metric_definitions=[_metric("test:f1", r"f1=([0-9.]+)")],
        supported_instance_types=[],
        supports_spot=True,
        input_content_type="application/x-recordio-protobuf",
    ),
]

SEEDED_METRICS = {"validation:auc": 0.913, "train:auc": 0.941}
"""The final metrics of every seeded completed training job."""
SEEDED_OBJECTIVE = ModelObjective(
    name="validation:auc", type=ObjectiveType.MAXIMIZE, value=SEEDED_METRICS["validation:auc"]
)
"""The objective recorded on acme's approved model (its ``validation:auc`` on the holdout)."""
APPROVED_SPEC = SEED_SPEC.model_copy(update={"max_training_jobs": 4})
"""The search of acme's approved tuned model (with ``retraining``): 4 trials, 2 at a time, so a
local retraining run takes about five simulator steps."""

TENANTS = [
    Tenant(
        tenant_id="acme",
        display_name="Acme Smart Devices",
        status=TenantStatus.ACTIVE,
        max_running_jobs=3,
        max_instance_count=2,
        allowed_instance_types=["ml.m5.large", "ml.m5.xlarge"],
        allowed_algorithms=[],
        max_runtime_seconds=86400,
        notification_email="ml-team@acme.example",
    ),
    Tenant(
        tenant_id="globex",
        display_name="Globex Appliances",
        status=TenantStatus.ACTIVE,
        max_running_jobs=1,
        max_instance_count=1,
        allowed_instance_types=["ml.m5.large"],
        allowed_algorithms=["xgboost"],
        max_runtime_seconds=7200,
        require_vpc_inference=True,
    ),
]


def seed(
    settings: PortalSettings,
    session: boto3.Session,
    endpoint_url: str | None = None,
    *,
    tuning_job: bool = True,
    approved_model: bool = True,
    retraining: bool = False,
) -> Seeded:
    """Tenants, catalog, one dataset each, finished jobs in several states, acme's finished
    tuning job with its model pending approval (unless ``tuning_job`` is False: the portal
    tests, which write their own, skip its two seconds of moto calls), acme's approved model
    version to deploy (unless ``approved_model`` is False), and the users.

    The approved model was measured on acme's held-out folder :data:`HOLDOUT_DATASET` (its job's
    and version's ``validation_key``), so a retraining policy for its deployment compares runs on
    the same channel. With ``retraining`` (the runner and the retraining tests) that folder has
    data and the approved model is a small finished tuning job's (:data:`APPROVED_SPEC`: a
    policy repeats and warm-starts its search); without it (the portal tests, which count acme's
    dataset folders and skip the tuning job's moto calls) it is a training job's, with
    :data:`SEEDED_OBJECTIVE`."""
    s3 = _client(session, "s3", endpoint_url)
    dynamodb = session.resource("dynamodb", region_name=REGION, endpoint_url=endpoint_url)
    tenants = TenantRepository(dynamodb.Table(settings.tenants_table))
    jobs = JobRepository(dynamodb.Table(settings.jobs_table))
    notifications = NotificationRepository(dynamodb.Table(settings.notifications_table))
    catalog = CatalogRepository(s3, settings.catalog_bucket, 0)
    for entry in CATALOG:
        catalog.put(entry)
    seeded = Seeded()
    for tenant in TENANTS:
        tenants.put(tenant)
        name = "iris" if tenant.tenant_id == "acme" else "churn"
        key = f"tenants/{tenant.tenant_id}/datasets/{name}/"
        s3.put_object(
            Bucket=settings.data_bucket,
            Key=key + "train.csv",
            Body=b"label,f1,f2\n1,0.5,0.7\n0,0.1,0.2\n",
            ContentType="text/csv",
        )
        seeded.datasets[tenant.tenant_id] = key
        if retraining and tenant.tenant_id == "acme":
            s3.put_object(
                Bucket=settings.data_bucket,
                Key=f"{holdout_key(tenant.tenant_id)}validation.csv",
                Body=b"label,f1,f2\n1,0.6,0.8\n0,0.2,0.1\n",
                ContentType="text/csv",
            )
        finals = (
            [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.STOPPED]
            if tenant.tenant_id == "acme"
            else [JobStatus.COMPLETED]
        )
        seeded.jobs[tenant.tenant_id] = []
        for offset, status in enumerate(finals):
            job_id = _seed_job(
                settings, s3, jobs, notifications, tenant, key, status, hours_ago=3 - offset
            )
            seeded.jobs[tenant.tenant_id].append(job_id)
        if approved_model and tenant.tenant_id == "acme":
            seeded.approved_models[tenant.tenant_id] = (
                _seed_approved_tuning_job(settings, session, endpoint_url, s3, tenant, key)
                if retraining
                else _seed_approved_model(
                    settings, session, endpoint_url, s3, jobs, notifications, tenant, key
                )
            )
        if tuning_job and tenant.tenant_id == "acme":
            seeded.tuning_jobs[tenant.tenant_id] = seed_tuning_job(
                settings,
                dynamodb=dynamodb,
                s3=s3,
                sagemaker=_client(session, "sagemaker", endpoint_url),
                entry=CATALOG[0],
                tenant_id=tenant.tenant_id,
                dataset_key=key,
                submitted=utc_now() - timedelta(minutes=90),
            )
    cognito = _client(session, "cognito-idp", endpoint_url)
    for email, tenant_id in (("alice@acme.example", "acme"), ("gina@globex.example", "globex")):
        cognito.admin_create_user(
            UserPoolId=settings.user_pool_id,
            Username=email,
            UserAttributes=[
                {"Name": "email", "Value": email},
                {"Name": "custom:tenant_id", "Value": tenant_id},
            ],
            MessageAction="SUPPRESS",
        )
    cognito.admin_create_user(
        UserPoolId=settings.user_pool_id,
        Username="admin@platform.example",
        UserAttributes=[{"Name": "email", "Value": "admin@platform.example"}],
        MessageAction="SUPPRESS",
    )
    cognito.admin_add_user_to_group(
        UserPoolId=settings.user_pool_id, Username="admin@platform.example", GroupName="admins"
    )
    return seeded


def holdout_key(tenant_id: str) -> str:
    """The seeded held-out validation folder of ``tenant_id``."""
    return f"tenants/{tenant_id}/datasets/{HOLDOUT_DATASET}/"


def _seed_job(
    settings: PortalSettings,
    s3: Any,
    jobs: JobRepository,
    notifications: NotificationRepository,
    tenant: Tenant,
    dataset: str,
    status: JobStatus,
    *,
    hours_ago: int,
    validation_key: str | None = None,
) -> str:
    submitted = utc_now() - timedelta(hours=hours_ago)
    job_id = new_job_id(tenant.tenant_id, submitted)
    request = TrainingRequest(
        tenant_id=tenant.tenant_id,
        job_id=job_id,
        algorithm_id="xgboost",
        dataset_key=dataset,
        hyperparameters=dict(CATALOG[0].default_hyperparameters),
        instance_type="ml.m5.large",
        instance_count=1,
        max_runtime_seconds=3600,
        submitted_by=f"seed@{tenant.tenant_id}.example",
        submitted_at=submitted,
        validation_key=validation_key,
    )
    jobs.create(Job.from_request(request))
    start = submitted + timedelta(minutes=2)
    jobs.apply_state_update(
        tenant.tenant_id,
        job_id,
        JobStateUpdate(status=JobStatus.IN_PROGRESS, event_time=start, secondary_status="Training"),
    )
    end = start + timedelta(minutes=20)
    update: dict[str, Any] = {"status": status, "event_time": end, "billable_seconds": 1200}
    finals = SEEDED_METRICS
    if status == JobStatus.COMPLETED:
        key = model_artifact_key(tenant.tenant_id, job_id)
        s3.put_object(Bucket=settings.artifacts_bucket, Key=key, Body=model_archive(job_id))
        update |= {
            "secondary_status": "Completed",
            "model_artifact_key": key,
            "final_metrics": [FinalMetric(name=n, value=v) for n, v in finals.items()],
        }
    elif status == JobStatus.FAILED:
        update |= {
            "secondary_status": "Failed",
            "failure_reason": "AlgorithmError: label column missing in 3 rows",
        }
    else:
        update |= {"secondary_status": "Stopped"}
    jobs.apply_state_update(tenant.tenant_id, job_id, JobStateUpdate(**update))
    if status == JobStatus.COMPLETED:
        jobs.set_metric_series(tenant.tenant_id, job_id, metric_series(finals, start, end))
    created = iso_utc(end)
    notifications.put_if_absent(
        Notification(
            tenant_id=tenant.tenant_id,
            notification_id=Notification.make_id(created, job_id),
            job_id=job_id,
            status=status,
            subject=f"Training job {status.value.lower()}: {job_id}"[:100],
            message=f"Job {job_id} ended {status.value}.",
            created_at=end,
        )
    )
    return job_id


def _seed_approved_tuning_job(
    settings: PortalSettings,
    session: boto3.Session,
    endpoint_url: str | None,
    s3: Any,
    tenant: Tenant,
    dataset: str,
) -> str:
    """A finished tuning job of ``tenant`` over ``dataset``, measured on the holdout folder, its
    best model registered and approved: what a retraining policy's deployment serves."""
    dynamodb = session.resource("dynamodb", region_name=REGION, endpoint_url=endpoint_url)
    sagemaker = _client(session, "sagemaker", endpoint_url)
    at = utc_now() - timedelta(hours=5)
    job_id = seed_tuning_job(
        settings,
        dynamodb=dynamodb,
        s3=s3,
        sagemaker=sagemaker,
        entry=CATALOG[0],
        tenant_id=tenant.tenant_id,
        dataset_key=dataset,
        submitted=at,
        spec=APPROVED_SPEC,
        validation_key=holdout_key(tenant.tenant_id),
    )
    models = ModelRepository(dynamodb.Table(settings.models_table))
    version = models.get(tenant.tenant_id, job_id)
    assert version is not None and version.model_package_arn
    comment = "Seeded: the tuned model a newcomer deploys and retrains"
    sagemaker.update_model_package(
        ModelPackageArn=version.model_package_arn,
        ModelApprovalStatus=ModelApprovalStatus.APPROVED.value,
        ApprovalDescription=comment,
    )
    decided = at + timedelta(hours=1)
    models.record_decision(
        tenant.tenant_id,
        job_id,
        ApprovalDecision(
            status=ModelApprovalStatus.APPROVED,
            by=f"seed@{tenant.tenant_id}.example",
            at=decided,
            comment=comment,
        ),
    )
    models.apply_status_event(
        tenant.tenant_id, job_id, ModelApprovalStatus.APPROVED, decided + timedelta(seconds=1)
    )
    return job_id


def _seed_approved_model(
    settings: PortalSettings,
    session: boto3.Session,
    endpoint_url: str | None,
    s3: Any,
    jobs: JobRepository,
    notifications: NotificationRepository,
    tenant: Tenant,
    dataset: str,
) -> str:
    """A completed xgboost job of ``tenant`` over ``dataset``, its model registered in moto and
    approved (as SageMaker's state-change event would leave the record): what a newcomer
    deploys first. The deploy handler's baseline job reads ``dataset``, which exists."""
    job_id = _seed_job(
        settings,
        s3,
        jobs,
        notifications,
        tenant,
        dataset,
        JobStatus.COMPLETED,
        hours_ago=6,
        validation_key=holdout_key(tenant.tenant_id),
    )
    job = jobs.get(tenant.tenant_id, job_id)
    assert job is not None and job.model_artifact_key
    dynamodb = session.resource("dynamodb", region_name=REGION, endpoint_url=endpoint_url)
    sagemaker = _client(session, "sagemaker", endpoint_url)
    models = ModelRepository(dynamodb.Table(settings.models_table))
    registry = LocalRegistry(
        sagemaker=sagemaker,
        s3=s3,
        artifacts_bucket=settings.artifacts_bucket,
        models=models,
        notifications=notifications,
        clock=lambda: job.updated_at,
    )
    version = registry.register(
        job,
        training_job_name=job_id,
        artifact_key=job.model_artifact_key,
        image_uri=CATALOG[0].image_uri,
        content_type=CATALOG[0].input_content_type,
        metrics=job.final_metrics,
        hyperparameters=job.hyperparameters,
        objective=SEEDED_OBJECTIVE,
    )
    assert version.model_package_arn
    sagemaker.update_model_package(
        ModelPackageArn=version.model_package_arn,
        ModelApprovalStatus=ModelApprovalStatus.APPROVED.value,
        ApprovalDescription="Seeded: the model a newcomer deploys first",
    )
    decision = ApprovalDecision(
        status=ModelApprovalStatus.APPROVED,
        by=f"seed@{tenant.tenant_id}.example",
        at=job.updated_at,
        comment="Seeded: the model a newcomer deploys first",
    )
    models.record_decision(tenant.tenant_id, job_id, decision)
    models.apply_status_event(
        tenant.tenant_id,
        job_id,
        ModelApprovalStatus.APPROVED,
        job.updated_at + timedelta(seconds=1),
    )
    return job_id
