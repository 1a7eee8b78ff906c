"""Parsing helpers for the portal's HTML forms: each raises BadRequest naming the field."""

from __future__ import annotations

import math
from enum import StrEnum
from typing import TypeVar

from ..errors import BadRequest

E = TypeVar("E", bound=StrEnum)


def required(form: dict[str, str], name: str, label: str) -> str:
    value = form.get(name, "").strip()
    if not value:
        raise BadRequest(f"{label} is required.")
    return value


def integer(form: dict[str, str], name: str, label: str, *, minimum: int, maximum: int) -> int:
    raw = form.get(name, "").strip()
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{label} must be a whole number, not {raw[:40]!r}.") from None
    if not minimum <= value <= maximum:
        raise BadRequest(f"{label} must be between {minimum} and {maximum}.")
    return value


def number(form: dict[str, str], name: str, label: str) -> float:
    """A finite decimal number (``1e-3`` and ``0.5`` alike)."""
    raw = form.get(name, "").strip()
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"{label} must be a number, not {raw[:40]!r}.") from None
    if not math.isfinite(value):
        raise BadRequest(f"{label} must be a finite number, not {raw[:40]!r}.")
    return value


def choice(
    form: dict[str, str], name: str, label: str, kind: type[E], default: E | None = None
) -> E:
    """One of ``kind``'s values (``default`` when the field is absent or blank)."""
    raw = form.get(name, "").strip()
    if not raw and default is not None:
        return default
    try:
        return kind(raw)
    except ValueError:
        allowed = ", ".join(item.value for item in kind)
        raise BadRequest(f"{label} must be one of {allowed}, not {raw[:40]!r}.") from None


def checkbox(form: dict[str, str], name: str) -> bool:
    return form.get(name, "").lower() in {"on", "true", "1", "yes"}


def word_list(form: dict[str, str], name: str) -> list[str]:
    """A comma- or whitespace-separated list."""
    return [item for item in form.get(name, "").replace(",", " ").split() if item]


def key_values(form: dict[str, str], name: str, label: str) -> dict[str, str]:
    """``key=value`` lines; blank lines are skipped."""
    result: dict[str, str] = {}
    for number, line in enumerate(form.get(name, "").splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise BadRequest(f"{label}: line {number} is not of the form key=value.")
        result[key.strip()] = value.strip()
    return result


def format_key_values(values: dict[str, str]) -> str:
    return "\n".join(f"{key}={value}" for key, value in values.items())
