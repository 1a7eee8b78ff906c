"""The deployed entry point: ``python -m portal_app`` (settings from the environment).

Listens on ``settings.port`` (``PORT``, default 8080) on all interfaces; the instance's
security group admits only the ALB. Proxy headers are trusted so links and redirects use the
ALB's scheme and host.
"""

from __future__ import annotations

import uvicorn

from .app import create_app
from .logs import configure_logging
from .settings import PortalSettings


def main() -> None:
    settings = PortalSettings.from_environment()
    configure_logging(settings.log_level)
    uvicorn.run(
        create_app(settings),
        host="0.0.0.0",  # noqa: S104 - behind the ALB; the security group admits only the ALB
        port=settings.port,
        proxy_headers=True,
        forwarded_allow_ips="*",
        access_log=False,
        log_config=None,
        workers=1,
    )


if __name__ == "__main__":
    main()
