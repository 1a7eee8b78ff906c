"""boto3 sessions that share one botocore loader, so service models are parsed once a process.

A new ``boto3.Session`` starts with an empty loader and reads and parses every service model
(JSON of up to megabytes) again for its first client: about 30 ms a client. The portal opens a
session per tenant (assumed-role credentials, renewed hourly), so each tenant's first request
paid for parsing the DynamoDB, S3, SQS and SageMaker models again. The loader only caches
immutable, parsed model data, so one instance can serve every session of the process.
"""

from __future__ import annotations

from typing import Any

import boto3
import botocore.loaders
import botocore.session

_LOADER = botocore.loaders.create_loader()


def new_session(**kwargs: Any) -> boto3.Session:
    """A ``boto3.Session(**kwargs)`` whose botocore session uses the process's shared loader."""
    core = botocore.session.get_session()
    core.register_component("data_loader", _LOADER)
    return boto3.Session(botocore_session=core, **kwargs)
