"""Portfolio risk analytics (core/risk.py) against hand values and plain-numpy references."""

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from fintrack_assets.core.calendar import sessions_between
from fintrack_assets.core.holdings import external_flows, holdings
from fintrack_assets.core.risk import (
    RISK_SCHEMA,
    diversification_ratio,
    holding_correlations,
    portfolio_returns,
    portfolio_risk,
    sector_exposure,
    symbol_returns,
    yield_changes,
)
from fintrack_assets.core.trades import TRADE_SCHEMA

D = dt.date
SESSIONS = sessions_between(D(2023, 1, 3), D(2025, 1, 1))
MON, TUE, WED, THU, FRI = (D(2025, 3, d) for d in (3, 4, 5, 6, 7))


# ---------------------------------------------------------------------------- plain references


def ref_std(x: list[float]) -> float:
    x = np.array(x)
    return math.sqrt(((x - x.mean()) ** 2).sum() / (len(x) - 1))


def ref_drawdown(x: list[float]) -> float:
    wealth, peak, worst = 1.0, 1.0, 0.0
    for r in x:
        wealth *= 1 + r
        peak = max(peak, wealth)
        worst = min(worst, wealth / peak - 1)
    return worst


def ref_cvar(x: list[float], level: int) -> float:
    q = (100 - level) / 100
    return float(np.mean(sorted(x)[: int((len(x) - 1) * q) + 1]))


def ref_stats(r: list, b: list, rf: float = 0.0) -> dict[str, float | None]:
    """Textbook statistics for the last of a portfolio's sessions, given its returns and the
    benchmark's on its sessions up to there (None = missing)."""

    def present(xs: list) -> list[float]:
        return [x for x in xs if x is not None]

    out: dict[str, float | None] = {}
    for n in (21, 63, 252):
        xs = present(r[-n:])
        out[f"volatility_{n}d"] = ref_std(xs) * math.sqrt(252) if len(xs) >= 20 else None
    pairs = [
        (x, y) for x, y in zip(r[-90:], b[-90:], strict=True) if x is not None and y is not None
    ]
    if len(pairs) >= 20:
        x, y = np.array(pairs).T
        beta = np.cov(x, y, ddof=1)[0, 1] / np.var(y, ddof=1)
        out["beta_90d"] = beta
        out["alpha_90d"] = (1 + np.mean((x - rf) - beta * (y - rf))) ** 252 - 1
    else:
        out["beta_90d"] = out["alpha_90d"] = None
    xs = present(r[-252:])
    keys = ["sharpe_252d", "sortino_252d", "max_drawdown_252d"]
    keys += [f"{k}_{lv}_1d" for k in ("var", "cvar") for lv in (95, 99)]
    if len(xs) < 20:
        return out | dict.fromkeys(keys)
    a = np.array(xs) - rf
    out["sharpe_252d"] = a.mean() / np.std(a, ddof=1) * math.sqrt(252)
    downside = math.sqrt(np.mean(np.minimum(a, 0) ** 2)) * math.sqrt(252)
    out["sortino_252d"] = a.mean() * 252 / downside
    out["max_drawdown_252d"] = ref_drawdown(xs)
    for level in (95, 99):
        out[f"var_{level}_1d"] = float(np.percentile(xs, 100 - level))
        out[f"cvar_{level}_1d"] = ref_cvar(xs, level)
    return out


def returns_frame(series: dict[str, tuple[list[D], list, list, list[float]]]) -> pl.DataFrame:
    """portfolio_returns-shaped rows: {portfolio: (dates, returns, benchmark, values)}."""
    rows = [
        {
            "date": d,
            "portfolio_id": p,
            "market_value": v,
            "net_flow": 0.0,
            "daily_return": r,
            "benchmark_return": b,
        }
        for p, (dates, rs, bs, vs) in series.items()
        for d, r, b, v in zip(dates, rs, bs, vs, strict=True)
    ]
    return pl.DataFrame(
        rows,
        schema={
            "date": pl.Date,
            "portfolio_id": pl.String,
            "market_value": pl.Float64,
            "net_flow": pl.Float64,
            "daily_return": pl.Float64,
            "benchmark_return": pl.Float64,
        },
    )


def one(frame: pl.DataFrame, day: D, portfolio: str = "P1") -> dict:
    [row] = frame.filter((pl.col("date") == day) & (pl.col("portfolio_id") == portfolio)).rows(
        named=True
    )
    return row


def trades(*rows: tuple) -> pl.DataFrame:
    """(trade_id, date, action, symbol, quantity, price) in portfolio P1, no fees."""
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
                "fees": 0.0,
                "currency": "USD",
            }
            for t, day, action, symbol, quantity, price in rows
        ],
        schema=TRADE_SCHEMA,
    )


