"""A person's path through the local portal in headless Chromium (Playwright, Debian's browser).

Sign in locally as acme's user, upload a dataset file through the presigned POST, submit a job,
watch the simulator take it to COMPLETED, download the model. Select with ``-m browser``.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian's Chromium is not installed (apt-get install -y chromium); CI installs it",
    ),
]
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

    with LocalPortal(step_seconds=1.0) as portal:
        yield portal


def test_acme_user_uploads_trains_and_downloads(local_portal: object, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    url: str = local_portal.url  # type: ignore[attr-defined]
    data = tmp_path / "readings.csv"
    data.write_text("label,temperature,vibration\n1,71.5,0.02\n0,65.0,0.01\n")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(accept_downloads=True).new_page()
            page.set_default_timeout(15_000)
            page.goto(url + "/jobs")
            expect(page.get_by_role("heading", name="Local sign-in")).to_be_visible()
            page.get_by_label("alice@acme.example").check()
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_test_id("tenant")).to_have_text("acme")

            page.get_by_role("link", name="Datasets").click()
            page.get_by_label("Dataset name").fill("sensor-readings")
            page.get_by_label("Content type").select_option("text/csv")
            page.get_by_role("button", name="Next: choose the file").click()
            page.locator("#upload-file").set_input_files(str(data))
            page.get_by_role("button", name="Upload").click()
            expect(page.get_by_role("status")).to_have_text("The file was uploaded.")
            row = page.locator('tr[data-dataset="sensor-readings"]')
            expect(row).to_contain_text("readings.csv")

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
                time.sleep(1)
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
            expect(page.locator(f'tr[data-notification$="#{job_id}"]')).to_contain_text("completed")
        finally:
            browser.close()
