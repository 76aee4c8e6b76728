"""Fraud scorers: the HTTP scorer against a real server on 127.0.0.1 (`fraud_api_stub`), the
local scorer's wrapping of a model, and the `FraudScorer` resource.

Expected scores come from the test's own polars version of the stub's published formula
(`WEIGHTS`, `BIAS`, `REASON_THRESHOLD`); the stub computes them row by row in plain Python.
Nothing here sleeps to wait: slowness is the stub delaying its own answers, backoff waits are
recorded by an injected `sleep`, and concurrency is proven with a barrier in the stub.
"""

from __future__ import annotations

import base64
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

import polars as pl
import pytest
from dagster import asset, materialize
from polars.testing import assert_frame_equal

from fintrack_assets.core.fraud_features import FEATURES
from fintrack_assets.resources.fraud_http import HttpScorer
from fintrack_assets.resources.fraud_local import LocalScorer
from fintrack_assets.resources.fraud_scorers import FraudScorer
from fintrack_assets.resources.fraud_scoring import FAILURE_SCHEMA, PREDICTION_SCHEMA
from fintrack_assets.resources.http import display_url
from fintrack_assets_tests.fraud_api_stub import (
    BIAS,
    MODEL_VERSION,
    REASON_THRESHOLD,
    WEIGHTS,
    Answer,
    Call,
    FraudApiStub,
)


def features(n: int) -> pl.DataFrame:
    """`n` transactions `tx00000...` with deterministic, varied Float64 features."""
    i = pl.int_range(n, dtype=pl.Int64, eager=True)
    columns = {
        "log_amount": ((i * 37) % 90) / 10.0,
        "amount_zscore_30d": ((i * 53) % 61) / 10.0 - 3.0,
        "count_1h": (i * 7) % 5,
        "sum_1h": (i * 131) % 2000,
        "count_24h": (i * 11) % 17,
        "sum_24h": (i * 173) % 6000,
        "count_7d": (i * 13) % 41,
        "sum_7d": (i * 197) % 20000,
        "first_time_merchant": (i % 3 == 0),
        "is_night": (i % 4 == 1),
        "distance_km": (i * 29) % 800 + 0.25,
    }
    return pl.DataFrame(
        {
            "transaction_id": [f"tx{k:05d}" for k in range(n)],
            **{name: columns[name].cast(pl.Float64) for name in FEATURES},
        }
    )


def expected(frame: pl.DataFrame) -> pl.DataFrame:
    """The stub's formula, written independently with polars expressions."""
    terms = [pl.col(name).fill_null(0.0) * weight for name, weight in WEIGHTS.items()]
    z = pl.sum_horizontal(terms) + BIAS
    reasons = pl.concat_list(
        [
            pl.when(pl.col(name) * weight > REASON_THRESHOLD).then(pl.lit(name))
            for name, weight in WEIGHTS.items()
        ]
    )
    return frame.select(
        "transaction_id",
        (1.0 / (1.0 + (-z).exp())).alias("fraud_score"),
        (z >= 0).alias("is_fraud"),
        pl.lit(MODEL_VERSION).alias("model_version"),
        reasons.list.drop_nulls().list.join(",").alias("reasons"),
    )


def ids_of_batch(number: int, size: int = 100) -> list[str]:
    return [f"tx{k:05d}" for k in range((number - 1) * size, number * size)]


def key_of(number: int, size: int = 100) -> str:
    """The first id of batch `number` (1-based): how the stub's script recognises a batch."""
    return f"tx{(number - 1) * size:05d}"


def on_batch(number: int, answer: Callable[[Call], Answer | None]) -> Callable[[Call], Any]:
    return lambda call: answer(call) if call.key == key_of(number) else None


