"""Container health checks for the Clipline images (stdlib only, no curl in the images).

    clipline-healthcheck api         200 from the API's /healthz on CLIPLINE_API_PORT (8080)
    clipline-healthcheck http URL    200 from URL (a metrics endpoint, say)
    clipline-healthcheck celery      a Celery worker of *this* container answers a ping

Exit status 0 means healthy. ``clipline worker`` names its Celery node
``celery@clipline-<hostname>-<random>``, so the ping is broadcast with a glob on this
container's hostname: it needs Redis (the broker) and the worker's main process to answer,
and a worker of another container cannot answer for this one.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.request

TIMEOUT = 5.0


def http(url: str) -> int:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        return 0 if response.status == 200 else 1


def celery() -> int:
    from workers.app import app

    pattern = f"celery@clipline-{socket.gethostname()}-*"
    replies = app.control.ping(timeout=TIMEOUT, pattern=pattern, matcher="glob")
    return 0 if replies else 1


def main(argv: list[str]) -> int:
    try:
        if len(argv) == 2 and argv[0] == "http":
            return http(argv[1])
        if argv == ["api"]:
            return http(f"http://127.0.0.1:{os.environ.get('CLIPLINE_API_PORT', '8080')}/healthz")
        if argv == ["celery"]:
            return celery()
    except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy", said in one line
        print(f"unhealthy: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
