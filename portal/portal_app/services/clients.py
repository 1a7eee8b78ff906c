"""A tenant's API clients: the Cognito app clients its devices and back ends call the inference
API with (OAuth 2.0 client credentials).

The portal's instance role creates and deletes the app clients and writes the ApiClients table:
the inference function trusts that table to say whose a client is, so no tenant session may
write it. Tenant sessions only read their own partition (the list, and the check before a
delete). The secret is Cognito's and shown once, on the page that answers the creation; the
portal stores it nowhere.
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass
from typing import Any

from training_common import INFERENCE_SCOPE, ApiClient, utc_now
from training_common.repositories import ApiClientRepository

from ..aws import TenantAws
from ..errors import BadRequest, Conflict, NotFound
from . import forms

log = logging.getLogger("portal.clients")

MAX_CLIENTS_PER_TENANT = 25
ACCESS_TOKEN_MINUTES = 60
CLIENT_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}"
_CLIENT_NAME = re.compile(CLIENT_NAME_PATTERN)
_CLIENT_ID = re.compile(r"[0-9a-z]{1,128}")


@dataclass(frozen=True)
class CreatedClient:
    client: ApiClient
    secret: str
    """Shown once on the answer to the creation; stored nowhere by the portal."""


def list_clients(aws: TenantAws) -> list[ApiClient]:
    """All of the tenant's clients (at most :data:`MAX_CLIENTS_PER_TENANT`, so one page)."""
    clients: list[ApiClient] = []
    token: str | None = None
    while True:
        page = aws.api_clients.list_page(aws.tenant_id, limit=50, token=token)
        clients.extend(page.items)
        token = page.next_token
        if token is None:
            return sorted(clients, key=lambda c: c.created_at, reverse=True)


def create(
    aws: TenantAws,
    *,
    cognito: Any,
    records: ApiClientRepository,
    user_pool_id: str,
    form: dict[str, str],
    by: str,
) -> CreatedClient:
    """Create the app client (client credentials only, the inference scope, one-hour tokens)
    with the instance role's ``cognito`` client, then record it under the session's tenant."""
    name = forms.required(form, "name", "Client name")
    if not _CLIENT_NAME.fullmatch(name):
        raise BadRequest(
            "Client name must be 1 to 64 letters, digits, spaces, dots, underscores or hyphens, "
            "starting with a letter or digit."
        )
    existing = list_clients(aws)
    if len(existing) >= MAX_CLIENTS_PER_TENANT:
        raise Conflict(
            f"You have {len(existing)} API clients, the most a tenant may have; delete one first."
        )
    if any(client.name == name for client in existing):
        raise Conflict(f"You already have an API client called {name!r}.")
    response = cognito.create_user_pool_client(
        UserPoolId=user_pool_id,
        ClientName=f"{aws.tenant_id}-{name}"[:128],
        GenerateSecret=True,
        AllowedOAuthFlows=["client_credentials"],
        AllowedOAuthScopes=[INFERENCE_SCOPE],
        AllowedOAuthFlowsUserPoolClient=True,
        SupportedIdentityProviders=["COGNITO"],
        AccessTokenValidity=ACCESS_TOKEN_MINUTES,
        TokenValidityUnits={"AccessToken": "minutes"},
        ExplicitAuthFlows=["ALLOW_REFRESH_TOKEN_AUTH"],
        EnableTokenRevocation=True,
        PreventUserExistenceErrors="ENABLED",
    )["UserPoolClient"]
    client = ApiClient(
        tenant_id=aws.tenant_id,
        client_id=response["ClientId"],
        name=name,
        created_by=by,
        created_at=utc_now(),
    )
    try:
        recorded = records.put(client)
    except Exception:
        # An app client without its record would be a credential no tenant owns: remove it.
        cognito.delete_user_pool_client(UserPoolId=user_pool_id, ClientId=client.client_id)
        raise
    if not recorded:
        cognito.delete_user_pool_client(UserPoolId=user_pool_id, ClientId=client.client_id)
        raise Conflict("Cognito returned a client id that is already recorded; try again.")
    log.info(
        "api client created",
        extra={"tenant_id": aws.tenant_id, "client_id": client.client_id, "by": by},
    )
    return CreatedClient(client, response["ClientSecret"])


def delete(
    aws: TenantAws,
    client_id: str,
    *,
    cognito: Any,
    records: ApiClientRepository,
    user_pool_id: str,
) -> ApiClient:
    """Delete one of the tenant's clients: the record is looked up under the session's tenant
    (another tenant's client id is NotFound, and nothing is deleted)."""
    if not _CLIENT_ID.fullmatch(client_id):
        raise NotFound(f"You have no API client {client_id[:64]!r}.")
    client = aws.api_clients.get(aws.tenant_id, client_id)
    if client is None:
        raise NotFound(f"You have no API client {client_id!r}.")
    # Deleted already (an earlier attempt failed after this call): drop the record anyway.
    with contextlib.suppress(cognito.exceptions.ResourceNotFoundException):
        cognito.delete_user_pool_client(UserPoolId=user_pool_id, ClientId=client_id)
    records.delete(aws.tenant_id, client_id)
    log.info("api client deleted", extra={"tenant_id": aws.tenant_id, "client_id": client_id})
    return client
