"""The ALB key relay returns published keys only, and says why when it has none."""

from __future__ import annotations

import io
import urllib.error

import pytest
from alb_keys.service import fetch_public_key

PEM = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n"


def opener_returning(body: bytes, seen: list[str]):  # type: ignore[no-untyped-def]
    def opener(url: str, timeout: float) -> bytes:
        seen.append(url)
        return body

    return opener


def test_a_published_key_is_returned_from_the_regional_endpoint() -> None:
    seen: list[str] = []
    result = fetch_public_key(
        {"kid": "abc-123_x"}, region="eu-west-1", opener=opener_returning(PEM.encode(), seen)
    )
    assert result == {"pem": PEM}
    assert seen == ["https://public-keys.auth.elb.eu-west-1.amazonaws.com/abc-123_x"]


@pytest.mark.parametrize("kid", ["", "../etc/passwd", "a/b", "x" * 129, None, 7])
def test_a_malformed_kid_is_refused_without_a_request(kid: object) -> None:
    seen: list[str] = []
    result = fetch_public_key({"kid": kid}, region="eu-west-1", opener=opener_returning(b"", seen))
    assert result == {"error": "kid must be 1-128 letters, digits, '-' or '_'"}
    assert seen == []


def test_an_unknown_kid_is_reported() -> None:
    def not_found(url: str, timeout: float) -> bytes:
        raise urllib.error.HTTPError(url, 404, "Not Found", {}, io.BytesIO(b""))  # type: ignore[arg-type]

    assert fetch_public_key({"kid": "gone"}, region="eu-west-1", opener=not_found) == {
        "error": "no key gone (HTTP 404)"
    }


@pytest.mark.parametrize("body", [b"<html>captive portal</html>", PEM.encode() * 100])
def test_anything_but_a_public_key_is_refused(body: bytes) -> None:
    result = fetch_public_key({"kid": "k1"}, region="eu-west-1", opener=opener_returning(body, []))
    assert "is not a public key" in result["error"]


def test_an_unreachable_endpoint_raises_so_the_caller_retries() -> None:
    def unreachable(url: str, timeout: float) -> bytes:
        raise urllib.error.URLError("timed out")

    with pytest.raises(RuntimeError, match="did not answer"):
        fetch_public_key({"kid": "k1"}, region="eu-west-1", opener=unreachable)
