"""The holdings engine on hand-worked cases (core/holdings.py, no Dagster)."""

import datetime as dt

import polars as pl
import pytest

from fintrack_assets.core.holdings import holdings
from fintrack_assets.core.trades import TRADE_SCHEMA

D = dt.date
# Five consecutive NYSE sessions (Mon-Fri, no holiday).
MON, TUE, WED, THU, FRI = (D(2025, 3, d) for d in (3, 4, 5, 6, 7))
END = D(2025, 3, 8)


def trades(*rows: tuple) -> pl.DataFrame:
    """(trade_id, date, action, symbol, quantity, price, fees) in portfolio P1."""
    return pl.DataFrame(
        [
            {
                "trade_id": t,
                "portfolio_id": "P1",
                "date": day,
                "symbol": symbol,
                "action": action,
                "quantity": float(quantity),
                "price": float(price),
                "fees": float(fees),
                "currency": "USD",
            }
            for t, day, action, symbol, quantity, price, fees in rows
        ],
        schema=TRADE_SCHEMA,
    )


def prices(
    symbol: str,
    closes: list[float],
    split_on: D | None = None,
    ratio: float = 1.0,
    dividend_on: D | None = None,
    dividend: float = 0.0,
) -> pl.DataFrame:
    days = [MON, TUE, WED, THU, FRI]
    return pl.DataFrame(
        {
            "symbol": [symbol] * 5,
            "date": days,
            "close": closes,
            "split_ratio": [ratio if d == split_on else 1.0 for d in days],
            "dividend": [dividend if d == dividend_on else 0.0 for d in days],
        }
    )


def row(frame: pl.DataFrame, day: D, symbol: str) -> dict:
    [found] = frame.filter((pl.col("date") == day) & (pl.col("symbol") == symbol)).rows(named=True)
    return found


def test_a_split_keeps_the_basis_and_a_sell_realises_against_it():
    # buy 10 @ 100; 2:1 split on Tuesday -> 20 shares, basis 1,000, avg cost 50;
    # sell 5 @ 60 on Wednesday -> basis 750, realised 5 x 60 - 5 x 50 = 50.
    t = trades(
        ("d", MON, "DEPOSIT", None, 2000, 1, 0),
        ("b", MON, "BUY", "ABC", 10, 100, 0),
        ("s", WED, "SELL", "ABC", 5, 60, 0),
    )
    p = prices("ABC", [101, 52, 61, 62, 63], split_on=TUE, ratio=2.0)
    daily = holdings(t, p, MON, END).daily
    tue, wed = row(daily, TUE, "ABC"), row(daily, WED, "ABC")
    assert (tue["quantity"], tue["cost_basis"], tue["avg_cost"]) == (20, 1000, 50)
    assert tue["market_value"] == 20 * 52 and tue["unrealized_pnl"] == 20 * 52 - 1000
    assert (wed["quantity"], wed["cost_basis"], wed["avg_cost"]) == (15, 750, 50)
    assert wed["realized_pnl"] == 50
    cash = row(daily, WED, "CASH")
    assert cash["quantity"] == 2000 - 1000 + 300
    assert cash["realized_pnl"] == 50
    assert row(daily, WED, "ABC")["weight"] + cash["weight"] == pytest.approx(1.0)


def test_fees_on_both_sides_go_to_the_basis_and_against_the_proceeds():
    # buy 10 @ 100 + 5 fee -> basis 1,005; sell 4 @ 110 - 3 fee: removes 4/10 of the basis
    # (402), proceeds 437, realised 35. Cash: 5,000 - 1,005 + 437.
    t = trades(
        ("d", MON, "DEPOSIT", None, 5000, 1, 0),
        ("b", MON, "BUY", "ABC", 10, 100, 5),
        ("s", TUE, "SELL", "ABC", 4, 110, 3),
    )
    result = holdings(t, prices("ABC", [100, 110, 110, 110, 110]), MON, END)
    tue = row(result.daily, TUE, "ABC")
    assert tue["cost_basis"] == pytest.approx(603) and tue["avg_cost"] == pytest.approx(100.5)
    assert tue["realized_pnl"] == pytest.approx(35)
    assert row(result.daily, TUE, "CASH")["quantity"] == pytest.approx(5000 - 1005 + 437)
    flows = result.cash_flows.filter(pl.col("date") == TUE).row(0, named=True)
    assert (flows["sells"], flows["fees"], flows["buys"]) == (440, 3, 0)


