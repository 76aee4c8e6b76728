"""Features from per-account totals and boundary days (what the warehouse returns) equal the
features from the whole raw history, on random books; the plan's days worked out by hand."""

from __future__ import annotations

import datetime as dt
import random

import polars as pl
import pytest

from fintrack_assets.core.fraud_features import (
    FEATURES,
    SUMMARY_SCHEMA,
    history_plan,
    payment_features,
    summarised_features,
)
from fintrack_assets.io_managers import payment_history
from fintrack_assets.io_managers.payment_history import PaymentHistory
from fintrack_assets.io_managers.warehouse import DuckDBWarehouse, PostgresWarehouse, Warehouse
from fintrack_assets_tests.test_fraud_features import random_payments

D = dt.date(2025, 7, 3)


def _day(n: int) -> dt.date:
    return D - dt.timedelta(days=n)


def test_the_plan_for_a_30_day_look_back_by_hand():
    plan = history_plan(D, 30)
    assert plan.raw_days == (_day(30), _day(7), _day(1))
    assert plan.week == (_day(6), _day(1))  # D-6 .. D-2
    assert plan.month == (_day(29), _day(7))  # D-29 .. D-8
    assert plan.merchants == (_day(29), D)


@pytest.mark.parametrize(
    ("days", "raw", "week", "month"),
    [
        (1, (1,), (1, 1), (1, 1)),  # everything is D-1, raw
        (2, (2, 1), (1, 1), (2, 2)),
        (7, (7, 1), (6, 1), (7, 7)),
        (8, (8, 7, 1), (6, 1), (7, 7)),
        (45, (45, 30, 7, 1), (6, 1), (29, 7)),
    ],
)
def test_the_plan_for_other_look_backs_by_hand(days, raw, week, month):
    plan = history_plan(D, days)
    assert plan.raw_days == tuple(_day(n) for n in raw)
    assert plan.week == (_day(week[0]), _day(week[1]))
    assert plan.month == (_day(month[0]), _day(month[1]))


def summarise(history: pl.DataFrame, day: dt.date, history_days: int):
    """What the warehouse answers, in plain polars: the raw days' rows, each account's totals
    over the plan's week and month, the (account, merchant) pairs of its merchant days."""
    plan = history_plan(day, history_days)
    dated = history.with_columns(pl.col("ts").dt.date().alias("d"))

    def within(bounds: tuple[dt.date, dt.date]) -> pl.Expr:
        return (pl.col("d") >= bounds[0]) & (pl.col("d") < bounds[1])

    raw = dated.filter(pl.col("d").is_in(list(plan.raw_days))).drop("d")
    summed = dated.filter(within(plan.week) | within(plan.month))
    summary = summed.group_by("account_id").agg(
        within(plan.week).sum().alias("n_week"),
        pl.col("amount").filter(within(plan.week)).sum().alias("sum_week"),
        pl.len().alias("n_month"),
        pl.col("amount").sum().alias("sum_month"),
        (pl.col("amount") ** 2).sum().alias("sumsq_month"),
    )
    seen = dated.filter(within(plan.merchants)).select("account_id", "merchant").unique()
    return raw, summary.cast(SUMMARY_SCHEMA), seen  # type: ignore[arg-type]


