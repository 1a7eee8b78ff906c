"""Feedback pages against moto: export captured inputs for a window, upload labelled files."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from portal_helpers import Platform
from test_serving_pages import put_in_service
from training_common import capture_prefix

JSON = {"accept": "application/json"}
CAPTURE = capture_prefix("acme", "acme-thermostat")
HOUR = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def capture_record(
    when: datetime, data: str, *, encoding: str = "CSV", kind: str = "text/csv"
) -> str:
    """One line of SageMaker's data capture (input and output)."""
    return json.dumps(
        {
            "captureData": {
                "endpointInput": {
                    "observedContentType": kind,
                    "mode": "INPUT",
                    "data": data,
                    "encoding": encoding,
                },
                "endpointOutput": {
                    "observedContentType": "text/csv",
                    "mode": "OUTPUT",
                    "data": "0.93",
                    "encoding": "CSV",
                },
            },
            "eventMetadata": {
                "eventId": f"event-{when:%H%M%S}",
                "inferenceTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
            "eventVersion": "0",
        }
    )


def put_capture(platform: Platform, when: datetime, lines: list[str], name: str = "a") -> str:
    """A capture file under the hour of ``when``, as SageMaker names them."""
    key = f"{CAPTURE}acme-thermostat/AllTraffic/{when:%Y/%m/%d/%H}/{name}-{when:%M-%S}.jsonl"
    platform.session.client("s3", region_name=platform.settings.aws_region).put_object(
        Bucket=platform.settings.data_bucket, Key=key, Body="\n".join(lines).encode()
    )
    return key


def captured_deployment(platform: Platform) -> None:
    """acme's thermostat, in service with data capture under its monitoring prefix."""
    put_in_service(platform, "acme", "thermostat", platform.seeded.approved_models["acme"])
    platform.table(platform.settings.deployments_table).update_item(
        Key={"tenant_id": "acme", "deployment_id": "thermostat"},
        UpdateExpression="SET capture_prefix = :p",
        ExpressionAttributeValues={":p": CAPTURE},
    )


def read(platform: Platform, key: str) -> str:
    s3 = platform.session.client("s3", region_name=platform.settings.aws_region)
    return str(s3.get_object(Bucket=platform.settings.data_bucket, Key=key)["Body"].read().decode())


def keys(platform: Platform, prefix: str) -> list[str]:
    s3 = platform.session.client("s3", region_name=platform.settings.aws_region)
    response = s3.list_objects_v2(Bucket=platform.settings.data_bucket, Prefix=prefix)
    return [str(o["Key"]) for o in response.get("Contents", [])]


def window(start: datetime, end: datetime) -> dict[str, str]:
    return {"start": start.isoformat(), "end": end.isoformat()}


def test_export_writes_the_csv_and_base64_inputs_of_the_window_only(platform: Platform) -> None:
    captured_deployment(platform)
    put_capture(
        platform,
        HOUR + timedelta(minutes=5),
        [
            capture_record(HOUR + timedelta(minutes=5), "1.0,2.0,3.0"),
            capture_record(HOUR + timedelta(minutes=6), "4.0,5.0,6.0\n7.0,8.0,9.0"),
            "not json at all",
            capture_record(HOUR - timedelta(minutes=1), "too,early,0"),
        ],
    )
    put_capture(
        platform,
        HOUR + timedelta(hours=1, minutes=10),
        [
            capture_record(
                HOUR + timedelta(hours=1, minutes=10),
                base64.b64encode(b"10.0,11.0,12.0").decode(),
                encoding="BASE64",
            ),
            capture_record(
                HOUR + timedelta(hours=1, minutes=11),
                base64.b64encode(json.dumps({"f": [1, 2]}).encode()).decode(),
                encoding="BASE64",
                kind="application/json",
            ),
            capture_record(HOUR + timedelta(hours=1, minutes=45), "too,late,0"),
        ],
    )
    # Another hour, outside the window: never listed.
    put_capture(platform, HOUR + timedelta(hours=5), [capture_record(HOUR, "wrong,hour,0")])
    client = platform.client("alice")
    mark = platform.calls.mark()
    form = window(HOUR, HOUR + timedelta(hours=1, minutes=30))
    r = client.post_form("/deployments/thermostat/feedback/export", form, headers=JSON)
    assert r.status_code == 201, r.text
    body = r.json()
    key = "tenants/acme/feedback/thermostat/20261201080000-20261201093000/inputs.csv"
    assert body["key"] == key and body["rows"] == 5 and body["files"] == 2
    assert body["truncated"] is False
    assert read(platform, key).splitlines() == [
        "1.0,2.0,3.0",
        "4.0,5.0,6.0",
        "7.0,8.0,9.0",
        "10.0,11.0,12.0",
        '"{""f"": [1, 2]}"',
    ]
    calls = platform.calls.since(mark)
    s3 = [c for c in calls if c[0] == "s3"]
    assert s3 and all(platform.calls.tenant_of_key(key) == "acme" for _, _, key, _ in s3)
    listed = [c[3]["Prefix"] for c in s3 if c[1] == "ListObjectsV2"]
    assert f"{CAPTURE}acme-thermostat/AllTraffic/2026/12/01/13/" not in listed
    assert f"{CAPTURE}acme-thermostat/AllTraffic/2026/12/01/09/" in listed
    page = client.post_form("/deployments/thermostat/feedback/export", form)
    assert page.status_code == 201 and 'id="export-key"' in page.text and key in page.text
    assert 'data-export="20261201080000-20261201093000/inputs.csv"' in page.text


def test_an_empty_window_says_so_and_writes_nothing(platform: Platform) -> None:
    captured_deployment(platform)
    put_capture(platform, HOUR, [capture_record(HOUR + timedelta(minutes=50), "1,2,3")])
    client = platform.client("alice")
    form = window(HOUR, HOUR + timedelta(minutes=30))
    r = client.post_form("/deployments/thermostat/feedback/export", form, headers=JSON)
    assert r.status_code == 200 and r.json()["key"] is None and r.json()["rows"] == 0
    page = client.post_form("/deployments/thermostat/feedback/export", form)
    assert page.status_code == 200 and 'id="export-empty"' in page.text
    assert "No captured inputs between 2026-12-01 08:00:00 and 2026-12-01 08:30:00" in page.text
    assert keys(platform, "tenants/acme/feedback/") == []


def test_an_export_stops_at_the_row_limit_and_says_so(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    from portal_app.services import feedback

    monkeypatch.setattr(feedback, "MAX_EXPORT_ROWS", 3)
    captured_deployment(platform)
    put_capture(
        platform,
        HOUR,
        [capture_record(HOUR + timedelta(minutes=n), f"{n},0,0") for n in range(5)],
    )
    client = platform.client("alice")
    form = window(HOUR, HOUR + timedelta(hours=1))
    body = client.post_form("/deployments/thermostat/feedback/export", form, headers=JSON).json()
    assert body["rows"] == 3 and body["truncated"] is True
    assert read(platform, body["key"]).splitlines() == ["0,0,0", "1,0,0", "2,0,0"]
    page = client.post_form("/deployments/thermostat/feedback/export", form).text
    assert 'id="export-truncated"' in page and "3 rows" in page


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"start": "2026-12-01T09:00", "end": "2026-12-01T08:00"}, "must be after its start"),
        ({"start": "2026-12-01T08:00", "end": "2026-12-01T08:00"}, "must be after its start"),
        ({"start": "2026-12-01T00:00", "end": "2026-12-08T00:01"}, "at most 7 days"),
        ({"start": "yesterday", "end": "2026-12-01T08:00"}, "Start must be an ISO date"),
        ({"start": "2026-12-01T08:00"}, "End is required"),
    ],
)
def test_a_bad_window_is_400_with_the_reason(
    platform: Platform, form: dict[str, str], message: str
) -> None:
    captured_deployment(platform)
    client = platform.client("alice")
    r = client.post_form("/deployments/thermostat/feedback/export", form, headers=JSON)
    assert r.status_code == 400 and message in r.json()["error"]
    page = client.post_form("/deployments/thermostat/feedback/export", form)
    assert page.status_code == 400 and 'data-testid="form-errors"' in page.text
    assert keys(platform, "tenants/acme/feedback/") == []