def assert_partition(frame: pl.DataFrame, result: Any) -> None:
    """Every input id in exactly one of predictions and failures, once."""
    scored = result.predictions["transaction_id"].to_list()
    failed = result.failed_ids["transaction_id"].to_list()
    assert len(scored) == len(set(scored)) and len(failed) == len(set(failed))
    assert not set(scored) & set(failed)
    assert sorted(scored + failed) == sorted(frame["transaction_id"].to_list())


@pytest.fixture
def sleeps() -> list[float]:
    return []


def scorer(url: str, sleeps: list[float], **options: Any) -> HttpScorer:
    """An HttpScorer whose backoff waits are recorded instead of slept."""
    return HttpScorer(url, sleep=sleeps.append, **options)


# -- happy path --------------------------------------------------------------------------------


def test_1050_rows_are_11_batches_scored_by_the_formula(sleeps: list[float]) -> None:
    frame = features(1050)
    with FraudApiStub() as stub:
        result = scorer(stub.url, sleeps).score(frame)

    assert stub.requests == 11
    assert sorted(stub.batch_sizes) == [50] + [100] * 10
    assert {call.path for call in stub.calls} == {"/predict"}
    assert result.predictions.schema == pl.Schema(PREDICTION_SCHEMA)
    assert result.failures.schema == pl.Schema(FAILURE_SCHEMA)
    assert result.failures.is_empty()
    # input order, every id once, whatever order the API answered in (the stub reverses)
    assert result.predictions["transaction_id"].to_list() == frame["transaction_id"].to_list()
    assert_frame_equal(result.predictions, expected(frame), abs_tol=1e-12, rel_tol=0)
    assert 0.1 < result.predictions["is_fraud"].mean() < 0.9  # the data exercises both classes
    assert result.predictions["reasons"].str.contains(",").any()
    stats = result.stats
    assert (stats.rows, stats.batches, stats.requests, stats.retries) == (1050, 11, 11, 0)
    assert (stats.failed_batches, stats.failed_rows) == (0, 0)
    assert sleeps == []


def test_reasons_as_a_string_are_normalised(sleeps: list[float]) -> None:
    frame = features(120)
    with FraudApiStub(reasons_as="string") as stub:  # "a, b" on the wire
        result = scorer(stub.url, sleeps).score(frame)
    assert result.predictions["reasons"].to_list() == expected(frame)["reasons"].to_list()


def test_base_path_and_query_are_kept(sleeps: list[float]) -> None:
    with FraudApiStub() as stub:
        scorer(f"{stub.url}/v2/?tenant=acme", sleeps).score(features(10))
    assert [(call.path, call.query) for call in stub.calls] == [("/v2/predict", "tenant=acme")]


def test_empty_input_sends_nothing(sleeps: list[float]) -> None:
    with FraudApiStub() as stub:
        result = scorer(stub.url, sleeps).score(features(0))
    assert stub.requests == 0
    assert result.predictions.is_empty() and result.failures.is_empty()
    assert result.predictions.schema == pl.Schema(PREDICTION_SCHEMA)
    assert result.stats.batches == 0


# -- slowness and timeouts ---------------------------------------------------------------------


def test_slow_answers_within_the_timeout_succeed(sleeps: list[float]) -> None:
    frame = features(500)

    def slow(call: Call) -> Answer | None:
        return Answer(delay=0.3) if call.key in (key_of(2), key_of(4)) else None

    with FraudApiStub(slow) as stub:
        result = scorer(stub.url, sleeps, timeout_seconds=1.0).score(frame)

    assert result.failures.is_empty()
    assert stub.requests == 5 and result.stats.retries == 0
    assert_frame_equal(result.predictions, expected(frame), abs_tol=1e-12, rel_tol=0)


def test_an_answer_slower_than_the_timeout_is_retried(sleeps: list[float]) -> None:
    frame = features(300)

    def first_attempt_slow(call: Call) -> Answer | None:
        return Answer(delay=0.6) if call.key == key_of(2) and call.attempt == 1 else None

    with FraudApiStub(first_attempt_slow) as stub:
        result = scorer(stub.url, sleeps, timeout_seconds=0.2).score(frame)

    assert result.failures.is_empty()
    assert stub.attempts[key_of(2)] == 2 and stub.requests == 4
    assert result.stats.retries == 1 and len(sleeps) == 1
    assert_frame_equal(result.predictions, expected(frame), abs_tol=1e-12, rel_tol=0)


