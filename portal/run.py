"""Start the portal as deployed (same as ``python -m portal_app``); run from ``portal/``."""

from portal_app.__main__ import main

if __name__ == "__main__":
    main()
