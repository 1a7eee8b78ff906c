"""The job status machine.

``QUEUED -> STARTING -> IN_PROGRESS -> COMPLETED | FAILED | STOPPED``, ``STOPPING`` between
``IN_PROGRESS`` and ``STOPPED``, ``REJECTED`` when the launch handler's validation fails. A final
state is never overwritten. SageMaker's state-change events can overtake the launch handler's own
``QUEUED -> STARTING`` write, so SageMaker states are reachable from ``QUEUED`` too.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """Status of a job record."""

    QUEUED = "QUEUED"
    STARTING = "STARTING"
    IN_PROGRESS = "IN_PROGRESS"
    STOPPING = "STOPPING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"
    REJECTED = "REJECTED"


FINAL_STATUSES: frozenset[JobStatus] = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.REJECTED}
)
"""States a job never leaves."""

RUNNING_STATUSES: frozenset[JobStatus] = frozenset(
    {JobStatus.STARTING, JobStatus.IN_PROGRESS, JobStatus.STOPPING}
)
"""States that count against a tenant's ``max_running_jobs``."""

_SAGEMAKER_STATUS: dict[str, JobStatus] = {
    "InProgress": JobStatus.IN_PROGRESS,
    "Completed": JobStatus.COMPLETED,
    "Failed": JobStatus.FAILED,
    "Stopping": JobStatus.STOPPING,
    "Stopped": JobStatus.STOPPED,
}

_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset(
        {
            JobStatus.STARTING,
            JobStatus.REJECTED,
            JobStatus.IN_PROGRESS,
            JobStatus.STOPPING,
            JobStatus.COMPLETED,
            JobStatus.FAILED,
            JobStatus.STOPPED,
        }
    ),
    JobStatus.STARTING: frozenset(
        {
            JobStatus.IN_PROGRESS,
            JobStatus.STOPPING,
            JobStatus.COMPLETED,
            JobStatus.FAILED,
            JobStatus.STOPPED,
        }
    ),
    JobStatus.IN_PROGRESS: frozenset(
        {
            JobStatus.IN_PROGRESS,
            JobStatus.STOPPING,
            JobStatus.COMPLETED,
            JobStatus.FAILED,
            JobStatus.STOPPED,
        }
    ),
    JobStatus.STOPPING: frozenset(
        {JobStatus.STOPPING, JobStatus.STOPPED, JobStatus.COMPLETED, JobStatus.FAILED}
    ),
}


def from_sagemaker_status(training_job_status: str) -> JobStatus:
    """Map SageMaker's ``TrainingJobStatus`` to a job status; ValueError for an unknown one."""
    try:
        return _SAGEMAKER_STATUS[training_job_status]
    except KeyError:
        raise ValueError(f"unknown SageMaker training job status {training_job_status!r}") from None


def is_final(status: JobStatus) -> bool:
    """True for COMPLETED, FAILED, STOPPED and REJECTED."""
    return status in FINAL_STATUSES


def can_transition(current: JobStatus, new: JobStatus) -> bool:
    """Whether a record in ``current`` may be written with ``new``.

    Re-writing the same running or final status is allowed (a newer event adds details such as
    metrics or billable seconds); moving out of a final state never is.
    """
    if current == new:
        return current != JobStatus.QUEUED
    return new in _TRANSITIONS.get(current, frozenset())


def allowed_predecessors(new: JobStatus) -> frozenset[JobStatus]:
    """Every status from which ``new`` may be written (for DynamoDB condition expressions)."""
    return frozenset(status for status in JobStatus if can_transition(status, new))
