"""The simulated SageMaker runtime: ``InvokeEndpoint`` answered by a tiny model, for endpoints
that exist in moto, for callers IAM would let through.

moto's own ``InvokeEndpoint`` returns canned data and checks no IAM. :meth:`SimulatedRuntime.
session_hook` registers botocore handlers on a session instead:

- ``sts:AssumeRole`` on that session: the session tags requested are remembered against the
  access key STS returns (moto keeps no session tags), as IAM keeps them with the session;
- ``sagemaker-runtime:InvokeEndpoint``: answered here, never sent to moto. The check is the
  tenant invoke role's condition, ``aws:ResourceTag/tenant`` = ``${aws:PrincipalTag/tenant}``:
  an endpoint that doesn't exist has no tag, so the caller gets the ``AccessDeniedException``
  botocore raises for a denied call either way. An endpoint that isn't ``InService`` gets
  ``ValidationError``; input the model can't read gets ``ModelError`` (original status 400, the
  model's message), as a real container's 4xx would.

The model: logistic regression over numeric features, its weights derived from the name of the
model the endpoint's configuration serves, so predictions are deterministic and change when a
blue/green update switches the endpoint to another model version. It reads ``text/csv`` (a row
per line), ``application/json`` (``{"instances": [[...], ...]}``, ``{"features": [...]}``, a row
or a list of rows) and ``application/jsonlines`` (a row or ``{"features": [...]}`` per line) and
answers in the same type: ``score`` per row, between 0 and 1.

Data capture, as SageMaker does it for an endpoint configuration with ``DataCaptureConfig``
(the deploy handler's real-time endpoints): each answered request is one JSON line
(``captureData.endpointInput`` / ``endpointOutput`` with ``observedContentType``, ``mode``,
``data`` and ``encoding`` (``CSV``, ``JSON`` or ``BASE64``), ``eventMetadata.eventId`` and
``inferenceTime``, ``eventVersion "0"``) in an object
``<DestinationS3Uri>/<endpoint>/AllTraffic/yyyy/mm/dd/hh/<mm>-<ss>-<ms>-<uuid>.jsonl`` of the data
bucket, sampled at ``InitialSamplingPercentage``. (SageMaker buffers a few minutes of requests
per file; here each request is a file, so the feedback export has data at once.)
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import math
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from botocore.response import StreamingBody
from training_common import DEPLOYMENT_TAG, VARIANT_NAME

from .common import ACCOUNT, REGION

MAX_FEATURES = 1000
MAX_ROWS = 10_000
DEFAULT_CACHE_SECONDS = 2.0
"""How long an endpoint's status, tags and model are reused (moto is asked again after)."""
_URL = "https://runtime.sagemaker.local/"