def bars(symbol: str, closes: list[float], splits=None, dividends=None) -> pl.DataFrame:
    days = [MON, TUE, WED, THU, FRI][: len(closes)]
    closes = [float(c) for c in closes]
    return pl.DataFrame(
        {
            "symbol": [symbol] * len(days),
            "date": days,
            "open": closes,
            "high": closes,
            "low": closes,
            "close": closes,
            "adj_close": closes,
            "volume": [1000.0] * len(days),
            "dividend": [(dividends or {}).get(d, 0.0) for d in days],
            "split_ratio": [(splits or {}).get(d, 1.0) for d in days],
        }
    )


# ---------------------------------------------------------------------------- symbol returns


def test_symbol_returns_adjust_for_splits_and_dividends_in_the_holdings_order() -> None:
    # A 2:1 split on WED (51 as traded = 102 before it), a 0.5 dividend per new share on THU.
    prices = bars("AAA", [100, 102, 51, 51.5, 52], splits={WED: 2.0}, dividends={THU: 0.5})
    got = symbol_returns(prices).sort("date")["return"].to_list()
    assert got[0] is None
    assert got[1:] == pytest.approx([102 / 100 - 1, 2 * 51 / 102 - 1, 52 / 51 - 1, 52 / 51.5 - 1])


def test_a_fully_invested_portfolio_earns_its_symbol_return() -> None:
    """The holdings engine and symbol_returns agree on splits and dividends: one stock bought
    with all the cash returns exactly the stock's total return (dividends land in cash)."""
    prices = bars("AAA", [100, 102, 51, 51.5, 52], splits={WED: 2.0}, dividends={THU: 0.5})
    book = trades(("t1", MON, "DEPOSIT", None, 10_000, 1), ("t2", MON, "BUY", "AAA", 100, 100))
    daily = holdings(book, prices, MON, D(2025, 3, 8)).daily
    got = portfolio_returns(daily, external_flows(book), symbol_returns(prices))
    expected = symbol_returns(prices).sort("date")["return"].to_list()
    # Until the dividend lands in cash, which then earns nothing.
    assert got["daily_return"].to_list()[1:4] == pytest.approx(expected[1:4])
    assert got["daily_return"][4] == pytest.approx((200 * 52 + 100) / (200 * 51.5 + 100) - 1)
    assert got["benchmark_return"].to_list() == [None] * 5  # no SPY in the data


# ---------------------------------------------------------------------------- portfolio returns


def test_a_deposit_shows_no_jump_in_return() -> None:
    prices = pl.concat(
        [bars("AAA", [100, 100, 110, 110, 99]), bars("SPY", [400, 404, 404, 400, 400])]
    )
    book = trades(
        ("t1", MON, "DEPOSIT", None, 10_000, 1),
        ("t2", MON, "BUY", "AAA", 100, 100),
        ("t3", TUE, "DEPOSIT", None, 1_000_000, 1),  # a flat day for AAA
        ("t4", THU, "WITHDRAWAL", None, 500_000, 1),
    )
    daily = holdings(book, prices, MON, D(2025, 3, 8)).daily
    got = portfolio_returns(daily, external_flows(book), symbol_returns(prices))
    rows = {r["date"]: r for r in got.rows(named=True)}
    assert rows[MON]["daily_return"] is None  # the portfolio's first day
    assert rows[TUE]["net_flow"] == 1_000_000
    assert rows[TUE]["market_value"] == pytest.approx(1_010_000)
    assert rows[TUE]["daily_return"] == pytest.approx(0.0, abs=1e-15)
    # WED: AAA +10% on 10,000 of 1,010,000 invested.
    assert rows[WED]["daily_return"] == pytest.approx(1_011_000 / 1_010_000 - 1)
    # THU: flat, 500,000 withdrawn at the start of the day.
    assert rows[THU]["net_flow"] == -500_000
    assert rows[THU]["daily_return"] == pytest.approx(0.0, abs=1e-15)
    assert rows[FRI]["daily_return"] == pytest.approx((511_000 - 1_100) / 511_000 - 1)
    assert rows[FRI]["net_flow"] == 0.0
    assert rows[TUE]["benchmark_return"] == pytest.approx(0.01)
    assert rows[THU]["benchmark_return"] == pytest.approx(400 / 404 - 1)


def test_no_return_when_the_starting_value_is_not_positive() -> None:
    prices = bars("AAA", [100, 100, 100, 100, 100])
    book = trades(
        ("t1", MON, "DEPOSIT", None, 1_000, 1),
        ("t2", TUE, "WITHDRAWAL", None, 1_000, 1),  # empty from TUE
        ("t3", THU, "DEPOSIT", None, 500, 1),
    )
    daily = holdings(book, prices, MON, D(2025, 3, 8)).daily
    got = portfolio_returns(daily, external_flows(book), symbol_returns(prices))
    assert got["daily_return"].to_list() == [None, None, None, 0.0, 0.0]


# ---------------------------------------------------------------------------- portfolio risk