def test_a_dividend_on_a_split_day_is_paid_on_the_split_shares_held_the_day_before():
    # 10 shares; Wednesday: 2:1 split and 0.5 per (new) share -> 20 x 0.5 = 10.
    # Shares bought on the ex-date itself earn nothing.
    t = trades(
        ("d", MON, "DEPOSIT", None, 2000, 1, 0),
        ("b", MON, "BUY", "ABC", 10, 100, 0),
        ("b2", WED, "BUY", "ABC", 4, 50, 0),
    )
    p = prices(
        "ABC", [100, 100, 50, 50, 50], split_on=WED, ratio=2.0, dividend_on=WED, dividend=0.5
    )
    daily = holdings(t, p, MON, END).daily
    wed = row(daily, WED, "ABC")
    assert (wed["quantity"], wed["dividends"], wed["cost_basis"]) == (24, 10, 1200)
    assert row(daily, WED, "CASH")["quantity"] == 2000 - 1000 + 10 - 200
    assert row(daily, FRI, "CASH")["dividends"] == 10


def test_a_closed_position_shows_on_its_last_day_then_drops_out_and_can_reopen():
    t = trades(
        ("d", MON, "DEPOSIT", None, 1000, 1, 0),
        ("b", MON, "BUY", "ABC", 10, 10, 0),
        ("s", TUE, "SELL", "ABC", 10, 12, 0),
        ("b2", THU, "BUY", "ABC", 5, 11, 0),
    )
    daily = holdings(t, prices("ABC", [10, 12, 12, 11, 11]), MON, END).daily
    abc = daily.filter(pl.col("symbol") == "ABC")
    assert abc["date"].to_list() == [MON, TUE, THU, FRI]
    assert row(daily, TUE, "ABC")["quantity"] == 0 and row(daily, TUE, "ABC")["realized_pnl"] == 20
    assert row(daily, WED, "CASH")["realized_pnl"] == 20
    thu = row(daily, THU, "ABC")
    assert (thu["quantity"], thu["avg_cost"], thu["realized_pnl"]) == (5, 11, 20)


def test_fifo_and_average_cost_split_the_same_total_differently_until_closed():
    # buy 10 @ 10, buy 10 @ 20, sell 10 @ 25: average removes 150 (realised 100), FIFO
    # removes the first lot, 100 (realised 150). Selling the rest: both total 200.
    t = trades(
        ("b1", MON, "BUY", "ABC", 10, 10, 0),
        ("b2", TUE, "BUY", "ABC", 10, 20, 0),
        ("s1", WED, "SELL", "ABC", 10, 25, 0),
        ("s2", THU, "SELL", "ABC", 10, 25, 0),
    )
    p = prices("ABC", [10, 20, 25, 25, 25])
    average = holdings(t, p, MON, END, method="average").daily
    fifo = holdings(t, p, MON, END, method="fifo").daily
    assert row(average, WED, "ABC")["realized_pnl"] == 100
    assert row(fifo, WED, "ABC")["realized_pnl"] == 150
    assert row(average, WED, "ABC")["avg_cost"] == 15 and row(fifo, WED, "ABC")["avg_cost"] == 20
    assert row(average, THU, "ABC")["realized_pnl"] == row(fifo, THU, "ABC")["realized_pnl"] == 200


def test_an_oversell_is_refused_and_changes_nothing():
    t = trades(
        ("b", MON, "BUY", "ABC", 10, 10, 0),
        ("s", TUE, "SELL", "ABC", 11, 12, 0),
    )
    result = holdings(t, prices("ABC", [10, 12, 12, 12, 12]), MON, END)
    assert result.oversold.rows() == [("s", 10.0)]
    assert row(result.daily, FRI, "ABC")["quantity"] == 10


def test_cash_reconciles_with_the_flows_and_value_is_positions_plus_cash_every_day():
    t = trades(
        ("d", MON, "DEPOSIT", None, 10_000, 1, 0),
        ("b", MON, "BUY", "ABC", 30, 100, 4),
        ("b2", TUE, "BUY", "XYZ", 50, 20, 2),
        ("f", WED, "FEE", None, 15, 1, 0),
        ("s", THU, "SELL", "ABC", 10, 105, 4),
        ("w", FRI, "WITHDRAWAL", None, 500, 1, 0),
    )
    p = pl.concat(
        [
            prices("ABC", [100, 101, 102, 105, 104], dividend_on=WED, dividend=1.0),
            prices("XYZ", [20, 21, 19, 20, 22]),
        ]
    )
    result = holdings(t, p, MON, END)
    flows = result.cash_flows.sort("date")
    expected_cash = 0.0
    for day, f in zip([MON, TUE, WED, THU, FRI], flows.iter_rows(named=True), strict=True):
        assert f["date"] == day
        expected_cash += (
            f["deposits"] - f["withdrawals"] - f["buys"] + f["sells"] + f["dividends"] - f["fees"]
        )
        cash = row(result.daily, day, "CASH")
        assert cash["quantity"] == pytest.approx(expected_cash)
        on_day = result.daily.filter(pl.col("date") == day)
        assert on_day["weight"].sum() == pytest.approx(1.0)
    # by hand: 10,000 - 3,004 - 1,002 + 30 (dividend on 30 ABC) - 15 + 1,046 - 500
    assert expected_cash == pytest.approx(6555)