def test_timeouts_on_every_attempt_fail_the_batch(sleeps: list[float]) -> None:
    frame = features(300)
    always_slow = on_batch(2, lambda call: Answer(delay=0.6))

    with FraudApiStub(always_slow) as stub:
        result = scorer(stub.url, sleeps, timeout_seconds=0.2, max_attempts=2).score(frame)

    assert result.failures.to_dicts() == [
        {
            "transaction_ids": ids_of_batch(2),
            "batch": 2,
            "error": "timeout (ReadTimeout, limit 0.2 s) after 2 attempts",
            "attempts": 2,
        }
    ]
    assert stub.attempts[key_of(2)] == 2
    assert_partition(frame, result)


# -- 429 and 5xx -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_after", "wait"),
    [("2", 2.0), ("0.5", 0.5), ("120", 5.0), ("Wed, 21 Oct 2099 07:28:00 GMT", 5.0)],
    ids=["seconds", "fraction", "capped", "http-date-capped"],
)
def test_429_burst_honours_retry_after(sleeps: list[float], retry_after: str, wait: float) -> None:
    frame = features(400)

    def burst(call: Call) -> Answer | None:
        if call.attempt <= 3:
            return Answer(429, {"Retry-After": retry_after}, b'{"detail": "slow down"}')
        return None

    with FraudApiStub(burst) as stub:
        result = scorer(stub.url, sleeps, max_backoff_seconds=5.0).score(frame)

    assert result.failures.is_empty()
    assert stub.statuses[429] == 12 and stub.statuses[200] == 4
    assert result.stats.retries == stub.statuses[429] and result.stats.requests == 16
    assert sleeps == [wait] * 12
    assert_frame_equal(result.predictions, expected(frame), abs_tol=1e-12, rel_tol=0)


def test_429_without_retry_after_backs_off_with_full_jitter(sleeps: list[float]) -> None:
    frame = features(600)
    bursts = {key_of(n): n % 4 for n in range(1, 7)}  # 1, 2, 3, 0, 1, 2 refusals

    def burst(call: Call) -> Answer | None:
        return Answer(429) if call.attempt <= bursts[call.key] else None

    with FraudApiStub(burst) as stub:
        result = scorer(
            stub.url, sleeps, workers=1, backoff_seconds=0.2, max_backoff_seconds=0.5
        ).score(frame)

    assert result.failures.is_empty()
    assert stub.statuses[429] == sum(bursts.values()) == 9
    assert result.stats.retries == 9
    # workers=1: the waits come batch by batch; the k-th wait of a batch is in
    # [0, min(max, base * 2^(k-1))]
    bounds = [min(0.5, 0.2 * 2 ** (k - 1)) for n in range(1, 7) for k in range(1, n % 4 + 1)]
    assert len(sleeps) == len(bounds) == 9
    assert all(0.0 <= slept <= bound for slept, bound in zip(sleeps, bounds, strict=True))
    assert len(set(sleeps)) > 1  # jittered, not a fixed schedule


