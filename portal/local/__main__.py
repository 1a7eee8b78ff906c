"""``python -m local`` (from ``portal/``): moto_server, seed data, job simulator and the portal.

Prints the address to open. Everything listens on 127.0.0.1 only. Ctrl-C stops it all.
"""

from __future__ import annotations

import argparse

from .runner import LocalPortal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8080, help="portal port (0 = any free port)")
    args = parser.parse_args()
    with LocalPortal(port=args.port) as portal:
        print(f"Local portal: {portal.url}/local/sign-in", flush=True)
        print(f"moto_server:  {portal.moto.url}", flush=True)
        print(
            "Users: alice@acme.example (acme), gina@globex.example (globex), "
            "admin@platform.example (admins). Ctrl-C stops.",
            flush=True,
        )
        portal.wait()


if __name__ == "__main__":
    main()
