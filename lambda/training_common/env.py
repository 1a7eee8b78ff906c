"""Reading a handler's settings model from its environment variables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from pydantic import BaseModel, ValidationError

S = TypeVar("S", bound=BaseModel)


def settings_from_env(model: type[S], names: Mapping[str, str], environ: Mapping[str, str]) -> S:
    """Build ``model`` from ``environ``; ``names`` maps each field to its variable's name.

    Empty variables count as unset. Raises ValueError naming every missing or invalid variable,
    so a misconfigured function fails on its first invocation with a message that says why.
    """
    values = {field: environ[var] for field, var in names.items() if environ.get(var)}
    try:
        return model.model_validate(values)
    except ValidationError as error:
        problems = []
        for item in error.errors(include_url=False, include_input=False):
            field = str(item["loc"][0]) if item["loc"] else ""
            problems.append(f"{names.get(field, field or model.__name__)}: {item['msg']}")
        raise ValueError(
            f"invalid environment for {model.__name__}: " + "; ".join(problems)
        ) from None