HAND = [0.01, -0.02, 0.03, -0.04, 0.005, 0.012, -0.007, 0.02, -0.015, 0.0, 0.008]
HAND += [-0.03, 0.025, -0.001, 0.004, -0.05, 0.018, 0.011, -0.009, 0.006, 0.002]  # 21 returns


def test_var_and_cvar_by_hand() -> None:
    dates = SESSIONS[:22]
    frame = returns_frame({"P1": (dates, [None, *HAND], [None] * 22, [1000.0] * 22)})
    got = one(portfolio_risk(frame), dates[-1])
    # Sorted: -0.05, -0.04, -0.03, ... With 21 returns the 5th percentile sits at position
    # 0.05 * 20 = 1.0: the 2nd smallest; the 1st at 0.2: 80% of the smallest + 20% of the next.
    assert got["var_95_1d"] == pytest.approx(-0.04)
    assert got["var_99_1d"] == pytest.approx(-0.05 + 0.2 * 0.01)
    assert got["cvar_95_1d"] == pytest.approx((-0.05 - 0.04) / 2)
    assert got["cvar_99_1d"] == pytest.approx(-0.05)
    assert got["var_95_1d_usd"] == pytest.approx(-40.0)
    assert got["cvar_99_1d_usd"] == pytest.approx(-50.0)
    assert got["volatility_21d"] == pytest.approx(np.std(HAND, ddof=1) * math.sqrt(252))
    assert got["max_drawdown_252d"] == pytest.approx(ref_drawdown(HAND))
    assert got["beta_90d"] is None  # no benchmark


def test_drawdown_counts_the_window_start_as_a_peak() -> None:
    returns = [-0.1] + [0.0] * 19 + [0.5]
    dates = SESSIONS[:22]
    frame = returns_frame({"P1": (dates, [None, *returns], [None] * 22, [1.0] * 22)})
    assert one(portfolio_risk(frame), dates[-1])["max_drawdown_252d"] == pytest.approx(-0.1)
    assert one(portfolio_risk(frame), dates[-2])["max_drawdown_252d"] == pytest.approx(-0.1)


def test_a_benchmark_twice_the_portfolio_has_beta_half_and_no_alpha() -> None:
    rng = np.random.default_rng(7)
    r = list(rng.normal(0.0005, 0.01, 120))
    dates = SESSIONS[:121]
    frame = returns_frame({"P1": (dates, [None, *r], [None, *(2 * x for x in r)], [1.0] * 121)})
    got = one(portfolio_risk(frame), dates[-1])
    assert got["beta_90d"] == pytest.approx(0.5, abs=1e-12)
    assert got["alpha_90d"] == pytest.approx(0.0, abs=1e-12)


def test_fewer_than_20_returns_give_nulls_and_20_use_what_there_is() -> None:
    returns = HAND[:20]
    dates = SESSIONS[:21]
    frame = returns_frame({"P1": (dates, [None, *returns], [None, *returns], [1.0] * 21)})
    risk = portfolio_risk(frame).sort("date")
    at_19, at_20 = risk.row(19, named=True), risk.row(20, named=True)
    assert all(
        at_19[c] is None for c in RISK_SCHEMA if c not in ("date", "portfolio_id", "market_value")
    )
    assert at_20["volatility_252d"] == pytest.approx(ref_std(returns) * math.sqrt(252))
    assert at_20["volatility_21d"] == pytest.approx(at_20["volatility_63d"])
    assert at_20["beta_90d"] == pytest.approx(1.0)
    assert at_20["alpha_90d"] == pytest.approx(0.0, abs=1e-15)
    assert at_20["sharpe_252d"] == pytest.approx(
        np.mean(returns) / ref_std(returns) * math.sqrt(252)
    )
    assert at_20["diversification_ratio_63d"] is None  # no holdings given


def random_portfolios() -> tuple[pl.DataFrame, dict[str, list[D]]]:
    """Three portfolios starting on different sessions, 320 sessions of benchmark, gaps in
    the benchmark and one missing portfolio return."""
    rng = np.random.default_rng(42)
    bench = {
        d: float(x) for d, x in zip(SESSIONS[:320], rng.normal(0.0004, 0.011, 320), strict=True)
    }
    bench[SESSIONS[200]] = None
    bench[SESSIONS[201]] = None
    series, spans = {}, {}
    for p, start in (("P1", 0), ("P2", 40), ("P3", 290)):
        dates = SESSIONS[start:320]
        rs = [None] + [float(x) for x in rng.normal(0.0003, 0.012, len(dates) - 1)]
        if p == "P1":
            rs[150] = None
        bs = [bench[d] for d in dates]
        series[p] = (dates, rs, bs, list(rng.uniform(1e4, 1e6, len(dates))))
        spans[p] = dates
    return returns_frame(series), spans