def test_a_batch_failing_with_500_is_listed_while_the_others_are_scored(
    sleeps: list[float],
) -> None:
    frame = features(1050)
    with FraudApiStub(on_batch(3, lambda call: Answer(500))) as stub:
        result = scorer(stub.url, sleeps, max_attempts=3).score(frame)

    assert result.failures.to_dicts() == [
        {
            "transaction_ids": ids_of_batch(3),
            "batch": 3,
            "error": "HTTP 500 after 3 attempts",
            "attempts": 3,
        }
    ]
    assert stub.attempts[key_of(3)] == 3 and stub.statuses[500] == 3
    assert_partition(frame, result)
    kept = frame.filter(~pl.col("transaction_id").is_in(ids_of_batch(3)))
    assert_frame_equal(result.predictions, expected(kept), abs_tol=1e-12, rel_tol=0)
    stats = result.stats
    assert (stats.batches, stats.requests, stats.retries) == (11, 13, 2)
    assert (stats.failed_batches, stats.failed_rows) == (1, 100)
    assert result.failed_ids.columns == ["transaction_id", "batch", "error", "attempts"]
    assert result.failed_ids.height == 100


def test_other_4xx_fails_at_once_with_its_status_and_detail(sleeps: list[float]) -> None:
    frame = features(300)
    bad = on_batch(2, lambda call: Answer(422, body=b'{"detail": "distance_km is required"}'))
    with FraudApiStub(bad) as stub:
        result = scorer(stub.url, sleeps).score(frame)

    [failure] = result.failures.to_dicts()
    assert failure["batch"] == 2 and failure["attempts"] == 1
    assert failure["error"] == 'HTTP 422 (not retried): {"detail": "distance_km is required"}'
    assert stub.attempts[key_of(2)] == 1 and sleeps == []
    assert_partition(frame, result)


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_stop_the_batches_not_yet_sent(
    sleeps: list[float], status: int
) -> None:
    frame = features(400)
    with FraudApiStub(lambda call: Answer(status)) as stub:
        result = scorer(stub.url, sleeps, workers=1).score(frame)

    assert stub.requests == 1
    assert result.predictions.is_empty()
    assert result.failures["attempts"].to_list() == [1, 0, 0, 0]
    assert result.failures["error"][0].startswith(f"HTTP {status} (")
    assert set(result.failures["error"][1:]) == {
        f"not sent: the fraud API refused an earlier batch (HTTP {status})"
    }
    assert_partition(frame, result)


def test_dead_server_fails_every_batch_quickly_without_raising() -> None:
    with socket.socket() as sock:  # a port that was free, now closed: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    frame = features(250)
    result = HttpScorer(
        f"http://127.0.0.1:{port}", max_attempts=3, backoff_seconds=0.001, max_backoff_seconds=0.01
    ).score(frame)

    assert result.predictions.is_empty()
    assert result.failures["batch"].to_list() == [1, 2, 3]
    assert result.failures["attempts"].to_list() == [3, 3, 3]
    assert all(
        error.startswith("connection error (ConnectError") and error.endswith("after 3 attempts")
        for error in result.failures["error"]
    )
    assert_partition(frame, result)
    assert result.stats.seconds < 5


# -- malformed responses -----------------------------------------------------------------------


def _drop_first(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "predictions": body["predictions"][1:]}