@dataclass(frozen=True)
class _Capture:
    """An endpoint configuration's ``DataCaptureConfig``, as the runtime applies it."""

    bucket: str
    prefix: str
    """The destination's key prefix, ending in ``/`` (or empty)."""
    percentage: int
    inputs: bool
    outputs: bool

    @classmethod
    def of(cls, config: object) -> _Capture | None:
        if not isinstance(config, dict) or not config.get("EnableCapture"):
            return None
        uri = str(config.get("DestinationS3Uri") or "")
        if not uri.startswith("s3://"):
            return None
        bucket, _, prefix = uri[len("s3://") :].partition("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        modes = {str(o.get("CaptureMode")) for o in config.get("CaptureOptions") or []}
        return cls(
            bucket=bucket,
            prefix=prefix,
            percentage=int(config.get("InitialSamplingPercentage") or 0),
            inputs="Input" in modes,
            outputs="Output" in modes,
        )


@dataclass(frozen=True)
class _EndpointState:
    status: str
    tenant: str | None
    model_name: str
    capture: _Capture | None = None


_CAPTURE_ENCODINGS = {"text/csv": "CSV", "application/json": "JSON"}


def _captured(data: bytes, content_type: str, mode: str) -> dict[str, str]:
    """One side of a captured request, as SageMaker writes it."""
    kind = content_type.split(";", 1)[0].strip().lower()
    encoding = _CAPTURE_ENCODINGS.get(kind, "BASE64")
    if encoding == "BASE64":
        text = base64.b64encode(data).decode()
    else:
        text = data.decode("utf-8", errors="replace")
    return {"observedContentType": content_type, "mode": mode, "data": text, "encoding": encoding}


def capture_record(
    request: bytes,
    request_type: str,
    response: bytes,
    response_type: str,
    at: datetime,
    *,
    event_id: str | None = None,
    inputs: bool = True,
    outputs: bool = True,
) -> dict[str, Any]:
    """The JSON line SageMaker's data capture writes for one request."""
    data: dict[str, Any] = {}
    if inputs:
        data["endpointInput"] = _captured(request, request_type, "INPUT")
    if outputs:
        data["endpointOutput"] = _captured(response, response_type, "OUTPUT")
    return {
        "captureData": data,
        "eventMetadata": {
            "eventId": event_id or str(uuid.uuid4()),
            "inferenceTime": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{at.microsecond // 1000:03d}Z",
        },
        "eventVersion": "0",
    }


def capture_key(prefix: str, endpoint_name: str, at: datetime, event_id: str) -> str:
    """``<prefix><endpoint>/AllTraffic/yyyy/mm/dd/hh/<mm>-<ss>-<ms>-<id>.jsonl``."""
    at = at.astimezone(UTC)
    return (
        f"{prefix}{endpoint_name}/{VARIANT_NAME}/{at:%Y/%m/%d/%H}/"
        f"{at:%M-%S}-{at.microsecond // 1000:03d}-{event_id}.jsonl"
    )


class ModelInputError(ValueError):
    """Input the simulated model can't read (the container's 4xx)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@functools.lru_cache(maxsize=65536)
def _weight(model_name: str, index: int) -> float:
    """The ``index``-th weight (-1 for the bias) of ``model_name``: in [-1, 1), fixed forever."""
    digest = hashlib.sha256(f"{model_name}/{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**31 - 1.0


def score(model_name: str, row: Sequence[float]) -> float:
    """The model's prediction for one row of features, rounded to 6 digits."""
    z = _weight(model_name, -1) + sum(_weight(model_name, i) * x for i, x in enumerate(row))
    z = max(-60.0, min(60.0, z))
    return round(1.0 / (1.0 + math.exp(-z)), 6)


def _row(values: object, where: str) -> list[float]:
    if not isinstance(values, list) or not values:
        raise ModelInputError(400, f"{where}: expected a non-empty list of numbers")
    if len(values) > MAX_FEATURES:
        raise ModelInputError(400, f"{where}: more than {MAX_FEATURES} features")
    row: list[float] = []
    for position, value in enumerate(values, 1):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ModelInputError(400, f"{where}, feature {position}: {value!r} is not a number")
        row.append(float(value))
    return row


def _json_row(item: object, where: str) -> list[float]:
    if isinstance(item, dict):
        return _row(item.get("features"), where)
    return _row(item, where)


def _csv_rows(text: str) -> list[list[float]]:
    rows = []
    lines = [line for line in text.splitlines() if line.strip()]
    for number, line in enumerate(lines[: MAX_ROWS + 1], 1):
        try:
            values = [float(cell) for cell in line.split(",")]
        except ValueError:
            raise ModelInputError(400, f"row {number}: every value must be a number") from None
        rows.append(_row(values, f"row {number}"))
    return rows


def _json_rows(text: str) -> list[list[float]]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ModelInputError(400, f"the input is not JSON: {error.msg}") from None
    if isinstance(document, dict) and "instances" in document:
        items = document["instances"]
        if not isinstance(items, list):
            raise ModelInputError(400, "instances: expected a list of rows")
        return [_json_row(item, f"instance {n}") for n, item in enumerate(items, 1)]
    if isinstance(document, dict):
        return [_row(document.get("features"), "features")]
    if isinstance(document, list) and document and isinstance(document[0], list):
        return [_row(item, f"row {n}") for n, item in enumerate(document, 1)]
    return [_row(document, "row 1")]


def _jsonlines_rows(text: str) -> list[list[float]]:
    rows = []
    for number, line in enumerate((ln for ln in text.splitlines() if ln.strip()), 1):
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise ModelInputError(400, f"line {number} is not JSON: {error.msg}") from None
        rows.append(_json_row(item, f"line {number}"))
    return rows


def _csv_answer(scores: list[float]) -> bytes:
    return "".join(f"{value}\n" for value in scores).encode()


def _json_answer(scores: list[float]) -> bytes:
    return json.dumps({"predictions": [{"score": value} for value in scores]}).encode()


def _jsonlines_answer(scores: list[float]) -> bytes:
    return "".join(json.dumps({"score": value}) + "\n" for value in scores).encode()


_FORMATS: dict[str, tuple[Callable[[str], list[list[float]]], Callable[[list[float]], bytes]]] = {
    "text/csv": (_csv_rows, _csv_answer),
    "application/json": (_json_rows, _json_answer),
    "application/jsonlines": (_jsonlines_rows, _jsonlines_answer),
}
"""What the model reads and answers, by content type: (reader, writer)."""


def predict(model_name: str, body: bytes, content_type: str) -> tuple[bytes, str]:
    """The model's answer to ``body``: (payload, content type); ModelInputError when the input
    isn't one the model reads."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind not in _FORMATS:
        readable = ", ".join(_FORMATS)
        raise ModelInputError(415, f"this model reads {readable}, not {kind}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelInputError(400, "the input is not UTF-8 text") from None
    reader, writer = _FORMATS[kind]
    rows = reader(text)
    _check_rows(rows)
    return writer([score(model_name, row) for row in rows]), kind


def _check_rows(rows: list[list[float]]) -> None:
    if not rows:
        raise ModelInputError(400, "the input holds no rows")
    if len(rows) > MAX_ROWS:
        raise ModelInputError(400, f"more than {MAX_ROWS} rows")


def _body_bytes(body: object) -> bytes:
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    if hasattr(body, "read"):
        data = body.read()
        return data.encode("utf-8") if isinstance(data, str) else bytes(data)
    return b""


def _error(
    status: int, code: str, message: str, **extra: Any
) -> tuple[AWSResponse, dict[str, Any]]:
    parsed = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
        **extra,
    }
    return AWSResponse(_URL, status, {"x-amzn-errortype": code}, None), parsed


class SimulatedRuntime:
    """``InvokeEndpoint`` for the sessions passed to :meth:`session_hook`.

    ``sagemaker`` is a SageMaker client of the platform (moto), used to read endpoints, their
    tags and configurations; answers are cached for ``cache_seconds``.
    """

    def __init__(
        self,
        sagemaker: Any,
        *,
        s3: Any = None,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``s3``: where data capture is written (None: no capture)."""
        self.sagemaker = sagemaker
        self.s3 = s3
        self.now = now
        self.captured = 0
        """Requests written to data capture (tests read it)."""
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._session_tags: dict[str, dict[str, str]] = {}
        self._endpoints: dict[str, tuple[float, _EndpointState | None]] = {}
        self.invocations = 0
        """Calls that reached a model (tests and the benchmark read it)."""

    @classmethod
    def for_moto(cls, session: boto3.Session, endpoint_url: str | None) -> SimulatedRuntime:
        """The runtime reading SageMaker from moto (``endpoint_url``: moto_server; None: moto in
        process)."""
        return cls(
            session.client("sagemaker", region_name=REGION, endpoint_url=endpoint_url),
            s3=session.client("s3", region_name=REGION, endpoint_url=endpoint_url),
        )

    def session_hook(self, session: boto3.Session) -> None:
        """Register the handlers on ``session`` (before any client is created from it)."""
        session.events.register("provide-client-params.sts.AssumeRole", self._before_assume)
        session.events.register("after-call.sts.AssumeRole", self._after_assume)
        session.events.register(
            "provide-client-params.sagemaker-runtime.InvokeEndpoint", self._keep_params
        )
        session.events.register(
            "before-call.sagemaker-runtime.InvokeEndpoint",
            functools.partial(self._invoke, session),
        )

    def tags_of(self, access_key_id: str) -> dict[str, str]:
        """The session tags of an assumed-role access key ({} for any other key)."""
        with self._lock:
            return dict(self._session_tags.get(access_key_id, {}))

    def forget(self, endpoint_name: str | None = None) -> None:
        """Drop cached endpoint state (one endpoint, or all) so the next call asks moto."""
        with self._lock:
            if endpoint_name is None:
                self._endpoints.clear()
            else:
                self._endpoints.pop(endpoint_name, None)

    @staticmethod
    def _before_assume(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["simulated_session_tags"] = {
            str(tag["Key"]): str(tag["Value"]) for tag in params.get("Tags", [])
        }

    def _after_assume(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        key = parsed.get("Credentials", {}).get("AccessKeyId")
        tags = context.get("simulated_session_tags")
        if isinstance(key, str) and tags:
            with self._lock:
                self._session_tags[key] = dict(tags)

    @staticmethod
    def _keep_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["simulated_invoke"] = dict(params)

    def _endpoint(self, name: str) -> _EndpointState | None:
        now = self.clock()
        with self._lock:
            cached = self._endpoints.get(name)
        if cached is not None and cached[0] > now:
            return cached[1]
        state = self._describe(name)
        with self._lock:
            self._endpoints[name] = (now + self.cache_seconds, state)
        return state

    def _describe(self, name: str) -> _EndpointState | None:
        try:
            endpoint = self.sagemaker.describe_endpoint(EndpointName=name)
        except ClientError:
            return None
        tags = self.sagemaker.list_tags(ResourceArn=endpoint["EndpointArn"]).get("Tags", [])
        tenant = next((t["Value"] for t in tags if t["Key"] == "tenant"), None)
        model_name = name
        capture: _Capture | None = None
        try:
            config = self.sagemaker.describe_endpoint_config(
                EndpointConfigName=endpoint["EndpointConfigName"]
            )
            variants = config.get("ProductionVariants") or [{}]
            model_name = str(variants[0].get("ModelName") or name)
            capture = _Capture.of(config.get("DataCaptureConfig"))
        except ClientError:
            pass
        return _EndpointState(str(endpoint.get("EndpointStatus")), tenant, model_name, capture)

    def _capture(
        self,
        name: str,
        capture: _Capture,
        request: tuple[bytes, str],
        response: tuple[bytes, str],
    ) -> None:
        """Write one request's capture line (sampled; a failed write loses it, as a full
        capture buffer would)."""
        if self.s3 is None or not (capture.inputs or capture.outputs):
            return
        if capture.percentage < 100 and random.random() * 100 >= capture.percentage:  # noqa: S311
            return
        at = self.now()
        event_id = str(uuid.uuid4())
        line = capture_record(
            *request,
            *response,
            at,
            event_id=event_id,
            inputs=capture.inputs,
            outputs=capture.outputs,
        )
        try:
            self.s3.put_object(
                Bucket=capture.bucket,
                Key=capture_key(capture.prefix, name, at, event_id),
                Body=(json.dumps(line, separators=(",", ":")) + "\n").encode(),
                ContentType="application/jsonlines",
            )
        except ClientError:
            return
        with self._lock:
            self.captured += 1

    def _invoke(
        self, session: boto3.Session, context: dict[str, Any], **_: Any
    ) -> tuple[AWSResponse, dict[str, Any]]:
        params = context.get("simulated_invoke") or {}
        name = str(params.get("EndpointName", ""))
        credentials = session.get_credentials()
        access_key = credentials.access_key if credentials is not None else ""
        caller_tenant = self.tags_of(access_key).get("tenant")
        state = self._endpoint(name)
        arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{name.lower()}"
        if caller_tenant is None or state is None or state.tenant != caller_tenant:
            return _error(
                400,
                "AccessDeniedException",
                f"User: arn:aws:sts::{ACCOUNT}:assumed-role/... is not authorized to perform: "
                f"sagemaker:InvokeEndpoint on resource: {arn} because no identity-based policy "
                "allows the sagemaker:InvokeEndpoint action",
            )
        if state.status != "InService":
            return _error(
                400,
                "ValidationError",
                f"Endpoint {name} of account {ACCOUNT} is not in service (status {state.status}).",
            )
        body = _body_bytes(params.get("Body"))
        request_type = str(params.get("ContentType") or "application/json")
        try:
            payload, content_type = predict(state.model_name, body, request_type)
        except ModelInputError as error:
            return _error(
                424,
                "ModelError",
                f"Received client error ({error.status}) from primary with message "
                f'"{error}". See the log of endpoint {name}.',
                OriginalStatusCode=error.status,
                OriginalMessage=str(error),
                LogStreamArn=f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/sagemaker/"
                f"Endpoints/{name}",
            )
        with self._lock:
            self.invocations += 1
        if state.capture is not None:
            self._capture(name, state.capture, (body, request_type), (payload, content_type))
        parsed = {
            "Body": StreamingBody(io.BytesIO(payload), len(payload)),
            "ContentType": content_type,
            "InvokedProductionVariant": VARIANT_NAME,
            "ResponseMetadata": {"HTTPStatusCode": 200},
        }
        return AWSResponse(_URL, 200, {"content-type": content_type}, None), parsed


def create_endpoint(
    sagemaker: Any,
    *,
    tenant_id: str,
    deployment_id: str,
    endpoint_name: str,
    model_name: str | None = None,
    role_arn: str = f"arn:aws:iam::{ACCOUNT}:role/endpoint-execution",
    image_uri: str = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/model:1",
    capture_uri: str | None = None,
) -> str:
    """A model, endpoint configuration and endpoint in moto, tagged ``tenant`` and
    ``deployment`` as the deploy handler tags them (moto marks the endpoint InService at once);
    for tests and the benchmark, which need an endpoint without a deployment; ``capture_uri``:
    data capture of inputs and outputs there, as the deploy handler configures it. Returns its
    ARN."""
    tags = [{"Key": "tenant", "Value": tenant_id}, {"Key": DEPLOYMENT_TAG, "Value": deployment_id}]
    model = model_name or f"{endpoint_name}-model"
    sagemaker.create_model(
        ModelName=model,
        PrimaryContainer={"Image": image_uri},
        ExecutionRoleArn=role_arn,
        EnableNetworkIsolation=True,
        Tags=tags,
    )
    config = f"{endpoint_name}-config"
    capture: dict[str, Any] = {}
    if capture_uri is not None:
        capture["DataCaptureConfig"] = {
            "EnableCapture": True,
            "InitialSamplingPercentage": 100,
            "DestinationS3Uri": capture_uri,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        }
    sagemaker.create_endpoint_config(
        EndpointConfigName=config,
        ProductionVariants=[
            {
                "VariantName": VARIANT_NAME,
                "ModelName": model,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
        Tags=tags,
        **capture,
    )
    return str(
        sagemaker.create_endpoint(EndpointName=endpoint_name, EndpointConfigName=config, Tags=tags)[
            "EndpointArn"
        ]
    )