def test_every_row_matches_the_textbook_formulas() -> None:
    frame, spans = random_portfolios()
    rf = 0.03 / 252
    risk = portfolio_risk(frame, rf=rf)
    assert risk.height == frame.height
    assert risk.columns == list(RISK_SCHEMA)
    by_portfolio = {p: frame.filter(pl.col("portfolio_id") == p).sort("date") for p in spans}
    checked = 0
    for row in risk.rows(named=True):
        hist = by_portfolio[row["portfolio_id"]].filter(pl.col("date") <= row["date"])
        expected = ref_stats(hist["daily_return"].to_list(), hist["benchmark_return"].to_list(), rf)
        for name, value in expected.items():
            if value is None:
                assert row[name] is None, (row["date"], name)
            else:
                assert row[name] == pytest.approx(value, rel=1e-9, abs=1e-13), (row["date"], name)
                checked += 1
        if row["var_95_1d"] is not None:
            assert row["var_95_1d_usd"] == pytest.approx(row["var_95_1d"] * row["market_value"])
    assert checked > 5000


def test_a_range_equals_its_dates_computed_one_by_one() -> None:
    frame, _ = random_portfolios()
    whole = portfolio_risk(frame)
    for day in (SESSIONS[25], SESSIONS[260], SESSIONS[300], SESSIONS[319]):
        # Only what precedes the window: a different start and no later portfolio.
        history = frame.filter(
            pl.col("date").is_between(SESSIONS[max(0, SESSIONS.index(day) - 255)], day)
        )
        alone = portfolio_risk(history, since=day)
        assert alone["date"].unique().to_list() == [day]
        expected = whole.filter(pl.col("date") == day).sort("portfolio_id")
        assert alone.sort("portfolio_id").equals(expected, null_equal=True)


# ---------------------------------------------------------------------------- holdings based


def holdings_frame(rows: list[tuple[D, str, str, float]]) -> pl.DataFrame:
    """(date, portfolio_id, symbol, market_value) with quantity = market_value / 10."""
    return pl.DataFrame(
        [
            {"date": d, "portfolio_id": p, "symbol": s, "quantity": v / 10, "market_value": v}
            for d, p, s, v in rows
        ],
        schema={
            "date": pl.Date,
            "portfolio_id": pl.String,
            "symbol": pl.String,
            "quantity": pl.Float64,
            "market_value": pl.Float64,
        },
    )


def random_symbol_returns(symbols: list[str], days: int, seed: int = 3) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    market = rng.normal(0, 0.01, days)
    rows = []
    for i, s in enumerate(symbols):
        own = market * (0.5 + 0.3 * i) + rng.normal(0, 0.01, days)
        rows += [
            {"date": d, "symbol": s, "return": float(x)}
            for d, x in zip(SESSIONS[:days], own, strict=True)
        ]
    return pl.DataFrame(rows, schema={"date": pl.Date, "symbol": pl.String, "return": pl.Float64})


def test_diversification_ratio_against_a_reference() -> None:
    returns = random_symbol_returns(["AAA", "BBB", "CCC"], 100)
    returns = returns.filter(~((pl.col("symbol") == "CCC") & (pl.col("date") == SESSIONS[90])))
    day = SESSIONS[99]
    book = holdings_frame(
        [
            (day, "P1", "AAA", 3000.0),
            (day, "P1", "BBB", 1000.0),
            (day, "P1", "CASH", 5000.0),
            (day, "P2", "CCC", 2000.0),
            (day, "P2", "AAA", 2000.0),
            (day, "P3", "BBB", 700.0),
        ]
    )
    got = {
        r["portfolio_id"]: r["diversification_ratio_63d"]
        for r in diversification_ratio(book, returns).rows(named=True)
    }

    def series(symbol: str) -> dict[D, float]:
        frame = returns.filter(pl.col("symbol") == symbol)
        return dict(zip(frame["date"], frame["return"], strict=True))

    def reference(weights: dict[str, float]) -> float:
        window = SESSIONS[99 - 62 : 100]
        data = {s: series(s) for s in weights}
        common = [d for d in window if all(d in data[s] for s in weights)]
        sigmas = {s: np.std([data[s][d] for d in common], ddof=1) for s in weights}
        combined = [sum(w * data[s][d] for s, w in weights.items()) for d in common]
        return sum(w * sigmas[s] for s, w in weights.items()) / np.std(combined, ddof=1)

    assert got["P1"] == pytest.approx(reference({"AAA": 0.75, "BBB": 0.25}), rel=1e-12)
    assert got["P2"] == pytest.approx(reference({"CCC": 0.5, "AAA": 0.5}), rel=1e-12)
    assert got["P2"] > 1.0
    assert got["P3"] == pytest.approx(1.0)  # a single holding


