"""EventBridge Scheduler's delivery, played over the schedules in moto, for the local runner.

moto keeps schedules (the retraining handler creates, updates, disables and deletes them with
the real ``RetrainingService``) but never fires one. :class:`LocalScheduler` does: every
``interval_seconds`` (``RETRAINING_LOCAL_INTERVAL_SECONDS``, default 120; the tests use a few
seconds) each ENABLED schedule of the platform's group fires once, whatever its expression says
(a weekly ``cron`` would never fire in a demo). The slot of a firing is ``max(now floored to the
minute, previous slot + 1 minute)``, so slots are whole minutes and never repeat for a schedule,
as Scheduler's don't; the target's ``Input`` gets ``<aws.scheduler.scheduled-time>`` replaced by
the slot (``YYYY-MM-DDTHH:MM:SSZ``) and goes to the target queue. A target queue that doesn't
exist sends the input to the schedule's dead-letter queue, as Scheduler does after its retries.
A schedule that is disabled or deleted stops firing at once; enabled again, it waits a whole
interval before it fires.

:meth:`LocalScheduler.step` is one tick: the runner's thread calls it, tests call it directly
with a fake clock.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import boto3
from botocore.exceptions import ClientError
from training_common import SCHEDULED_TIME_PLACEHOLDER, slot_of, utc_now

from .common import REGION, Loop

log = logging.getLogger("local.scheduler")

INTERVAL_ENV = "RETRAINING_LOCAL_INTERVAL_SECONDS"
DEFAULT_INTERVAL_SECONDS = 120.0
ENABLED = "ENABLED"


def interval_from_env(environ: dict[str, str] | None = None) -> float:
    """``RETRAINING_LOCAL_INTERVAL_SECONDS`` (a positive number), else the default."""
    raw = (os.environ if environ is None else environ).get(INTERVAL_ENV, "").strip()
    if not raw:
        return DEFAULT_INTERVAL_SECONDS
    try:
        value = float(raw)
    except ValueError as error:
        raise ValueError(f"{INTERVAL_ENV} must be a number of seconds, not {raw!r}") from error
    if not value > 0:
        raise ValueError(f"{INTERVAL_ENV} must be positive, not {raw!r}")
    return value


def slot_text(slot: datetime) -> str:
    """A slot as Scheduler writes ``<aws.scheduler.scheduled-time>``."""
    return slot_of(slot).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Firing:
    """One delivery the scheduler made (tests and the runner's log read them)."""

    schedule: str
    slot: datetime
    queue_url: str
    body: str
    dead_lettered: bool = False


class LocalScheduler:
    """Fires the ENABLED schedules of ``group`` in moto every ``interval_seconds``."""

    def __init__(
        self,
        session: boto3.Session,
        endpoint_url: str | None,
        *,
        group: str,
        interval_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utc_now,
        before_fire: Callable[[str, datetime], None] | None = None,
        poll_seconds: float = 0.5,
    ) -> None:
        """``before_fire(input, slot)`` runs before each delivery (the runner drops a new
        readings file into the policy's dataset folder there: see :mod:`local.retraining`)."""
        self.scheduler = session.client("scheduler", region_name=REGION, endpoint_url=endpoint_url)
        self.sqs = session.client("sqs", region_name=REGION, endpoint_url=endpoint_url)
        self.group = group
        self.interval = interval_from_env() if interval_seconds is None else interval_seconds
        self.clock = clock
        self.now = now
        self.before_fire = before_fire
        self.poll_seconds = poll_seconds
        self._due: dict[str, float] = {}
        self._last_slot: dict[str, datetime] = {}
        self._queues: dict[str, str] = {}
        self.fired: list[Firing] = []
        self._lock = threading.Lock()
        self._loop = Loop("local-scheduler", self.step, min(poll_seconds, self.interval))

    def start(self) -> LocalScheduler:
        self._loop.start()
        return self

    def stop(self) -> None:
        self._loop.stop()

    def _enabled(self) -> list[str]:
        names: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"GroupName": self.group, "State": ENABLED}
            if token:
                kwargs["NextToken"] = token
            page = self.scheduler.list_schedules(**kwargs)
            names += [
                str(s["Name"]) for s in page.get("Schedules", []) if s.get("State") == ENABLED
            ]
            token = page.get("NextToken")
            if not token:
                return names

    def step(self) -> list[Firing]:
        """Fire every enabled schedule whose interval has passed; the deliveries made."""
        with self._lock:
            now = self.clock()
            enabled = set(self._enabled())
            for name in list(self._due):
                if name not in enabled:  # disabled or deleted: stops at once
                    del self._due[name]
            fired: list[Firing] = []
            for name in sorted(enabled):
                due = self._due.setdefault(name, now + self.interval)
                if due > now:
                    continue
                self._due[name] = now + self.interval
                firing = self._fire(name)
                if firing is not None:
                    fired.append(firing)
            self.fired += fired
            return fired

    def _slot(self, name: str) -> datetime:
        slot = slot_of(self.now())
        previous = self._last_slot.get(name)
        if previous is not None and slot <= previous:
            slot = previous + timedelta(minutes=1)
        self._last_slot[name] = slot
        return slot

    def _fire(self, name: str) -> Firing | None:
        try:
            schedule = self.scheduler.get_schedule(GroupName=self.group, Name=name)
        except ClientError:  # deleted since the listing
            self._due.pop(name, None)
            return None
        if schedule.get("State") != ENABLED:
            self._due.pop(name, None)
            return None
        target = schedule.get("Target") or {}
        slot = self._slot(name)
        body = str(target.get("Input") or "").replace(SCHEDULED_TIME_PLACEHOLDER, slot_text(slot))
        if self.before_fire is not None:
            try:
                self.before_fire(body, slot)
            except Exception:
                log.exception("before_fire failed", extra={"schedule": name})
        queue_url = self._queue_url(str(target.get("Arn") or ""))
        dead_lettered = False
        if queue_url is None:
            dead_letter = (target.get("DeadLetterConfig") or {}).get("Arn")
            queue_url = self._queue_url(str(dead_letter or ""))
            dead_lettered = True
            if queue_url is None:
                log.warning("schedule target and dead-letter queue missing", extra={"name": name})
                return None
        self.sqs.send_message(QueueUrl=queue_url, MessageBody=body)
        log.info("schedule fired", extra={"schedule": name, "slot": slot_text(slot)})
        return Firing(name, slot, queue_url, body, dead_lettered)

    def _queue_url(self, arn: str) -> str | None:
        """The URL of the SQS queue ``arn`` names, or None (not a queue, or it doesn't exist)."""
        if arn in self._queues:
            return self._queues[arn]
        parts = arn.split(":")
        if len(parts) != 6 or parts[2] != "sqs":
            return None
        try:
            url = str(
                self.sqs.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])[
                    "QueueUrl"
                ]
            )
        except ClientError:
            return None
        self._queues[arn] = url
        return url
