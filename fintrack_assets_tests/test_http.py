"""The shared threaded HTTP client (`resources/http.py`) on its own, through
`httpx.MockTransport`: what Polygon and the fraud scorer rely on beyond their own tests."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future

import httpx
import pytest

from fintrack_assets.resources.http import (
    CredentialsRefused,
    HttpPolicy,
    RequestFailed,
    threaded_client,
)

BASE = "https://api.example.test/v1"


def policy(handler: httpx.MockTransport, sleeps: list[float] | None = None) -> HttpPolicy:
    waits = [] if sleeps is None else sleeps
    return HttpPolicy(2, 5.0, 3, 0.5, 4.0, transport=handler, sleep=waits.append)


def test_only_urls_under_a_registered_base_are_redacted_in_httpx_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="httpx")
    ok = httpx.MockTransport(lambda request: httpx.Response(200))
    with threaded_client(BASE, policy(ok), "test") as (client, _):
        client.request("GET", f"{BASE}/scores?token=s3cr3t-value")
    with httpx.Client(transport=ok) as other:  # a neighbour's path, another client
        other.get("https://api.example.test/v10/open?page=2")

    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("HTTP Request")]
    assert lines == [
        'HTTP Request: GET https://api.example.test/… "HTTP/1.1 200 OK"',
        'HTTP Request: GET https://api.example.test/v10/open?page=2 "HTTP/1.1 200 OK"',
    ]


def test_a_refusal_stops_later_requests_unsent() -> None:
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(403)

    with threaded_client(BASE, policy(httpx.MockTransport(handle)), "test") as (client, _):
        with pytest.raises(CredentialsRefused) as first:
            client.request("GET", f"{BASE}/a")
        with pytest.raises(CredentialsRefused) as second:
            client.request("GET", f"{BASE}/b")

    refused = [first.value, second.value]
    assert [(e.status, e.meaning, e.earlier) for e in refused] == [
        (403, "forbidden", False),
        (403, "forbidden", True),
    ]
    assert seen == ["/v1/a"] and client.requests == 1


def test_when_the_call_fails_nothing_more_is_sent() -> None:
    """The call fails while its first request is in flight; the request is answered only
    once the cancel event is set, and the same task's next requests are not sent."""
    seen: list[str] = []
    in_flight = threading.Event()
    task: Future[list[httpx.Response]] | None = None

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        in_flight.set()
        assert client.cancelled.wait(10)
        return httpx.Response(200)

    transport = httpx.MockTransport(handle)
    with (
        pytest.raises(RuntimeError, match="run stopped"),
        threaded_client(BASE, policy(transport), "test") as (client, pool),
    ):
        task = pool.submit(lambda: [client.request("GET", f"{BASE}/{n}") for n in range(3)])
        assert in_flight.wait(10)
        raise RuntimeError("run stopped")

    assert task is not None
    with pytest.raises(RequestFailed, match="not sent: cancelled"):
        task.result()
    assert seen == ["/v1/0"]


def test_reasons_terse_or_detailed() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/slow"):
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(422, text='{"detail":  "amount\\nmissing"}')

    sleeps: list[float] = []
    transport = httpx.MockTransport(handle)
    reasons: dict[tuple[bool, str], str] = {}
    for detailed in (False, True):
        with threaded_client(BASE, policy(transport, sleeps), "test", detailed_errors=detailed) as (
            client,
            _,
        ):
            for path in ("slow", "bad"):
                with pytest.raises(RequestFailed) as failed:
                    client.request("POST", f"{BASE}/{path}")
                reasons[detailed, path] = str(failed.value)

    assert reasons == {
        (False, "slow"): "timeout (ReadTimeout) after 3 attempts",
        (False, "bad"): "HTTP 422",
        (True, "slow"): "timeout (ReadTimeout, limit 5 s) after 3 attempts",
        (True, "bad"): 'HTTP 422 (not retried): {"detail": "amount\\nmissing"}',
    }
    assert len(sleeps) == 4  # two retries per timed-out request, none for the 422
