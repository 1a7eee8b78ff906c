"""Load benchmark of the local inference API (not a test): what the API adds over calling the
simulated endpoint directly, measured side by side in one run.

Starts moto_server (``local.stack.MotoServer``), creates what the API needs (the ApiClients
table, a user pool with the inference resource server, an acme app client with its record, and
an acme endpoint), then runs ``--clients`` concurrent clients in alternating rounds:

- direct: ``InvokeEndpoint`` on the simulated runtime with acme's tenant-bound credentials;
- api: ``POST /v1/endpoints/<endpoint>/invocations`` with a client-credentials token (token
  check, client lookup, credentials, the same ``InvokeEndpoint``, HTTP on 127.0.0.1).

The local API runs in a child process (``--serve``), as API Gateway and Lambda run apart from
their callers: in one process the API's server threads and the benchmark's client threads would
share one interpreter lock and measure each other. The API clients use ``http.client`` with a
kept-alive connection each, as a device or back end would.

Prints p50/p99 latency and requests per second of each, and the added p99 (api minus direct;
target: 25 ms or less on 2 cores). Traffic goes to 127.0.0.1 only; nothing is asserted.

    PYTHONPATH=lambda:portal .venv/bin/python benchmarks/inference_load.py --clients 16
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "portal"), str(ROOT / "lambda")]

from local.endpoints import SimulatedRuntime, create_endpoint  # noqa: E402
from local.inference import LOCAL_INVOKE_ROLE_ARN, LocalInferenceApi  # noqa: E402
from local.stack import REGION, MotoServer  # noqa: E402
from training_common import INFERENCE_SCOPE, new_session  # noqa: E402

ENDPOINT = "acme-thermostat"
BODY = b"0.2,1.5,3.1,0.0,7.25\n"


def create(session: Any, url: str) -> str:
    """The ApiClients table and the user pool (its id)."""
    session.client("dynamodb", endpoint_url=url).create_table(
        TableName="ApiClients",
        KeySchema=[
            {"AttributeName": "tenant_id", "KeyType": "HASH"},
            {"AttributeName": "client_id", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "tenant_id", "AttributeType": "S"},
            {"AttributeName": "client_id", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "ByClientId",
                "KeySchema": [{"AttributeName": "client_id", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    cognito = session.client("cognito-idp", endpoint_url=url)
    return str(cognito.create_user_pool(PoolName="portal-users")["UserPool"]["Id"])


def add_client(session: Any, url: str, pool: str) -> tuple[str, str]:
    """acme's app client and its record, and acme's endpoint: (client id, secret)."""
    client = session.client("cognito-idp", endpoint_url=url).create_user_pool_client(
        UserPoolId=pool,
        ClientName="acme-bench",
        GenerateSecret=True,
        AllowedOAuthFlows=["client_credentials"],
        AllowedOAuthFlowsUserPoolClient=True,
        AllowedOAuthScopes=[INFERENCE_SCOPE],
    )["UserPoolClient"]
    session.resource("dynamodb", endpoint_url=url).Table("ApiClients").put_item(
        Item={
            "tenant_id": "acme",
            "client_id": client["ClientId"],
            "name": "benchmark",
            "created_by": "bench@acme.example",
            "created_at": "2025-01-01T00:00:00.000Z",
        }
    )
    create_endpoint(
        session.client("sagemaker", endpoint_url=url),
        tenant_id="acme",
        deployment_id="thermostat",
        endpoint_name=ENDPOINT,
    )
    return str(client["ClientId"]), str(client["ClientSecret"])


def direct_runtime(session: Any, url: str, runtime: SimulatedRuntime) -> Any:
    """A sagemaker-runtime client with acme's tenant-bound credentials, as the function has."""
    base = new_session(region_name=REGION)
    runtime.session_hook(base)
    credentials = base.client("sts", endpoint_url=url).assume_role(
        RoleArn=LOCAL_INVOKE_ROLE_ARN,
        RoleSessionName="bench-acme",
        Tags=[{"Key": "tenant", "Value": "acme"}],
    )["Credentials"]
    tenant = new_session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=REGION,
    )
    runtime.session_hook(tenant)
    return tenant.client("sagemaker-runtime", endpoint_url=url)