def test_portfolio_risk_carries_the_diversification_ratio() -> None:
    returns = random_symbol_returns(["AAA", "BBB"], 80)
    days = SESSIONS[:80]
    book = holdings_frame([(d, "P1", s, 500.0) for d in days for s in ("AAA", "BBB")])
    frame = returns_frame({"P1": (days, [None] + [0.001] * 79, [None] * 80, [1000.0] * 80)})
    risk = portfolio_risk(frame, holdings_daily=book, symbol_returns=returns, since=days[70])
    expected = diversification_ratio(book, returns).filter(pl.col("date") >= days[70])
    assert (
        risk["diversification_ratio_63d"].to_list()
        == expected["diversification_ratio_63d"].to_list()
    )
    assert risk["diversification_ratio_63d"].null_count() == 0
    early = portfolio_risk(frame, holdings_daily=book, symbol_returns=returns)
    assert one(early, days[18])["diversification_ratio_63d"] is None  # 19 returns
    assert one(early, days[19])["diversification_ratio_63d"] is not None


def test_holding_correlations_match_numpy() -> None:
    returns = random_symbol_returns(["AAA", "BBB", "CCC", "DDD"], 90)
    # DDD has returns only on the last 15 sessions: too few in common with anyone.
    returns = returns.filter((pl.col("symbol") != "DDD") | (pl.col("date") >= SESSIONS[75]))
    day = SESSIONS[89]
    book = holdings_frame(
        [(day, "P1", s, 100.0) for s in ("CCC", "AAA", "BBB", "DDD", "CASH")]
        + [(day, "P2", s, 100.0) for s in ("BBB", "AAA")]
        + [(day, "P3", "AAA", 100.0)]
    )
    got = holding_correlations(book, returns)
    assert got.columns == ["date", "portfolio_id", "symbol_a", "symbol_b", "correlation"]
    assert got.filter(pl.col("portfolio_id") == "P1").height == 6  # 4 symbols: 6 pairs
    assert got.filter(pl.col("portfolio_id") == "P3").is_empty()
    assert (got["symbol_a"] < got["symbol_b"]).all()
    window = returns.filter(pl.col("date").is_between(SESSIONS[89 - 62], day))

    def values(symbol: str) -> np.ndarray:
        return window.filter(pl.col("symbol") == symbol).sort("date")["return"].to_numpy()

    for row in got.rows(named=True):
        if "DDD" in (row["symbol_a"], row["symbol_b"]):
            assert row["correlation"] is None
        else:
            expected = np.corrcoef(values(row["symbol_a"]), values(row["symbol_b"]))[0, 1]
            assert row["correlation"] == pytest.approx(expected, rel=1e-12)


def test_sector_exposure_sums_to_one_per_portfolio() -> None:
    universe = pl.DataFrame(
        {
            "symbol": ["AAPL", "MSFT", "JPM"],
            "sector": ["Information Technology"] * 2 + ["Financials"],
        }
    )
    book = holdings_frame(
        [
            (MON, "P1", "AAPL", 300.0),
            (MON, "P1", "MSFT", 200.0),
            (MON, "P1", "JPM", 250.0),
            (MON, "P1", "ZZZ", 50.0),
            (MON, "P1", "CASH", 200.0),
            (MON, "P2", "JPM", 100.0),
            (MON, "P2", "CASH", -20.0),
        ]
    ).vstack(holdings_frame([(MON, "P2", "MSFT", 0.0)]))  # closed that day: left out
    got = sector_exposure(book, universe)
    rows = {
        (r["portfolio_id"], r["sector"]): (r["market_value"], r["weight"])
        for r in got.rows(named=True)
    }
    assert rows == {
        ("P1", "Information Technology"): (500.0, 0.5),
        ("P1", "Financials"): (250.0, 0.25),
        ("P1", "Unknown"): (50.0, 0.05),
        ("P1", "Cash"): (200.0, 0.2),
        ("P2", "Financials"): (100.0, pytest.approx(1.25)),
        ("P2", "Cash"): (-20.0, pytest.approx(-0.25)),
    }
    sums = got.group_by("portfolio_id").agg(pl.col("weight").sum())["weight"].to_list()
    assert sums == pytest.approx([1.0, 1.0])


def test_results_do_not_depend_on_how_rows_are_chunked(monkeypatch: pytest.MonkeyPatch) -> None:
    import fintrack_assets.core.risk as risk

    frame, _ = random_portfolios()
    returns = random_symbol_returns(["AAA", "BBB", "CCC"], 120)
    days = SESSIONS[60:120]
    book = holdings_frame(
        [
            (d, p, s, 100.0 + i)
            for i, d in enumerate(days)
            for p in ("P1", "P2")
            for s in ("AAA", "CCC")
        ]
        + [(d, "P2", "BBB", 50.0) for d in days]
    )
    before = (
        portfolio_risk(frame),
        diversification_ratio(book, returns),
        holding_correlations(book, returns),
    )
    monkeypatch.setattr(risk, "RISK_CHUNK_ELEMENTS", 1)
    monkeypatch.setattr(risk, "CHUNK_ELEMENTS", 1)
    after = (
        portfolio_risk(frame),
        diversification_ratio(book, returns),
        holding_correlations(book, returns),
    )
    for one_chunk, row_by_row in zip(before, after, strict=True):
        assert one_chunk.equals(row_by_row, null_equal=True)


