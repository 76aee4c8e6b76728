"""The `fraud_scorer` resource: the shipped model (`local`, `fraud_local.py`) or the ML API
(`http`, `fraud_http.py`), chosen by `kind`; both return a `fraud_scoring.ScoreResult`."""

from __future__ import annotations

import logging
from typing import get_args

import polars as pl
from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from fintrack_assets.resources.fraud_http import HttpScorer
from fintrack_assets.resources.fraud_local import LocalScorer
from fintrack_assets.resources.fraud_scoring import Scorer, ScoreResult
from fintrack_assets.settings import FraudScorerKind

ScorerKind = FraudScorerKind
KINDS: tuple[str, ...] = get_args(ScorerKind)


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
        """Predictions and failures for every id of `features` (see `fraud_scoring`)."""
        return self.scorer().score(features, log)


__all__ = ["KINDS", "FraudScorer"]