def test_a_window_equals_its_sessions_one_by_one():
    t = trades(
        ("d", MON, "DEPOSIT", None, 5000, 1, 0),
        ("b", MON, "BUY", "ABC", 10, 100, 1),
        ("s", WED, "SELL", "ABC", 4, 104, 1),
        ("b2", THU, "BUY", "ABC", 2, 98, 1),
    )
    p = prices("ABC", [100, 50, 52, 49, 50], split_on=TUE, ratio=2.0, dividend_on=THU, dividend=0.2)
    whole = holdings(t, p, MON, END).daily
    days = [MON, TUE, WED, THU, FRI]
    one_by_one = pl.concat(holdings(t, p, day, day + dt.timedelta(days=1)).daily for day in days)
    assert whole.equals(one_by_one)


def test_a_month_reports_its_snapshot_flows_and_a_return_without_the_deposit():
    from fintrack_assets.core.holdings import monthly

    feb28 = D(2025, 2, 28)
    t = trades(
        ("d1", feb28, "DEPOSIT", None, 1000, 1, 0),
        ("b", feb28, "BUY", "ABC", 5, 100, 0),
        ("d2", TUE, "DEPOSIT", None, 500, 1, 0),
        ("s", WED, "SELL", "ABC", 1, 121, 2),
    )
    p = pl.DataFrame(
        {
            "symbol": ["ABC"] * 4,
            "date": [feb28, MON, TUE, WED],
            "close": [100.0, 110.0, 110.0, 121.0],
            "split_ratio": [1.0] * 4,
            "dividend": [0.0, 0.0, 0.5, 0.0],
        }
    )
    result = holdings(t, p, feb28, THU)
    march = monthly(result.daily, result.cash_flows, D(2025, 3, 1))
    cash, abc = (
        march.filter(pl.col("symbol") == "CASH").row(0, named=True),
        march.filter(pl.col("symbol") == "ABC").row(0, named=True),
    )
    # Values by hand: Feb 28 1,000; Mar 3 500 + 550 = 1,050; Mar 4 (dividend 2.5 on 5 shares,
    # deposit 500) 1,002.5 + 550 = 1,552.5; Mar 5 1,002.5 + 119 + 4 x 121 = 1,605.5.
    expected = (1050 / 1000) * (1552.5 / (1050 + 500)) * (1605.5 / 1552.5) - 1
    assert cash["return_month"] == pytest.approx(expected)
    assert cash["portfolio_value"] == pytest.approx(1605.5)
    assert (cash["net_flows_month"], cash["fees_month"]) == (500, 2)
    assert cash["dividends_month"] == pytest.approx(2.5)
    assert abc["realized_pnl_month"] == pytest.approx(121 - 2 - 100)
    assert (abc["date"], abc["quantity"], abc["month"]) == (WED, 4, D(2025, 3, 1))


def test_the_demo_sample_meets_a_split_and_dividends_and_never_oversells():
    from fintrack_assets.core.sample_trades import sample_trades
    from fintrack_assets.core.synthetic import generate_ohlcv
    from fintrack_assets.core.universe import load_universe

    start, end = D(2026, 5, 22), D(2026, 11, 21)
    bars = generate_ohlcv(load_universe("sample"), start, end)
    sample = sample_trades(bars)
    assert sample.equals(sample_trades(bars))
    assert set(sample["portfolio_id"]) == {"INCOME", "GROWTH", "TRADER"}
    result = holdings(sample, bars, start, end)
    assert result.oversold.is_empty()
    last = result.daily.filter(pl.col("date") == result.daily["date"].max())
    splits = bars.filter(pl.col("split_ratio") != 1.0)
    growth = sample.filter((pl.col("portfolio_id") == "GROWTH") & (pl.col("action") == "BUY"))
    [(symbol, bought)] = growth.select("symbol", "date").rows()
    assert splits.filter((pl.col("symbol") == symbol) & (pl.col("date") > bought)).height == 1
    income = last.filter((pl.col("portfolio_id") == "INCOME") & (pl.col("symbol") == "CASH"))
    assert income["dividends"][0] > 0


