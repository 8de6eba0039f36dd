"""Container health check for the memgate image (used by the Dockerfile HEALTHCHECK).

The slim base image has no curl, so this probes with the standard library only.
Exit 0 if any memgate health endpoint answers 200, else 1.

Which port answers depends on the subcommand the container runs:
  - `memgate up` / `memgate edge`: the public HTTP port, MEMGATE_HTTP_PORT (default 8080);
  - `memgate observer` / `memgate context`: the health port, MEMGATE_HEALTH_PORT (default 8081).
Both are tried, in that order, so one image-level check fits every subcommand.
MEMGATE_HEALTHCHECK_URL, if set, is the only URL probed.
"""

from __future__ import annotations

import os
import sys
import urllib.request

TIMEOUT_SECONDS = 3.0


def candidate_urls(env: dict[str, str]) -> list[str]:
    explicit = env.get("MEMGATE_HEALTHCHECK_URL", "").strip()
    if explicit:
        return [explicit]
    ports = [env.get("MEMGATE_HTTP_PORT") or "8080", env.get("MEMGATE_HEALTH_PORT") or "8081"]
    urls: list[str] = []
    for port in ports:
        url = f"http://127.0.0.1:{port}/healthz"
        if url not in urls:
            urls.append(url)
    return urls


def probe(url: str) -> bool:
    # An empty ProxyHandler: a proxy configured for provider egress (HTTP_PROXY)
    # must not capture a loopback health probe.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=TIMEOUT_SECONDS) as response:
            return response.status == 200
    except Exception:
        return False


def main() -> int:
    return 0 if any(probe(url) for url in candidate_urls(dict(os.environ))) else 1


if __name__ == "__main__":
    sys.exit(main())