def _set(index: int, **values: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def edit(body: dict[str, Any]) -> dict[str, Any]:
        predictions = [dict(p) for p in body["predictions"]]
        predictions[index].update(values)
        return {**body, "predictions": predictions}

    return edit


def _duplicate(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "predictions": [*body["predictions"], body["predictions"][0]]}


def _extra(body: dict[str, Any]) -> dict[str, Any]:
    stranger = {**body["predictions"][0], "transaction_id": "not-in-batch"}
    return {**body, "predictions": [*body["predictions"], stranger]}


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (Answer(edit=_drop_first), "1 transaction of the batch not answered (first: 'tx00199')"),
        (Answer(edit=_set(0, fraud_score=1.5)), "fraud_score 1.5 for 'tx00199' is not in [0, 1]"),
        (Answer(edit=_set(3, fraud_score=-0.1)), "fraud_score -0.1 for 'tx00196'"),
        (Answer(edit=_set(0, fraud_score="0.5")), "fraud_score '0.5' for 'tx00199'"),
        (Answer(edit=_set(0, fraud_score=None)), "fraud_score None for 'tx00199'"),
        (Answer(edit=_set(0, is_fraud="yes")), "is_fraud 'yes' for 'tx00199' is not a boolean"),
        (Answer(edit=_set(0, reasons=42)), "reasons 42 for 'tx00199'"),
        (Answer(edit=_duplicate), "transaction_id 'tx00199' answered twice"),
        (Answer(edit=_extra), "1 transaction not in the batch answered (first: 'not-in-batch')"),
        (Answer(edit=lambda body: {**body, "model_version": None}), "no model_version string"),
        (Answer(edit=lambda body: {"model_version": "v"}), "no predictions list"),
        (Answer(body=b"<html>oops</html>"), "not valid JSON"),
        (Answer(body=b"[]"), "not a JSON object"),
    ],
    ids=[
        "missing-id",
        "score-1.5",
        "score-negative",
        "score-string",
        "score-null",
        "flag-string",
        "reasons-number",
        "duplicate-id",
        "extra-id",
        "no-version",
        "no-predictions",
        "not-json",
        "not-object",
    ],
)
def test_a_malformed_answer_fails_its_batch_without_retry(
    sleeps: list[float], answer: Answer, error: str
) -> None:
    frame = features(300)
    with FraudApiStub(on_batch(2, lambda call: answer)) as stub:
        result = scorer(stub.url, sleeps).score(frame)

    [failure] = result.failures.to_dicts()
    assert failure["batch"] == 2 and failure["attempts"] == 1
    assert failure["transaction_ids"] == ids_of_batch(2)
    assert failure["error"].startswith("malformed response: ")
    assert error in failure["error"]
    assert stub.attempts[key_of(2)] == 1 and sleeps == []
    assert_partition(frame, result)


# -- concurrency and idempotency ---------------------------------------------------------------


@pytest.mark.parametrize("workers", [2, 5])
def test_workers_requests_are_in_flight_together_never_more(
    sleeps: list[float], workers: int
) -> None:
    """The barrier releases only when `workers` requests wait at it together: if the client
    sent fewer at once it would break (after 10 s) and the batches fail."""
    frame = features(workers * 200)
    barrier = threading.Barrier(workers)
    with FraudApiStub(barrier=barrier) as stub:
        result = scorer(stub.url, sleeps, workers=workers, max_attempts=1).score(frame)

    assert not stub.barrier_broken and result.failures.is_empty()
    assert stub.max_in_flight == workers
    assert stub.requests == 2 * workers


def test_a_rerun_gives_the_same_predictions(sleeps: list[float]) -> None:
    frame = features(730)
    with FraudApiStub() as stub:
        scoring = scorer(stub.url, sleeps, workers=3)
        first = scoring.score(frame)
        second = scoring.score(frame)

    assert_frame_equal(first.predictions, second.predictions)
    assert first.predictions["transaction_id"].n_unique() == first.predictions.height == 730
    assert stub.requests == 16


