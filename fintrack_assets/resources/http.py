"""One threaded HTTP client for the services we call: Polygon and the fraud ML API.

A call (one Polygon fetch, one `score`) opens one `HttpClient` with a pool of worker threads
(`threaded_client`): one pooled `httpx.Client` sized to the workers, so at most that many
requests are in flight whatever the batching. What every request gets from it:

- Retries (tenacity) of 429, 5xx, timeouts and connection errors, with exponential backoff and
  full jitter, or the server's `Retry-After` on a 429 or 503, capped at `max_backoff_seconds`
  (`fetching.retry_wait`). Any other status outside 2xx fails the request at once.
- A request budget when the policy carries one (`budget.RateBudget`, a provider's
  `rate_limit_per_minute`): every attempt, retries included, takes a unit before it is sent,
  so a retry after a 429's `Retry-After` waits that long and then for the budget too.
- A 401 or 403 raises `CredentialsRefused`, and every later request of the call is refused
  before it is sent: the same credentials would be refused again.
- When the call fails or is stopped, the cancel event stops every request not yet sent, queued
  work is dropped and the threads are drained before the connections close.
- httpx logs each request's URL whole (userinfo and query included); its lines for URLs under
  a client's base URL are rewritten as `settings.redact_url` shows them.

What a response means (Polygon's pages, the scorer's predictions) stays with its caller.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

from fintrack_assets.core.display import plural
from fintrack_assets.resources.budget import RateBudget
from fintrack_assets.resources.fetching import Retryable, Sleep, retry_after, retry_wait
from fintrack_assets.settings import redact_url

SNIPPET_CHARS = 200
"""How much of an error response's body a detailed error text carries."""


def display_url(url: str) -> str:
    """The URL as logs and errors may show it (settings.redact_url)."""
    return redact_url(url)


class _HttpxUrlFilter(logging.Filter):
    """Rewrites the URL in httpx's `HTTP Request: GET <url> ...` lines when it lies under a
    base URL a client registered: httpx logs `request.url` whole, password and query token
    included. Other clients' lines pass untouched."""

    def __init__(self) -> None:
        super().__init__("httpx")
        self._bases: frozenset[tuple[str, str, int | None, str]] = frozenset()
        self._lock = threading.Lock()

    def watch(self, url: httpx.URL) -> None:
        with self._lock:  # replaced, never mutated: `filter` reads it without the lock
            self._bases = self._bases | {(url.scheme, url.host, url.port, url.path.rstrip("/"))}

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(
            isinstance(arg, httpx.URL) for arg in record.args
        ):
            record.args = tuple(self._shown(arg) for arg in record.args)
        return True

    def _shown(self, arg: object) -> object:
        if isinstance(arg, httpx.URL) and any(
            (arg.scheme, arg.host, arg.port) == (scheme, host, port)
            and (arg.path == path or arg.path.startswith(path + "/"))
            for scheme, host, port, path in self._bases
        ):
            return display_url(str(arg))
        return arg


_HTTPX_FILTER = _HttpxUrlFilter()


def hide_in_httpx_logs(base_url: str) -> None:
    """httpx's request lines for URLs under `base_url` show it only as redact_url does."""
    _HTTPX_FILTER.watch(httpx.URL(base_url))
    logging.getLogger("httpx").addFilter(_HTTPX_FILTER)  # idempotent


@dataclass(frozen=True)
class HttpPolicy:
    """How a caller's requests go out: worker threads (and connections), timeout, retries."""

    workers: int
    timeout_seconds: float
    max_attempts: int  # per request, the first included
    backoff_seconds: float  # the backoff's base: attempt n waits up to base * 2^(n-1)
    max_backoff_seconds: float  # also caps a server's Retry-After
    transport: httpx.BaseTransport | None = field(default=None, repr=False)
    sleep: Sleep = field(default=time.sleep, repr=False)
    budget: RateBudget | None = field(default=None, repr=False)  # shared by the client's threads


class RequestFailed(Exception):
    """A request that finally failed; `str()` is its short reason."""


class CredentialsRefused(RequestFailed):
    """The server answered 401 or 403 to this request (`earlier` False) or to an earlier one
    of the same client, and this one was not sent (`earlier` True)."""

    def __init__(self, status: int, earlier: bool) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.earlier = earlier

    @property
    def meaning(self) -> str:
        return "unauthorised" if self.status == 401 else "forbidden"


class Tally(Protocol):
    """Where a caller wants the attempts of one request counted as they are sent."""

    attempts: int


