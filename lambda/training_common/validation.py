"""Validation of a training request against the tenant's quota and the algorithm catalog.

The portal (first check, before it queues the job) and the launch handler (second check, before
``CreateTrainingJob``) call the same :func:`validate_request`, so a request the portal accepted is
judged by the same rules later, with fresher data. Every problem carries a code for programs and a
message written for the tenant.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from pydantic import ValidationError

from .keys import datasets_prefix, is_tenant_dataset_key
from .models import CatalogEntry, Tenant, TenantStatus, TrainingRequest
from .repositories import CatalogRepository, JobRepository, TenantRepository


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


RESERVED_PREFIX = "sagemaker_"
"""Hyperparameters SageMaker's framework containers interpret (code location, entry point)."""

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
) -> ValidationResult:
    """Check ``request`` against its tenant's record and quota and the catalog.

    ``tenant`` and ``algorithm`` are None when the tables hold no such record; ``running_jobs`` is
    the tenant's number of jobs in STARTING, IN_PROGRESS or STOPPING (excluding this request's
    job). Pure: no I/O. All problems are reported, not just the first.
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
    if not is_tenant_dataset_key(request.tenant_id, request.dataset_key):
        problems.append(
            Problem(
                ProblemCode.DATASET_OUTSIDE_TENANT,
                f"The dataset '{request.dataset_key}' is not one of your datasets: choose a "
                f"dataset under '{datasets_prefix(request.tenant_id)}'.",
            )
        )
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
    if running_jobs >= tenant.max_running_jobs:
        problems.append(
            Problem(
                ProblemCode.RUNNING_JOBS_LIMIT,
                f"You already have {running_jobs} running job(s), the most your quota allows "
                f"({tenant.max_running_jobs}); the job will start when one finishes.",
            )
        )
    return ValidationResult(tuple(problems))


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
    """Load what :func:`validate_request` needs from the tables and the catalog, then call it.

    The portal's first check and the launch handler's second check both go through here.
    """
    tenant = tenants.get(request.tenant_id)
    if tenant is None:
        return validate_request(request, tenant=None, algorithm=None, running_jobs=0)
    return validate_request(
        request,
        tenant=tenant,
        algorithm=catalog.get(request.algorithm_id),
        running_jobs=jobs.count_running(request.tenant_id),
    )
