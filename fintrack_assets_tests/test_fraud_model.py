"""The shipped logistic fraud model: scoring checked by hand, and against fresh synthetic data."""

from __future__ import annotations

import datetime as dt
import json
import math

import polars as pl
import pytest

from fintrack_assets.core.fraud_features import FEATURES, payment_features
from fintrack_assets.core.fraud_model import SCORE_SCHEMA, FraudModel
from fintrack_assets.core.synthetic_payments import generate_history, generate_payments

TINY = {
    "model_version": "tiny-1",
    "features": ["a", "b", "c"],
    "mean": [1.0, 0.0, 10.0],
    "scale": [2.0, 1.0, 5.0],
    "coef": [0.5, -1.0, 2.0],
    "intercept": -1.0,
    "threshold": 0.5,
    "trained_on": {"by": "hand"},
    "metrics": {},
}


@pytest.fixture
def tiny(tmp_path) -> FraudModel:
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY))
    return FraudModel.load(path)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_scores_match_a_hand_computation(tiny):
    frame = pl.DataFrame(
        {
            "transaction_id": ["x", "y", "z", "w"],
            "a": [5.0, 1.0, -3.0, 1.0],
            "b": [0.0, 2.0, 1.0, 0.0],
            "c": [10.0, 15.0, 0.0, 30.0],
            "extra": ["ignored"] * 4,
        }
    )
    out = tiny.score(frame)
    assert out.schema == SCORE_SCHEMA
    # x: z = (2, 0, 0), contributions (1, 0, 0) -> logit 0.0
    # y: z = (0, 2, 1), contributions (0, -2, 2) -> logit -1.0
    # z: z = (-2, 1, -2), contributions (-1, -1, -4) -> logit -7.0
    # w: z = (0, 0, 4), contributions (0, 0, 8) -> logit 7.0
    expected = [sigmoid(0.0), sigmoid(-1.0), sigmoid(-7.0), sigmoid(7.0)]
    assert out["fraud_score"].to_list() == pytest.approx(expected, rel=1e-12)
    assert out["is_fraud"].to_list() == [True, False, False, True]  # 0.5 >= 0.5 is fraud
    assert out["reasons"].to_list() == ["a", "c", "", "c"]
    assert out["transaction_id"].to_list() == ["x", "y", "z", "w"]
    assert out["model_version"].unique().to_list() == ["tiny-1"]


def test_reasons_are_the_top_three_positive_contributions_largest_first():
    model = FraudModel.from_dict(
        TINY
        | {
            "features": ["f1", "f2", "f3", "f4", "f5"],
            "mean": [0.0] * 5,
            "scale": [1.0] * 5,
            "coef": [1.0, 2.0, 3.0, 1.0, 1.0],
        }
    )
    frame = pl.DataFrame(
        {
            "transaction_id": ["p", "tie"],
            "f1": [1.0, 2.0],
            "f2": [1.0, 1.0],  # contributes 2 in both rows
            "f3": [1.0, -1.0],
            "f4": [0.5, 2.0],
            "f5": [-1.0, 2.0],
        }
    )
    # p: contributions 1, 2, 3, 0.5, -1 -> f3, f2, f1
    # tie: contributions 2, 2, -3, 2, 2 -> four-way tie, broken by feature order
    assert model.score(frame)["reasons"].to_list() == ["f3,f2,f1", "f1,f2,f4"]


def test_a_missing_value_counts_as_the_mean(tiny):
    frame = pl.DataFrame(
        {"transaction_id": ["n"], "a": [None], "b": [float("nan")], "c": [15.0]},
        schema={"transaction_id": pl.String, "a": pl.Float64, "b": pl.Float64, "c": pl.Float64},
    )
    out = tiny.score(frame)
    assert out["fraud_score"][0] == pytest.approx(sigmoid(-1.0 + 2.0))
    assert out["reasons"][0] == "c"