def test_repeated_and_null_ids_are_scored_once_and_counted(
    sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    frame = features(150)
    repeated = pl.concat([frame, frame.head(5), frame.head(2).with_columns(transaction_id=None)])
    with FraudApiStub() as stub, caplog.at_level(logging.WARNING):
        result = scorer(stub.url, sleeps).score(repeated)

    assert_frame_equal(result.predictions, expected(frame), abs_tol=1e-12, rel_tol=0)
    assert (result.stats.rows, result.stats.duplicate_rows, result.stats.null_ids) == (150, 5, 2)
    assert sum(stub.batch_sizes) == 150
    assert any("5 rows repeat" in record.getMessage() for record in caplog.records)


def test_integer_and_boolean_features_are_sent_as_numbers(sleeps: list[float]) -> None:
    frame = features(20)
    typed = frame.with_columns(
        pl.col("count_1h").cast(pl.Int32), pl.col("is_night").cast(pl.Boolean)
    )
    with FraudApiStub() as stub:
        result = scorer(stub.url, sleeps).score(typed)
    assert_frame_equal(result.predictions, expected(frame), abs_tol=1e-12, rel_tol=0)


def test_bad_feature_frames_are_refused() -> None:
    http = HttpScorer("http://127.0.0.1:9")
    with pytest.raises(ValueError, match="no 'transaction_id' column"):
        http.score(features(3).drop("transaction_id"))
    with pytest.raises(ValueError, match=r"not numeric: merchant \(String\)"):
        http.score(features(3).with_columns(merchant=pl.lit("acme")))


# -- credentials -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "token", "received"),
    [
        (
            "http://user:secret@{host}",
            None,
            ("Basic " + base64.b64encode(b"user:secret").decode(), ""),
        ),
        ("http://{host}/?token=secret", None, (None, "token=secret")),
        ("http://secret@{host}", None, ("Basic " + base64.b64encode(b"secret:").decode(), "")),
        ("http://{host}", "secret", ("Bearer secret", "")),
    ],
    ids=["password", "query-token", "bare-userinfo", "bearer"],
)
def test_credentials_are_sent_but_never_shown(
    sleeps: list[float],
    caplog: pytest.LogCaptureFixture,
    url: str,
    token: str | None,
    received: tuple[str | None, str],
) -> None:
    frame = features(500)

    def trouble(call: Call) -> Answer | None:
        echo = f'{{"detail": "bad {call.path}?{call.query} {call.authorization}"}}'.encode()
        if call.key == key_of(2):
            return Answer(500)
        if call.key == key_of(3):
            return Answer(400, body=echo)  # a server that echoes the request back
        if call.key == key_of(4):
            return Answer(edit=_set(0, fraud_score=2.0, transaction_id="secret"))
        return None

    caplog.set_level(logging.DEBUG)  # httpx and httpcore included
    with FraudApiStub(trouble) as stub:
        host = stub.url.removeprefix("http://")
        http = scorer(url.format(host=host), sleeps, max_attempts=2, token=token)
        result = http.score(frame, log=logging.getLogger("fintrack.test.fraud"))

    assert {(call.authorization, call.query) for call in stub.calls} == {received}
    assert result.failures["batch"].to_list() == [2, 3, 4]
    assert any("HTTP Request: POST" in record.getMessage() for record in caplog.records)
    shown = [
        *result.failures["error"],
        *(record.getMessage() for record in caplog.records),
        caplog.text,
        repr(http),
        http.endpoint_display,
    ]
    assert [text for text in shown if "secret" in text] == []


