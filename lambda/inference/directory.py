"""Which tenant an OAuth client belongs to: ``API_CLIENTS_TABLE``'s ``ByClientId`` index.

The portal's own role writes an ``ApiClient`` record when it creates a Cognito app client for a
tenant; a tenant session can't, so a tenant can't claim another tenant's client. The answer is
the index's one item for the client id: none (a client the portal didn't create, such as the
portal's own app client) or several (which the portal never writes) both mean "no tenant".
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any

from boto3.dynamodb.conditions import Key
from pydantic import ValidationError
from training_common import API_CLIENTS_BY_CLIENT_ID_INDEX, ApiClient

CLIENT_ID_RE = re.compile(r"^[0-9a-z]{1,128}$")
"""Cognito app client ids (the ``ApiClient.client_id`` pattern)."""


class ClientDirectory:
    """Client id -> tenant id, with the positive answers cached for ``cache_seconds``.

    Negative answers are not cached: a client the portal has just created works at once. Only a
    client with a valid token from the platform's user pool gets this far, so a miss costs one
    query for a caller API Gateway has already authenticated.
    """

    def __init__(
        self,
        table: Any,
        *,
        cache_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._table = table
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, str]] = {}

    def tenant_of(self, client_id: str) -> str | None:
        """The tenant that owns ``client_id``, or None."""
        if not CLIENT_ID_RE.fullmatch(client_id):
            return None
        now = self._clock()
        with self._lock:
            cached = self._cache.get(client_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        tenant_id = self._lookup(client_id)
        if tenant_id is not None and self._cache_seconds > 0:
            with self._lock:
                self._cache[client_id] = (now + self._cache_seconds, tenant_id)
        return tenant_id

    def _lookup(self, client_id: str) -> str | None:
        items = self._table.query(
            IndexName=API_CLIENTS_BY_CLIENT_ID_INDEX,
            KeyConditionExpression=Key("client_id").eq(client_id),
            Limit=2,
        ).get("Items", [])
        if len(items) != 1:
            return None
        try:
            record = ApiClient.model_validate(items[0])
        except ValidationError:
            return None
        return record.tenant_id if record.client_id == client_id else None
