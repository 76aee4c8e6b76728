"""The `http` fraud scorer: batches POSTed to the ML API over the shared threaded client.

The HTTP contract (`POST <api_url>/predict`, JSON both ways):

    request   {"transactions": [{"transaction_id": "t1", "log_amount": 4.2, ...}, ...]}
    response  200 {"model_version": "v3",
                   "predictions": [{"transaction_id": "t1", "fraud_score": 0.93,
                                    "is_fraud": true, "reasons": ["distance_km", "is_night"]}]}

Feature values are JSON numbers; null, NaN and infinities are sent as `null`. `reasons` may be
a list of names or one comma-separated string (or null/absent: no reasons). A response is
accepted only if it answers every id of its batch exactly once and nothing else, with
`fraud_score` a number in [0, 1] and `is_fraud` a boolean; otherwise the batch fails with a
"malformed response" error and is not retried (the API would answer the same again).

Sending is `resources.http`'s: transient failures (429, 5xx, timeouts, connection errors) are
retried with exponential backoff and full jitter, a numeric or HTTP-date `Retry-After` on
429/503 honoured, capped at `max_backoff_seconds`. Any other 4xx fails its batch at once;
401/403 also stops the batches not yet sent, which would be refused the same way.

Credentials (a bearer token, `user:password@` in the URL, or a query parameter such as
`?token=...`) are sent but never shown: URLs appear only through `display_url`, errors that
may echo server text are scrubbed here, and httpx's own request log lines for the endpoint are
rewritten by the shared client's logging filter (httpx logs the full URL, query included).
"""

from __future__ import annotations

import json
import logging
import math
import time
from concurrent.futures import as_completed
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

import httpx
import polars as pl

from fintrack_assets.core.display import plural
from fintrack_assets.core.progress import progress_line
from fintrack_assets.resources.fetching import Sleep
from fintrack_assets.resources.fraud_scoring import (
    FAILURE_SCHEMA,
    ID,
    PREDICTION_SCHEMA,
    Prepared,
    ScoreResult,
    ScoreStats,
    empty_failures,
    prepare,
)
from fintrack_assets.resources.http import (
    CredentialsRefused,
    HttpClient,
    HttpPolicy,
    RequestFailed,
    display_url,
    threaded_client,
)

LOGGER = logging.getLogger(__name__)

MIN_SCRUBBED_CHARS = 4
"""Credential values shorter than this are not scrubbed from server-echoed text: they would
mangle it (a `?v=1` would eat every "1") and cannot be secrets worth the name."""