def test_a_full_week_is_accepted_and_a_deployment_without_capture_is_409(
    platform: Platform,
) -> None:
    captured_deployment(platform)
    client = platform.client("alice")
    week = {"start": "2026-12-01T00:00:00Z", "end": "2026-12-08T00:00:00+00:00"}
    r = client.post_form("/deployments/thermostat/feedback/export", week, headers=JSON)
    assert r.status_code == 200 and r.json()["rows"] == 0
    put_in_service(platform, "acme", "nocapture", platform.seeded.approved_models["acme"])
    r = client.post_form("/deployments/nocapture/feedback/export", week, headers=JSON)
    assert r.status_code == 409 and "no data capture" in r.json()["error"]
    page = client.get("/deployments/nocapture/feedback")
    assert page.status_code == 200 and 'id="capture-unavailable"' in page.text
    assert 'id="labelled-form"' in page.text
    for path in ("/deployments/nope/feedback", "/deployments/Bad_Name/feedback"):
        assert client.get(path, headers=JSON).status_code == 404


def test_a_labelled_csv_is_uploaded_under_the_deployment_and_listed(platform: Platform) -> None:
    captured_deployment(platform)
    client = platform.client("alice")
    content = b"label,f1,f2,f3\n1,1.0,2.0,3.0\n0,4.0,5.0,6.0\n"
    r = client.post_form(
        "/deployments/thermostat/feedback/labelled",
        {"tenant_id": "globex"},
        files={"file": ("../../globex/my labels.csv", content, "text/csv")},
    )
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/deployments/thermostat/feedback?notice=labelled-uploaded"
    key = "tenants/acme/feedback/thermostat/labelled/my-labels.csv"
    assert read(platform, key) == content.decode()
    assert keys(platform, "tenants/globex/feedback/") == []
    page = client.get(r.headers["location"]).text
    assert '<tr data-labelled="my-labels.csv">' in page and "policies with feedback" in page
    listing: dict[str, Any] = client.get("/deployments/thermostat/feedback", headers=JSON).json()
    assert [f["key"] for f in listing["labelled"]] == [key] and listing["exports"] == []


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("labels.txt", b"1,2\n", "with a .csv name"),
        (".csv", b"1,2\n", "with a .csv name"),
        ("labels.csv", b"  \n", "is empty"),
        ("labels.csv", b"\xff\xfe\x00bad", "UTF-8"),
    ],
)
def test_a_bad_labelled_file_is_400_and_stores_nothing(
    platform: Platform, name: str, content: bytes, message: str
) -> None:
    captured_deployment(platform)
    client = platform.client("alice")
    r = client.post_form(
        "/deployments/thermostat/feedback/labelled",
        {},
        files={"file": (name, content, "text/csv")},
        headers=JSON,
    )
    assert r.status_code == 400 and message in r.json()["error"]
    assert keys(platform, "tenants/acme/feedback/") == []


