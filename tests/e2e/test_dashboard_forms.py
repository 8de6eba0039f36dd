"""The dashboard's forms refuse cross-site posts, also from a browser that sends only Origin."""

from __future__ import annotations

import httpx

from memgate_testing.gateway import GatewayProcess


def _sign_in(gateway: GatewayProcess, **headers: str) -> httpx.Response:
    return httpx.post(f"{gateway.url}/dashboard/login", data={"api_key": gateway.api_key}, headers=headers)


def test_sign_in_is_refused_from_another_site(gateway: GatewayProcess) -> None:
    host = gateway.url.removeprefix("http://")
    for headers in ({"sec-fetch-site": "cross-site"}, {"sec-fetch-site": "same-site"},
                    {"origin": "http://evil.example"}, {"origin": "null"}):
        refused = _sign_in(gateway, **headers)
        assert refused.status_code == 403, headers
        assert refused.json()["error"]["code"] == "cross_site_request"
        assert "memgate_session" not in refused.cookies
    for headers in ({"sec-fetch-site": "same-origin", "origin": gateway.url}, {"sec-fetch-site": "none"},
                    {"origin": f"http://{host}"}, {}):  # (no header at all: not a browser)
        signed_in = _sign_in(gateway, **headers)
        assert signed_in.status_code == 303, headers
        assert "memgate_session" in signed_in.cookies
