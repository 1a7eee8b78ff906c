"""A person's path through the local portal in headless Chromium (Playwright, Debian's browser).

Sign in locally as acme's user, upload a dataset file through the presigned POST, submit a job,
watch the simulator take it to COMPLETED, download the model. Then tune: a tuning job of 6
training jobs, 2 in parallel, to COMPLETED, its best job and chart, the registered model
approved with a comment and downloaded; globex sees none of it. Serve: deploy acme's approved
model, create an API client, call the model through the local inference API with a token from its
token endpoint, see the usage and the drift alarm; globex's client gets 403 on acme's endpoint.
Retrain: set up a retraining policy for the deployment with the form's defaults; the local
scheduler fires it every few seconds, the first run is rejected with its reason, the second
promoted and deployed blue/green, both in the history and the notifications; the captured
requests export as feedback; globex sees none of it. Select with ``-m browser``.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian's Chromium is not installed (apt-get install -y chromium); CI installs it",
    ),
]
STEP_SECONDS = 0.5
RETRAIN_INTERVAL = 6.0
POLL_SECONDS = 0.5
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def local_portal() -> Iterator[object]:
    from local.runner import LocalPortal

    # Simulated jobs advance a stage every half second (1.5 s in `make portal`), and the local
    # scheduler fires each enabled retraining schedule every 6 s (120 s by default): a retraining
    # run (4 trials, 2 at a time) takes about 3 s, so the runs don't overlap.
    with LocalPortal(
        step_seconds=STEP_SECONDS, retraining_interval_seconds=RETRAIN_INTERVAL
    ) as portal:
        yield portal


def signed_in_page(browser: Any, url: str, user: str, tenant: str) -> Any:
    """A new browser context signed in locally as ``user``."""
    from playwright.sync_api import expect

    page = browser.new_context(accept_downloads=True).new_page()
    page.set_default_timeout(15_000)
    page.goto(url + "/jobs")
    expect(page.get_by_role("heading", name="Local sign-in")).to_be_visible()
    page.get_by_label(user).check()
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("tenant")).to_have_text(tenant)
    return page


def upload_dataset(page: Any, name: str, data: Path) -> None:
    """Upload ``data`` as dataset ``name`` through the presigned POST."""
    from playwright.sync_api import expect

    page.get_by_role("link", name="Datasets").click()
    page.get_by_label("Dataset name").fill(name)
    page.get_by_label("Content type").select_option("text/csv")
    page.get_by_role("button", name="Next: choose the file").click()
    page.locator("#upload-file").set_input_files(str(data))
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("status")).to_have_text("The file was uploaded.")
    expect(page.locator(f'tr[data-dataset="{name}"]')).to_contain_text(data.name)


def wait_for_text(page: Any, url: str, selector: str, text: str, seconds: float) -> None:
    """Reload ``url`` until ``selector`` reads ``text`` (the simulator works in the background)."""
    from playwright.sync_api import expect

    deadline = time.monotonic() + seconds
    page.goto(url)
    while page.locator(selector).inner_text() != text and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        page.goto(url)
    expect(page.locator(selector)).to_have_text(text)


def test_acme_user_uploads_trains_and_downloads(local_portal: object, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    url: str = local_portal.url  # type: ignore[attr-defined]
    data = tmp_path / "readings.csv"
    data.write_text("label,temperature,vibration\n1,71.5,0.02\n0,65.0,0.01\n")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = signed_in_page(browser, url, "alice@acme.example", "acme")
            upload_dataset(page, "sensor-readings", data)

            page.get_by_role("link", name="New job").click()
            page.get_by_label("Algorithm").select_option("xgboost")
            page.get_by_label("Dataset").select_option(label="sensor-readings")
            page.get_by_label("Maximum runtime (seconds)").fill("1800")
            page.get_by_role("button", name="Submit job").click()
            expect(page.get_by_role("status")).to_have_text("The job was queued.")
            job_url = page.url.split("?")[0]
            job_id = job_url.rsplit("/", 1)[1]
            assert job_id.startswith("acme-")

            deadline = time.monotonic() + 60
            status = page.get_by_test_id("job-status")
            while status.inner_text() != "COMPLETED" and time.monotonic() < deadline:
                time.sleep(POLL_SECONDS)
                page.goto(job_url)
            expect(status).to_have_text("COMPLETED")
            expect(page.locator("#history")).to_contain_text("IN_PROGRESS")
            expect(page.locator("#metrics")).to_contain_text("validation:auc")

            with page.expect_download() as download_info:
                page.locator("#download-model").click()
            download = download_info.value
            assert download.suggested_filename == f"{job_id}-model.tar.gz"
            archive = Path(download.path()).read_bytes()
            with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
                member = tar.extractfile("model.json")
                assert member is not None
                assert json.loads(member.read())["job_id"] == job_id

            page.get_by_role("link", name="Notifications").click()
            rows = page.locator(f'tr[data-notification$="#{job_id}"]')
            expect(rows.filter(has_text="Training job completed")).to_have_count(1)
            # its model was registered too, and waits for approval
            expect(rows.filter(has_text="Model registered, pending approval")).to_have_count(1)
        finally:
            browser.close()


def test_acme_tunes_approves_and_downloads_the_best_model_globex_sees_none(
    local_portal: object, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    url: str = local_portal.url  # type: ignore[attr-defined]
    data = tmp_path / "vibration.csv"
    data.write_text("label,temperature,vibration\n1,71.5,0.02\n0,65.0,0.01\n1,80.2,0.05\n")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = signed_in_page(browser, url, "alice@acme.example", "acme")
            upload_dataset(page, "vibration", data)

            page.get_by_role("link", name="Jobs", exact=True).click()
            page.locator("a#tune-job").click()
            expect(page.get_by_role("heading", name="Tune hyperparameters")).to_be_visible()
            page.locator("#algorithm_id").select_option("xgboost")
            page.locator("#dataset_key").select_option(label="vibration")
            page.locator("#objective_metric").select_option("validation:auc")
            page.locator("#objective_type").select_option("Maximize")
            ranges = page.locator("#tune-xgboost")
            ranges.locator("#tune-xgboost-eta").check()
            ranges.locator('input[name="min__xgboost__eta"]').fill("0.01")
            ranges.locator('input[name="max__xgboost__eta"]').fill("0.5")
            ranges.locator('select[name="scaling__xgboost__eta"]').select_option("Logarithmic")
            ranges.locator("#tune-xgboost-max_depth").check()
            ranges.locator('input[name="min__xgboost__max_depth"]').fill("2")
            ranges.locator('input[name="max__xgboost__max_depth"]').fill("10")
            page.locator("#hyperparameters").fill("num_round=50\nobjective=binary:logistic")
            page.locator("#strategy").select_option("Bayesian")
            page.locator("#max_training_jobs").fill("6")
            page.locator("#max_parallel_training_jobs").fill("2")
            page.locator("#instance_type").select_option("ml.m5.large")
            page.locator("#max_runtime_seconds").fill("1800")
            page.locator("#submit-tune").click()
            expect(page.get_by_role("status")).to_have_text("The job was queued.")
            job_url = page.url.split("?")[0]
            job_id = job_url.rsplit("/", 1)[1]
            assert job_id.startswith("acme-")

            wait_for_text(page, job_url, "#job-status", "COMPLETED", 60)
            expect(page.locator('#tuning-progress [data-counter="completed"]')).to_have_text("6")
            trials = page.locator("#trials tbody tr[data-trial]")
            expect(trials).to_have_count(6)
            best = page.locator("#best-training-job")
            best_name = best.get_attribute("data-training-job")
            assert best_name and re.fullmatch(r"tune-[0-9a-f]{27}-\d{3}-[0-9a-f]{8}", best_name)
            # the best job is the first row of the trials, best first, and marked as such
            expect(trials.first).to_have_attribute("data-trial", best_name)
            expect(trials.first).to_have_attribute("data-best", "1")
            objectives = [float(v) for v in trials.locator("td[data-objective]").all_inner_texts()]
            assert objectives == sorted(objectives, reverse=True)
            expect(page.locator("#best-objective")).to_have_text(str(objectives[0]))
            expect(page.locator("#best-hyperparameters")).to_contain_text("eta=")
            expect(page.locator("svg#objective-chart")).to_be_visible()

            page.get_by_role("link", name="Models", exact=True).click()
            row = page.locator(f'tr[data-model="{job_id}"]')
            expect(row.locator("[data-status]")).to_have_text("PendingManualApproval")
            expect(row.locator('td[data-metric="validation:auc"]')).not_to_be_empty()
            row.get_by_role("link").first.click()
            model_url = url + f"/models/{job_id}"
            expect(page).to_have_url(model_url)
            expect(page.locator("#lineage")).to_contain_text(best_name)
            page.locator("#comment").fill("Best AUC of the search; ship it")
            page.locator("#approve-model").click()
            wait_for_text(page, model_url, "#model-status", "Approved", 20)
            decision = page.locator('#decisions tr[data-decision="Approved"]')
            expect(decision).to_contain_text("Best AUC of the search; ship it")
            expect(decision).to_contain_text("alice@acme.example")
            expect(page.locator("#approve-model")).to_have_count(0)  # decided: no more buttons

            href = page.locator("a#download-model").get_attribute("href")
            assert href == f"/models/{job_id}/download"
            answer = page.request.get(url + href, max_redirects=0)
            assert answer.status == 303
            presigned = answer.headers["location"]
            assert "X-Amz-Signature=" in presigned and f"/jobs/{job_id}/output/" in presigned
            archive = page.request.get(presigned, max_redirects=0)
            assert archive.status == 200
            with tarfile.open(fileobj=io.BytesIO(archive.body()), mode="r:gz") as tar:
                member = tar.extractfile("model.json")
                assert member is not None
                document = json.loads(member.read())
                assert (document["job_id"], document["training_job_name"]) == (job_id, best_name)

            page.get_by_role("link", name="Notifications").click()
            rows = page.locator(f'tr[data-notification$="#{job_id}"]')
            expect(rows.filter(has_text="Tuning job completed")).to_have_count(1)
            expect(rows.filter(has_text="Model approved")).to_have_count(1)

            other = signed_in_page(browser, url, "gina@globex.example", "globex")
            other.get_by_role("link", name="Models", exact=True).click()
            expect(other.get_by_role("heading", name="Model registry")).to_be_visible()
            expect(other.locator(f'tr[data-model="{job_id}"]')).to_have_count(0)
            assert job_id not in other.content() and best_name not in other.content()
            for path in (f"/jobs/{job_id}", f"/models/{job_id}", f"/models/{job_id}/download"):
                response = other.request.get(url + path, max_redirects=0)
                assert response.status == 404, path
                assert best_name not in response.text()
            other.goto(url + "/jobs")
            expect(other.locator(f'a[href="/jobs/{job_id}"]')).to_have_count(0)
        finally:
            browser.close()


def create_api_client(page: Any, url: str, name: str) -> tuple[str, str]:
    """Create an API client on /clients; its id and the secret the page shows once."""
    from playwright.sync_api import expect

    page.goto(url + "/clients")
    page.locator("#client-name").fill(name)
    page.locator("#create-client").click()
    expect(page.locator("#new-client")).to_be_visible()
    client_id = page.locator("#client-id").inner_text().strip()
    secret = page.locator("#client-secret").inner_text().strip()
    assert client_id and secret
    page.goto(url + "/clients")  # shown once: never again
    assert secret not in page.content()
    return client_id, secret


def call_model(inference: Any, client: tuple[str, str], endpoint: str) -> Any:
    """A token from the local token endpoint, then one CSV prediction request."""
    import httpx
    from training_common import INFERENCE_SCOPE

    token = httpx.post(
        inference.token_url,
        data={"grant_type": "client_credentials", "scope": INFERENCE_SCOPE},
        auth=client,
        timeout=10,
    )
    assert token.status_code == 200, token.text
    return httpx.post(
        inference.invocations_url(endpoint),
        content=b"5.1,3.5,1.4,0.2\n6.2,2.9,4.3,1.3\n",
        headers={
            "authorization": f"Bearer {token.json()['access_token']}",
            "content-type": "text/csv",
        },
        timeout=10,
    )


def test_acme_deploys_and_calls_its_model_sees_usage_and_drift_globex_gets_403(
    local_portal: object,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    url: str = local_portal.url  # type: ignore[attr-defined]
    inference = local_portal.inference  # type: ignore[attr-defined]
    seeded = local_portal.seeded  # type: ignore[attr-defined]
    model = seeded.approved_models["acme"]
    endpoint = "acme-greenhouse"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = signed_in_page(browser, url, "alice@acme.example", "acme")
            page.goto(url + f"/models/{model}")
            page.locator("#deploy-model").click()
            page.locator("#deployment_id").fill("greenhouse")
            expect(page.locator("#model_job_id")).to_have_value(model)
            page.locator("#instance_type").select_option("ml.m5.large")
            page.locator("#instance_count").fill("1")
            page.locator("#submit-deployment").click()
            deployment_url = url + "/deployments/greenhouse"
            expect(page).to_have_url(re.compile(re.escape(deployment_url) + r"(\?.*)?$"))
            expect(page.locator("#endpoint-name")).to_have_text(endpoint)
            wait_for_text(page, deployment_url, "#deployment-status", "IN_SERVICE", 30)
            expect(page.locator("#history")).to_contain_text("CREATING")
            expect(page.locator("#serving-version")).to_contain_text(model)

            acme_client = create_api_client(page, url, "greenhouse-sensors")
            answer = call_model(inference, acme_client, endpoint)
            assert answer.status_code == 200, answer.text
            scores = [float(line) for line in answer.text.split()]
            assert len(scores) == 2 and all(0.0 <= s <= 1.0 for s in scores)

            # usage reaches CloudWatch (flushed each second) and the deployment page
            deadline = time.monotonic() + 20
            page.goto(deployment_url)
            requests = page.locator('#usage td[data-usage="requests"]')
            while requests.inner_text() in {"", "0"} and time.monotonic() < deadline:
                time.sleep(POLL_SECONDS)
                page.goto(deployment_url)
            expect(requests).to_have_text("1")

            # the first monitoring run finds drift: the alarm notifies acme
            # (the deployment's own notifications link there too: wait for the alarm's)
            drift = page.locator(
                '#notifications tr[data-notification$="#deployment-alarm-data-quality"] '
                'a[href="/deployments/greenhouse"]'
            )
            deadline = time.monotonic() + 60
            page.goto(url + "/notifications")
            while drift.count() == 0 and time.monotonic() < deadline:
                time.sleep(POLL_SECONDS)
                page.goto(url + "/notifications")
            expect(drift.first).to_be_visible()
            page.goto(deployment_url)
            alarm = page.locator('#alarms tr[data-alarm$="-data-quality"] [data-state]')
            expect(alarm).to_have_text("ALARM")

            other = signed_in_page(browser, url, "gina@globex.example", "globex")
            globex_client = create_api_client(other, url, "globex-backend")
            denied = call_model(inference, globex_client, endpoint)
            assert denied.status_code == 403, denied.text
            assert denied.json()["error"]
            other.goto(url + "/notifications")
            expect(other.locator('#notifications a[href="/deployments/greenhouse"]')).to_have_count(
                0
            )
            assert other.request.get(deployment_url, max_redirects=0).status == 404
        finally:
            browser.close()


def ensure_deployed(page: Any, url: str, model: str, deployment: str) -> str:
    """acme's approved model served by ``deployment`` (deployed here unless an earlier test
    did); the deployment page's URL."""
    from playwright.sync_api import expect

    deployment_url = url + f"/deployments/{deployment}"
    if page.request.get(deployment_url, max_redirects=0).status == 404:
        page.goto(url + f"/models/{model}")
        page.locator("#deploy-model").click()
        page.locator("#deployment_id").fill(deployment)
        expect(page.locator("#model_job_id")).to_have_value(model)
        page.locator("#instance_type").select_option("ml.m5.large")
        page.locator("#instance_count").fill("1")
        page.locator("#submit-deployment").click()
    wait_for_text(page, deployment_url, "#deployment-status", "IN_SERVICE", 30)
    return deployment_url