def test_dead_server_errors_do_not_show_a_query_token(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    caplog.set_level(logging.DEBUG)
    result = HttpScorer(
        f"http://user:secret@127.0.0.1:{port}/?token=secret", max_attempts=2, backoff_seconds=0
    ).score(features(10))
    assert result.failures.height == 1
    assert "secret" not in result.failures["error"][0] and "secret" not in caplog.text


def test_display_url_hides_every_credential() -> None:
    assert display_url("https://user:pw@api.example.com:8443/v1?token=abc&x=1") == (
        "https://api.example.com:8443/…"
    )
    assert display_url("https://tok123@api.example.com/") == "https://api.example.com/…"
    assert display_url("http://api.example.com/v1") == "http://api.example.com/…"
    assert display_url("http://api.example.com") == "http://api.example.com"


def test_bad_urls_and_settings_are_refused_without_secrets() -> None:
    with pytest.raises(ValueError, match="http:// or https://") as raised:
        HttpScorer("ftp://user:secret@example.com/")
    assert "secret" not in str(raised.value)
    with pytest.raises(ValueError, match="either a token or user:password"):
        HttpScorer("http://user:pw@example.com", token="t0ken")
    with pytest.raises(ValueError, match=">= 1"):
        HttpScorer("http://example.com", workers=0)


# -- the resource ------------------------------------------------------------------------------


def test_resource_http_scores_through_the_api(sleeps: list[float]) -> None:
    frame = features(230)
    with FraudApiStub() as stub:
        result = FraudScorer(kind="http", api_url=stub.url, batch_size=50, workers=2).score(frame)
    assert stub.requests == 5 and sorted(stub.batch_sizes) == [30, 50, 50, 50, 50]
    assert_frame_equal(result.predictions, expected(frame), abs_tol=1e-12, rel_tol=0)


def test_resource_refuses_http_without_url_and_unknown_kinds() -> None:
    with pytest.raises(ValueError, match="FINTRACK_FRAUD_API_URL"):
        FraudScorer(kind="http").score(features(1))
    with pytest.raises(ValueError, match="Input should be 'local' or 'http'"):
        FraudScorer(kind="remote")


def test_resource_inside_an_asset_and_failing_at_run_start() -> None:
    frame = features(120)

    @asset
    def scored(fraud_scorer: FraudScorer) -> int:
        return fraud_scorer.score(frame).predictions.height

    with FraudApiStub() as stub:
        ok = materialize(
            [scored], resources={"fraud_scorer": FraudScorer(kind="http", api_url=stub.url)}
        )
    assert ok.success and ok.output_for_node("scored") == 120

    bad = materialize(
        [scored], resources={"fraud_scorer": FraudScorer(kind="http")}, raise_on_error=False
    )
    assert not bad.success
    failure = next(event for event in bad.all_events if event.is_failure)
    assert "FINTRACK_FRAUD_API_URL" in str(failure.event_specific_data)


# -- local model -------------------------------------------------------------------------------


class FakeModel:
    """A model that answers out of order, as lists, with one id missing and one extra."""

    model_version = "fake-7"

    def __init__(self) -> None:
        self.seen: list[pl.DataFrame] = []

    def score(self, frame: pl.DataFrame) -> pl.DataFrame:
        self.seen.append(frame)
        ids = frame["transaction_id"].to_list()
        kept = [i for i in reversed(ids) if i != ids[1]] + ["stranger"]
        return pl.DataFrame(
            {
                "transaction_id": kept,
                "fraud_score": [0.25] * len(kept),
                "is_fraud": [False] * len(kept),
                "reasons": [["is_night", "distance_km"]] * len(kept),
                "model_version": ["fake-7"] * len(kept),
            }
        )


def test_local_scorer_orders_types_and_accounts_for_every_id() -> None:
    frame = features(4)
    model = FakeModel()
    result = LocalScorer(model=model).score(pl.concat([frame, frame.head(1)]))

    assert model.seen[0].height == 4  # the repeated row was not scored twice
    assert result.predictions.to_dicts() == [
        {
            "transaction_id": i,
            "fraud_score": 0.25,
            "is_fraud": False,
            "model_version": "fake-7",
            "reasons": "is_night,distance_km",
        }
        for i in ("tx00000", "tx00002", "tx00003")
    ]
    assert result.failures.to_dicts() == [
        {
            "transaction_ids": ["tx00001"],
            "batch": 1,
            "error": "the local model returned no prediction for these ids",
            "attempts": 1,
        }
    ]
    assert (result.stats.rows, result.stats.failed_rows, result.stats.duplicate_rows) == (4, 1, 1)


def test_local_scorer_with_the_shipped_model() -> None:
    """Skipped only while `core/fraud_model.py` (written in parallel) does not exist yet."""
    fraud_model = pytest.importorskip("fintrack_assets.core.fraud_model")
    frame = features(300)
    result = FraudScorer(kind="local").score(frame)

    assert result.predictions.schema == pl.Schema(PREDICTION_SCHEMA)
    assert result.failures.is_empty()
    assert result.predictions["transaction_id"].to_list() == frame["transaction_id"].to_list()
    assert result.predictions["fraud_score"].is_between(0.0, 1.0).all()
    version = fraud_model.FraudModel.load().model_version
    assert result.predictions["model_version"].unique().to_list() == [version]