def assert_close(got: pl.DataFrame, want: pl.DataFrame) -> None:
    """Counts and flags exact; sums and z-scores within 1e-9 relative (regrouped sums)."""
    assert got["transaction_id"].to_list() == want["transaction_id"].to_list()
    for name in FEATURES:
        if name.startswith(("count_", "first_", "is_", "log_", "distance")) or name in (
            "sum_1h",
            "sum_24h",
        ):
            assert got[name].to_list() == want[name].to_list(), name
        else:
            assert got[name].to_list() == pytest.approx(want[name].to_list(), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize(("seed", "history_days"), [(1, 30), (2, 30), (3, 7), (4, 1), (5, 3)])
def test_summaries_equal_the_whole_history_on_random_books(seed, history_days):
    rng = random.Random(seed)
    # 40 days before D, six accounts: every window full, ties at whole minutes.
    history = random_payments(rng, 3000, D - dt.timedelta(days=40), 40, "h")
    today = random_payments(rng, 400, D, 1, "t").sample(fraction=1.0, shuffle=True, seed=seed)
    raw, summary, seen = summarise(history, D, history_days)
    got = summarised_features(today, raw, summary, seen, history_days)
    assert_close(got, payment_features(today, history, history_days))


def test_accounts_without_history_and_extra_raw_rows_change_nothing():
    rng = random.Random(7)
    history = random_payments(rng, 1500, D - dt.timedelta(days=35), 35, "h")
    today = random_payments(rng, 200, D, 1, "t").with_columns(
        pl.when(pl.col("transaction_id").str.ends_with("3"))
        .then(pl.lit("new"))
        .otherwise(pl.col("account_id"))
        .alias("account_id")
    )
    raw, summary, seen = summarise(history, D, 30)
    # Rows of a summed day passed as raw as well are ignored (they are in the totals).
    extra = history.filter(pl.col("ts").dt.date() == _day(3))
    got = summarised_features(today, pl.concat([raw, extra]), summary, seen, 30)
    assert_close(got, payment_features(today, history, 30))


def test_a_range_is_refused_one_day_at_a_time():
    rng = random.Random(8)
    two = random_payments(rng, 20, D, 2, "t")
    raw, summary, seen = summarise(two.head(0), D, 30)
    with pytest.raises(ValueError, match="one day at a time"):
        summarised_features(two, raw, summary, seen)


@pytest.fixture(params=["duckdb", "postgresql"])
def warehouse(request, tmp_path) -> Warehouse:
    if request.param == "duckdb":
        return DuckDBWarehouse(str(tmp_path / "warehouse.duckdb"))
    return PostgresWarehouse(request.getfixturevalue("postgres_url"))


@pytest.mark.parametrize(
    ("shards", "once", "split"),
    [(1, False, False), (3, False, False), (3, True, False), (3, True, True)],
)
def test_the_warehouse_answers_equal_the_whole_history(
    warehouse, shards, once, split, tmp_path, monkeypatch
):
    """Random books stored day by day as payment_transactions is; the warehouse's compact
    answers, shard by shard, give the features of the whole raw history; with `once`, the
    look-back totals and pairs are read once for the day and handed to every shard (as
    fraud_predictions does); with `split`, the day and its raw days are read once, in small
    batches, into shard files that the shards read (as fraud_predictions does for a day of
    more than one shard)."""
    monkeypatch.setattr(payment_history, "SPILL_ROWS", 97)
    monkeypatch.setattr(payment_history, "SPILL_BYTES", 3000)
    rng = random.Random(11)
    history = random_payments(rng, 3000, D - dt.timedelta(days=35), 35, "h")
    today = random_payments(rng, 400, D, 1, "t")
    stored = pl.concat([history, today]).with_columns(pl.col("ts").dt.date().alias("date"))
    first = D - dt.timedelta(days=35)
    warehouse.replace_window("payment_transactions", stored, "date", first, D + dt.timedelta(1))
    reads = PaymentHistory(warehouse)
    behind = reads.look_back(D, 30) if once else None
    spill = reads.split(D, 30, shards, tmp_path / "spill") if split else None
    parts = [reads.features(D, 30, (k, shards), behind, spill) for k in range(shards)]
    assert sum(part[0].height for part in parts) == today.height
    stored_today = pl.concat([part[0] for part in parts]).sort("transaction_id")
    assert stored_today.equals(today.select(stored_today.columns).sort("transaction_id"))
    got = pl.concat([features for _, features in parts]).sort("transaction_id")
    want = payment_features(today, history, 30).sort("transaction_id")
    assert_close(got, want)
    assert reads.day_counts([D, D - dt.timedelta(days=1), D + dt.timedelta(1)]) == {
        D: today.height,
        D - dt.timedelta(days=1): history.filter(
            pl.col("ts").dt.date() == D - dt.timedelta(days=1)
        ).height,
    }