def test_acme_retrains_its_deployment_one_run_rejected_one_promoted_globex_sees_none(
    local_portal: object,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    url: str = local_portal.url  # type: ignore[attr-defined]
    inference = local_portal.inference  # type: ignore[attr-defined]
    model = local_portal.seeded.approved_models["acme"]  # type: ignore[attr-defined]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = signed_in_page(browser, url, "alice@acme.example", "acme")
            deployment_url = ensure_deployed(page, url, model, "greenhouse")

            # requests to the endpoint are captured as SageMaker does: export them as feedback
            client = create_api_client(page, url, "retraining-sensors")
            assert call_model(inference, client, "acme-greenhouse").status_code == 200
            page.goto(deployment_url)
            page.locator("#deployment-feedback").click()
            now = datetime.now(UTC)
            page.locator("#start").fill((now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
            page.locator("#end").fill((now + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M"))
            page.locator("#export-feedback").click()
            expect(page.locator("#export-result")).to_contain_text(
                re.compile(r"Exported [1-9][0-9]* rows")
            )
            expect(page.locator("#export-key")).to_contain_text("tenants/acme/feedback/greenhouse/")

            page.goto(deployment_url)
            page.locator("#retrain-deployment").click()
            expect(page.locator("#validation_key")).to_have_value(
                "tenants/acme/datasets/iris-holdout/"
            )
            page.locator("#policy_id").fill("weekly")
            page.locator("#submit-policy").click()
            policy_url = url + "/retraining/weekly"
            expect(page).to_have_url(re.compile(re.escape(policy_url) + r"(\?.*)?$"))
            expect(page.locator("#policy-status")).to_have_text("ACTIVE")
            wait_for_text(page, policy_url, "#schedule-state", "ENABLED", 15)

            # The history lists newest first and the schedule keeps firing: read every run and
            # look at the first two that were decided, oldest first.
            final = {"REJECTED", "PROMOTED", "WAITING", "SKIPPED", "FAILED"}

            def decided() -> list[tuple[str, str, str, str]]:
                rows = []
                for row in page.locator("#runs tr[data-run]").all():
                    decision = row.locator("[data-decision]").get_attribute("data-decision")
                    if decision in final:
                        job = row.locator("a[data-job]")
                        rows.append(
                            (
                                row.get_attribute("data-run") or "",
                                decision or "",
                                row.locator("[data-reason]").inner_text(),
                                job.inner_text().strip() if job.count() else "",
                            )
                        )
                return sorted(rows)

            deadline = time.monotonic() + 12 * RETRAIN_INTERVAL
            runs = decided()
            while len(runs) < 2 and time.monotonic() < deadline:
                time.sleep(POLL_SECONDS)
                page.goto(policy_url)
                runs = decided()
            assert [r[1] for r in runs[:2]] == ["REJECTED", "PROMOTED"], runs
            assert "Rejected, no improvement: validation:auc" in runs[0][2]
            assert "Promoted:" in runs[1][2]
            promoted_job = runs[1][3]
            assert promoted_job.startswith("acme-")

            # the promoted model replaces the deployed one (blue/green)
            # (the page shows what serves only while the endpoint is in service)
            serving = page.locator("#serving-version")
            status = page.locator("#deployment-status")

            def promoted_in_service() -> bool:
                return (
                    status.inner_text() == "IN_SERVICE"
                    and serving.count() == 1
                    and promoted_job in serving.inner_text()
                )

            deadline = time.monotonic() + 60
            page.goto(deployment_url)
            while not promoted_in_service() and time.monotonic() < deadline:
                time.sleep(POLL_SECONDS)
                page.goto(deployment_url)
            expect(status).to_have_text("IN_SERVICE")
            expect(serving).to_contain_text(promoted_job)

            page.goto(url + "/notifications")
            for decision in ("rejected", "promoted"):
                row = page.locator(f'tr[data-notification$="#retraining-{decision}"]')
                expect(row.first).to_contain_text(f"Retraining weekly: {decision}")
                expect(row.first.locator('a[href="/retraining/weekly"]')).to_have_count(1)

            # stop the schedule, so the browser tests that follow on this local portal don't
            # share acme's quota with retraining runs
            page.goto(policy_url)
            page.locator("#pause-policy").click()
            wait_for_text(page, policy_url, "#schedule-state", "DISABLED", 15)

            other = signed_in_page(browser, url, "gina@globex.example", "globex")
            other.goto(url + "/retraining")
            expect(other.locator("#policies tr[data-policy]")).to_have_count(0)
            assert other.request.get(policy_url, max_redirects=0).status == 404
            other.goto(url + "/notifications")
            expect(other.locator('a[href="/retraining/weekly"]')).to_have_count(0)
        finally:
            browser.close()
