"""Load generators for the benchmarks: an open-loop fixed-rate client and wrk for saturation."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import msgspec


class Latencies(msgspec.Struct):
    samples_ms: list[float]
    errors: int
    duration_s: float

    def pct(self, p: float) -> float:
        ordered = sorted(self.samples_ms)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def fixed_rate(url: str, headers: dict[str, str], body: dict, *, rate: float, seconds: float,
                     stream: bool = False) -> Latencies:
    """Open loop: one request every 1/rate s whatever the answers do (no coordinated omission).

    For streams the latency is the time to the first SSE data line (time to first byte).
    """
    payload = json.dumps({**body, "stream": stream}).encode()
    samples: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        async def one(scheduled: float) -> None:
            nonlocal errors
            try:
                if stream:
                    async with client.stream("POST", url, content=payload, headers=headers) as r:
                        first = True
                        async for line in r.aiter_lines():  # read to the end, time the first event
                            if first and line.startswith("data:"):
                                samples.append((time.perf_counter() - scheduled) * 1000)
                                first = False
                        if r.status_code != 200:
                            errors += 1
                else:
                    r = await client.post(url, content=payload, headers=headers)
                    samples.append((time.perf_counter() - scheduled) * 1000)
                    if r.status_code != 200:
                        errors += 1
            except httpx.HTTPError:
                errors += 1

        tasks = []
        start = time.perf_counter()
        total = int(rate * seconds)
        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*tasks)
        return Latencies(samples, errors, time.perf_counter() - start)


_WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [==[{body}]==]
local header_sets = {{
{header_sets}
}}
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, nil, header_sets[(counter % #header_sets) + 1], nil)
end
"""


def _lua_table(headers: dict[str, str]) -> str:
    return "{" + ", ".join(f'["{k}"] = "{v}"' for k, v in headers.items()) + "}"


def saturation(url: str, headers: dict[str, str] | list[dict[str, str]], body: dict, *, seconds: int = 10,
               connections: int = 32, threads: int = 1) -> float:
    """Requests per second at saturation, measured with wrk (C, so the client is not the bottleneck).

    `headers` may be a list: requests take them in turn (e.g. one memory thread each).
    """
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("bench: wrk not found (make bench installs it with apt)")
    sets = headers if isinstance(headers, list) else [headers]
    tables = ",\n".join(_lua_table({**h, "content-type": "application/json"}) for h in sets)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(_WRK_SCRIPT.format(body=json.dumps(body), header_sets=tables))
        script = f.name
    try:
        out = subprocess.run([wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "-s", script, url],
                             capture_output=True, text=True, timeout=seconds + 60).stdout
    finally:
        Path(script).unlink(missing_ok=True)
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non2xx:
        print(f"  (wrk saw {non2xx.group(1)} non-2xx responses)")
    return float(match.group(1)) if match else float("nan")
