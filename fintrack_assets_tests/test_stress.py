"""Stress tests (core/stress.py): P&L worked out by hand."""

import datetime as dt

import polars as pl
import pytest

from fintrack_assets.core.calendar import sessions_between
from fintrack_assets.core.stress import STRESS_SCHEMA, period_returns, stress_tests

D = dt.date
DAY = D(2025, 3, 7)
# Sessions after the scenarios' start dates, up to their end dates included.
COVID = sessions_between(D(2020, 2, 20), D(2020, 3, 24))
RATES = sessions_between(D(2022, 1, 4), D(2022, 10, 15))


def exposures(rows: list[tuple[str, str, float | None, float | None]]) -> pl.DataFrame:
    """(portfolio_id, factor, beta, ridge_coef) on DAY."""
    return pl.DataFrame(
        [
            {
                "date": DAY,
                "portfolio_id": p,
                "factor": f,
                "beta": b,
                "ridge_coef": c,
                "r_squared": 0.5,
            }
            for p, f, b, c in rows
        ],
        schema={
            "date": pl.Date,
            "portfolio_id": pl.String,
            "factor": pl.String,
            "beta": pl.Float64,
            "ridge_coef": pl.Float64,
            "r_squared": pl.Float64,
        },
    )


def values(rows: dict[str, float]) -> pl.DataFrame:
    return pl.DataFrame(
        {"date": [DAY] * len(rows), "portfolio_id": list(rows), "market_value": list(rows.values())}
    )


