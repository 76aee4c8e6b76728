"""The synthetic payment generator: deterministic, labelled, inside its day, a few % fraud."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from fintrack_assets.core.synthetic_payments import (
    LABELLED_SCHEMA,
    generate_history,
    generate_payments,
)

DAY = dt.date(2025, 7, 3)


def test_same_arguments_same_frame_other_day_or_seed_other_payments():
    frame = generate_payments(DAY, accounts=500, seed=3)
    assert frame.schema == LABELLED_SCHEMA
    assert frame.equals(generate_payments(DAY, accounts=500, seed=3))
    other_day = generate_payments(DAY + dt.timedelta(days=1), accounts=500, seed=3)
    other_seed = generate_payments(DAY, accounts=500, seed=4)
    for other in (other_day, other_seed):
        assert not frame.select("ts", "amount").equals(other.select("ts", "amount"))
    # The same accounts live in the same places on every day.
    homes = frame.select("account_id", "lat", "lon").unique()
    homes_next = other_day.select("account_id", "lat", "lon").unique()
    assert (
        homes.join(homes_next, on="account_id")
        .filter((pl.col("lat") != pl.col("lat_right")) | (pl.col("lon") != pl.col("lon_right")))
        .is_empty()
    )


def test_rows_are_valid_payments_of_their_day():
    frame = generate_payments(DAY, accounts=2000, per_account=5.0, seed=1)
    assert 8_000 < frame.height < 12_000  # about accounts x per_account
    assert frame.null_count().sum_horizontal().item() == 0
    assert frame["transaction_id"].is_unique().all()
    assert frame["ts"].dt.date().unique().to_list() == [DAY]
    assert frame["ts"].is_sorted()
    assert (frame["amount"] >= 0.5).all()
    assert (frame["amount"] == frame["amount"].round(2)).all()
    assert frame["currency"].unique().to_list() == ["USD"]
    fraud_share = frame["is_fraud"].cast(pl.Float64).mean()
    assert 0.01 <= fraud_share <= 0.025  # type: ignore[operator]


def test_ids_are_unique_across_days_and_history_is_the_days_concatenated():
    history = generate_history(DAY, DAY + dt.timedelta(days=2), accounts=300, seed=2)
    days = [generate_payments(DAY + dt.timedelta(days=k), 300, 5.0, 2) for k in range(3)]
    assert history.equals(pl.concat(days))
    assert history["transaction_id"].is_unique().all()
    assert generate_history(DAY, DAY - dt.timedelta(days=1)).is_empty()


def test_fraud_looks_like_its_patterns():
    frame = generate_payments(DAY, accounts=20_000, per_account=5.0, seed=5)
    fraud = frame.filter(pl.col("is_fraud") == 1)
    legit = frame.filter(pl.col("is_fraud") == 0)
    night = pl.col("ts").dt.hour().is_in([22, 23, 0, 1, 2, 3, 4, 5]).mean()
    assert fraud.select(night).item() > 2 * legit.select(night).item()
    small = (pl.col("amount") < 5).mean()  # card testing
    assert fraud.select(small).item() > 3 * legit.select(small).item()


def test_bad_arguments():
    with pytest.raises(ValueError, match="accounts"):
        generate_payments(DAY, accounts=0)
