"""Risk assets through Dagster, on the sample universe (SPY, TLT and the sector SPDRs
included): values checked against numpy references computed here from the stored inputs."""

import datetime as dt

import numpy as np
import polars as pl
import pytest
from dagster import AssetKey

from fintrack_assets.core.calendar import sessions_between
from fintrack_assets.defs.risk.assets import RISK_ASSET_KEYS
from fintrack_assets.io_managers.warehouse import WarehouseIOManager
from fintrack_assets.resources.landing import LandingZone
from fintrack_assets_tests.helpers import QUIET, Platform

FIRST, LAST = dt.date(2025, 1, 2), dt.date(2025, 4, 30)
DEPOSIT_DAY = dt.date(2025, 3, 3)
RISK = list(RISK_ASSET_KEYS)
HEADER = "trade_id,portfolio_id,date,symbol,action,quantity,price,fees,currency"


@pytest.fixture(params=["duckdb", "postgresql"])
def platform(request, tmp_path, monkeypatch) -> Platform:
    warehouse = (
        f"duckdb:///{tmp_path}/warehouse.duckdb"
        if request.param == "duckdb"
        else request.getfixturevalue("postgres_url")
    )
    platform = Platform(
        {
            "FINTRACK_UNIVERSE": "sample",
            "FINTRACK_LAKE_URL": str(tmp_path / "lake"),
            "FINTRACK_WAREHOUSE_URL": warehouse,
        },
        monkeypatch,
    )
    assert platform.universe().success
    assert platform.market(FIRST.isoformat(), LAST.isoformat()).success
    close = dict(
        platform.lake_frame("bronze_ohlcv")
        .filter(pl.col("date") == FIRST)
        .select("symbol", "close")
        .iter_rows()
    )
    day = FIRST.isoformat()
    book = "\n".join(
        [
            HEADER,
            f"d1,P1,{day},,DEPOSIT,100000,1,0,USD",
            f"b1,P1,{day},AAPL,BUY,100,{close['AAPL']},0,USD",
            f"b2,P1,{day},XOM,BUY,200,{close['XOM']},0,USD",
            f"d2,P1,{DEPOSIT_DAY},,DEPOSIT,1000000,1,0,USD",
            f"d3,P2,{day},,DEPOSIT,50000,1,0,USD",
            f"b3,P2,{day},JPM,BUY,100,{close['JPM']},0,USD",
        ]
    )
    LandingZone(str(tmp_path / "lake")).write("portfolio_trades", "book.csv", book.encode())
    assert _run(platform, ["portfolio_trades", "portfolio_trades_rejects"]).success
    assert _run(platform, ["holdings_daily"], FIRST, LAST).success
    return platform


def _run(platform: Platform, assets: list[str], first=None, last=None):
    job = platform.defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={AssetKey(a) for a in assets}
    )
    tags = (
        {
            "dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat(),
        }
        if first
        else {}
    )
    return platform._run(job, tags, QUIET)


def _series(frame: pl.DataFrame, portfolio: str, column: str) -> np.ndarray:
    return (
        frame.filter(pl.col("portfolio_id") == portfolio).sort("date")[column].to_numpy()
    ).astype(float)


def _symbol_returns(platform: Platform, symbol: str) -> pl.DataFrame:
    bars = platform.lake_frame("bronze_ohlcv").filter(pl.col("symbol") == symbol).sort("date")
    value = (bars["close"] + bars["dividend"]) * bars["split_ratio"]
    returns = value / bars["close"].shift(1) - 1
    return pl.DataFrame({"date": bars["date"], symbol: returns})


