"""A stand-in for Polygon.io: recorded payloads for the tests, generated ones for the benchmark.

The same router answers through `httpx.MockTransport` (no network) and through a real HTTP
server on 127.0.0.1 (`StubServer`, a `ThreadingHTTPServer` in a background thread), which
counts requests and the most it ever had in flight, so a test can check the provider's
concurrency bound on real sockets. `StubProcess` runs the server in a child process, so a
benchmark's client threads do not share a GIL with the server's.

`python -m fintrack_assets_tests.polygon_stub --router synthetic --latency 0.05` serves until
killed and prints `listening on http://127.0.0.1:PORT` first.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import threading
import time
import zlib
from collections.abc import Callable
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit
from zoneinfo import ZoneInfo

import httpx
import numpy as np

from fintrack_assets.core.calendar import sessions_between
from fintrack_assets_tests.child_server import STATS_PATH, ChildServer, serve_until_terminated

DATA = Path(__file__).resolve().parent / "data" / "polygon"
RESET_PATH = "/__stub/reset"
NEW_YORK = ZoneInfo("America/New_York")

Response = tuple[int, dict[str, str], bytes]
Router = Callable[[str, dict[str, str]], Response]
"""(path, query) -> (status, headers, body)."""


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return (
        status,
        {"Content-Type": "application/json", **(headers or {})},
        json.dumps(body).encode(),
    )


def load(name: str) -> dict[str, Any]:
    """One recorded payload, parsed (tests read expected values from the same files)."""
    return json.loads((DATA / name).read_text())  # type: ignore[no-any-return]


class RecordedPolygon:
    """Answers from the recorded payloads by `routes.json`; unknown requests get a 404."""

    def __init__(self, root: Path = DATA) -> None:
        self.root = root
        self.routes = json.loads((root / "routes.json").read_text())["routes"]
        self._files: dict[str, bytes] = {}

    def _file(self, name: str) -> bytes:
        if name not in self._files:
            self._files[name] = (self.root / name).read_bytes()
        return self._files[name]

    def __call__(self, path: str, query: dict[str, str]) -> Response:
        for route in self.routes:
            if route["path"] == path and all(
                query.get(key) == value for key, value in route["query"].items()
            ):
                return 200, {"Content-Type": "application/json"}, self._file(route["file"])
        return 404, {"Content-Type": "application/json"}, self._file("tickers_not_found.json")


def _epoch_ms(day: dt.date) -> int:
    """Midnight New York of `day`, in epoch ms: where Polygon starts a daily bar."""
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=NEW_YORK).timestamp() * 1000)


@lru_cache(maxsize=64)
def _window(first: dt.date, last: dt.date) -> tuple[np.ndarray, np.ndarray]:
    """(ordinal, epoch ms at midnight New York) of each session in [first, last]: the same
    for every ticker of a backfill, so computed once."""
    days = sessions_between(first, last + dt.timedelta(days=1))
    ordinal = np.array([d.toordinal() for d in days], dtype=np.int64)
    return ordinal, np.array([_epoch_ms(d) for d in days], dtype=np.int64)


def _seed(ticker: str) -> int:
    return zlib.crc32(ticker.encode())


class SyntheticPolygon:
    """Deterministic payloads for any ticker: a bar per NYSE session of the asked range, a
    2-for-1 split mid-window for one ticker in 50, quarterly dividends for one in three
    (among `tickers`, the universe the actions listings cover), paged like Polygon's."""

    RANGE = re.compile(
        r"^/v2/aggs/ticker/([^/]+)/range/1/day/(\d{4}-\d{2}-\d{2})/(\d{4}-\d{2}-\d{2})$"
    )

    def __init__(self, tickers: list[str] | None = None, page_size: int = 1000) -> None:
        self.tickers = tickers or []
        self.page_size = page_size

    def bars(self, ticker: str, first: dt.date, last: dt.date) -> list[dict[str, Any]]:
        """Vectorised, so the stub's CPU per request stays far below the provider's."""
        ordinal, stamps = _window(first, last)
        if not len(ordinal):
            return []
        seed = _seed(ticker)
        close = np.round((20.0 + seed % 480) * (1.0 + 0.05 * np.sin(ordinal / 9.0 + seed % 97)), 2)
        open_ = np.round(close * (1.0 + 0.004 * np.cos(ordinal + seed)), 2)
        high = np.round(np.maximum(open_, close) * 1.006, 2)
        low = np.round(np.minimum(open_, close) * 0.994, 2)
        volume = (100_000 + (seed + ordinal * 7919) % 5_000_000).astype(np.float64)
        vw = np.round((open_ + high + low + close) / 4, 4)
        trades = (volume // 50).astype(np.int64)
        keys = ("v", "vw", "o", "c", "h", "l", "t", "n")
        columns = (volume, vw, open_, close, high, low, stamps, trades)
        return [
            dict(zip(keys, values, strict=True))
            for values in zip(*(c.tolist() for c in columns), strict=True)
        ]

    def splits(self, first: dt.date, last: dt.date) -> list[dict[str, Any]]:
        sessions = sessions_between(first, last + dt.timedelta(days=1))
        if not sessions:
            return []
        day = sessions[len(sessions) // 2]
        return [
            {
                "execution_date": day.isoformat(),
                "id": f"E{_seed(t):08x}",
                "split_from": 1,
                "split_to": 2,
                "ticker": t,
            }
            for t in self.tickers
            if _seed(t) % 50 == 0
        ]

    def dividends(self, first: dt.date, last: dt.date) -> list[dict[str, Any]]:
        sessions = sessions_between(first, last + dt.timedelta(days=1))
        out = []
        for ticker in self.tickers:
            seed = _seed(ticker)
            if seed % 3:
                continue
            for day in sessions[seed % 63 :: 63]:
                out.append(
                    {
                        "cash_amount": round(0.05 + (seed % 100) / 100, 2),
                        "currency": "USD",
                        "dividend_type": "CD",
                        "ex_dividend_date": day.isoformat(),
                        "frequency": 4,
                        "id": f"E{seed:08x}{day:%Y%m%d}",
                        "ticker": ticker,
                    }
                )
        return out

    def _listing(self, path: str, query: dict[str, str], field: str) -> Response:
        """A v3 listing with `next_url` pages; the cursor carries the window and offset."""
        if "cursor" in query:
            query = dict(parse_qsl(query["cursor"]))
        first = dt.date.fromisoformat(query[f"{field}.gte"])
        last = dt.date.fromisoformat(query[f"{field}.lte"])
        rows = self.splits(first, last) if "splits" in path else self.dividends(first, last)
        offset = int(query.get("offset", "0"))
        limit = min(int(query.get("limit", str(self.page_size))), self.page_size)
        body: dict[str, Any] = {
            "results": rows[offset : offset + limit],
            "status": "OK",
            "request_id": "synthetic",
        }
        if offset + limit < len(rows):
            cursor = urlencode({**query, "offset": str(offset + limit)})
            body["next_url"] = "https://api.polygon.io" + path + "?" + urlencode({"cursor": cursor})
        return _json(200, body)

    def __call__(self, path: str, query: dict[str, str]) -> Response:
        match = self.RANGE.match(path)
        if match:
            ticker, first, last = match.groups()
            bars = self.bars(ticker, dt.date.fromisoformat(first), dt.date.fromisoformat(last))
            body: dict[str, Any] = {
                "ticker": ticker,
                "queryCount": len(bars),
                "resultsCount": len(bars),
                "adjusted": False,
                "results": bars,
                "status": "OK",
                "request_id": "synthetic",
                "count": len(bars),
            }
            return _json(200, body)
        if path == "/v3/reference/splits":
            return self._listing(path, query, "execution_date")
        if path == "/v3/reference/dividends":
            return self._listing(path, query, "ex_dividend_date")
        return _json(
            404, {"status": "NOT_FOUND", "request_id": "synthetic", "message": "not found"}
        )


def mock_transport(router: Router, seen: list[httpx.Request] | None = None) -> httpx.MockTransport:
    """The router behind `httpx.MockTransport`; every request is appended to `seen`."""

    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        status, headers, body = router(request.url.path, dict(request.url.params))
        return httpx.Response(status, headers=headers, content=body)

    return httpx.MockTransport(handle)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # a burst of connects must not overflow the listen backlog
    stub: StubServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Polygon and httpx's pool expect
    # Headers and body go out as two writes: with Nagle on, the body waits for the client's
    # delayed ACK of the headers (~40 ms per request on Linux), which would swamp latency.
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        stub = self.server.stub
        parts = urlsplit(self.path)
        if parts.path == STATS_PATH:
            self._send(*_json(200, stub.stats()))
            return
        if parts.path == RESET_PATH:
            stub.reset()
            self._send(*_json(200, {}))
            return
        stub.arrived(parts.path, parts.query, self.headers.get("Authorization"))
        try:
            if stub.latency:
                time.sleep(stub.latency)
            response = stub.router(parts.path, dict(parse_qsl(parts.query)))
        finally:
            # Before the response is written: the client cannot send its next request
            # until it has this one, so the count never includes a finished request.
            stub.left()
        self._send(*response)

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests and the benchmark read the counters, not an access log."""


class StubServer:
    """The router on a real socket at 127.0.0.1, counting requests and the peak in flight."""

    def __init__(self, router: Router, latency: float = 0.0, port: int = 0) -> None:
        self.router = router
        self.latency = latency
        self._lock = threading.Lock()
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.seen: list[tuple[str, str, str | None]] = []
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.stub = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="polygon-stub",
            daemon=True,
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def arrived(self, path: str, query: str, authorization: str | None) -> None:
        with self._lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.seen.append((path, query, authorization))

    def left(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"requests": self.requests, "max_in_flight": self.max_in_flight}

    def reset(self) -> None:
        with self._lock:
            self.requests = 0
            self.max_in_flight = self.in_flight
            self.seen.clear()

    def start(self) -> StubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class StubProcess(ChildServer):
    """`StubServer` in a child process (its own GIL); counters through `/__stub/stats`."""

    def __init__(
        self, router: str = "synthetic", latency: float = 0.0, tickers: list[str] | None = None
    ) -> None:
        args = ["--router", router, "--latency", str(latency)]
        if tickers:
            args += ["--tickers", ",".join(tickers)]
        super().__init__("fintrack_assets_tests.polygon_stub", args, "Polygon stub")

    def reset(self) -> None:
        httpx.get(self.url + RESET_PATH).raise_for_status()


def _router(name: str, tickers: list[str]) -> Router:
    return RecordedPolygon() if name == "recorded" else SyntheticPolygon(tickers)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fintrack_assets_tests.polygon_stub")
    parser.add_argument("--router", choices=("recorded", "synthetic"), default="synthetic")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--tickers", default="", help="comma-separated: who gets splits and dividends"
    )
    args = parser.parse_args(argv)
    tickers = [t for t in args.tickers.split(",") if t]
    server = StubServer(_router(args.router, tickers), latency=args.latency, port=args.port)
    serve_until_terminated(server._server, server.url)


if __name__ == "__main__":
    main()
