"""Fetch one ALB signing public key by key id, for portal instances that have no internet route.

The ALB signs the ``x-amzn-oidc-data`` header with a regional key whose public half is published
at ``https://public-keys.auth.elb.<region>.amazonaws.com/<kid>``. That endpoint has no VPC
endpoint, so the portal asks this function (outside the VPC, reached through the Lambda interface
endpoint) instead of needing a NAT gateway. It returns only what the endpoint publishes: a key is
public, and the portal still verifies every signature itself.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

KID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
MAX_KEY_BYTES = 4096

Opener = Callable[[str, float], bytes]


def _https_get(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - fixed https URL
        body: bytes = response.read(MAX_KEY_BYTES + 1)
        return body


def fetch_public_key(
    event: dict[str, Any], *, region: str, opener: Opener = _https_get, timeout: float = 5.0
) -> dict[str, str]:
    """``{"kid": ...}`` -> ``{"pem": ...}``, or ``{"error": ...}`` saying why there is none."""
    kid = event.get("kid")
    if not isinstance(kid, str) or not KID_PATTERN.fullmatch(kid):
        return {"error": "kid must be 1-128 letters, digits, '-' or '_'"}
    url = f"https://public-keys.auth.elb.{region}.amazonaws.com/{kid}"
    try:
        body = opener(url, timeout)
    except urllib.error.HTTPError as error:
        return {"error": f"no key {kid} (HTTP {error.code})"}
    except (urllib.error.URLError, TimeoutError) as error:
        raise RuntimeError(f"the ALB key endpoint did not answer: {error}") from error
    if len(body) > MAX_KEY_BYTES:
        return {"error": f"the answer for {kid} is not a public key (too long)"}
    pem = body.decode("ascii", errors="replace")
    if "-----BEGIN PUBLIC KEY-----" not in pem:
        return {"error": f"the answer for {kid} is not a public key"}
    return {"pem": pem}