def test_risk_from_holdings_against_numpy_references(platform):
    run = _run(platform, RISK, FIRST, LAST)
    assert run.success, run.failure
    sessions = sessions_between(FIRST, LAST + dt.timedelta(days=1))
    assert all(run.partitions[a] == {d.isoformat() for d in sessions} for a in RISK)
    assert {a: run.asset_checks.get((a, "contract")) for a in RISK} == dict.fromkeys(RISK, True)

    returns = platform.warehouse_frame("portfolio_returns").sort("date")
    holdings = platform.warehouse_frame("holdings_daily")
    value = holdings.group_by("date", "portfolio_id").agg(pl.col("market_value").sum())
    p1_value = _series(value, "P1", "market_value")
    flow = np.array([1_000_000.0 if d == DEPOSIT_DAY else 0.0 for d in sessions])
    expected = p1_value[1:] / (p1_value[:-1] + flow[1:]) - 1
    got = _series(returns, "P1", "daily_return")
    assert np.isnan(got[0]) and got[1:] == pytest.approx(expected, rel=1e-9, abs=1e-12)
    # A $1M deposit into a ~$100k portfolio shows no jump: the day moves like its positions.
    on_deposit = returns.filter(
        (pl.col("portfolio_id") == "P1") & (pl.col("date") == DEPOSIT_DAY)
    ).row(0, named=True)
    assert abs(on_deposit["daily_return"]) < 0.1 and on_deposit["net_flow"] == 1_000_000
    spy = _symbol_returns(platform, "SPY")
    joined = returns.filter(pl.col("portfolio_id") == "P1").join(spy, on="date")
    assert joined["benchmark_return"][1:].to_list() == pytest.approx(joined["SPY"][1:].to_list())

    risk = platform.warehouse_frame("portfolio_risk")
    last = risk.filter((pl.col("portfolio_id") == "P1") & (pl.col("date") == LAST)).row(
        0, named=True
    )
    r = got[1:]
    b = joined["SPY"][1:].to_numpy()
    assert last["volatility_21d"] == pytest.approx(np.std(r[-21:], ddof=1) * np.sqrt(252))
    assert last["volatility_63d"] == pytest.approx(np.std(r[-63:], ddof=1) * np.sqrt(252))
    assert last["volatility_252d"] == pytest.approx(np.std(r, ddof=1) * np.sqrt(252))  # < 252
    assert last["beta_90d"] == pytest.approx(np.cov(r, b)[0, 1] / np.var(b, ddof=1))
    assert last["var_95_1d"] == pytest.approx(np.percentile(r, 5))
    assert last["var_95_1d_usd"] == pytest.approx(np.percentile(r, 5) * p1_value[-1])
    growth = np.cumprod(1 + r)
    peak = np.maximum.accumulate(np.concatenate([[1.0], growth]))[1:]
    assert last["max_drawdown_252d"] == pytest.approx(min(0.0, (growth / peak - 1).min()))
    early = risk.filter((pl.col("portfolio_id") == "P1") & (pl.col("date") == sessions[10]))
    assert early["volatility_21d"][0] is None  # 10 returns: fewer than 20
    summary = run.metadata["portfolio_risk"]["summary"].value
    assert "P1" in summary.splitlines()[2]  # the header: a portfolio per column
    assert f"{p1_value[-1]:,.2f} USD" in summary
    [chart] = platform.instance.fetch_observations(AssetKey("portfolio_risk"), limit=1).records
    assert chart.partition_key == LAST.isoformat()
    assert "data:image/png;base64," in chart.asset_observation.description

    exposures = platform.warehouse_frame("portfolio_factor_exposures")
    market = exposures.filter(
        (pl.col("portfolio_id") == "P1") & (pl.col("date") == LAST) & (pl.col("factor") == "market")
    ).row(0, named=True)
    assert market["beta"] == pytest.approx(last["beta_90d"])
    assert {"market", "rates", "XLK", "XLE"} <= set(exposures["factor"])

    sectors = platform.warehouse_frame("sector_exposure")
    totals = sectors.group_by("date", "portfolio_id").agg(pl.col("weight").sum())
    assert totals["weight"].to_list() == pytest.approx([1.0] * totals.height)
    p2 = sectors.filter((pl.col("portfolio_id") == "P2") & (pl.col("date") == LAST))
    assert set(p2["sector"]) == {"Financials", "Cash"}

    pairs = platform.warehouse_frame("holding_correlations").filter(
        (pl.col("portfolio_id") == "P1") & (pl.col("date") == LAST)
    )
    assert pairs.select("symbol_a", "symbol_b").rows() == [("AAPL", "XOM")]
    both = _symbol_returns(platform, "AAPL").join(_symbol_returns(platform, "XOM"), on="date")
    tail = both.filter(pl.col("date") <= LAST).tail(63)
    assert pairs["correlation"][0] == pytest.approx(np.corrcoef(tail["AAPL"], tail["XOM"])[0, 1])

    stress = platform.warehouse_frame("portfolio_stress_tests").filter(
        (pl.col("portfolio_id") == "P1") & (pl.col("date") == LAST)
    )
    crash = stress.filter(pl.col("scenario") == "equity_-20%").row(0, named=True)
    assert crash["pnl_pct"] == pytest.approx(-0.2 * market["beta"])
    assert crash["pnl_usd"] == pytest.approx(crash["pnl_pct"] * p1_value[-1])

    # No treasury_yields and no company_fundamentals yet: the run goes on, ir_beta and the
    # valuations are null, the metadata says why, and the rates shock goes through TLT.
    assert risk["ir_beta"].null_count() == risk.height
    assert (
        "treasury_yields has not been materialised"
        in run.metadata["portfolio_risk"]["run/ir_beta"].value
    )
    assert sectors["pe_ratio"].null_count() == sectors.height
    assert (
        "company_fundamentals has not been materialised"
        in run.metadata["sector_exposure"]["run/valuation_coverage"].value
    )
    rates = stress.filter(pl.col("scenario") == "rates_+100bp").row(0, named=True)
    rates_beta = exposures.filter(
        (pl.col("portfolio_id") == "P1") & (pl.col("date") == LAST) & (pl.col("factor") == "rates")
    )["beta"][0]
    assert (rates["pnl_pct"], rates["method"]) == (pytest.approx(rates_beta * -0.17), "factor")