def run(clients: int, total: int, call_factory: Callable[[], Callable[[], bool]]) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    budget = iter(range(total))
    calls = [call_factory() for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)

    def worker(call: Callable[[], bool]) -> None:
        nonlocal errors
        barrier.wait()
        while True:
            with lock:
                if next(budget, None) is None:
                    return
            started = time.perf_counter()
            ok = call()
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                errors += 0 if ok else 1

    threads = [threading.Thread(target=worker, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return {"latencies": latencies, "errors": errors, "wall": time.perf_counter() - started}


def summary(name: str, results: list[dict[str, Any]], clients: int) -> float:
    ordered: list[float] = sorted(x for r in results for x in r["latencies"])
    wall = sum(r["wall"] for r in results)
    errors = sum(r["errors"] for r in results)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(
        f"{name:<7} requests={len(ordered):<6} errors={errors:<3} "
        f"p50={statistics.median(ordered) * 1000:7.2f} ms  p99={p99 * 1000:7.2f} ms  "
        f"throughput={len(ordered) / wall:7.1f} req/s  ({clients} clients, {wall:.1f} s)"
    )
    return p99


def serve(moto_url: str, pool: str) -> None:
    """The child process: the local API against ``moto_url``; prints its URL, runs until stdin
    closes."""
    session = new_session(region_name=REGION)
    api = LocalInferenceApi(session, moto_url, user_pool_id=pool, api_clients_table="ApiClients")
    with api:
        print(api.url, flush=True)
        sys.stdin.read()


def start_api(moto_url: str, pool: str) -> tuple[subprocess.Popen[str], str]:
    child = subprocess.Popen(  # noqa: S603 - our own interpreter and script
        [sys.executable, __file__, "--serve", moto_url, pool],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    url = child.stdout.readline().strip()
    if not url.startswith("http://127.0.0.1:"):
        child.kill()
        raise SystemExit("the local inference API did not start")
    return child, url


def api_caller(url: str, token: str) -> Callable[[], Callable[[], bool]]:
    parts = urllib.parse.urlsplit(url)
    headers = {"authorization": f"Bearer {token}", "content-type": "text/csv"}

    def factory() -> Callable[[], bool]:
        connection = http.client.HTTPConnection(str(parts.hostname), parts.port, timeout=30)

        def call() -> bool:
            connection.request("POST", parts.path, body=BODY, headers=headers)
            response = connection.getresponse()
            response.read()
            return response.status == 200

        return call

    return factory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=2000, help="per path and round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating direct/api rounds")
    parser.add_argument("--serve", nargs=2, metavar=("MOTO_URL", "POOL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        os.environ.setdefault(name, value)
    if args.serve:
        serve(*args.serve)
        return
    moto = MotoServer().start()
    try:
        session = new_session(region_name=REGION)
        pool = create(session, moto.url)
        child, api_url = start_api(moto.url, pool)
        try:
            client_id, secret = add_client(session, moto.url, pool)
            token = httpx.post(
                f"{api_url}/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=(client_id, secret),
            ).json()["access_token"]
            runtime = SimulatedRuntime.for_moto(session, moto.url)
            direct = direct_runtime(session, moto.url, runtime)

            def direct_call() -> Callable[[], bool]:
                def call() -> bool:
                    answer = direct.invoke_endpoint(
                        EndpointName=ENDPOINT, Body=BODY, ContentType="text/csv"
                    )
                    return bool(answer["Body"].read())

                return call

            api_call = api_caller(f"{api_url}/v1/endpoints/{ENDPOINT}/invocations", token)
            # Warm-up: credentials, client lookup and endpoint state cached, connections open.
            run(args.clients, 200, direct_call)
            run(args.clients, 200, api_call)
            direct_results, api_results = [], []
            for _ in range(args.rounds):
                direct_results.append(run(args.clients, args.requests, direct_call))
                api_results.append(run(args.clients, args.requests, api_call))
            print(f"{os.cpu_count()} CPUs; simulated endpoint {ENDPOINT}, {len(BODY)}-byte CSV")
            direct_p99 = summary("direct", direct_results, args.clients)
            api_p99 = summary("api", api_results, args.clients)
            print(f"added p99 by the API: {(api_p99 - direct_p99) * 1000:.2f} ms (target <= 25 ms)")
        finally:
            assert child.stdin is not None
            child.stdin.close()
            child.wait(timeout=15)
    finally:
        moto.stop()


if __name__ == "__main__":
    main()