class _Failed(Exception):
    """A batch whose answer cannot be used; `str()` is its recorded error."""


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _reasons(value: object) -> str | None:
    """Comma-separated feature names from a list or a string; None when malformed."""
    if value is None:
        return ""
    if isinstance(value, str):
        return ",".join(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return ",".join(item.strip() for item in value)
    return None


@dataclass
class _Parsed:
    model_version: str
    scores: list[float]
    flags: list[bool]
    reasons: list[str]


def _parse(content: bytes, ids: list[str]) -> _Parsed:
    """The batch's predictions in `ids` order, or `_Failed` saying what is wrong."""

    def malformed(why: str) -> _Failed:
        return _Failed(f"malformed response: {why}")

    try:
        body = json.loads(content)
    except ValueError:
        raise malformed("not valid JSON") from None
    if not isinstance(body, dict):
        raise malformed("not a JSON object")
    version = body.get("model_version")
    if not isinstance(version, str) or not version:
        raise malformed("no model_version string")
    answers = body.get("predictions")
    if not isinstance(answers, list):
        raise malformed("no predictions list")
    by_id: dict[str, dict[str, Any]] = {}
    for answer in answers:
        if not isinstance(answer, dict) or not isinstance(answer.get(ID), str):
            raise malformed(f"a prediction without a {ID} string: {_short(answer)}")
        if answer[ID] in by_id:
            raise malformed(f"{ID} {_short(answer[ID])} answered twice")
        by_id[answer[ID]] = answer
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise malformed(
            f"{plural(len(missing), 'transaction')} of the batch not answered "
            f"(first: {_short(missing[0])})"
        )
    if len(by_id) != len(ids):
        extra = next(i for i in by_id if i not in set(ids))
        raise malformed(
            f"{plural(len(by_id) - len(ids), 'transaction')} not in the batch answered "
            f"(first: {_short(extra)})"
        )
    parsed = _Parsed(version, [], [], [])
    for i in ids:
        answer = by_id[i]
        score = answer.get("fraud_score")
        if (
            isinstance(score, bool)
            or not isinstance(score, int | float)
            or not (math.isfinite(score) and 0.0 <= score <= 1.0)
        ):
            raise malformed(f"fraud_score {_short(score)} for {_short(i)} is not in [0, 1]")
        flag = answer.get("is_fraud")
        if not isinstance(flag, bool):
            raise malformed(f"is_fraud {_short(flag)} for {_short(i)} is not a boolean")
        reasons = _reasons(answer.get("reasons"))
        if reasons is None:
            raise malformed(
                f"reasons {_short(answer.get('reasons'))} for {_short(i)} are neither a list "
                "of names nor a string"
            )
        parsed.scores.append(float(score))
        parsed.flags.append(flag)
        parsed.reasons.append(reasons)
    return parsed


@dataclass
class _Outcome:
    number: int
    ids: list[str]
    attempts: int = 0  # counted by the client as they are sent
    parsed: _Parsed | None = None
    error: str | None = None


def _reason(error: RequestFailed) -> str:
    """A failed request as its batch's error."""
    if not isinstance(error, CredentialsRefused):
        return str(error)
    if error.earlier:
        return f"not sent: the fraud API refused an earlier batch (HTTP {error.status})"
    return f"HTTP {error.status} ({error.meaning}): check the fraud API credentials"


class HttpScorer:
    """Scores through the ML API: batches of `batch_size` POSTed by `workers` threads over one
    `resources.http` client (so at most `workers` requests are in flight). Optional bearer
    `token`; `user:password@` in the URL becomes HTTP basic auth; query parameters are kept."""

    name: ClassVar[str] = "http"

    def __init__(
        self,
        url: str,
        batch_size: int = 100,
        workers: int = 5,
        timeout_seconds: float = 10.0,
        max_attempts: int = 5,
        backoff_seconds: float = 0.2,
        max_backoff_seconds: float = 5.0,
        *,
        token: str | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Sleep = time.sleep,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"the fraud API URL must be an http:// or https:// URL, got {display_url(url)!r}"
            )
        if batch_size < 1 or workers < 1 or max_attempts < 1:
            raise ValueError("batch_size, workers and max_attempts must be >= 1")
        if timeout_seconds <= 0 or backoff_seconds < 0 or max_backoff_seconds < 0:
            raise ValueError("timeout_seconds must be > 0, the backoff seconds >= 0")
        if token and parts.username is not None:
            raise ValueError(
                "give the fraud API either a token or user:password in its URL, not both"
            )
        self.batch_size = batch_size
        self.workers = workers
        self.policy = HttpPolicy(
            workers,
            timeout_seconds,
            max_attempts,
            backoff_seconds,
            max_backoff_seconds,
            transport,
            sleep,
        )
        host = parts.netloc.rpartition("@")[2]
        path = parts.path.rstrip("/") + "/predict"
        self._endpoint = urlunsplit((parts.scheme, host, path, parts.query, ""))
        self.endpoint_display = display_url(
            urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
        )
        self._auth: httpx.BasicAuth | None = None
        if parts.username is not None:  # userinfo leaves the URL: httpx logs URLs
            self._auth = httpx.BasicAuth(unquote(parts.username), unquote(parts.password or ""))
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        secrets = {token, parts.password}
        if parts.password is None:
            secrets.add(parts.username)  # a bare `token@host`
        secrets.update(value for _, value in parse_qsl(parts.query, keep_blank_values=True))
        raw = {s for s in secrets if s}
        self._secrets = sorted(
            {s for s in raw | {unquote(s) for s in raw} if len(s) >= MIN_SCRUBBED_CHARS},
            key=len,
            reverse=True,
        )

    def __repr__(self) -> str:
        return (
            f"HttpScorer({self.endpoint_display!r}, batch_size={self.batch_size}, "
            f"workers={self.workers})"
        )

    def _scrub(self, text: str) -> str:
        """`text` with every credential value replaced by ***: server bodies and exception
        messages are not ours and could echo the URL or a header."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def score(self, features: pl.DataFrame, log: logging.Logger | None = None) -> ScoreResult:
        log = log or LOGGER
        started = time.perf_counter()
        prepared = prepare(features, log)
        frame = prepared.frame
        batches = [
            frame.slice(offset, self.batch_size)
            for offset in range(0, frame.height, self.batch_size)
        ]
        total = len(batches)
        outcomes: list[_Outcome] = []
        if not batches:
            return _result(outcomes, prepared, time.perf_counter() - started)
        log.info(
            f"fraud scoring via {self.endpoint_display}: {frame.height:,} rows in "
            f"{plural(total, 'batch', 'batches')} of up to {self.batch_size}, "
            f"{self.workers} workers"
        )
        with threaded_client(
            self._endpoint,
            self.policy,
            "fraud-http",
            threads=min(self.workers, total),
            headers=self._headers,
            auth=self._auth,
            detailed_errors=True,
        ) as (http, pool):
            futures = [pool.submit(self._run, http, n, b) for n, b in enumerate(batches, 1)]
            decile = 0
            for future in as_completed(futures):
                outcome = future.result()
                outcomes.append(outcome)
                if outcome.error is not None:
                    log.warning(
                        f"fraud scoring batch {outcome.number}/{total} failed "
                        f"({len(outcome.ids)} rows): {outcome.error}"
                    )
                if len(outcomes) * 10 // total > decile or len(outcomes) == total:
                    decile = len(outcomes) * 10 // total
                    log.info(_progress(outcomes, total, time.perf_counter() - started))
        return _result(outcomes, prepared, time.perf_counter() - started)

    def _run(self, http: HttpClient, number: int, batch: pl.DataFrame) -> _Outcome:
        """One batch, end to end; never raises, so one bad batch cannot sink the others."""
        outcome = _Outcome(number, batch[ID].to_list())
        try:
            body = b'{"transactions":' + batch.write_json().encode() + b"}"
            response = http.request("POST", self._endpoint, content=body, tally=outcome)
            outcome.parsed = _parse(response.content, outcome.ids)
        except RequestFailed as exc:
            outcome.error = self._scrub(_reason(exc))
        except _Failed as exc:
            outcome.error = self._scrub(str(exc))
        except Exception as exc:  # a bug must not lose the batch's ids either
            outcome.error = self._scrub(f"unexpected error: {type(exc).__name__}: {exc}")
        return outcome


def _progress(outcomes: list[_Outcome], total: int, seconds: float) -> str:
    failed = sum(o.error is not None for o in outcomes)
    retries = sum(max(0, o.attempts - 1) for o in outcomes)
    rows = sum(len(o.ids) for o in outcomes)
    return progress_line(
        "fraud scoring batches",
        len(outcomes),
        total,
        f"{rows:,} rows, {failed} failed, {plural(retries, 'retry', 'retries')}",
        seconds,
    )


def _result(outcomes: list[_Outcome], prepared: Prepared, seconds: float) -> ScoreResult:
    """Predictions in input order, failures by batch, and the counts."""
    outcomes = sorted(outcomes, key=lambda o: o.number)
    ids: list[str] = []
    scores: list[float] = []
    flags: list[bool] = []
    versions: list[str] = []
    reasons: list[str] = []
    failed: list[tuple[list[str], int, str, int]] = []
    for outcome in outcomes:
        if outcome.parsed is None:
            failed.append(
                (outcome.ids, outcome.number, outcome.error or "unknown", outcome.attempts)
            )
            continue
        parsed = outcome.parsed
        ids.extend(outcome.ids)
        scores.extend(parsed.scores)
        flags.extend(parsed.flags)
        versions.extend([parsed.model_version] * len(outcome.ids))
        reasons.extend(parsed.reasons)
    predictions = pl.DataFrame(
        {
            "transaction_id": ids,
            "fraud_score": scores,
            "is_fraud": flags,
            "model_version": versions,
            "reasons": reasons,
        },
        schema=PREDICTION_SCHEMA,
    )
    failures = (
        pl.DataFrame(failed, schema=FAILURE_SCHEMA, orient="row") if failed else empty_failures()
    )
    requests = sum(o.attempts for o in outcomes)
    stats = ScoreStats(
        rows=prepared.frame.height,
        batches=len(outcomes),
        requests=requests,
        retries=sum(max(0, o.attempts - 1) for o in outcomes),
        failed_batches=len(failed),
        failed_rows=sum(len(row[0]) for row in failed),
        seconds=seconds,
        duplicate_rows=prepared.duplicate_rows,
        null_ids=prepared.null_ids,
    )
    return ScoreResult(predictions, failures, stats)


__all__ = ["HttpScorer"]
