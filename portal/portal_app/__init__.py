"""The multi-tenant AI training portal (FastAPI, server-rendered pages)."""

from .app import create_app
from .settings import PortalSettings

__all__ = ["PortalSettings", "create_app"]