def test_extreme_logits_do_not_overflow(tiny):
    frame = pl.DataFrame(
        {"transaction_id": ["hi", "lo"], "a": [0.0] * 2, "b": [0.0] * 2, "c": [1e6, -1e6]}
    )
    assert tiny.score(frame)["fraud_score"].to_list() == [1.0, 0.0]


def test_missing_feature_columns_are_named(tiny):
    with pytest.raises(ValueError, match=r"lacks column\(s\): b, c"):
        tiny.score(pl.DataFrame({"transaction_id": ["x"], "a": [1.0]}))
    with pytest.raises(ValueError, match="transaction_id"):
        tiny.score(pl.DataFrame({"a": [1.0], "b": [1.0], "c": [1.0]}))


def test_an_empty_frame_scores_to_an_empty_frame(tiny):
    empty = pl.DataFrame(
        schema={"transaction_id": pl.String, "a": pl.Float64, "b": pl.Float64, "c": pl.Float64}
    )
    out = tiny.score(empty)
    assert out.is_empty() and out.schema == SCORE_SCHEMA


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"coef": [1.0]}, "coef"),
        ({"scale": [1.0, 0.0, 1.0]}, "scale"),
        ({"threshold": 1.5}, "threshold"),
        ({"features": ["a", "a", "c"]}, "distinct"),
        ({"mean": [1.0, float("nan"), 1.0]}, "mean"),
    ],
)
def test_an_inconsistent_model_is_refused(change, message):
    with pytest.raises(ValueError, match=message):
        FraudModel.from_dict(TINY | change)
    incomplete = {k: v for k, v in TINY.items() if k != "intercept"}
    with pytest.raises(ValueError, match="intercept"):
        FraudModel.from_dict(incomplete)


def test_the_shipped_model_round_trips_and_uses_the_features():
    model = FraudModel.load()
    assert model.features == FEATURES
    assert model.model_version.startswith("logreg-")
    assert FraudModel.from_dict(json.loads(json.dumps(model.to_dict()))) == model
    assert 0.0 < model.threshold < 1.0
    assert model.metrics["auc"] > 0.9


def rank_auc(scores: list[float], labels: list[int]) -> float:
    """Mann-Whitney AUC: the chance a fraud row outscores a legit one (ties count half)."""
    ranked = sorted(zip(scores, labels, strict=True))
    rank_sum, k = 0.0, 0
    while k < len(ranked):
        j = k
        while j < len(ranked) and ranked[j][0] == ranked[k][0]:
            j += 1
        average_rank = (k + 1 + j) / 2  # ranks k+1 .. j share their average
        rank_sum += average_rank * sum(label for _, label in ranked[k:j])
        k = j
    positives = sum(labels)
    negatives = len(labels) - positives
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def test_rank_auc_on_a_hand_example():
    # fraud 0.9 beats both legit; fraud 0.4 beats 0.2 and ties 0.4: (2 + 1 + 0.5) / 4
    assert rank_auc([0.9, 0.4, 0.4, 0.2], [1, 1, 0, 0]) == pytest.approx(3.5 / 4)


def test_the_shipped_model_ranks_fraud_above_legit_on_unseen_data():
    # A seed and dates the training script never used.
    day = dt.date(2025, 9, 20)
    history = generate_history(
        day - dt.timedelta(days=14),
        day - dt.timedelta(days=1),
        accounts=3000,
        per_account=4.0,
        seed=12345,
    )
    today = generate_payments(day, accounts=3000, per_account=4.0, seed=12345)
    scored = FraudModel.load().score(payment_features(today, history))
    labels = today["is_fraud"].to_list()
    scores = scored["fraud_score"].to_list()
    assert 50 < sum(labels) < 400
    fraud = [s for s, y in zip(scores, labels, strict=True) if y]
    legit = [s for s, y in zip(scores, labels, strict=True) if not y]
    assert sum(fraud) / len(fraud) > 5 * sum(legit) / len(legit)
    assert rank_auc(scores, labels) > 0.8