def write_yields(platform: Platform, frame: pl.DataFrame) -> None:
    """treasury_yields' table over the frame's sessions, written as its asset writes it."""
    window = (frame["date"].min(), frame["date"].max() + dt.timedelta(days=1))
    platform.defs.resources["lake"].write(AssetKey("treasury_yields"), frame, "date", window)


def write_fundamentals(platform: Platform, frame: pl.DataFrame) -> None:
    warehouse = WarehouseIOManager(url=platform.settings.warehouse_url.value)
    warehouse.write(AssetKey("company_fundamentals"), frame, "date", None)


def _ten_year(sessions: list[dt.date]) -> pl.DataFrame:
    """treasury_yields as the fundamentals branch defines it: a random walk of the 10-year."""
    rng = np.random.default_rng(20)
    ten = 4.2 + np.cumsum(rng.normal(0.0, 0.06, len(sessions)))
    return pl.DataFrame(
        {
            "date": sessions,
            "yield_3m": ten - 0.3,
            "yield_5y": ten - 0.1,
            "yield_10y": ten,
            "yield_30y": ten + 0.2,
            "source": ["synthetic"] * len(sessions),
        }
    )


def _quarters(symbol: str, eps: float, shares: float) -> list[dict]:
    """Four quarters of 2024 filed by 2025-02-14 (TTM = 4 x eps), and one filed after LAST."""
    ends = [dt.date(2024, m, d) for m, d in ((3, 31), (6, 30), (9, 30), (12, 31))]
    filed = [dt.date(2024, 5, 1), dt.date(2024, 8, 1), dt.date(2024, 11, 1), dt.date(2025, 2, 14)]
    rows = [(end, filing, eps) for end, filing in zip(ends, filed, strict=True)]
    rows.append((dt.date(2025, 3, 31), dt.date(2025, 5, 2), 100.0))
    return [
        {
            "symbol": symbol,
            "fiscal_period": f"{end.year}Q{(end.month + 2) // 3}",
            "period_end": end,
            "filing_date": filing,
            "revenue": 1e10,
            "net_income": 1e9,
            "eps": e,
            "shares_outstanding": shares,
            "total_assets": 5e10,
            "total_liabilities": 2e10,
            "operating_cash_flow": 2e9,
            "source": "synthetic",
            "fetched_at": dt.datetime(2025, 5, 3, tzinfo=dt.UTC),
        }
        for end, filing, e in rows
    ]


