"""The `local` fraud scorer: the shipped model (`core.fraud_model.FraudModel`), in process."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import ClassVar, Protocol

import polars as pl

from fintrack_assets.resources.fraud_scoring import (
    FAILURE_SCHEMA,
    ID,
    PREDICTION_SCHEMA,
    ScoreResult,
    ScoreStats,
    empty_failures,
    empty_predictions,
    prepare,
)

LOGGER = logging.getLogger(__name__)


class _Model(Protocol):
    model_version: str

    def score(self, features: pl.DataFrame) -> pl.DataFrame: ...


def _reasons_expr(dtype: pl.DataType) -> pl.Expr:
    """`reasons` as one comma-separated string, whether the model gives a list or a string."""
    if isinstance(dtype, pl.List):
        return pl.col("reasons").list.join(",").fill_null("")
    return pl.col("reasons").cast(pl.String).fill_null("")


class LocalScorer:
    """The shipped model, in process: one batch, no retries. A model exception propagates:
    it is a bug that every batch would hit alike."""

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
        prepared = prepare(features, log)
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


__all__ = ["LocalScorer"]