def test_holdings_statistics_of_a_date_do_not_depend_on_the_range() -> None:
    returns = random_symbol_returns(["AAA", "BBB", "CCC"], 150)
    days = SESSIONS[:150]
    book = holdings_frame(
        [(d, "P1", s, 100.0 + i) for i, d in enumerate(days) for s in ("AAA", "BBB", "CCC")]
        + [(d, "P2", s, 70.0) for d in days[100:] for s in ("BBB", "CCC")]
    )
    ratios = diversification_ratio(book, returns)
    pairs = holding_correlations(book, returns)
    for day in (days[30], days[120], days[149]):
        start = days[max(0, days.index(day) - 70)]
        recent = pl.col("date").is_between(start, day)
        alone = diversification_ratio(book.filter(recent), returns.filter(recent), since=day)
        assert alone.equals(ratios.filter(pl.col("date") == day), null_equal=True)
        alone = holding_correlations(book.filter(recent), returns.filter(recent), since=day)
        assert alone.equals(pairs.filter(pl.col("date") == day), null_equal=True)


# ---------------------------------------------------------------------------- rates sensitivity


def yields_frame(levels: dict[D, float | None]) -> pl.DataFrame:
    """treasury_yields-shaped rows: the 10-year yield in percent on each date."""
    return pl.DataFrame(
        {
            "date": list(levels),
            "yield_3m": [4.0] * len(levels),
            "yield_10y": list(levels.values()),
            "source": ["test"] * len(levels),
        },
        schema={
            "date": pl.Date,
            "yield_3m": pl.Float64,
            "yield_10y": pl.Float64,
            "source": pl.String,
        },
    )


def test_yield_changes_are_percentage_points_between_consecutive_sessions() -> None:
    # FRI 2025-03-07 -> MON 2025-03-10 is consecutive; THU is missing, so FRI has no change.
    mon_next = D(2025, 3, 10)
    got = yield_changes(yields_frame({MON: 4.25, TUE: 4.40, WED: 4.30, FRI: 4.50, mon_next: 4.45}))
    assert got.rows() == [
        (MON, None),  # nothing before it
        (TUE, pytest.approx(0.15)),
        (WED, pytest.approx(-0.10)),
        (FRI, None),  # the previous session (THU) has no yield: no change across the gap
        (mon_next, pytest.approx(-0.05)),
    ]


def test_ir_beta_is_the_percent_return_per_100bp_against_a_numpy_reference() -> None:
    """Returns = -0.07 x the yield's change (pp) + noise: about -7 % per +100 bp; exactly the
    np.polyfit slope of the window's last 90 (return, change) pairs, x 100."""
    rng = np.random.default_rng(11)
    dates = SESSIONS[:131]
    change = rng.normal(0.0, 0.06, len(dates))  # pp per day
    level = 4.0 + np.cumsum(change)
    noise = rng.normal(0.0, 0.002, len(dates))
    r = [None] + [float(x) for x in -0.07 * change[1:] + noise[1:]]
    frame = returns_frame({"P1": (dates, r, [None] * len(dates), [1.0] * len(dates))})
    risk = portfolio_risk(frame, yields=yields_frame(dict(zip(dates, level, strict=True))))
    got = one(risk, dates[-1])["ir_beta"]
    x = np.diff(level)[-90:]  # the yield's change on each of the last 90 sessions
    y = np.array(r[-90:], dtype=float)
    slope = np.polyfit(x, y, 1)[0]
    assert got == pytest.approx(100 * slope, rel=1e-9)
    assert got == pytest.approx(-7.0, abs=0.3)
    # Yields rising exactly 1 pp and the portfolio falling exactly 7 %: ir_beta = -7.0.
    exact = returns_frame(
        {"P1": (dates, [None, *(-0.07 * change[1:])], [None] * len(dates), [1.0] * len(dates))}
    )
    got = one(
        portfolio_risk(exact, yields=yields_frame(dict(zip(dates, level, strict=True)))), dates[-1]
    )
    assert got["ir_beta"] == pytest.approx(-7.0, rel=1e-9)


