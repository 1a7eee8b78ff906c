"""The local stack as one object, for ``python -m local``, the browser test and the benchmark.

Retraining runs locally as :mod:`local.retraining` describes: the real retraining handler makes
the schedules in moto, :class:`local.scheduler.LocalScheduler` fires them every
``retraining_interval_seconds``, the job simulator plans, launches and scores the runs, and the
promoted model reaches the deployment through the serving simulator.
"""

from __future__ import annotations

import os
import threading
import time
from types import TracebackType

import boto3
import httpx
import uvicorn
from launch.retraining import logger as planner_logger
from portal_app.app import create_app
from portal_app.aws import AwsClients
from portal_app.logs import configure_logging
from training_common import new_session

from .common import Loop
from .inference import LocalInferenceApi
from .metrics import LocalMetrics
from .retraining import DataFeed, RetrainingRequests
from .scheduler import LocalScheduler, interval_from_env
from .serving import ServingSimulator
from .signin import EcSigner, LocalSignIn, LocalUser
from .simulator import DEFAULT_STEP_SECONDS, JobSimulator
from .stack import (
    ALB_ARN,
    REGION,
    SCHEDULE_GROUP,
    MotoServer,
    Seeded,
    create_resources,
    free_port,
    seed,
)

USERS = (
    LocalUser("alice@acme.example", "alice@acme.example", "acme"),
    LocalUser("gina@globex.example", "gina@globex.example", "globex"),
    LocalUser("admin@platform.example", "admin@platform.example", None, ("admins",)),
)


CURL_EXAMPLE = """\
Call a deployed model through the local inference API (create a client on the portal's
API clients page; it shows the id and secret once):
  TOKEN=$(curl -s -u "$CLIENT_ID:$CLIENT_SECRET" \\
    -d grant_type=client_credentials -d scope=inference/invoke \\
    "{token_url}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  curl -s -H "Authorization: Bearer $TOKEN" -H "Content-Type: text/csv" \\
    --data-binary '5.1,3.5,1.4,0.2' "{api_url}/v1/endpoints/acme-thermostat/invocations"
"""


class LocalPortal:
    """moto_server + seeded resources + job simulator + the local inference API + the portal,
    all on 127.0.0.1."""

    def __init__(
        self,
        port: int = 0,
        *,
        step_seconds: float = DEFAULT_STEP_SECONDS,
        log_level: str = "WARNING",
        retraining_interval_seconds: float | None = None,
    ) -> None:
        """``retraining_interval_seconds``: how often the local scheduler fires each enabled
        retraining schedule (None: ``RETRAINING_LOCAL_INTERVAL_SECONDS``, default 120)."""
        self.retraining_interval_seconds = (
            interval_from_env()
            if retraining_interval_seconds is None
            else retraining_interval_seconds
        )
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.step_seconds = step_seconds
        self.log_level = log_level
        self.moto = MotoServer()
        self.seeded: Seeded | None = None
        self.signer = EcSigner(ALB_ARN)
        self.sign_in = LocalSignIn(self.signer, USERS)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._simulator: JobSimulator | None = None
        self.serving: ServingSimulator | None = None
        self.metrics = LocalMetrics()
        self.inference: LocalInferenceApi | None = None
        self.scheduler: LocalScheduler | None = None
        self.retraining: RetrainingRequests | None = None
        self._loops: list[Loop] = []

    def __enter__(self) -> LocalPortal:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
        }.items():
            os.environ.setdefault(name, value)
        configure_logging(self.log_level)
        self.moto.start()
        session = new_session(region_name=REGION)
        # The inference API's usage metrics, kept for GetMetricData's percentiles (moto lacks).
        self.metrics.recorder_hook(session)
        inference_port = free_port()
        settings = create_resources(
            session, self.moto.url, inference_api_url=f"http://127.0.0.1:{inference_port}"
        )
        self.settings = settings
        self.seeded = seed(settings, session, self.moto.url, retraining=True)
        planner_logger.setLevel(self.log_level)  # the planner's INFO lines stay off the console
        self._simulator = JobSimulator(
            settings, session, self.moto.url, step_seconds=self.step_seconds
        ).start()
        # The real retraining handler over moto's Scheduler, and Scheduler's firing played.
        self.retraining = RetrainingRequests(
            settings, session, self.moto.url, log_level=self.log_level
        )
        self._loops.append(Loop("retraining-requests", self.retraining.step, 0.5).start())
        self.scheduler = LocalScheduler(
            session,
            self.moto.url,
            group=SCHEDULE_GROUP,
            interval_seconds=self.retraining_interval_seconds,
            before_fire=DataFeed(
                self._simulator.policies, self._simulator.s3, settings.data_bucket
            ),
        ).start()
        self.inference = LocalInferenceApi(
            session,
            self.moto.url,
            user_pool_id=settings.user_pool_id,
            api_clients_table=settings.api_clients_table,
            port=inference_port,
        ).start()
        # The real deploy and job-events services, with SageMaker's events played around them.
        self.serving = ServingSimulator(
            settings,
            session,
            self.moto.url,
            forget=self.inference.runtime.forget,
            log_level=self.log_level,
        )
        self._loops.append(Loop("serving-simulator", self.serving.step, self.step_seconds).start())
        simulator = self._simulator

        def portal_hook(portal_session: boto3.Session) -> None:
            simulator.session_hook(portal_session)
            self.metrics.session_hook(portal_session)

        aws = AwsClients(settings, endpoint_url=self.moto.url, session_hook=portal_hook)
        app = create_app(settings, aws=aws, local=self.sign_in)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_config=None, access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="portal", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.__exit__(None, None, None)
        raise RuntimeError("the local portal did not start within 30 s")

    def wait(self) -> None:
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(0.5)
        except KeyboardInterrupt:
            pass

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.inference is not None:
            self.inference.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
        for loop in self._loops:
            loop.stop()
        if self._simulator is not None:
            self._simulator.stop()
        self.moto.stop()

    def curl_example(self) -> str:
        """How to call a deployed model through the local inference API."""
        assert self.inference is not None
        return CURL_EXAMPLE.format(token_url=self.inference.token_url, api_url=self.inference.url)