def sectors(rows: list[tuple[str, str, float, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {"date": DAY, "portfolio_id": p, "sector": s, "market_value": v, "weight": w}
            for p, s, v, w in rows
        ]
    )


def holdings(rows: list[tuple[str, str, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {"date": DAY, "portfolio_id": p, "symbol": s, "quantity": v / 10, "market_value": v}
            for p, s, v in rows
        ]
    )


def history(rows: dict[str, tuple[list[D], float]]) -> pl.DataFrame:
    """symbol -> (sessions, the same daily return on each)."""
    return pl.DataFrame(
        [{"date": d, "symbol": s, "return": r} for s, (days, r) in rows.items() for d in days],
        schema={"date": pl.Date, "symbol": pl.String, "return": pl.Float64},
    )


def by_scenario(frame: pl.DataFrame, portfolio: str) -> dict[str, dict]:
    return {
        r["scenario"]: r for r in frame.filter(pl.col("portfolio_id") == portfolio).rows(named=True)
    }


BASE = dict(
    exposures=exposures(
        [
            ("P1", "market", 1.2, 1.1),
            ("P1", "rates", -0.5, -0.4),
            ("P1", "XLK", 0.9, 0.2),
            ("P2", "market", 0.8, 0.7),
            ("P2", "rates", 0.1, 0.1),
            ("P3", "market", None, None),
            ("P3", "rates", None, None),
        ]
    ),
    portfolio_values=values({"P1": 100_000.0, "P2": 50_000.0, "P3": 10_000.0}),
    sector_exposure=sectors(
        [
            ("P1", "Information Technology", 60_000.0, 0.6),
            ("P1", "Cash", 40_000.0, 0.4),
            ("P2", "Financials", 30_000.0, 0.6),
            ("P2", "Unknown", 20_000.0, 0.4),
            ("P3", "Cash", 10_000.0, 1.0),
        ]
    ),
)


def test_factor_and_sector_shocks_by_hand() -> None:
    got = stress_tests(**BASE)
    assert got.columns == list(STRESS_SCHEMA)
    p1 = by_scenario(got, "P1")
    assert set(p1) == {
        "equity_-10%",
        "equity_-20%",
        "equity_-30%",
        "rates_+100bp",
        "sector_Information Technology_-15%",
    }
    assert p1["equity_-10%"]["pnl_pct"] == pytest.approx(-0.12)
    assert p1["equity_-10%"]["pnl_usd"] == pytest.approx(-12_000)
    assert p1["equity_-20%"]["pnl_usd"] == pytest.approx(-24_000)
    assert p1["equity_-30%"]["pnl_usd"] == pytest.approx(-36_000)
    # +100 bp on a 17-year duration: TLT -17%, times a rates beta of -0.5.
    assert p1["rates_+100bp"]["pnl_pct"] == pytest.approx(0.085)
    assert p1["rates_+100bp"]["pnl_usd"] == pytest.approx(8_500)
    assert p1["sector_Information Technology_-15%"]["pnl_usd"] == pytest.approx(-9_000)
    assert p1["sector_Information Technology_-15%"]["method"] == "weight"
    assert p1["equity_-10%"]["method"] == "factor"
    p2 = by_scenario(got, "P2")
    assert p2["sector_Unknown_-15%"]["pnl_usd"] == pytest.approx(-3_000)
    assert p2["sector_Financials_-15%"]["pnl_pct"] == pytest.approx(-0.09)
    p3 = by_scenario(got, "P3")  # no beta yet: listed, without P&L
    assert set(p3) == {"equity_-10%", "equity_-20%", "equity_-30%", "rates_+100bp"}
    assert all(r["pnl_usd"] is None and r["method"] is None for r in p3.values())


def test_duration_and_exposure_are_parameters() -> None:
    got = by_scenario(stress_tests(**BASE, duration=10.0, exposure="ridge_coef"), "P1")
    assert got["rates_+100bp"]["pnl_pct"] == pytest.approx(-0.4 * -0.10)
    assert got["equity_-20%"]["pnl_pct"] == pytest.approx(1.1 * -0.20)


def test_historical_replays_revalue_the_holdings() -> None:
    covid_missing_a_day = COVID[:5] + COVID[6:]
    past = history(
        {
            "AAA": (COVID + RATES, -0.01),
            "BBB": (covid_missing_a_day, 0.02),
            "SPY": (COVID, -0.02),
        }
    ).with_columns(  # AAA rises in 2022 instead
        pl.when(pl.col("date").dt.year() == 2022)
        .then(0.001)
        .otherwise(pl.col("return"))
        .alias("return")
    )
    book = holdings(
        [
            ("P1", "AAA", 60_000.0),
            ("P1", "CASH", 40_000.0),
            ("P2", "BBB", 50_000.0),
            ("P3", "CASH", 10_000.0),
        ]
    )
    got = stress_tests(**BASE, history=past, holdings=book)
    p1, p2, p3 = (by_scenario(got, p) for p in ("P1", "P2", "P3"))
    assert len(COVID) == 23 and len(RATES) == 197
    assert p1["covid_crash_2020"]["pnl_usd"] == pytest.approx(60_000 * (0.99**23 - 1))
    assert p1["covid_crash_2020"]["pnl_pct"] == pytest.approx(0.6 * (0.99**23 - 1))
    assert p1["covid_crash_2020"]["method"] == "holdings"
    assert p1["rates_2022"]["pnl_usd"] == pytest.approx(60_000 * (1.001**197 - 1))
    # BBB misses a session of the crash: P2 falls back on its market beta x SPY's move.
    assert p2["covid_crash_2020"]["pnl_pct"] == pytest.approx(0.8 * (0.98**23 - 1))
    assert p2["covid_crash_2020"]["pnl_usd"] == pytest.approx(50_000 * 0.8 * (0.98**23 - 1))
    assert p2["covid_crash_2020"]["method"] == "market_beta"
    # No BBB and no SPY in 2022: nothing to replay with.
    assert p2["rates_2022"]["pnl_usd"] is None and p2["rates_2022"]["method"] is None
    assert p3["covid_crash_2020"]["pnl_usd"] == 0.0  # cash only
    assert got.height == 5 + 6 + 4 + 2 * 3


def test_period_returns_need_every_session_of_the_period() -> None:
    past = history({"AAA": (COVID, 0.01), "BBB": (COVID[1:], 0.01)})
    got = period_returns(past, {"covid": (D(2020, 2, 19), D(2020, 3, 23))})
    assert got.rows() == [("covid", "AAA", pytest.approx(1.01**23 - 1))]


def ir_betas(rows: dict[str, float | None]) -> pl.DataFrame:
    """portfolio_risk's (date, portfolio_id, ir_beta) on DAY."""
    return pl.DataFrame(
        {"date": [DAY] * len(rows), "portfolio_id": list(rows), "ir_beta": list(rows.values())},
        schema={"date": pl.Date, "portfolio_id": pl.String, "ir_beta": pl.Float64},
    )


def test_rates_shock_uses_ir_beta_where_yields_cover_the_window() -> None:
    # P1: -7 % per +100 bp. P2: no ir_beta (yields short of the window): TLT's move x its
    # rates beta 0.1, i.e. 0.1 x -17 % = -1.7 %. P3: neither: listed without P&L.
    got = stress_tests(**BASE, ir_betas=ir_betas({"P1": -7.0, "P2": None}))
    p1, p2, p3 = (by_scenario(got, p)["rates_+100bp"] for p in ("P1", "P2", "P3"))
    assert (p1["pnl_pct"], p1["pnl_usd"], p1["method"]) == (
        pytest.approx(-0.07),
        pytest.approx(-7_000),
        "ir_beta",
    )
    assert (p2["pnl_pct"], p2["pnl_usd"], p2["method"]) == (
        pytest.approx(-0.017),
        pytest.approx(-850),
        "factor",
    )
    assert p3["pnl_pct"] is None and p3["method"] is None
    # The equity shocks are untouched by ir_beta.
    assert by_scenario(got, "P1")["equity_-10%"]["method"] == "factor"
    # +50 bp on -7 % per 100 bp: -3.5 %; a rates-up shock on a bond-like book (+12) gains.
    half = stress_tests(**BASE, ir_betas=ir_betas({"P1": -7.0, "P2": 12.0}), rates_shock_bp=50)
    assert by_scenario(half, "P1")["rates_+50bp"]["pnl_pct"] == pytest.approx(-0.035)
    assert by_scenario(half, "P2")["rates_+50bp"]["pnl_usd"] == pytest.approx(50_000 * 0.06)