def test_ir_beta_drops_sessions_without_a_yield_change_pairwise() -> None:
    rng = np.random.default_rng(5)
    dates = SESSIONS[:60]
    levels: dict[D, float | None] = {
        d: float(v) for d, v in zip(dates, 3.5 + np.cumsum(rng.normal(0, 0.05, 60)), strict=True)
    }
    for gone in (10, 11, 30):  # missing sessions: no change on them or the session after
        del levels[dates[gone]]
    levels[dates[40]] = None  # a null yield is as good as missing
    r = [None] + [float(x) for x in rng.normal(0.0, 0.01, 59)]
    r[50] = None  # a missing return drops its pair too
    frame = returns_frame({"P1": (dates, r, [None] * 60, [1.0] * 60)})
    got = one(portfolio_risk(frame, yields=yields_frame(levels)), dates[-1])["ir_beta"]
    pairs = []
    for i in range(1, 60):
        today, before = levels.get(dates[i]), levels.get(dates[i - 1])
        if today is not None and before is not None and r[i] is not None:
            pairs.append((today - before, r[i]))
    x, y = np.array(pairs).T
    assert len(pairs) == 59 - 5 - 2 - 1  # 10, 11, 12, 30, 31; 40, 41; 50
    assert got == pytest.approx(100 * np.cov(x, y, ddof=1)[0, 1] / np.var(x, ddof=1), rel=1e-9)


def test_ir_beta_needs_20_pairs_and_the_yields() -> None:
    dates = SESSIONS[:30]
    r = [None] + [0.001 * (i % 7 - 3) for i in range(29)]
    frame = returns_frame({"P1": (dates, r, [None] * 30, [1.0] * 30)})
    levels = {d: 4.0 + 0.01 * (i % 5) for i, d in enumerate(dates)}
    # Only the last 19 sessions have a yield: 18 changes, too few.
    short = {d: v for d, v in levels.items() if d in dates[-19:]}
    assert one(portfolio_risk(frame, yields=yields_frame(short)), dates[-1])["ir_beta"] is None
    assert one(portfolio_risk(frame), dates[-1])["ir_beta"] is None  # no yields at all
    with_all = one(portfolio_risk(frame, yields=yields_frame(levels)), dates[-1])
    assert with_all["ir_beta"] is not None
    # A flat yield has no dispersion: no slope, null rather than inf.
    flat = {d: 4.0 for d in dates}
    assert one(portfolio_risk(frame, yields=yields_frame(flat)), dates[-1])["ir_beta"] is None


def test_ir_beta_of_a_date_does_not_depend_on_the_range() -> None:
    frame, _ = random_portfolios()
    rng = np.random.default_rng(9)
    levels = dict(zip(SESSIONS[:320], 4 + np.cumsum(rng.normal(0, 0.05, 320)), strict=True))
    yields = yields_frame({d: float(v) for d, v in levels.items()})
    whole = portfolio_risk(frame, yields=yields)
    assert whole["ir_beta"].null_count() < whole.height
    for day in (SESSIONS[260], SESSIONS[319]):
        recent = pl.col("date").is_between(SESSIONS[SESSIONS.index(day) - 255], day)
        alone = portfolio_risk(frame.filter(recent), since=day, yields=yields.filter(recent))
        expected = whole.filter(pl.col("date") == day).sort("portfolio_id")
        assert alone.sort("portfolio_id").equals(expected, null_equal=True)


# ---------------------------------------------------------------------------- sector valuation


def fundamentals_frame(rows: list[tuple[str, D, D, float | None, float]]) -> pl.DataFrame:
    """company_fundamentals-shaped rows: (symbol, period_end, filing_date, eps, shares)."""
    return pl.DataFrame(
        [
            {
                "symbol": s,
                "fiscal_period": f"{end.year}Q{(end.month + 2) // 3}",
                "period_end": end,
                "filing_date": filed,
                "revenue": 1e9,
                "net_income": 1e8,
                "eps": eps,
                "shares_outstanding": shares,
                "total_assets": 5e9,
                "total_liabilities": 2e9,
                "operating_cash_flow": 2e8,
                "source": "test",
                "fetched_at": dt.datetime(2025, 6, 1, tzinfo=dt.UTC),
            }
            for s, end, filed, eps, shares in rows
        ],
        schema_overrides={"eps": pl.Float64, "shares_outstanding": pl.Float64},
    )


QUARTERS = [D(2024, 3, 31), D(2024, 6, 30), D(2024, 9, 30), D(2024, 12, 31), D(2025, 3, 31)]
FILED = [D(2024, 5, 1), D(2024, 8, 1), D(2024, 11, 1), MON, D(2025, 5, 1)]  # MON: filed that day