def _random_book(seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Three portfolios trading four symbols over 40 sessions with forward and reverse splits,
    dividends (some on split days), same-day trades, fractional shares, sells of everything
    held (closes and reopens) and oversells."""
    import numpy as np

    from fintrack_assets.core.calendar import sessions_between

    rng = np.random.default_rng(seed)
    days = sessions_between(D(2025, 1, 2), D(2025, 3, 3))[:40]
    symbols = ["AAA", "BBB", "CCC", "DDD"]
    ratios = {(s, days[i]): r for s, i, r in [("AAA", 8, 2.0), ("BBB", 15, 0.1), ("CCC", 20, 3.0)]}
    ratios[("AAA", days[30])] = 1.5
    bars = pl.DataFrame(
        [
            (
                s,
                d,
                float(rng.uniform(5, 200)),
                ratios.get((s, d), 1.0),
                float(rng.choice([0.0, 0.5])) if rng.random() < 0.1 or (s, d) in ratios else 0.0,
            )
            for s in symbols
            for d in days
        ],
        schema=["symbol", "date", "close", "split_ratio", "dividend"],
        orient="row",
    )
    close = {(s, d): c for s, d, c, _, _ in bars.iter_rows()}
    rows, held = [], {}
    for n in range(160):
        portfolio = f"P{rng.integers(3)}"
        day = days[int(rng.integers(len(days)))]
        symbol = symbols[int(rng.integers(4))]
        rows.append((n, portfolio, day, symbol))
    rows.sort(key=lambda r: (r[2], r[0]))
    book = []
    for n, portfolio, day, symbol in rows:
        # the generator's own split-adjusted view of what is held, for sells of everything
        key = (portfolio, symbol)
        if key in held:
            since, shares = held[key]
            for d in days:
                if since < d <= day:
                    shares *= ratios.get((symbol, d), 1.0)
            held[key] = (day, shares)
        draw = rng.random()
        shares = held.get(key, (day, 0.0))[1]
        if draw < 0.5 or shares <= 0:
            action, quantity = "BUY", float(rng.choice([10, 25, 7.5, 100]))
            held[key] = (day, shares + quantity)
        elif draw < 0.7:
            action, quantity = "SELL", shares  # everything: the position closes
            held[key] = (day, 0.0)
        elif draw < 0.9:
            action, quantity = "SELL", round(shares * float(rng.uniform(0.1, 0.9)), 4)
            held[key] = (day, shares - quantity)
        else:
            action, quantity = "SELL", shares + 5  # refused: more than held
        book.append(
            (
                f"t{n:03d}",
                portfolio,
                day,
                symbol,
                action,
                quantity,
                close[symbol, day],
                float(rng.choice([0.0, 1.0, 2.5])),
                "USD",
            )
        )
    trades_frame = pl.DataFrame(book, schema=TRADE_SCHEMA, orient="row")
    return trades_frame, bars


@pytest.mark.parametrize("method", ["average", "fifo"])
@pytest.mark.parametrize("seed", range(6))
def test_the_vectorised_replay_equals_the_event_loop(seed: int, method: str) -> None:
    from fintrack_assets.core.holdings import replay
    from fintrack_assets_tests.holdings_reference import reference_replay

    book, bars = _random_book(seed)
    states, cash, oversold = replay(book, bars, method)
    want_states, want_cash, want_oversold = reference_replay(book, bars, method)

    assert want_oversold.height > 0 and (want_states["quantity"] == 0).any()
    assert sorted(oversold["trade_id"]) == sorted(want_oversold["trade_id"])
    keys = ["portfolio_id", "symbol", "date"]
    joined = want_states.join(states, on=keys, how="full", suffix="_got", coalesce=True)
    assert joined.height == want_states.height == states.height
    for column in ("quantity", "cost_basis", "realized_pnl", "dividends"):
        assert joined[f"{column}_got"].to_list() == pytest.approx(
            joined[column].to_list(), rel=1e-9, abs=1e-6
        ), column
    sums = ["date", "portfolio_id", "kind"]
    cash_joined = (
        want_cash.group_by(sums)
        .agg(pl.col("amount").sum())
        .join(cash.group_by(sums).agg(pl.col("amount").sum()), on=sums, how="full", coalesce=True)
    )
    assert cash_joined["amount_right"].to_list() == pytest.approx(
        cash_joined["amount"].to_list(), rel=1e-9, abs=1e-6
    )