def test_ir_beta_stress_and_valuation_from_stored_yields_and_fundamentals(platform):
    sessions = sessions_between(FIRST, LAST + dt.timedelta(days=1))
    yields = _ten_year(sessions)
    write_yields(platform, yields)
    fundamentals = pl.DataFrame(_quarters("AAPL", 1.5, 15e9) + _quarters("JPM", 4.0, 2.8e9))
    write_fundamentals(platform, fundamentals)
    run = _run(platform, RISK, FIRST, LAST)
    assert run.success, run.failure
    assert {a: run.asset_checks.get((a, "contract")) for a in RISK} == dict.fromkeys(RISK, True)

    returns = platform.warehouse_frame("portfolio_returns")
    r = _series(returns, "P1", "daily_return")[1:]
    change = np.diff(yields["yield_10y"].to_numpy())  # every session has a yield
    reference = 100 * np.polyfit(change[-90:], r[-90:], 1)[0]
    risk = platform.warehouse_frame("portfolio_risk")
    last = risk.filter((pl.col("portfolio_id") == "P1") & (pl.col("date") == LAST)).row(
        0, named=True
    )
    assert last["ir_beta"] == pytest.approx(reference, rel=1e-9)
    assert "from treasury_yields" in run.metadata["portfolio_risk"]["run/ir_beta"].value
    early = risk.filter(pl.col("date") == sessions[15])
    assert early["ir_beta"].null_count() == early.height  # 15 pairs: fewer than 20

    stress = platform.warehouse_frame("portfolio_stress_tests").filter(
        (pl.col("portfolio_id") == "P1")
        & (pl.col("date") == LAST)
        & (pl.col("scenario") == "rates_+100bp")
    )
    assert stress["method"][0] == "ir_beta"
    assert stress["pnl_pct"][0] == pytest.approx(reference / 100, rel=1e-9)
    assert stress["pnl_usd"][0] == pytest.approx(reference / 100 * last["market_value"])

    sectors = platform.warehouse_frame("sector_exposure")
    on = {
        (r["portfolio_id"], r["date"], r["sector"]): r
        for r in sectors.filter(pl.col("date").is_in([dt.date(2025, 2, 13), LAST])).rows(named=True)
    }
    holdings = platform.warehouse_frame("holdings_daily")
    close = dict(
        holdings.filter((pl.col("date") == LAST) & (pl.col("portfolio_id") == "P1"))
        .select("symbol", "close")
        .iter_rows()
    )
    tech = on[("P1", LAST, "Information Technology")]  # AAPL alone: its own P/E and cap
    assert tech["pe_ratio"] == pytest.approx(close["AAPL"] / (4 * 1.5))
    assert tech["market_cap"] == pytest.approx(close["AAPL"] * 15e9)
    assert tech["valuation_coverage"] == pytest.approx(1.0)
    energy = on[("P1", LAST, "Energy")]  # XOM has no fundamentals
    assert (energy["pe_ratio"], energy["market_cap"], energy["valuation_coverage"]) == (
        None,
        None,
        0.0,
    )
    # The day before the fourth quarter is filed, AAPL has no trailing year yet.
    assert on[("P1", dt.date(2025, 2, 13), "Information Technology")]["pe_ratio"] is None
    assert on[("P2", LAST, "Financials")]["pe_ratio"] == pytest.approx(
        holdings.filter(
            (pl.col("date") == LAST)
            & (pl.col("portfolio_id") == "P2")
            & (pl.col("symbol") == "JPM")
        )["close"][0]
        / 16.0
    )
