"""Load benchmark of the local portal (not a test): job list and job submission.

Starts the local stack (moto_server, seeded data, job simulator, portal) on 127.0.0.1, then runs
concurrent signed-in clients for a bounded number of requests and a time cap, and prints p50/p99
latency and requests per second for each scenario. Traffic goes to 127.0.0.1 only.

    PYTHONPATH=lambda:portal .venv/bin/python benchmarks/portal_load.py --clients 8 --requests 400
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "portal"), str(ROOT / "lambda")]

from local.runner import LocalPortal  # noqa: E402

JOB_FORM = {
    "algorithm_id": "xgboost",
    "dataset_key": "tenants/acme/datasets/iris/",
    "hyperparameters": "num_round=10",
    "instance_type": "ml.m5.large",
    "instance_count": "1",
    "max_runtime_seconds": "3600",
}


def signed_in_client(base_url: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=base_url, timeout=30)
    client.post("/local/sign-in", data={"username": "alice@acme.example"})
    page = client.get("/jobs/new")
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, "no CSRF token on the job form"
    return client, match.group(1)


def run(
    name: str,
    base_url: str,
    clients: int,
    total: int,
    seconds: float,
    call: Callable[[httpx.Client, str], httpx.Response],
    expected: int,
) -> None:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    budget = iter(range(total))
    deadline = time.monotonic() + seconds

    def worker() -> None:
        nonlocal errors
        client, token = signed_in_client(base_url)
        try:
            while time.monotonic() < deadline:
                with lock:
                    if next(budget, None) is None:
                        return
                started = time.perf_counter()
                response = call(client, token)
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    if response.status_code != expected:
                        errors += 1
        finally:
            client.close()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    ordered = sorted(latencies)
    if not ordered:
        raise SystemExit(f"{name}: no request completed")
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(
        f"{name:<16} requests={len(ordered):<5} errors={errors:<3} "
        f"p50={statistics.median(ordered) * 1000:7.1f} ms  p99={p99 * 1000:7.1f} ms  "
        f"throughput={len(ordered) / wall:6.1f} req/s  ({clients} clients, {wall:.1f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=400, help="per scenario")
    parser.add_argument("--seconds", type=float, default=60.0, help="time cap per scenario")
    args = parser.parse_args()
    with LocalPortal(step_seconds=1.0, log_level="ERROR") as portal:
        json_accept = {"accept": "application/json"}
        run(
            "job list (JSON)",
            portal.url,
            args.clients,
            args.requests,
            args.seconds,
            lambda c, _t: c.get("/jobs", headers=json_accept),
            200,
        )
        run(
            "job list (HTML)",
            portal.url,
            args.clients,
            args.requests,
            args.seconds,
            lambda c, _t: c.get("/jobs"),
            200,
        )
        run(
            "job submission",
            portal.url,
            args.clients,
            args.requests,
            args.seconds,
            lambda c, t: c.post("/jobs", data={**JOB_FORM, "csrf_token": t}, headers=json_accept),
            201,
        )


if __name__ == "__main__":
    main()
