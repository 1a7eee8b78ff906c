"""Plays the launch handler and SageMaker for the local runner, so submitted jobs progress.

The handlers' own code isn't wired here: the simulator reads the training-requests queue, runs the
same ``check_request`` the launch handler runs, and moves records through the same
``JobRepository`` methods the handlers use (``transition`` for the launch, ``apply_state_update``
for SageMaker's state-change events). On completion it writes a real ``model.tar.gz`` where
SageMaker would and a notification. ``StopTrainingJob`` (which moto lacks) is answered by
:meth:`JobSimulator.session_hook`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from portal_app.settings import PortalSettings
from training_common import (
    CatalogRepository,
    FinalMetric,
    JobRepository,
    JobStateUpdate,
    JobStatus,
    Notification,
    NotificationRepository,
    TenantRepository,
    TrainingRequest,
    check_request,
    iso_utc,
    model_artifact_key,
    utc_now,
)

from .stack import REGION, model_archive

log = logging.getLogger("local.simulator")


@dataclass
class _Running:
    tenant_id: str
    job_id: str
    started: float
    stage: int = 0
    stop_requested: bool = False


class JobSimulator:
    """Background thread: queue → STARTING → IN_PROGRESS → COMPLETED (or STOPPED)."""

    def __init__(
        self,
        settings: PortalSettings,
        session: boto3.Session,
        endpoint_url: str | None,
        *,
        step_seconds: float = 1.5,
    ) -> None:
        self.settings = settings
        self.step = step_seconds
        self.sqs = session.client("sqs", region_name=REGION, endpoint_url=endpoint_url)
        self.s3 = session.client("s3", region_name=REGION, endpoint_url=endpoint_url)
        dynamodb = session.resource("dynamodb", region_name=REGION, endpoint_url=endpoint_url)
        self.tenants = TenantRepository(dynamodb.Table(settings.tenants_table))
        self.jobs = JobRepository(dynamodb.Table(settings.jobs_table))
        self.notifications = NotificationRepository(dynamodb.Table(settings.notifications_table))
        self.catalog = CatalogRepository(self.s3, settings.catalog_bucket, 0)
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="job-simulator", daemon=True)

    def start(self) -> JobSimulator:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def session_hook(self, session: boto3.Session) -> None:
        """Answer StopTrainingJob on ``session``'s clients as SageMaker would (moto lacks it)."""
        session.events.register("before-call.sagemaker.StopTrainingJob", self._on_stop)

    def _on_stop(self, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        name = json.loads(params["body"])["TrainingJobName"]  # the serialized request
        with self._lock:
            running = self._running.get(name)
            if running is not None:
                running.stop_requested = True
        response = AWSResponse("https://api.sagemaker.local/", 200, {}, None)
        if running is None:
            error = {"Code": "ValidationException", "Message": f"Job {name} is not running"}
            return AWSResponse("https://api.sagemaker.local/", 400, {}, None), {"Error": error}
        return response, {"ResponseMetadata": {"HTTPStatusCode": 200}}

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._launch_from_queue()
                self._advance()
            except Exception:
                log.exception("simulator step failed")
            self._stop.wait(0.3)

    def _launch_from_queue(self) -> None:
        response = self.sqs.receive_message(
            QueueUrl=self.settings.training_requests_queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
        )
        for message in response.get("Messages", []):
            request = TrainingRequest.model_validate_json(message["Body"])
            result = check_request(
                request, tenants=self.tenants, jobs=self.jobs, catalog=self.catalog
            )
            if result.only_transient:
                continue  # stays on the queue until a running job ends, like the launch handler
            if result.ok:
                arn = f"arn:aws:sagemaker:{REGION}:123456789012:training-job/{request.job_id}"
                self.jobs.transition(
                    request.tenant_id,
                    request.job_id,
                    JobStatus.STARTING,
                    from_statuses=[JobStatus.QUEUED],
                    launch_attempts=1,
                    training_job_arn=arn,
                )
                with self._lock:
                    self._running[request.job_id] = _Running(
                        request.tenant_id, request.job_id, time.monotonic()
                    )
            else:
                self.jobs.transition(
                    request.tenant_id,
                    request.job_id,
                    JobStatus.REJECTED,
                    from_statuses=[JobStatus.QUEUED],
                    failure_reason=result.reason,
                )
            self.sqs.delete_message(
                QueueUrl=self.settings.training_requests_queue_url,
                ReceiptHandle=message["ReceiptHandle"],
            )

    def _advance(self) -> None:
        now = time.monotonic()
        with self._lock:
            running = list(self._running.values())
        for job in running:
            elapsed = now - job.started
            if job.stop_requested:
                self._event(job, JobStatus.STOPPING, "Stopping")
                self._finish(job, JobStatus.STOPPED, "Stopped")
            elif job.stage == 0 and elapsed >= self.step:
                self._event(job, JobStatus.IN_PROGRESS, "Training")
                job.stage = 1
            elif job.stage == 1 and elapsed >= 2 * self.step:
                self._finish(job, JobStatus.COMPLETED, "Completed")

    def _event(self, job: _Running, status: JobStatus, secondary: str, **extra: Any) -> None:
        self.jobs.apply_state_update(
            job.tenant_id,
            job.job_id,
            JobStateUpdate(
                status=status, event_time=utc_now(), secondary_status=secondary, **extra
            ),
        )

    def _finish(self, job: _Running, status: JobStatus, secondary: str) -> None:
        extra: dict[str, Any] = {"billable_seconds": int(time.monotonic() - job.started) + 1}
        if status == JobStatus.COMPLETED:
            key = model_artifact_key(job.tenant_id, job.job_id)
            self.s3.put_object(
                Bucket=self.settings.artifacts_bucket, Key=key, Body=model_archive(job.job_id)
            )
            extra |= {
                "model_artifact_key": key,
                "final_metrics": [FinalMetric(name="validation:auc", value=0.94)],
            }
        time.sleep(0.002)  # event times must increase strictly (millisecond resolution)
        self._event(job, status, secondary, **extra)
        with self._lock:
            self._running.pop(job.job_id, None)
        created = utc_now() + timedelta(milliseconds=1)
        self.notifications.put_if_absent(
            Notification(
                tenant_id=job.tenant_id,
                notification_id=Notification.make_id(iso_utc(created), job.job_id),
                job_id=job.job_id,
                status=status,
                subject=f"Training job {status.value.lower()}: {job.job_id}"[:100],
                message=f"Job {job.job_id} ended {status.value}. Open the job page to download "
                "its model."
                if status == JobStatus.COMPLETED
                else f"Job {job.job_id} ended {status.value}.",
                created_at=created,
            )
        )
        log.info("job finished", extra={"job_id": job.job_id, "status": status.value})
