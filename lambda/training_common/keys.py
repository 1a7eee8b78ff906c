"""The S3 key layout: every key the platform builds comes from these functions.

- data bucket: ``tenants/<tenant>/datasets/<dataset name>/<file>``
- artifacts bucket: ``tenants/<tenant>/jobs/<job id>/output/`` (SageMaker writes
  ``<job id>/output/model.tar.gz`` below it) and ``tenants/<tenant>/jobs/<job id>/checkpoints/``
- catalog bucket: ``algorithms/<algorithm id>.json``
"""

from __future__ import annotations

from urllib.parse import urlparse


def tenant_prefix(tenant_id: str) -> str:
    """``tenants/<tenant>/``: everything a tenant owns, in any bucket, lives below it."""
    return f"tenants/{tenant_id}/"


def datasets_prefix(tenant_id: str) -> str:
    """``tenants/<tenant>/datasets/`` in the data bucket."""
    return f"{tenant_prefix(tenant_id)}datasets/"


def dataset_key(tenant_id: str, dataset_name: str, file_name: str = "") -> str:
    """Key of a dataset folder (``file_name`` empty) or of one file in it."""
    if not dataset_name or "/" in dataset_name or dataset_name in {".", ".."}:
        raise ValueError(f"invalid dataset name {dataset_name!r}")
    return f"{datasets_prefix(tenant_id)}{dataset_name}/{file_name}"


def job_prefix(tenant_id: str, job_id: str) -> str:
    """``tenants/<tenant>/jobs/<job id>/`` in the artifacts bucket."""
    return f"{tenant_prefix(tenant_id)}jobs/{job_id}/"


def output_prefix(tenant_id: str, job_id: str) -> str:
    """Where SageMaker writes the job's output (``OutputDataConfig.S3OutputPath``)."""
    return f"{job_prefix(tenant_id, job_id)}output/"


def checkpoint_prefix(tenant_id: str, job_id: str) -> str:
    """Where the job's checkpoints go (``CheckpointConfig.S3Uri``)."""
    return f"{job_prefix(tenant_id, job_id)}checkpoints/"


def model_artifact_key(tenant_id: str, job_id: str) -> str:
    """Key of the model archive SageMaker writes for a job that completed."""
    return f"{output_prefix(tenant_id, job_id)}{job_id}/output/model.tar.gz"


def catalog_key(algorithm_id: str) -> str:
    """Key of an algorithm's JSON document in the catalog bucket."""
    return f"algorithms/{algorithm_id}.json"


def s3_uri(bucket: str, key: str) -> str:
    """``s3://<bucket>/<key>``."""
    return f"s3://{bucket}/{key}"


def key_in_bucket(uri: str, bucket: str) -> str | None:
    """The key of ``uri`` when it points into ``bucket``, else None."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or parsed.netloc != bucket:
        return None
    return parsed.path.lstrip("/") or None


def is_tenant_dataset_key(tenant_id: str, key: str) -> bool:
    """True when ``key`` names a dataset (folder or file) under the tenant's datasets prefix.

    Rejects the bare prefix, empty, ``.`` and ``..`` segments and doubled slashes, so a key can't
    climb out of the prefix in a consumer that normalises paths.
    """
    prefix = datasets_prefix(tenant_id)
    if not key.startswith(prefix) or len(key) <= len(prefix):
        return False
    segments = key[len(prefix) :].split("/")
    if segments[-1] == "":
        segments = segments[:-1]
    return all(segment not in {"", ".", ".."} for segment in segments)
