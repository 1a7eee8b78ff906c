"""Names, ARNs, artifacts and the event clock that the local stack and the simulator share.

SageMaker's own naming is played here once: ARNs in moto's default account, the training jobs a
tuning job starts (``<tuning job name>-<nnn>-<8 hex>``) and where their model archives land.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import boto3
from training_common import (
    JobStatus,
    Notification,
    QueueMessage,
    iso_utc,
    output_prefix,
    utc_now,
)

REGION = "eu-west-1"
ACCOUNT = "123456789012"
"""moto's default account."""


def sagemaker_arn(resource: str, name: str) -> str:
    """``arn:aws:sagemaker:<region>:<account>:<resource>/<name>``."""
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{resource}/{name}"


def trial_name(tuning_job_name: str, index: int) -> str:
    """The name SageMaker gives the ``index``-th (1-based) training job of a tuning job."""
    digest = hashlib.sha256(f"{tuning_job_name}/{index}".encode()).hexdigest()[:8]
    return f"{tuning_job_name}-{index:03d}-{digest}"


def trial_artifact_key(tenant_id: str, job_id: str, training_job_name: str) -> str:
    """Where a tuning job's training job writes its model: SageMaker appends the training job's
    name to the tuning job's ``S3OutputPath`` (``tenants/<t>/jobs/<job id>/output/``)."""
    return f"{output_prefix(tenant_id, job_id)}{training_job_name}/output/model.tar.gz"


def model_archive(job_id: str, training_job_name: str | None = None) -> bytes:
    """A small but real model.tar.gz (one JSON file naming the job and training job)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        document = {"job_id": job_id, "weights": [0.12, -0.5, 1.7]}
        if training_job_name is not None:
            document["training_job_name"] = training_job_name
        data = json.dumps(document).encode()
        info = tarfile.TarInfo("model.json")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class EventClock:
    """The times the simulator stamps on its events: strictly increasing (by at least 1 ms, the
    platform's timestamp resolution), so conditional writes on ``last_event_time`` never see two
    events of one resource at the same instant.

    ``clock`` is a monotonic clock in seconds; event times are ``epoch`` plus the time elapsed on
    it. The live simulator uses ``time.monotonic`` and now; seeding runs a fake clock from hours
    ago, so seeded records carry plausible past times.
    """

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, epoch: datetime | None = None
    ) -> None:
        self.clock = clock
        self._origin = clock()
        self._epoch = epoch or utc_now()
        self._last: datetime | None = None
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The next event time."""
        with self._lock:
            at = self._epoch + timedelta(seconds=self.clock() - self._origin)
            at = at.replace(microsecond=at.microsecond // 1000 * 1000)
            if self._last is not None and at <= self._last:
                at = self._last + timedelta(milliseconds=1)
            self._last = at
            return at


class FakeClock:
    """A monotonic clock that moves only when told to (seeding and tests)."""

    def __init__(self, start: float = 0.0) -> None:
        self.value = start

    def __call__(self) -> float:
        return self.value

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.value += seconds


def job_notification(
    tenant_id: str,
    job_id: str,
    status: JobStatus,
    subject: str,
    message: str,
    at: datetime,
) -> Notification:
    """A job's notification at ``at`` (the job-events handler's shape)."""
    return Notification(
        tenant_id=tenant_id,
        notification_id=Notification.make_id(iso_utc(at), job_id),
        job_id=job_id,
        status=status,
        subject=subject[:100],
        message=message,
        created_at=at,
    )


class _Clients:
    """What the services' ``from_settings`` and repositories ask of a session, with moto's
    endpoint URL and the local region on every client (``None``: moto in process)."""

    def __init__(self, session: boto3.Session, endpoint_url: str | None) -> None:
        self._session = session
        self._endpoint_url = endpoint_url

    def client(self, name: str, **kwargs: Any) -> Any:
        kwargs.setdefault("region_name", REGION)
        kwargs.setdefault("endpoint_url", self._endpoint_url)
        return self._session.client(name, **kwargs)

    def resource(self, name: str, **kwargs: Any) -> Any:
        kwargs.setdefault("region_name", REGION)
        kwargs.setdefault("endpoint_url", self._endpoint_url)
        return self._session.resource(name, **kwargs)


def local_clients(session: boto3.Session, endpoint_url: str | None) -> boto3.Session:
    """A stand-in session whose clients and resources talk to moto in the local region."""
    return cast(boto3.Session, _Clients(session, endpoint_url))


def handle_queued(
    sqs: Any,
    queue_url: str,
    handle: Callable[[QueueMessage], object],
    *,
    what: str,
    log: logging.Logger,
) -> list[QueueMessage]:
    """Lambda's SQS event source, once: each message on ``queue_url`` now goes to ``handle``;
    a handled message is deleted, one whose handler raises stays on the queue (as Powertools'
    BatchProcessor leaves it). The messages handled, in order; ``what`` names them in ``log``."""
    response = sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=0,
        AttributeNames=["ApproximateReceiveCount"],
    )
    handled: list[QueueMessage] = []
    for raw in response.get("Messages", []):
        message = QueueMessage(
            message_id=raw["MessageId"],
            body=raw["Body"],
            receipt_handle=raw["ReceiptHandle"],
            receive_count=int(raw.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
        )
        try:
            outcome = handle(message)
        except Exception as error:
            log.info(f"{what} left on the queue", extra={"why": str(error)})
            continue
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=raw["ReceiptHandle"])
        log.info(f"{what} handled", extra={"outcome": str(outcome)})
        handled.append(message)
    return handled


@dataclass
class Loop:
    """Calls ``step`` every ``seconds`` on a daemon thread named ``name`` (a failed step is
    logged, and the next one comes on time)."""

    name: str
    step: Callable[[], object]
    seconds: float

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)

    def start(self) -> Loop:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.step()
            except Exception:
                logging.getLogger(f"local.{self.name}").exception("%s step failed", self.name)
            self._stop.wait(max(0.05, self.seconds - (time.monotonic() - started)))
