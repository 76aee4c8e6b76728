"""What every fraud scorer takes and returns, whichever it is (`fraud_local`, `fraud_http`).

A scorer takes a feature frame (`transaction_id` plus numeric feature columns: every column
except `transaction_id` is a feature, so the scorers do not pin the feature list) and returns
a `ScoreResult`:

- `predictions`: `transaction_id, fraud_score, is_fraud, model_version, reasons` (reasons are
  feature names joined by commas), in input order;
- `failures`: one row per failed batch, `transaction_ids` (List[String]: the batch's ids),
  `batch` (1-based), `error`, `attempts`. `ScoreResult.failed_ids` flattens it to one row per id.

Every input id ends up in exactly one of the two, once: a repeated id is scored once (its
first row) and counted in `stats.duplicate_rows`; rows without an id cannot be recorded
anywhere and are counted in `stats.null_ids` (both logged as warnings, by `prepare`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar, Protocol

import polars as pl

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
ID = "transaction_id"
"""The key inputs, predictions and failures are matched on."""


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
class Prepared:
    frame: pl.DataFrame  # transaction_id (String) + Float64 features, ids unique and non-null
    duplicate_rows: int
    null_ids: int


def prepare(features: pl.DataFrame, log: logging.Logger) -> Prepared:
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
    return Prepared(unique, duplicate_rows, null_ids)


__all__ = [
    "FAILURE_SCHEMA",
    "ID",
    "PREDICTION_SCHEMA",
    "Prepared",
    "ScoreResult",
    "ScoreStats",
    "Scorer",
    "empty_failures",
    "empty_predictions",
    "prepare",
]
