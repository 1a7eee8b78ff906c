"""Validation of a training request against the tenant's quota and the algorithm catalog.

The portal (first check, before it queues the job) and the launch handler (second check, before
``CreateTrainingJob``) call the same :func:`validate_request`, so a request the portal accepted is
judged by the same rules later, with fresher data. Every problem carries a code for programs and a
message written for the tenant. A retraining run's request is checked the same way, plus its
validation channel, its manifest (``tenants/<t>/retraining/<policy>/<slot>/manifest.json``) and
its warm-start parents (the tenant's own finished tuning jobs of the same algorithm).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from pydantic import ValidationError

from .deployments import (
    Deployment,
    DeploymentAction,
    DeploymentRequest,
    DeploymentStatus,
    EndpointKind,
)
from .ids import is_job_id_of_tenant
from .keys import datasets_prefix, is_tenant_dataset_key
from .models import (
    CatalogEntry,
    DatasetType,
    Job,
    JobKind,
    Tenant,
    TenantStatus,
    TrainingRequest,
)
from .registry import ModelApprovalStatus, ModelVersion
from .repositories import (
    CatalogRepository,
    DeploymentRepository,
    JobRepository,
    ModelRepository,
    TenantRepository,
)
from .retraining import retraining_prefix
from .status import JobStatus
from .tuning import ParameterRange, ParameterType, TunableHyperparameter, TuningSpec, WarmStart


class ProblemCode(StrEnum):
    """Why a request can't run (now)."""

    TENANT_UNKNOWN = "TENANT_UNKNOWN"
    TENANT_NOT_ACTIVE = "TENANT_NOT_ACTIVE"
    ALGORITHM_UNKNOWN = "ALGORITHM_UNKNOWN"
    ALGORITHM_NOT_ALLOWED = "ALGORITHM_NOT_ALLOWED"
    INSTANCE_TYPE_NOT_ALLOWED = "INSTANCE_TYPE_NOT_ALLOWED"
    INSTANCE_TYPE_NOT_SUPPORTED = "INSTANCE_TYPE_NOT_SUPPORTED"
    INSTANCE_COUNT_TOO_HIGH = "INSTANCE_COUNT_TOO_HIGH"
    RUNTIME_TOO_LONG = "RUNTIME_TOO_LONG"
    SPOT_NOT_SUPPORTED = "SPOT_NOT_SUPPORTED"
    DATASET_OUTSIDE_TENANT = "DATASET_OUTSIDE_TENANT"
    HYPERPARAMETER_RESERVED = "HYPERPARAMETER_RESERVED"
    RUNNING_JOBS_LIMIT = "RUNNING_JOBS_LIMIT"
    PARALLEL_JOBS_TOO_HIGH = "PARALLEL_JOBS_TOO_HIGH"
    TUNING_NOT_SUPPORTED = "TUNING_NOT_SUPPORTED"
    TUNING_JOBS_TOO_MANY = "TUNING_JOBS_TOO_MANY"
    OBJECTIVE_UNKNOWN = "OBJECTIVE_UNKNOWN"
    RANGE_NOT_TUNABLE = "RANGE_NOT_TUNABLE"
    RANGE_TYPE_MISMATCH = "RANGE_TYPE_MISMATCH"
    RANGE_OUT_OF_BOUNDS = "RANGE_OUT_OF_BOUNDS"
    MODEL_UNKNOWN = "MODEL_UNKNOWN"
    MODEL_NOT_APPROVED = "MODEL_NOT_APPROVED"
    ENDPOINT_INSTANCE_TYPE_NOT_ALLOWED = "ENDPOINT_INSTANCE_TYPE_NOT_ALLOWED"
    ENDPOINT_INSTANCES_LIMIT = "ENDPOINT_INSTANCES_LIMIT"
    SERVERLESS_NOT_ALLOWED = "SERVERLESS_NOT_ALLOWED"
    SERVERLESS_CONCURRENCY_TOO_HIGH = "SERVERLESS_CONCURRENCY_TOO_HIGH"
    WARM_START_PARENT_INVALID = "WARM_START_PARENT_INVALID"


RESERVED_PREFIX = "sagemaker_"
"""Hyperparameters SageMaker's framework containers interpret (code location, entry point)."""