class HttpClient:
    """One call's connections, retry policy, request count and cancel event, shared by its
    threads. `detailed_errors` adds the timeout limit, the transport error's message and the
    start of an error response's body to failure reasons. That text may echo the request (a
    URL, a header), so a caller that turns it on scrubs its secrets from it, as the fraud
    scorer does; Polygon keeps its short reasons, one per cause."""

    def __init__(
        self,
        base_url: str,
        policy: HttpPolicy,
        *,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | None = None,
        detailed_errors: bool = False,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.policy = policy
        self.detailed_errors = detailed_errors
        self.requests = 0  # attempts sent, every request of the call
        self.cancelled = threading.Event()
        self.refused: int | None = None  # the 401/403 that stops the requests not yet sent
        self._lock = threading.Lock()
        self._wait = retry_wait(policy.backoff_seconds, policy.max_backoff_seconds)
        self._client = httpx.Client(
            auth=auth,
            headers=headers,
            timeout=httpx.Timeout(policy.timeout_seconds),
            limits=httpx.Limits(
                max_connections=policy.workers, max_keepalive_connections=policy.workers
            ),
            transport=policy.transport,
        )
        hide_in_httpx_logs(self.base_url)

    def close(self) -> None:
        self._client.close()

    def request(
        self, method: str, url: str, *, tally: Tally | None = None, **send: Any
    ) -> httpx.Response:
        """A 2xx response, after retries; else `RequestFailed` (`CredentialsRefused` on
        401/403) with a short reason. `send` goes to `httpx.Client.request` (params, content,
        headers); `tally.attempts` counts this request's attempts."""
        attempts = 0

        def attempt() -> httpx.Response:
            nonlocal attempts
            self._sendable()
            if self.policy.budget is not None:
                self.policy.budget.acquire(cancelled=self.cancelled)
                self._sendable()  # a budget wait can be long: the call may have ended
            attempts += 1
            if tally is not None:
                tally.attempts += 1
            with self._lock:
                self.requests += 1
            return self._classified(self._send(method, url, send))

        retrying = Retrying(
            stop=stop_after_attempt(self.policy.max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type(Retryable),
            sleep=self.policy.sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except Retryable as exc:
            raise RequestFailed(f"{exc.reason} after {plural(attempts, 'attempt')}") from None

    def _sendable(self) -> None:
        """Raises when the call refuses to send more: a refused key, or cancelled."""
        if self.refused is not None:
            raise CredentialsRefused(self.refused, earlier=True)
        if self.cancelled.is_set():
            raise RequestFailed("not sent: cancelled")

    def _send(self, method: str, url: str, send: dict[str, Any]) -> httpx.Response:
        try:
            return self._client.request(method, url, **send)
        except httpx.TimeoutException as exc:
            limit = f", limit {self.policy.timeout_seconds:g} s" if self.detailed_errors else ""
            raise Retryable(f"timeout ({type(exc).__name__}{limit})") from None
        except httpx.TransportError as exc:
            detail = f": {exc}" if self.detailed_errors and str(exc) else ""
            raise Retryable(f"connection error ({type(exc).__name__}{detail})") from None

    def _classified(self, response: httpx.Response) -> httpx.Response:
        """The response when 2xx; else what its status means, raised."""
        status = response.status_code
        if status == 429 or status >= 500:
            wait = retry_after(response) if status in (429, 503) else None
            raise Retryable(f"HTTP {status}", retry_after=wait)
        if status in (401, 403):
            self.refused = status
            raise CredentialsRefused(status, earlier=False)
        if not 200 <= status < 300:
            if not self.detailed_errors:
                raise RequestFailed(f"HTTP {status}")
            snippet = " ".join(response.text.split())[:SNIPPET_CHARS]
            detail = f": {snippet}" if snippet else ""
            raise RequestFailed(f"HTTP {status} (not retried){detail}")
        return response


@contextmanager
def threaded_client(
    base_url: str,
    policy: HttpPolicy,
    name: str,
    *,
    threads: int | None = None,
    headers: Mapping[str, str] | None = None,
    auth: httpx.Auth | None = None,
    detailed_errors: bool = False,
) -> Iterator[tuple[HttpClient, ThreadPoolExecutor]]:
    """A client and a pool of `threads` (default: the policy's workers) for one call. When
    the call raises (a refused key, a run being stopped), nothing more is sent: the cancel
    event is set, work not yet started is dropped and the pool drained before the client
    closes."""
    client = HttpClient(
        base_url, policy, headers=headers, auth=auth, detailed_errors=detailed_errors
    )
    pool = ThreadPoolExecutor(threads or policy.workers, thread_name_prefix=name)
    try:
        yield client, pool
    except BaseException:
        client.cancelled.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        client.close()


__all__ = [
    "CredentialsRefused",
    "HttpClient",
    "HttpPolicy",
    "RequestFailed",
    "Tally",
    "display_url",
    "hide_in_httpx_logs",
    "threaded_client",
]
