"""The ALB target group's health check: cheap, unauthenticated, touches nothing remote."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()


@router.get("/health", include_in_schema=False)
def health() -> dict[str, str]:
    return {"status": "ok"}