MANIFEST_FILE_NAME = "manifest.json"
"""The file name of a retraining run's manifest (``retraining.manifest_key``)."""

WARM_START_PARENT_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.STOPPED})
"""A tuning job warm-starts only from parents that finished (SageMaker's rule too)."""

TRANSIENT_PROBLEMS: frozenset[ProblemCode] = frozenset({ProblemCode.RUNNING_JOBS_LIMIT})
"""Problems that go away by themselves: the request may be retried later unchanged."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason a request can't run: ``code`` for programs, ``message`` for the tenant."""

    code: ProblemCode
    message: str


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """The outcome of :func:`validate_request`."""

    problems: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the request may run now."""
        return not self.problems

    @property
    def only_transient(self) -> bool:
        """True when the request is fine but must wait (the tenant's running-jobs quota is full)."""
        return bool(self.problems) and all(p.code in TRANSIENT_PROBLEMS for p in self.problems)

    @property
    def codes(self) -> frozenset[ProblemCode]:
        """The codes of all problems."""
        return frozenset(p.code for p in self.problems)

    @property
    def reason(self) -> str:
        """All messages in one sentence list, for the job record's ``failure_reason``."""
        return " ".join(p.message for p in self.problems)


def validate_request(
    request: TrainingRequest,
    *,
    tenant: Tenant | None,
    algorithm: CatalogEntry | None,
    running_jobs: int,
    warm_start_parents: Mapping[str, Job | None] | None = None,
) -> ValidationResult:
    """Check ``request`` against its tenant's record and quota and the catalog.

    ``tenant`` and ``algorithm`` are None when the tables hold no such record; ``running_jobs`` is
    the number of running-jobs slots the tenant's jobs in STARTING, IN_PROGRESS or STOPPING
    occupy (excluding this request's job): one per training job, ``max_parallel_training_jobs``
    per tuning job. The request needs :attr:`TrainingRequest.slots` more.
    ``warm_start_parents`` maps each warm-start parent job id of the request's tuning spec to its
    job record (None, or left out: no such job of the tenant). Pure: no I/O. All problems are
    reported, not just the first.
    """
    if tenant is None or tenant.tenant_id != request.tenant_id:
        return ValidationResult(
            (
                Problem(
                    ProblemCode.TENANT_UNKNOWN,
                    f"Tenant '{request.tenant_id}' is not registered on the platform; "
                    "ask your platform administrator to onboard it.",
                ),
            )
        )
    problems: list[Problem] = []
    if tenant.status != TenantStatus.ACTIVE:
        problems.append(
            Problem(
                ProblemCode.TENANT_NOT_ACTIVE,
                f"Your tenant account is {tenant.status.value.lower()}, so it can't launch "
                "training jobs; contact your platform administrator.",
            )
        )
    problems.extend(_data_problems(request))
    problems.extend(_algorithm_problems(request, tenant, algorithm))
    reserved = sorted(key for key in request.hyperparameters if key.startswith(RESERVED_PREFIX))
    if reserved:
        problems.append(
            Problem(
                ProblemCode.HYPERPARAMETER_RESERVED,
                f"Hyperparameters starting with '{RESERVED_PREFIX}' are set by the platform and "
                f"can't be submitted: remove {', '.join(reserved)}.",
            )
        )
    if request.instance_type not in tenant.allowed_instance_types:
        problems.append(
            Problem(
                ProblemCode.INSTANCE_TYPE_NOT_ALLOWED,
                f"Instance type {request.instance_type} is not in your quota; allowed: "
                f"{_listing(tenant.allowed_instance_types)}.",
            )
        )
    if request.instance_count > tenant.max_instance_count:
        problems.append(
            Problem(
                ProblemCode.INSTANCE_COUNT_TOO_HIGH,
                f"{request.instance_count} instances requested; your quota allows at most "
                f"{tenant.max_instance_count} per job.",
            )
        )
    if request.max_runtime_seconds > tenant.max_runtime_seconds:
        problems.append(
            Problem(
                ProblemCode.RUNTIME_TOO_LONG,
                f"A maximum runtime of {request.max_runtime_seconds} s was requested; your quota "
                f"allows at most {tenant.max_runtime_seconds} s.",
            )
        )
    if request.tuning is not None:
        problems.extend(_tuning_problems(request.tuning, tenant, algorithm))
        if request.tuning.warm_start is not None:
            problems.extend(
                _warm_start_problems(request, request.tuning.warm_start, warm_start_parents or {})
            )
    problems.extend(_slot_problems(request, tenant, running_jobs))
    return ValidationResult(tuple(problems))


def is_retraining_manifest_key(tenant_id: str, key: str) -> bool:
    """True when ``key`` is ``tenants/<tenant>/retraining/<policy>/<slot>/manifest.json`` (no
    empty, ``.`` or ``..`` segments), where the launch handler writes a run's manifest."""
    prefix = retraining_prefix(tenant_id)
    if not key.startswith(prefix):
        return False
    segments = key[len(prefix) :].split("/")
    return (
        len(segments) == 3
        and segments[-1] == MANIFEST_FILE_NAME
        and all(segment not in {"", ".", ".."} for segment in segments)
    )


def _data_problems(request: TrainingRequest) -> Iterable[Problem]:
    if request.dataset_type == DatasetType.MANIFEST_FILE:
        if not is_retraining_manifest_key(request.tenant_id, request.dataset_key):
            yield Problem(
                ProblemCode.DATASET_OUTSIDE_TENANT,
                f"The manifest '{request.dataset_key}' is not one of your retraining runs' "
                f"manifests: a manifest is a {MANIFEST_FILE_NAME} under "
                f"'{retraining_prefix(request.tenant_id)}'.",
            )
    elif not is_tenant_dataset_key(request.tenant_id, request.dataset_key):
        yield Problem(
            ProblemCode.DATASET_OUTSIDE_TENANT,
            f"The dataset '{request.dataset_key}' is not one of your datasets: choose a "
            f"dataset under '{datasets_prefix(request.tenant_id)}'.",
        )
    if request.validation_key is not None and not is_tenant_dataset_key(
        request.tenant_id, request.validation_key
    ):
        yield Problem(
            ProblemCode.DATASET_OUTSIDE_TENANT,
            f"The validation data '{request.validation_key}' is not one of your datasets: "
            f"choose a dataset under '{datasets_prefix(request.tenant_id)}'.",
        )


def _warm_start_problems(
    request: TrainingRequest, warm_start: WarmStart, parents: Mapping[str, Job | None]
) -> Iterable[Problem]:
    for parent_id in warm_start.parent_job_ids:
        parent = parents.get(parent_id)
        if (
            parent is None
            or not is_job_id_of_tenant(parent_id, request.tenant_id)
            or parent.tenant_id != request.tenant_id
            or parent.job_id != parent_id
        ):
            yield Problem(
                ProblemCode.WARM_START_PARENT_INVALID,
                f"The warm-start parent {parent_id} is not one of your jobs.",
            )
        elif parent.kind != JobKind.TUNING:
            yield Problem(
                ProblemCode.WARM_START_PARENT_INVALID,
                f"The warm-start parent {parent_id} is a training job; a tuning job warm-starts "
                "only from tuning jobs.",
            )
        elif parent.status not in WARM_START_PARENT_STATUSES:
            yield Problem(
                ProblemCode.WARM_START_PARENT_INVALID,
                f"The warm-start parent {parent_id} has not finished ({parent.status.value}); "
                "a tuning job warm-starts only from completed or stopped tuning jobs.",
            )
        elif parent.algorithm_id != request.algorithm_id:
            yield Problem(
                ProblemCode.WARM_START_PARENT_INVALID,
                f"The warm-start parent {parent_id} ran algorithm '{parent.algorithm_id}', not "
                f"'{request.algorithm_id}'; a warm start needs the same algorithm.",
            )
        elif (
            parent.tuning is not None
            and request.tuning is not None
            and parent.tuning.objective_metric != request.tuning.objective_metric
        ):
            yield Problem(
                ProblemCode.WARM_START_PARENT_INVALID,
                f"The warm-start parent {parent_id} optimised "
                f"'{parent.tuning.objective_metric}', not '{request.tuning.objective_metric}'; "
                "a warm start needs the same objective metric.",
            )


def _slot_problems(request: TrainingRequest, tenant: Tenant, running_jobs: int) -> list[Problem]:
    problems: list[Problem] = []
    if request.slots > 1 and request.slots > tenant.max_running_jobs:
        problems.append(
            Problem(
                ProblemCode.PARALLEL_JOBS_TOO_HIGH,
                f"{request.slots} parallel training jobs requested; your quota allows at most "
                f"{tenant.max_running_jobs} running at once.",
            )
        )
    elif request.slots == 1 and running_jobs >= tenant.max_running_jobs:
        problems.append(
            Problem(
                ProblemCode.RUNNING_JOBS_LIMIT,
                f"You already have {running_jobs} running job(s), the most your quota allows "
                f"({tenant.max_running_jobs}); the job will start when one finishes.",
            )
        )
    elif running_jobs + request.slots > tenant.max_running_jobs:
        problems.append(
            Problem(
                ProblemCode.RUNNING_JOBS_LIMIT,
                f"Your running jobs take {running_jobs} of the {tenant.max_running_jobs} slots "
                f"your quota allows and this tuning job runs up to {request.slots} training jobs "
                "at once; it will start when enough have finished.",
            )
        )
    return problems


def _tuning_problems(
    tuning: TuningSpec, tenant: Tenant, algorithm: CatalogEntry | None
) -> Iterable[Problem]:
    if tuning.max_training_jobs > tenant.max_tuning_training_jobs:
        yield Problem(
            ProblemCode.TUNING_JOBS_TOO_MANY,
            f"{tuning.max_training_jobs} training jobs requested for the tuning job; your quota "
            f"allows at most {tenant.max_tuning_training_jobs}.",
        )
    if algorithm is None:
        return  # ALGORITHM_UNKNOWN already says it
    if not algorithm.can_tune:
        yield Problem(
            ProblemCode.TUNING_NOT_SUPPORTED,
            f"Algorithm '{algorithm.id}' lists no tunable hyperparameters or metrics in the "
            "catalog, so it can't be tuned; submit a training job instead.",
        )
        return
    if tuning.objective_metric not in algorithm.tuning_objectives:
        yield Problem(
            ProblemCode.OBJECTIVE_UNKNOWN,
            f"'{tuning.objective_metric}' is not a metric algorithm '{algorithm.id}' reports; "
            f"choose one of {_listing(algorithm.tuning_objectives)}.",
        )
    for item in tuning.ranges:
        allowed = algorithm.tunable(item.name)
        if allowed is None:
            yield Problem(
                ProblemCode.RANGE_NOT_TUNABLE,
                f"Hyperparameter '{item.name}' can't be tuned for '{algorithm.id}'; tunable: "
                f"{_listing(h.name for h in algorithm.tunable_hyperparameters)}.",
            )
            continue
        yield from _range_problems(item, allowed)


def _range_problems(item: ParameterRange, allowed: TunableHyperparameter) -> Iterable[Problem]:
    if item.type != allowed.type:
        yield Problem(
            ProblemCode.RANGE_TYPE_MISMATCH,
            f"Hyperparameter '{item.name}' is {allowed.type.value.lower()}, not "
            f"{item.type.value.lower()}.",
        )
        return
    if item.type == ParameterType.CATEGORICAL:
        unknown = sorted(set(item.values) - set(allowed.values))
        if unknown:
            yield Problem(
                ProblemCode.RANGE_OUT_OF_BOUNDS,
                f"Hyperparameter '{item.name}' can't take {', '.join(unknown)}; allowed: "
                f"{_listing(allowed.values)}.",
            )
        return
    assert item.min_value is not None and item.max_value is not None
    assert allowed.min_value is not None and allowed.max_value is not None
    if item.min_value < allowed.min_value or item.max_value > allowed.max_value:
        yield Problem(
            ProblemCode.RANGE_OUT_OF_BOUNDS,
            f"The range of '{item.name}' ({item.min_value:g} to {item.max_value:g}) leaves the "
            f"allowed {allowed.min_value:g} to {allowed.max_value:g}.",
        )


def _algorithm_problems(
    request: TrainingRequest, tenant: Tenant, algorithm: CatalogEntry | None
) -> Iterable[Problem]:
    if algorithm is None or algorithm.id != request.algorithm_id:
        yield Problem(
            ProblemCode.ALGORITHM_UNKNOWN,
            f"Algorithm '{request.algorithm_id}' is not in the catalog.",
        )
        return
    if tenant.allowed_algorithms and algorithm.id not in tenant.allowed_algorithms:
        yield Problem(
            ProblemCode.ALGORITHM_NOT_ALLOWED,
            f"Algorithm '{algorithm.id}' is not enabled for your tenant; enabled: "
            f"{_listing(tenant.allowed_algorithms)}.",
        )
    if (
        algorithm.supported_instance_types
        and request.instance_type not in algorithm.supported_instance_types
    ):
        yield Problem(
            ProblemCode.INSTANCE_TYPE_NOT_SUPPORTED,
            f"Algorithm '{algorithm.id}' does not run on {request.instance_type}; it supports "
            f"{_listing(algorithm.supported_instance_types)}.",
        )
    if request.use_spot and not algorithm.supports_spot:
        yield Problem(
            ProblemCode.SPOT_NOT_SUPPORTED,
            f"Algorithm '{algorithm.id}' does not support managed spot training; "
            "submit the job without spot.",
        )


def _listing(values: Iterable[str]) -> str:
    items = sorted(values)
    return ", ".join(items) if items else "none"


def describe_schema_errors(error: ValidationError) -> list[str]:
    """One readable line per pydantic error (``"field: problem"``), for forms and logs."""
    lines = []
    for item in error.errors(include_url=False, include_input=False):
        location = ".".join(str(part) for part in item["loc"])
        lines.append(f"{location}: {item['msg']}" if location else str(item["msg"]))
    return lines


def check_request(
    request: TrainingRequest,
    *,
    tenants: TenantRepository,
    jobs: JobRepository,
    catalog: CatalogRepository,
) -> ValidationResult:
    """Load what :func:`validate_request` needs from the tables and the catalog, then call it
    (with a warm start: the parents' job records, read from the tenant's partition only).

    The portal's first check and the launch handler's second check both go through here.
    """
    tenant = tenants.get(request.tenant_id)
    if tenant is None:
        return validate_request(request, tenant=None, algorithm=None, running_jobs=0)
    warm_start = request.tuning.warm_start if request.tuning else None
    parents = {
        parent_id: (
            jobs.get(request.tenant_id, parent_id)
            if is_job_id_of_tenant(parent_id, request.tenant_id)
            else None
        )
        for parent_id in (warm_start.parent_job_ids if warm_start else ())
    }
    return validate_request(
        request,
        tenant=tenant,
        algorithm=catalog.get(request.algorithm_id),
        running_jobs=jobs.count_running(request.tenant_id),
        warm_start_parents=parents,
    )


QUOTA_FREE_STATUSES = frozenset({DeploymentStatus.DELETED, DeploymentStatus.FAILED})
"""Deployments in these states run no instances, so the endpoint quota doesn't count them."""


def validate_deployment(
    request: DeploymentRequest,
    *,
    tenant: Tenant | None,
    model: ModelVersion | None,
    deployments: Iterable[Deployment],
) -> ValidationResult:
    """Check a deploy request against its tenant's serving quota and the model registry.

    The portal (before it writes the PENDING record) and the deploy handler (before it creates
    anything) call this with fresh data. ``model`` is the ``MODELS_TABLE`` record of
    ``request.model_job_id`` (None when there is none); ``deployments`` the tenant's
    deployments (this one is skipped: its instances are the ones being replaced). The quota
    counts the other real-time deployments that may run instances (all but DELETED and FAILED):
    a blue/green update briefly runs both fleets, which the quota leaves to SageMaker's own
    account limits. Undeploy and monitor requests need only an active tenant. Pure: no I/O.
    """
    if tenant is None or tenant.tenant_id != request.tenant_id:
        return ValidationResult(
            (
                Problem(
                    ProblemCode.TENANT_UNKNOWN,
                    f"Tenant '{request.tenant_id}' is not registered on the platform; "
                    "ask your platform administrator to onboard it.",
                ),
            )
        )
    problems: list[Problem] = []
    if tenant.status != TenantStatus.ACTIVE and request.action == DeploymentAction.DEPLOY:
        problems.append(
            Problem(
                ProblemCode.TENANT_NOT_ACTIVE,
                f"Your tenant account is {tenant.status.value.lower()}, so it can't deploy "
                "models; contact your platform administrator.",
            )
        )
    if request.action != DeploymentAction.DEPLOY:
        return ValidationResult(tuple(problems))
    problems.extend(_model_problems(request, model))
    if request.kind == EndpointKind.SERVERLESS:
        problems.extend(_serverless_problems(request, tenant))
    else:
        problems.extend(_realtime_problems(request, tenant, deployments))
    return ValidationResult(tuple(problems))


def _model_problems(request: DeploymentRequest, model: ModelVersion | None) -> Iterable[Problem]:
    if (
        model is None
        or model.tenant_id != request.tenant_id
        or model.job_id != request.model_job_id
    ):
        yield Problem(
            ProblemCode.MODEL_UNKNOWN,
            f"Job {request.model_job_id} has no model in your registry.",
        )
        return
    if model.approval_status != ModelApprovalStatus.APPROVED or not model.model_package_arn:
        version = f"version {model.model_version}" if model.model_version else "The version"
        yield Problem(
            ProblemCode.MODEL_NOT_APPROVED,
            f"{version.capitalize()} from job {model.job_id} is not approved "
            f"({model.approval_status.value}); only approved versions can be deployed.",
        )


def _serverless_problems(request: DeploymentRequest, tenant: Tenant) -> Iterable[Problem]:
    assert request.serverless is not None
    if tenant.require_vpc_inference:
        yield Problem(
            ProblemCode.SERVERLESS_NOT_ALLOWED,
            "Your tenant's endpoints must run in the platform's private network, which "
            "serverless inference does not support; choose a real-time endpoint.",
        )
    if request.serverless.max_concurrency > tenant.max_serverless_concurrency:
        yield Problem(
            ProblemCode.SERVERLESS_CONCURRENCY_TOO_HIGH,
            f"A concurrency of {request.serverless.max_concurrency} was requested; your quota "
            f"allows at most {tenant.max_serverless_concurrency} per serverless endpoint.",
        )


def _realtime_problems(
    request: DeploymentRequest, tenant: Tenant, deployments: Iterable[Deployment]
) -> Iterable[Problem]:
    assert request.realtime is not None
    allowed = tenant.allowed_endpoint_instance_types or tenant.allowed_instance_types
    if request.realtime.instance_type not in allowed:
        yield Problem(
            ProblemCode.ENDPOINT_INSTANCE_TYPE_NOT_ALLOWED,
            f"Instance type {request.realtime.instance_type} is not in your endpoint quota; "
            f"allowed: {_listing(allowed)}.",
        )
    others = sum(
        item.realtime.instance_count
        for item in deployments
        if item.deployment_id != request.deployment_id
        and item.tenant_id == request.tenant_id
        and item.kind == EndpointKind.REALTIME
        and item.realtime is not None
        and item.status not in QUOTA_FREE_STATUSES
    )
    if others + request.realtime.instance_count > tenant.max_endpoint_instances:
        yield Problem(
            ProblemCode.ENDPOINT_INSTANCES_LIMIT,
            f"{request.realtime.instance_count} instance(s) requested while your other "
            f"endpoints run {others}; your quota allows {tenant.max_endpoint_instances} "
            "endpoint instances in all.",
        )


def check_deployment(
    request: DeploymentRequest,
    *,
    tenants: TenantRepository,
    models: ModelRepository,
    deployments: DeploymentRepository,
) -> ValidationResult:
    """Load what :func:`validate_deployment` needs from the tables, then call it."""
    tenant = tenants.get(request.tenant_id)
    if tenant is None or request.action != DeploymentAction.DEPLOY:
        return validate_deployment(request, tenant=tenant, model=None, deployments=())
    assert request.model_job_id is not None
    return validate_deployment(
        request,
        tenant=tenant,
        model=models.get(request.tenant_id, request.model_job_id),
        deployments=deployments.list_all(request.tenant_id),
    )
