"""The risk tables' contracts: rows that hold on paper pass, each broken identity fails."""

import datetime as dt

import polars as pl
import pytest

from fintrack_assets.schemas import (
    FactorExposure,
    HoldingCorrelation,
    PortfolioReturn,
    PortfolioRisk,
    SectorExposure,
    StressTest,
    contract_failures,
)

D = dt.date(2025, 3, 14)


def _risk(**overrides: float | None) -> pl.DataFrame:
    row: dict[str, object] = {
        "date": D,
        "portfolio_id": "P1",
        "market_value": 100_000.0,
        "volatility_21d": 0.2,
        "volatility_63d": 0.18,
        "volatility_252d": None,
        "max_drawdown_252d": -0.12,
        "var_95_1d": -0.02,
        "var_99_1d": -0.035,
        "cvar_95_1d": -0.03,
        "cvar_99_1d": -0.04,
        "ir_beta": -6.5,
    }
    schema = {
        k: pl.Date if k == "date" else pl.String if k == "portfolio_id" else pl.Float64 for k in row
    }
    return pl.DataFrame([{**row, **overrides}], schema=schema)


def test_portfolio_risk_contract() -> None:
    assert contract_failures(PortfolioRisk, _risk()) is None
    assert contract_failures(PortfolioRisk, _risk(ir_beta=-7.0)) is None
    assert contract_failures(PortfolioRisk, _risk(ir_beta=None)) is None
    assert contract_failures(PortfolioRisk, _risk(ir_beta=float("inf"))) is not None
    assert contract_failures(PortfolioRisk, _risk(var_99_1d=None, cvar_99_1d=None)) is None
    for broken in (
        {"cvar_95_1d": -0.01},  # a tail mean above its own percentile
        {"var_99_1d": -0.01, "cvar_99_1d": -0.02},  # the 99 % VaR above the 95 %
        {"volatility_21d": -0.1},
        {"max_drawdown_252d": 0.05},
    ):
        assert contract_failures(PortfolioRisk, _risk(**broken)) is not None, broken
    assert contract_failures(PortfolioRisk, pl.concat([_risk(), _risk()])) is not None


def test_portfolio_returns_contract() -> None:
    good = pl.DataFrame(
        {
            "date": [D, D],
            "portfolio_id": ["P1", "P2"],
            "market_value": [1.0, 2.0],
            "net_flow": [0.0, 0.0],
            "daily_return": [None, -0.5],
            "benchmark_return": [0.01, 0.01],
        }
    )
    assert contract_failures(PortfolioReturn, good) is None
    worse_than_wiped_out = good.with_columns(pl.Series("daily_return", [None, -1.5]))
    assert contract_failures(PortfolioReturn, worse_than_wiped_out) is not None


def test_sector_weights_sum_to_one() -> None:
    good = pl.DataFrame(
        {
            "date": [D, D, D],
            "portfolio_id": ["P1", "P1", "P2"],
            "sector": ["Cash", "Energy", "Cash"],
            "market_value": [25.0, 75.0, 0.0],
            "weight": [0.25, 0.75, None],  # P2 is worth nothing: no weights
            "pe_ratio": [None, None, None],
            "market_cap": [None, None, None],
            "valuation_coverage": [None, 0.0, None],
        },
        schema_overrides={"pe_ratio": pl.Float64, "market_cap": pl.Float64},
    )
    assert contract_failures(SectorExposure, good) is None
    off = good.with_columns(pl.Series("weight", [0.25, 0.70, None]))
    assert contract_failures(SectorExposure, off) is not None


def _sectors(**overrides: list) -> pl.DataFrame:
    columns: dict[str, list] = {
        "date": [D, D, D],
        "portfolio_id": ["P1", "P1", "P1"],
        "sector": ["Cash", "Energy", "Financials"],
        "market_value": [25.0, 50.0, 25.0],
        "weight": [0.25, 0.5, 0.25],
        "pe_ratio": [None, 12.5, None],
        "market_cap": [None, 4e11, None],
        "valuation_coverage": [None, 0.8, 0.0],  # Financials: nothing covered
        **overrides,
    }
    return pl.DataFrame(columns, schema_overrides={c: pl.Float64 for c in list(columns)[3:]})


def test_sector_valuation_contract() -> None:
    assert contract_failures(SectorExposure, _sectors()) is None
    for broken in (
        {"pe_ratio": [None, -3.0, None]},  # a P/E of a loss
        {"market_cap": [None, 0.0, None]},
        {"valuation_coverage": [None, 1.2, 0.0]},
        {"pe_ratio": [None, 12.5, 9.0]},  # a P/E with nothing covered
        {"valuation_coverage": [1.0, 0.8, 0.0]},  # cash is never valued
    ):
        assert contract_failures(SectorExposure, _sectors(**broken)) is not None, broken


@pytest.mark.parametrize(
    ("pairs", "ok"),
    [
        ([("AAPL", "XOM", 0.3), ("AAPL", "JPM", None)], True),
        ([("XOM", "AAPL", 0.3)], False),  # each pair once, a < b
        ([("AAPL", "XOM", 1.2)], False),
    ],
)
def test_holding_correlations_contract(pairs: list[tuple], ok: bool) -> None:
    frame = pl.DataFrame(
        [
            {"date": D, "portfolio_id": "P1", "symbol_a": a, "symbol_b": b, "correlation": c}
            for a, b, c in pairs
        ],
        schema={
            "date": pl.Date,
            "portfolio_id": pl.String,
            "symbol_a": pl.String,
            "symbol_b": pl.String,
            "correlation": pl.Float64,
        },
    )
    assert (contract_failures(HoldingCorrelation, frame) is None) is ok


def test_factor_and_stress_contracts() -> None:
    exposures = pl.DataFrame(
        {
            "date": [D, D],
            "portfolio_id": ["P1", "P1"],
            "factor": ["market", "rates"],
            "beta": [1.1, -0.2],
            "ridge_coef": [1.0, -0.1],
            "r_squared": [0.8, 0.8],
        }
    )
    assert contract_failures(FactorExposure, exposures) is None
    bad_fit = exposures.with_columns(pl.Series("r_squared", [1.3, 1.3]))
    assert contract_failures(FactorExposure, bad_fit) is not None

    stress = pl.DataFrame(
        {
            "date": [D, D],
            "portfolio_id": ["P1", "P1"],
            "scenario": ["equity_-10%", "covid_2020"],
            "pnl_usd": [-11_000.0, None],
            "pnl_pct": [-0.11, None],
            "method": ["factor", None],
        }
    )
    assert contract_failures(StressTest, stress) is None
    unexplained = stress.with_columns(pl.Series("method", [None, None], dtype=pl.String))
    assert contract_failures(StressTest, unexplained) is not None


def test_holdings_monthly_contract() -> None:
    from fintrack_assets.schemas import HoldingsMonthly

    march = dt.date(2025, 3, 1)
    good = pl.DataFrame(
        {
            "month": [march, march],
            "date": [dt.date(2025, 3, 31), dt.date(2025, 3, 31)],
            "portfolio_id": ["P1", "P1"],
            "symbol": ["AAPL", "CASH"],
            "return_month": [0.02, 0.02],
        }
    )
    assert contract_failures(HoldingsMonthly, good) is None
    april_snapshot = good.with_columns(pl.lit(dt.date(2025, 4, 1)).alias("date"))
    assert contract_failures(HoldingsMonthly, april_snapshot) is not None
    assert contract_failures(HoldingsMonthly, pl.concat([good, good])) is not None