def valuation_book() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    universe = pl.DataFrame(
        {
            "symbol": ["AAA", "BBB", "CCC", "DDD"],
            "sector": ["Information Technology"] * 2 + ["Financials", "Information Technology"],
        }
    )
    fundamentals = fundamentals_frame(
        # AAA: EPS 1 a quarter (TTM 4 from its fourth filing, on MON), 1,000 shares; the fifth
        # quarter (EPS 5) is filed after MON and must not count.
        [
            ("AAA", q, f, e, 1_000.0)
            for q, f, e in zip(QUARTERS, FILED, [1, 1, 1, 1, 5], strict=True)
        ]
        # BBB: TTM 2 known long before; 10,000 shares, then 8,000 in its latest quarter.
        + [("BBB", q, D(2024, 12, 1), 0.5, 10_000.0) for q in QUARTERS[:3]]
        + [("BBB", D(2023, 12, 31), D(2024, 2, 1), 0.5, 10_000.0)]
        # CCC: three quarters only: no TTM.
        + [("CCC", q, f, 3.0, 50.0) for q, f in zip(QUARTERS[:3], FILED[:3], strict=True)]
    )
    # (date, portfolio, symbol, quantity, close): market value = quantity x close.
    held = [
        ("AAA", 6.0, 100.0),  # 600: P/E 100 / 4 = 25
        ("BBB", 20.0, 20.0),  # 400: P/E 20 / 2 = 10
        ("DDD", 25.0, 10.0),  # 250: no fundamentals
        ("CCC", 10.0, 30.0),  # 300: three quarters known
        ("CASH", 100.0, 1.0),
    ]
    book = pl.DataFrame(
        [
            {
                "date": d,
                "portfolio_id": "P1",
                "symbol": s,
                "quantity": q,
                "close": c,
                "market_value": q * c,
            }
            for d in (D(2025, 2, 28), MON)
            for s, q, c in held
        ]
    )
    return book, universe, fundamentals


def test_sector_valuation_by_hand() -> None:
    book, universe, fundamentals = valuation_book()
    got = sector_exposure(book, universe, fundamentals)
    assert got.columns == [
        "date",
        "portfolio_id",
        "sector",
        "market_value",
        "weight",
        "pe_ratio",
        "market_cap",
        "valuation_coverage",
    ]
    on_mon = {r["sector"]: r for r in got.filter(pl.col("date") == MON).rows(named=True)}
    tech = on_mon["Information Technology"]
    assert tech["market_value"] == 1_250.0
    # Harmonic: 1,000 / (600 / 25 + 400 / 10) = 1,000 / 64.
    assert tech["pe_ratio"] == pytest.approx(15.625)
    # (600 x 100 x 1,000 + 400 x 20 x 10,000) / 1,000: caps of 100,000 and 200,000.
    assert tech["market_cap"] == pytest.approx(140_000.0)
    assert tech["valuation_coverage"] == pytest.approx(0.8)  # DDD's 250 of 1,250 uncovered
    fin = on_mon["Financials"]
    assert (fin["pe_ratio"], fin["market_cap"], fin["valuation_coverage"]) == (None, None, 0.0)
    cash = on_mon["Cash"]
    assert (cash["pe_ratio"], cash["market_cap"], cash["valuation_coverage"]) == (None, None, None)
    # The Friday before, AAA's fourth quarter was not filed yet: BBB alone is covered.
    friday = got.filter(
        (pl.col("date") == D(2025, 2, 28)) & (pl.col("sector") == "Information Technology")
    ).row(0, named=True)
    assert friday["pe_ratio"] == pytest.approx(10.0)
    assert friday["market_cap"] == pytest.approx(200_000.0)
    assert friday["valuation_coverage"] == pytest.approx(400 / 1_250)
    # Without fundamentals: the same sectors and weights, nothing covered.
    bare = sector_exposure(book, universe)
    assert bare.select("date", "sector", "weight").equals(got.select("date", "sector", "weight"))
    assert bare["pe_ratio"].null_count() == bare.height
    assert bare.filter(pl.col("sector") != "Cash")["valuation_coverage"].to_list() == [0.0] * 4


def test_sector_valuation_uses_the_latest_quarter_and_refuses_a_loss_as_pe() -> None:
    book, universe, fundamentals = valuation_book()
    # BBB's latest quarter (filed on MON) reports 8,000 shares and a loss of 2.5: TTM 0.5 x 3
    # - 2.5 = -1.0; AAA's TTM is 4 (600 held at P/E 25 earns 24), BBB's 400 at 20 loses 20.
    later = fundamentals_frame([("BBB", QUARTERS[3], MON, -2.5, 8_000.0)])
    got = sector_exposure(book, universe, pl.concat([fundamentals, later]))
    tech = got.filter((pl.col("date") == MON) & (pl.col("sector") == "Information Technology")).row(
        0, named=True
    )
    # Earnings yield: 600 x 4 / 100 + 400 x (-1) / 20 = 24 - 20 = 4 -> P/E 1,000 / 4.
    assert tech["pe_ratio"] == pytest.approx(250.0)
    assert tech["market_cap"] == pytest.approx((600 * 100_000 + 400 * 20 * 8_000) / 1_000)
    deeper = fundamentals_frame([("BBB", QUARTERS[3], MON, -5.0, 8_000.0)])
    got = sector_exposure(book, universe, pl.concat([fundamentals, deeper]))
    tech = got.filter((pl.col("date") == MON) & (pl.col("sector") == "Information Technology")).row(
        0, named=True
    )
    # 24 + 400 x (1.5 - 5) / 20 = 24 - 70 < 0: no P/E, the market cap still stands.
    assert tech["pe_ratio"] is None and tech["market_cap"] is not None
    assert tech["valuation_coverage"] == pytest.approx(0.8)
