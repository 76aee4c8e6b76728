"""The fraud model: a logistic regression on standardised FEATURES, shipped as JSON.

Trained offline by scripts/train_fraud_model.py (scikit-learn, a dev dependency); scoring
here needs numpy and polars only, so the runtime image carries no ML stack. The JSON holds
everything scoring needs (feature order, standardisation, coefficients, threshold) plus what
it was trained on and its held-out metrics, which the model card in docs/ spells out.

score = sigmoid(intercept + sum_i coef_i * z_i), z_i = (x_i - mean_i) / scale_i. A missing
(null or NaN) feature value counts as its training mean: z = 0, no contribution. `reasons`
names the features that pushed the score up most: the top 3 by coef_i * z_i, if positive.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

__all__ = ["MODEL_FILE", "SCORE_SCHEMA", "FraudModel"]

MODEL_FILE = "fraud_model.json"
"""The shipped model, in the package's data/ folder."""
TOP_REASONS = 3

SCORE_SCHEMA: dict[str, pl.DataType] = {
    "transaction_id": pl.String(),
    "fraud_score": pl.Float64(),
    "is_fraud": pl.Boolean(),
    "reasons": pl.String(),
    "model_version": pl.String(),
}


@dataclass(frozen=True)
class FraudModel:
    model_version: str
    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    threshold: float
    """is_fraud is fraud_score >= threshold."""
    trained_on: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        width = len(self.features)
        if not width or len(set(self.features)) != width:
            raise ValueError("a fraud model needs distinct feature names")
        for name in ("mean", "scale", "coef"):
            values = getattr(self, name)
            if len(values) != width or not all(math.isfinite(v) for v in values):
                raise ValueError(f"model {name} must be {width} finite numbers")
        if not all(s > 0 for s in self.scale):
            raise ValueError("model scale must be positive")
        if not math.isfinite(self.intercept) or not 0.0 <= self.threshold <= 1.0:
            raise ValueError("model intercept must be finite and threshold in [0, 1]")

    @classmethod
    def load(cls, path: str | Path | None = None) -> FraudModel:
        """A model from its JSON file; by default the one shipped with the package."""
        if path is None:
            text = resources.files("fintrack_assets").joinpath("data", MODEL_FILE).read_text()
        else:
            text = Path(path).read_text()
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FraudModel:
        try:
            return cls(
                model_version=str(data["model_version"]),
                features=tuple(str(f) for f in data["features"]),
                mean=tuple(float(v) for v in data["mean"]),
                scale=tuple(float(v) for v in data["scale"]),
                coef=tuple(float(v) for v in data["coef"]),
                intercept=float(data["intercept"]),
                threshold=float(data["threshold"]),
                trained_on=dict(data.get("trained_on", {})),
                metrics=dict(data.get("metrics", {})),
            )
        except KeyError as missing:
            raise ValueError(f"fraud model JSON lacks {missing}") from None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    def score(self, features: pl.DataFrame) -> pl.DataFrame:
        """SCORE_SCHEMA, one row per input row, in input order. `features` needs
        `transaction_id` and every model feature (other columns are ignored)."""
        missing = [c for c in ("transaction_id", *self.features) if c not in features.columns]
        if missing:
            raise ValueError(f"features frame lacks column(s): {', '.join(missing)}")
        values = features.select(pl.col(c).cast(pl.Float64) for c in self.features).to_numpy()
        z = np.nan_to_num((values - np.array(self.mean)) / np.array(self.scale), nan=0.0)
        contribution = z * np.array(self.coef)
        logit = contribution.sum(axis=1) + self.intercept
        score = _sigmoid(logit)
        return pl.DataFrame(
            {
                "transaction_id": features["transaction_id"].cast(pl.String),
                "fraud_score": score,
                "is_fraud": score >= self.threshold,
                "reasons": _reasons(contribution, self.features),
                "model_version": pl.Series([self.model_version] * features.height),
            },
            schema=SCORE_SCHEMA,
        )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-x) without overflow for large |x|."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _reasons(contribution: np.ndarray, names: tuple[str, ...]) -> pl.Series:
    """Per row, the features with the largest positive contributions, largest first (ties
    in feature order), comma-separated; "" when none is positive."""
    rows = np.arange(contribution.shape[0])[:, None]
    top = np.argsort(-contribution, axis=1, kind="stable")[:, :TOP_REASONS]
    positive = contribution[rows, top] > 0
    label = pl.Series(names, dtype=pl.String)
    ranks = range(top.shape[1])
    frame = pl.DataFrame(
        {f"name{k}": label.gather(top[:, k]) for k in ranks}
        | {f"positive{k}": positive[:, k] for k in ranks}
    )
    return (
        frame.select(
            pl.concat_str(
                [pl.when(pl.col(f"positive{k}")).then(pl.col(f"name{k}")) for k in ranks],
                separator=",",
                ignore_nulls=True,
            ).fill_null("")
        )
        .to_series()
        .alias("reasons")
    )