def test_an_upload_without_a_file_or_csrf_token_is_refused(platform: Platform) -> None:
    captured_deployment(platform)
    client = platform.client("alice")
    r = client.post_form("/deployments/thermostat/feedback/labelled", {}, headers=JSON)
    assert r.status_code == 400 and "Choose a labelled CSV" in r.json()["error"]
    r = client.post(
        "/deployments/thermostat/feedback/labelled",
        files={"file": ("labels.csv", b"1,2\n", "text/csv")},
        headers=JSON,
    )
    assert r.status_code == 403
    assert keys(platform, "tenants/acme/feedback/") == []


def test_exports_and_labelled_files_download_through_presigned_urls(platform: Platform) -> None:
    captured_deployment(platform)
    put_capture(platform, HOUR, [capture_record(HOUR + timedelta(minutes=1), "1.0,2.0")])
    client = platform.client("alice")
    form = window(HOUR, HOUR + timedelta(minutes=30))
    assert client.post_form("/deployments/thermostat/feedback/export", form).status_code == 201
    client.post_form(
        "/deployments/thermostat/feedback/labelled",
        {},
        files={"file": ("labels.csv", b"1,1.0,2.0\n", "text/csv")},
    )
    page = client.get("/deployments/thermostat/feedback")
    name = "20261201080000-20261201083000/inputs.csv"
    assert f"/deployments/thermostat/feedback/download?file={name}" in page.text
    assert "/deployments/thermostat/feedback/download?file=labelled/labels.csv" in page.text
    for file, key in (
        (name, f"tenants/acme/feedback/thermostat/{name}"),
        ("labelled/labels.csv", "tenants/acme/feedback/thermostat/labelled/labels.csv"),
    ):
        r = client.get("/deployments/thermostat/feedback/download", params={"file": file})
        assert r.status_code == 303, r.text
        assert key.replace("/", "%2F") in r.headers["location"] or key in r.headers["location"]
    for bad in ("../../globex/feedback/x/inputs.csv", "capture.jsonl", "labelled/../x.csv"):
        r = client.get(
            "/deployments/thermostat/feedback/download", params={"file": bad}, headers=JSON
        )
        assert r.status_code == 400 and "location" not in r.headers, bad
