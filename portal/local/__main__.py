"""``python -m local`` (from ``portal/``): moto_server, seed data, job simulator and the portal.

``RETRAINING_LOCAL_INTERVAL_SECONDS`` (default 120) is how often the local scheduler fires each
enabled retraining schedule.

Prints the address to open and the path to try. Everything listens on 127.0.0.1 only. Ctrl-C
stops it all.
"""

from __future__ import annotations

import argparse
import signal
from types import FrameType

from .runner import LocalPortal
from .simulator import DEFAULT_STEP_SECONDS

TRY_IT = """\
Try the whole flow as alice@acme.example:
  1. Datasets: upload a CSV file (any small one; the simulator doesn't read it).
  2. Jobs > Tune hyperparameters: xgboost, your dataset, objective validation:auc (Maximize),
     tick eta and max_depth, 6 training jobs, 2 in parallel. Submit.
  3. The job page follows the tuning job (about {seconds:.0f} s): trials best first, the
     objective chart, the best training job and its hyperparameters.
  4. Models: the best trial's model, pending approval. Open it, approve with a comment.
  5. Download the model (model.tar.gz) from the model's page.
  6. Models: acme's seeded approved version > Deploy; API clients > New client (copy the
     secret); call the endpoint with the curl lines below once it is IN_SERVICE.
  7. The deployment's page > Set up retraining > Create policy: every {interval:.0f} s
     (RETRAINING_LOCAL_INTERVAL_SECONDS) its schedule fires; the first run is rejected, the
     second promoted and deployed (the policy's page and Notifications show both).
acme also has a finished tuning job whose model waits for approval; globex
(gina@globex.example) sees none of acme's jobs or models."""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM stops it all like Ctrl-C (moto_server included)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8080, help="portal port (0 = any free port)")
    parser.add_argument(
        "--step-seconds",
        type=float,
        default=DEFAULT_STEP_SECONDS,
        help="simulated SageMaker step: a training job takes 2, a trial 2, a tuning job 1 more",
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupt)
    with LocalPortal(port=args.port, step_seconds=args.step_seconds) as portal:
        print(f"Local portal: {portal.url}/local/sign-in", flush=True)
        print(f"moto_server:  {portal.moto.url}", flush=True)
        assert portal.inference is not None
        print(f"Inference API: {portal.inference.url} (token URL {portal.inference.token_url})")
        print(
            "Users: alice@acme.example (acme), gina@globex.example (globex), "
            "admin@platform.example (admins). Ctrl-C stops.",
            flush=True,
        )
        print(
            TRY_IT.format(
                seconds=7 * args.step_seconds, interval=portal.retraining_interval_seconds
            ),
            flush=True,
        )
        print(portal.curl_example(), flush=True)
        portal.wait()


if __name__ == "__main__":
    main()
