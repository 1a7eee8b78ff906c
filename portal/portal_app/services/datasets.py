"""A tenant's datasets in the data bucket: listing and presigned uploads."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from training_common import dataset_key, datasets_prefix

from ..aws import TenantAws
from ..errors import BadRequest

DATASET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MAX_LISTED_OBJECTS = 2000


@dataclass
class DatasetFile:
    name: str
    key: str
    size: int
    modified: datetime


@dataclass
class Dataset:
    name: str
    key: str
    files: list[DatasetFile] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(item.size for item in self.files)


def list_datasets(aws: TenantAws, bucket: str) -> list[Dataset]:
    """The tenant's datasets (folders below its datasets prefix) with their files."""
    prefix = datasets_prefix(aws.tenant_id)
    datasets: dict[str, Dataset] = {}
    seen = 0
    paginator = aws.s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            relative: str = obj["Key"][len(prefix) :]
            name, _, file_name = relative.partition("/")
            if not name or not file_name:
                continue
            dataset = datasets.setdefault(name, Dataset(name, dataset_key(aws.tenant_id, name)))
            dataset.files.append(
                DatasetFile(file_name, obj["Key"], int(obj["Size"]), obj["LastModified"])
            )
            seen += 1
        if seen >= MAX_LISTED_OBJECTS:
            break
    return sorted(datasets.values(), key=lambda dataset: dataset.name)


def check_dataset_name(name: str) -> str:
    name = name.strip()
    if not DATASET_NAME_RE.fullmatch(name):
        raise BadRequest(
            "A dataset name has 1-100 letters, digits, dots, dashes or underscores and starts "
            "with a letter or digit."
        )
    return name


def presigned_upload(
    aws: TenantAws,
    *,
    bucket: str,
    dataset_name: str,
    content_type: str,
    allowed_content_types: tuple[str, ...],
    max_bytes: int,
    redirect_url: str,
    expires: int,
) -> dict[str, Any]:
    """A presigned POST that S3 accepts only below ``tenants/<tenant>/datasets/<name>/``.

    The policy pins the key prefix, the content type, the size range and the redirect back to
    the portal; it is signed with the tenant session, whose IAM policy is the second fence.
    The key field uses S3's ``${filename}`` substitution so the form works without JavaScript.
    """
    name = check_dataset_name(dataset_name)
    if content_type not in allowed_content_types:
        raise BadRequest(
            f"Content type {content_type[:60]!r} is not accepted; choose one of "
            f"{', '.join(allowed_content_types)}."
        )
    prefix = dataset_key(aws.tenant_id, name)
    post: dict[str, Any] = aws.s3.generate_presigned_post(
        Bucket=bucket,
        Key=prefix + "${filename}",
        Fields={"Content-Type": content_type, "success_action_redirect": redirect_url},
        Conditions=[
            ["starts-with", "$key", prefix],
            {"Content-Type": content_type},
            ["content-length-range", 1, max_bytes],
            {"success_action_redirect": redirect_url},
        ],
        ExpiresIn=expires,
    )
    post["prefix"] = prefix
    return post
