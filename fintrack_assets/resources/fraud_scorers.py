"""Fraud scorers behind one Dagster resource: the shipped model (`local`) or an ML API (`http`).

Every scorer takes a feature frame (`transaction_id` plus numeric feature columns: every column
except `transaction_id` is a feature, so this module does not pin the feature list) and
returns a `ScoreResult`:

- `predictions`: `transaction_id, fraud_score, is_fraud, model_version, reasons` (reasons are
  feature names joined by commas), in input order;
- `failures`: one row per failed batch, `transaction_ids` (List[String]: the batch's ids),
  `batch` (1-based), `error`, `attempts`. `ScoreResult.failed_ids` flattens it to one row per id.

Every input id ends up in exactly one of the two, once: a repeated id is scored once (its
first row) and counted in `stats.duplicate_rows`; rows without an id cannot be recorded
anywhere and are counted in `stats.null_ids` (both logged as warnings).

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
import threading
import time
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, get_args
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

import httpx
import polars as pl
from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from fintrack_assets.core.display import plural
from fintrack_assets.core.progress import progress_line
from fintrack_assets.resources.fetching import Sleep
from fintrack_assets.resources.http import (
    CredentialsRefused,
    HttpClient,
    HttpPolicy,
    RequestFailed,
    display_url,
    threaded_client,
)
from fintrack_assets.settings import FraudScorerKind

LOGGER = logging.getLogger(__name__)

ID = "transaction_id"
ScorerKind = FraudScorerKind
KINDS: tuple[str, ...] = get_args(ScorerKind)
PREDICTION_SCHEMA: dict[str, pl.DataType] = {
    "transaction_id": pl.String(),
    "fraud_score": pl.Float64(),
    "is_fraud": pl.Boolean(),
    "model_version": pl.String(),
    "reasons": pl.String(),
}
FAILURE_SCHEMA: dict[str, pl.DataType] = {
    "transaction_ids": pl.List(pl.String()),
    "batch": pl.Int64(),
    "error": pl.String(),
    "attempts": pl.Int64(),
}
MIN_SCRUBBED_CHARS = 4
"""Credential values shorter than this are not scrubbed from server-echoed text: they would
mangle it (a `?v=1` would eat every "1") and cannot be secrets worth the name."""


# -- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreStats:
    """What one `score` call did, for asset metadata and the benchmark."""

    rows: int  # distinct ids sent to the scorer
    batches: int
    requests: int  # HTTP requests made (attempts); 0 for the local model
    retries: int  # requests beyond the first of each batch
    failed_batches: int
    failed_rows: int
    seconds: float
    duplicate_rows: int = 0  # rows whose id repeated an earlier row: scored once
    null_ids: int = 0  # rows without a transaction_id: not scorable, not recordable


@dataclass(frozen=True)
class ScoreResult:
    predictions: pl.DataFrame
    failures: pl.DataFrame
    stats: ScoreStats

    @property
    def failed_ids(self) -> pl.DataFrame:
        """One row per failed id: `transaction_id, batch, error, attempts`."""
        return self.failures.explode("transaction_ids").rename({"transaction_ids": ID})


def empty_predictions() -> pl.DataFrame:
    return pl.DataFrame(schema=PREDICTION_SCHEMA)


def empty_failures() -> pl.DataFrame:
    return pl.DataFrame(schema=FAILURE_SCHEMA)


class Scorer(Protocol):
    name: ClassVar[str]

    def score(self, features: pl.DataFrame, log: logging.Logger | None = None) -> ScoreResult:
        """Predictions and failed batches for every id of `features`; never loses an id."""
        ...


@dataclass(frozen=True)
class _Prepared:
    frame: pl.DataFrame  # transaction_id (String) + Float64 features, ids unique and non-null
    duplicate_rows: int
    null_ids: int


def _prepare(features: pl.DataFrame, log: logging.Logger) -> _Prepared:
    """Ids as strings, one row per id, features as Float64. A feature that is not numeric
    (or boolean) is a programming error upstream, so it raises rather than guessing."""
    if ID not in features.columns:
        raise ValueError(f"the feature frame has no {ID!r} column (columns: {features.columns})")
    feature_columns = [c for c in features.columns if c != ID]
    bad = [
        f"{name} ({dtype})"
        for name, dtype in features.schema.items()
        if name != ID and not (dtype.is_numeric() or dtype == pl.Boolean)
    ]
    if bad:
        raise ValueError(f"feature columns must be numeric; not numeric: {', '.join(bad)}")
    frame = features.select(
        pl.col(ID).cast(pl.String), *(pl.col(c).cast(pl.Float64) for c in feature_columns)
    )
    null_ids = frame[ID].null_count()
    if null_ids:
        frame = frame.filter(pl.col(ID).is_not_null())
        log.warning(f"fraud scoring: {null_ids} rows without a {ID} skipped")
    unique = frame.unique(subset=ID, keep="first", maintain_order=True)
    duplicate_rows = frame.height - unique.height
    if duplicate_rows:
        log.warning(
            f"fraud scoring: {duplicate_rows} rows repeat an earlier {ID}; each id is scored once"
        )
    return _Prepared(unique, duplicate_rows, null_ids)


def _reasons_expr(dtype: pl.DataType) -> pl.Expr:
    """`reasons` as one comma-separated string, whether the model gives a list or a string."""
    if isinstance(dtype, pl.List):
        return pl.col("reasons").list.join(",").fill_null("")
    return pl.col("reasons").cast(pl.String).fill_null("")


# -- local model -------------------------------------------------------------------------------


class _Model(Protocol):
    model_version: str

    def score(self, features: pl.DataFrame) -> pl.DataFrame: ...


class LocalScorer:
    """The shipped model (`core.fraud_model.FraudModel`), in process: one batch, no retries.
    A model exception propagates: it is a bug that every batch would hit alike."""

    name: ClassVar[str] = "local"

    def __init__(self, model_path: str | Path | None = None, model: _Model | None = None) -> None:
        self.model_path = model_path
        self._model = model
        self._lock = threading.Lock()

    @property
    def model(self) -> _Model:
        """Loaded once per scorer; imported lazily so this module imports without it."""
        with self._lock:
            if self._model is None:
                from fintrack_assets.core.fraud_model import FraudModel

                self._model = FraudModel.load(self.model_path)
            return self._model

    def score(self, features: pl.DataFrame, log: logging.Logger | None = None) -> ScoreResult:
        log = log or LOGGER
        started = time.perf_counter()
        prepared = _prepare(features, log)
        frame = prepared.frame
        if frame.is_empty():
            predictions = empty_predictions()
        else:
            scored = self.model.score(frame)
            predictions = (
                frame.select(ID)
                .join(
                    scored.unique(subset=ID, keep="first").select(
                        pl.col(ID).cast(pl.String),
                        pl.col("fraud_score").cast(pl.Float64),
                        pl.col("is_fraud").cast(pl.Boolean),
                        pl.col("model_version").cast(pl.String),
                        _reasons_expr(scored.schema["reasons"]),
                    ),
                    on=ID,
                    how="inner",
                    maintain_order="left",
                )
                .select(list(PREDICTION_SCHEMA))
            )
        missing = frame.filter(~pl.col(ID).is_in(predictions[ID].implode()))[ID].to_list()
        failures = (
            pl.DataFrame(
                [(missing, 1, "the local model returned no prediction for these ids", 1)],
                schema=FAILURE_SCHEMA,
                orient="row",
            )
            if missing
            else empty_failures()
        )
        stats = ScoreStats(
            rows=frame.height,
            batches=1 if frame.height else 0,
            requests=0,
            retries=0,
            failed_batches=1 if missing else 0,
            failed_rows=len(missing),
            seconds=time.perf_counter() - started,
            duplicate_rows=prepared.duplicate_rows,
            null_ids=prepared.null_ids,
        )
        log.info(
            f"fraud scoring with the local model: {stats.rows:,} rows, "
            f"{predictions.height:,} scored, {stats.failed_rows:,} failed, {stats.seconds:.2f} s"
        )
        return ScoreResult(predictions, failures, stats)


# -- ML API ------------------------------------------------------------------------------------


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
        prepared = _prepare(features, log)
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


def _result(outcomes: list[_Outcome], prepared: _Prepared, seconds: float) -> ScoreResult:
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


# -- the resource ------------------------------------------------------------------------------


class FraudScorer(ConfigurableResource):
    """Scores feature frames with the shipped model (`local`) or the ML API (`http`)."""

    kind: ScorerKind = Field(
        default="local", description="local (the shipped model, in process) or http (the ML API)."
    )
    api_url: str | None = Field(
        default=None, repr=False, description="The ML API's base URL; POSTs go to <url>/predict."
    )
    api_token: str | None = Field(
        default=None, repr=False, description="Optional bearer token for the ML API."
    )
    model_path: str | None = Field(
        default=None, description="Model file for `local`; None is the shipped model."
    )
    batch_size: int = Field(default=100, description="Transactions per API request.")
    workers: int = Field(default=5, description="API requests in flight at most.")
    timeout_seconds: float = Field(default=10.0, description="Per request (connect, read).")
    max_attempts: int = Field(default=5, description="Attempts per batch, first one included.")
    backoff_seconds: float = Field(default=0.2, description="Backoff base; doubles per retry.")
    max_backoff_seconds: float = Field(default=5.0, description="Cap on one backoff wait.")

    _scorer: Scorer | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        """Fail the run at start on a bad kind or a missing URL, not mid-asset."""
        self.scorer()

    def scorer(self) -> Scorer:
        """The implementation for `kind`, built once per resource instance."""
        if self._scorer is None:
            self._scorer = self._build()
        return self._scorer

    def _build(self) -> Scorer:
        if self.kind == "local":
            return LocalScorer(self.model_path)
        if self.kind == "http":
            if not self.api_url:
                raise ValueError(
                    "the http fraud scorer needs the ML API's URL: set FINTRACK_FRAUD_API_URL "
                    "(FraudScorer.api_url)"
                )
            return HttpScorer(
                self.api_url,
                batch_size=self.batch_size,
                workers=self.workers,
                timeout_seconds=self.timeout_seconds,
                max_attempts=self.max_attempts,
                backoff_seconds=self.backoff_seconds,
                max_backoff_seconds=self.max_backoff_seconds,
                token=self.api_token,
            )
        raise ValueError(f"unknown fraud scorer kind {self.kind!r}: it accepts {', '.join(KINDS)}")

    def score(self, features: pl.DataFrame, log: logging.Logger | None = None) -> ScoreResult:
        """Predictions and failures for every id of `features` (see the module docstring)."""
        return self.scorer().score(features, log)


__all__ = [
    "FAILURE_SCHEMA",
    "KINDS",
    "PREDICTION_SCHEMA",
    "FraudScorer",
    "HttpScorer",
    "LocalScorer",
    "ScoreResult",
    "ScoreStats",
    "Scorer",
    "display_url",
    "empty_failures",
    "empty_predictions",
]
