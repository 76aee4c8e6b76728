"""A stand-in for the fraud ML API on a real socket: `POST .../predict` on 127.0.0.1.

It scores with a fixed logistic formula (`WEIGHTS`, `BIAS`, `REASON_THRESHOLD`), computed
here row by row in plain Python, so a test can work out the expected scores its own way.
A `Script` can answer any attempt differently (429, 500, a delay, a malformed body), keyed by
the batch's first transaction id, so a scenario can target one batch and one attempt. It
counts requests, statuses, attempts per batch and the most requests it had in flight; an
optional `threading.Barrier` holds requests until that many are in flight at once, which
proves concurrency by counting, not by timing. Predictions are returned in reverse order, so
the client must match them by id.

`python -m fintrack_assets_tests.fraud_api_stub --latency 0.02` serves in its own process
(for the benchmark: no GIL shared with the client) and prints `listening on URL` first.
"""

from __future__ import annotations

import argparse
import json
import math
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from fintrack_assets_tests.child_server import STATS_PATH, ChildServer, serve_until_terminated

WEIGHTS: dict[str, float] = {
    "log_amount": 0.45,
    "amount_zscore_30d": 0.6,
    "count_1h": 0.3,
    "sum_1h": 0.0004,
    "count_24h": 0.05,
    "sum_24h": 0.0001,
    "count_7d": 0.01,
    "sum_7d": 0.00002,
    "first_time_merchant": 1.1,
    "is_night": 0.8,
    "distance_km": 0.002,
}
BIAS = -5.5
REASON_THRESHOLD = 0.9
"""A feature is a reason when weight * value exceeds this; reasons keep `WEIGHTS` order."""
MODEL_VERSION = "stub-logistic-1"


def score_one(transaction: dict[str, Any]) -> tuple[float, bool, list[str]]:
    """(fraud_score, is_fraud, reasons) of one transaction; a null feature counts as 0."""
    z = BIAS
    reasons = []
    for name, weight in WEIGHTS.items():
        contribution = weight * (transaction.get(name) or 0.0)
        z += contribution
        if contribution > REASON_THRESHOLD:
            reasons.append(name)
    probability = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
    return probability, probability >= 0.5, reasons


@dataclass(frozen=True)
class Call:
    """One request as the script sees it."""

    key: str  # the batch's first transaction id: the same across the batch's retries
    attempt: int  # 1-based, per key
    ids: list[str]
    authorization: str | None
    path: str
    query: str


@dataclass(frozen=True)
class Answer:
    """How to answer a call instead of (or on top of) the normal scoring."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None  # None: the scored predictions (edited by `edit` if given)
    delay: float = 0.0  # seconds before answering (the stub's own slowness)
    edit: Callable[[dict[str, Any]], dict[str, Any]] | None = None


Script = Callable[[Call], Answer | None]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    stub: FraudApiStub

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: a client that timed out has closed the socket the late answer goes to."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx's pool expects
    disable_nagle_algorithm = True  # headers and body go out as two writes
    server: _Server

    def do_GET(self) -> None:
        if urlsplit(self.path).path == STATS_PATH:
            self._send(200, {}, json.dumps(self.server.stub.stats()).encode())
        else:
            self._send(404, {}, b'{"detail": "not found"}')

    def do_POST(self) -> None:
        stub = self.server.stub
        parts = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not parts.path.endswith("/predict"):
            self._send(404, {}, b'{"detail": "not found"}')
            return
        try:
            transactions = json.loads(body)["transactions"]
            ids = [str(t["transaction_id"]) for t in transactions]
        except (ValueError, KeyError, TypeError):
            self._send(400, {}, b'{"detail": "expected {\\"transactions\\": [...]}"}')
            return
        call = stub.arrived(ids, self.headers.get("Authorization"), parts.path, parts.query)
        try:
            status, headers, payload = stub.answer(call, transactions)
        finally:
            stub.left()  # before writing: the client's next request cannot overlap this one
        self._send(status, headers, payload)

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read the counters, not an access log."""


class FraudApiStub:
    """The fake API on 127.0.0.1 (ephemeral port) in a background thread."""

    def __init__(
        self,
        script: Script | None = None,
        latency: float = 0.0,
        reasons_as: str = "list",
        barrier: threading.Barrier | None = None,
        port: int = 0,
    ) -> None:
        self.script = script
        self.latency = latency
        self.reasons_as = reasons_as
        self.barrier = barrier
        self.barrier_broken = False
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self.requests = 0
        self.statuses: Counter[int] = Counter()
        self.attempts: Counter[str] = Counter()
        self.batch_sizes: list[int] = []
        self.calls: list[Call] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.stub = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fraud-api-stub",
            daemon=True,
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def arrived(self, ids: list[str], authorization: str | None, path: str, query: str) -> Call:
        key = ids[0] if ids else ""
        with self._lock:
            self.requests += 1
            self.attempts[key] += 1
            self.batch_sizes.append(len(ids))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            call = Call(key, self.attempts[key], ids, authorization, path, query)
            self.calls.append(call)
        return call

    def left(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def answer(
        self, call: Call, transactions: list[dict[str, Any]]
    ) -> tuple[int, dict[str, str], bytes]:
        if self.barrier is not None:
            try:
                self.barrier.wait(timeout=10)
            except threading.BrokenBarrierError:
                self.barrier_broken = True
                return self._count(500, {}, b'{"detail": "barrier broken"}')
        scripted = self.script(call) if self.script else None
        delay = self.latency + (scripted.delay if scripted else 0.0)
        if delay:
            self.stopping.wait(delay)
        if scripted is not None and (scripted.status != 200 or scripted.body is not None):
            return self._count(scripted.status, scripted.headers, scripted.body or b"{}")
        body = self.predictions(transactions)
        if scripted is not None and scripted.edit is not None:
            body = scripted.edit(body)
        headers = scripted.headers if scripted else {}
        return self._count(200, headers, json.dumps(body).encode())

    def _count(
        self, status: int, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.statuses[status] += 1
        return status, headers, body

    def predictions(self, transactions: list[dict[str, Any]]) -> dict[str, Any]:
        answers = []
        for transaction in reversed(transactions):
            probability, flag, reasons = score_one(transaction)
            answers.append(
                {
                    "transaction_id": transaction["transaction_id"],
                    "fraud_score": probability,
                    "is_fraud": flag,
                    "reasons": reasons if self.reasons_as == "list" else ", ".join(reasons),
                }
            )
        return {"model_version": MODEL_VERSION, "predictions": answers}

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "max_in_flight": self.max_in_flight,
                "statuses": dict(self.statuses),
            }

    def start(self) -> FraudApiStub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self.barrier is not None:
            self.barrier.abort()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> FraudApiStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FraudApiProcess(ChildServer):
    """`FraudApiStub` in a child process, answering after `latency` seconds."""

    def __init__(self, latency: float = 0.0) -> None:
        super().__init__(
            "fintrack_assets_tests.fraud_api_stub", ["--latency", str(latency)], "fraud API stub"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fintrack_assets_tests.fraud_api_stub")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    stub = FraudApiStub(latency=args.latency, port=args.port)
    serve_until_terminated(stub._server, stub.url)


if __name__ == "__main__":
    main()
