"""Portfolio assets through Dagster: landing files in, trades and rejects, daily and monthly
holdings in the warehouse, on DuckDB and PostgreSQL."""

import polars as pl
import pytest
from dagster import AssetKey, DagsterInvalidConfigError
from polars.testing import assert_frame_equal

from fintrack_assets.resources.landing import LandingZone
from fintrack_assets_tests.helpers import QUIET, Platform

GOOD = """trade_id,portfolio_id,date,symbol,action,quantity,price,fees,currency
T1,P1,2025-03-03,,DEPOSIT,10000,1,0,USD
T2,P1,2025-03-03,AAPL,BUY,10,200,1,USD
T3,P1,2025-03-10,AAPL,SELL,4,210,1,USD
T4,P2,2025-03-04,,DEPOSIT,5000,,0,usd
T5,P2,2025-03-05,MSFT,BUY,5,400,0,USD
"""
BAD = """trade_id,portfolio_id,date,symbol,action,quantity,price,fees,currency
T6,P1,2025-03-11,AAPL,SELL,100,210,1,USD
T7,P1,2025-03-08,AAPL,BUY,1,200,0,USD
T8,P1,2025-03-11,NOPE,BUY,1,10,0,USD
T9,P1,2025-03-11,AAPL,BUY,1,200,0,EUR
T2,P1,2025-03-12,AAPL,BUY,1,200,0,USD
"""
FIRST, LAST = "2025-03-03", "2025-03-31"


@pytest.fixture(params=["duckdb", "postgresql"])
def platform(request, tmp_path, monkeypatch) -> Platform:
    warehouse = (
        f"duckdb:///{tmp_path}/warehouse.duckdb"
        if request.param == "duckdb"
        else request.getfixturevalue("postgres_url")
    )
    platform = Platform(
        {
            "FINTRACK_UNIVERSE": "AAPL,MSFT,SPY",
            "FINTRACK_LAKE_URL": str(tmp_path / "lake"),
            "FINTRACK_WAREHOUSE_URL": warehouse,
        },
        monkeypatch,
    )
    assert platform.universe().success
    assert platform.market(FIRST, LAST).success
    zone = LandingZone(str(tmp_path / "lake"))
    zone.write("portfolio_trades", "a_good.csv", GOOD.encode())
    zone.write("portfolio_trades", "b_bad.csv", BAD.encode())
    return platform


def _materialise(platform: Platform, assets: set[str], first: str = "", last: str = ""):
    job = platform.defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={AssetKey(a) for a in assets}
    )
    tags = (
        {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
        if first
        else {}
    )
    return platform._run(job, tags, QUIET)


def test_trades_rejects_daily_and_monthly_holdings_end_to_end(platform):
    run = _materialise(platform, {"portfolio_trades", "portfolio_trades_rejects"})
    assert run.success
    trades = platform.warehouse_frame("portfolio_trades")
    assert sorted(trades["trade_id"]) == ["T1", "T2", "T3", "T4", "T5"]
    rejects = platform.warehouse_frame("portfolio_trades_rejects")
    assert sorted(rejects.select("trade_id", "reason").rows()) == [
        ("T2", "duplicate_trade_id"),
        ("T6", "oversell"),
        ("T7", "non_session_date"),
        ("T8", "unknown_symbol"),
        ("T9", "non_usd"),
    ]
    assert run.asset_checks[("portfolio_trades", "reject_share")] is False  # 5 of 10 refused

    daily_run = _materialise(platform, {"holdings_daily"}, FIRST, LAST)
    assert daily_run.success
    assert daily_run.asset_checks == {("holdings_daily", "reconciliation"): True}
    daily = platform.warehouse_frame("holdings_daily")
    closes = dict(
        platform.lake_frame("bronze_ohlcv")
        .filter(pl.col("symbol") == "AAPL")
        .select("date", "close")
        .iter_rows()
    )
    aapl = daily.filter((pl.col("portfolio_id") == "P1") & (pl.col("symbol") == "AAPL"))
    march_10 = aapl.filter(pl.col("date") == pl.date(2025, 3, 10)).row(0, named=True)
    # 10 @ 200 + 1 fee -> basis 2,001; sell 4 @ 210 - 1: removes 800.4, realises 38.6.
    assert march_10["quantity"] == 6 and march_10["cost_basis"] == pytest.approx(1200.6)
    assert march_10["realized_pnl"] == pytest.approx(38.6)
    assert march_10["market_value"] == pytest.approx(6 * closes[march_10["date"]])
    cash = daily.filter((pl.col("portfolio_id") == "P1") & (pl.col("symbol") == "CASH"))
    assert cash.filter(pl.col("date") == pl.date(2025, 3, 10))["quantity"][0] == pytest.approx(
        10000 - 2001 + 839
    )

    monthly_run = _materialise(platform, {"holdings_monthly"}, "2025-03-01", "2025-03-01")
    assert monthly_run.success
    assert monthly_run.asset_checks == {("holdings_monthly", "contract"): True}
    monthly = platform.warehouse_frame("holdings_monthly")
    p2 = monthly.filter((pl.col("portfolio_id") == "P2") & (pl.col("symbol") == "CASH")).row(
        0, named=True
    )
    assert p2["net_flows_month"] == 5000 and p2["quantity"] == pytest.approx(3000)


def test_a_holdings_range_equals_its_sessions_one_by_one(platform):
    assert _materialise(platform, {"portfolio_trades", "portfolio_trades_rejects"}).success
    assert _materialise(platform, {"holdings_daily"}, FIRST, "2025-03-14").success
    ranged = platform.warehouse_frame("holdings_daily").sort("date", "portfolio_id", "symbol")
    for day in ("2025-03-05", "2025-03-10", "2025-03-14"):
        assert _materialise(platform, {"holdings_daily"}, day, day).success
    again = platform.warehouse_frame("holdings_daily").sort("date", "portfolio_id", "symbol")
    assert_frame_equal(again, ranged)
    assert ranged["date"].n_unique() == 10


FIFO_BOOK = """trade_id,portfolio_id,date,symbol,action,quantity,price,fees,currency
F1,P3,2025-03-03,,DEPOSIT,10000,1,0,USD
F2,P3,2025-03-03,AAPL,BUY,10,200,0,USD
F3,P3,2025-03-04,AAPL,BUY,10,220,0,USD
F4,P3,2025-03-10,AAPL,SELL,10,230,0,USD
"""


def test_the_cost_method_is_run_config(platform, tmp_path):
    LandingZone(str(tmp_path / "lake")).write("portfolio_trades", "c_fifo.csv", FIFO_BOOK.encode())
    assert _materialise(platform, {"portfolio_trades", "portfolio_trades_rejects"}).success
    realised = {}
    for method in ("average", "fifo"):
        job = platform.defs.resolve_implicit_global_asset_job_def().get_subset(
            asset_selection={AssetKey("holdings_daily")}
        )
        config = {**QUIET, "ops": {"holdings_daily": {"config": {"method": method}}}}
        assert platform._run(job, {"dagster/partition": "2025-03-10"}, config).success
        daily = platform.warehouse_frame("holdings_daily")
        realised[method] = daily.filter(
            (pl.col("portfolio_id") == "P3") & (pl.col("symbol") == "AAPL")
        ).row(0, named=True)
    # 20 shares cost 4,200; selling 10 @ 230 = 2,300. Average removes 2,100, FIFO the first
    # lot's 2,000.
    assert realised["average"]["realized_pnl"] == pytest.approx(200)
    assert realised["fifo"]["realized_pnl"] == pytest.approx(300)
    assert realised["average"]["cost_basis"] == pytest.approx(2100)
    assert realised["fifo"]["cost_basis"] == pytest.approx(2200)

    job = platform.defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={AssetKey("holdings_daily")}
    )
    config = {**QUIET, "ops": {"holdings_daily": {"config": {"method": "lifo"}}}}
    with pytest.raises(DagsterInvalidConfigError, match=r"method not in enum type.*got lifo"):
        platform._run(job, {"dagster/partition": "2025-03-10"}, config)


ABSURD = b"""trade_id,portfolio_id,date,symbol,action,quantity,price,fees,currency
A1,P1,2025-03-11,AAPL,BUY,1e308,1e308,0,USD
\xff\xfe\x00binary\x80
A2,P1,2025-03-11,AAPL,BUY,1,"200,0,USD
A3,P1,2025-03-11,AAPL,BUY,1,200,0,USD
"""


def test_absurd_numbers_and_broken_lines_cost_their_line_and_holdings_stay_finite(
    platform, tmp_path
):
    LandingZone(str(tmp_path / "lake")).write("portfolio_trades", "c_absurd.csv", ABSURD)
    assert _materialise(platform, {"portfolio_trades", "portfolio_trades_rejects"}).success
    trades = platform.warehouse_frame("portfolio_trades").filter(
        pl.col("source_file") == "c_absurd.csv"
    )
    assert trades.select("trade_id", "line").rows() == [("A3", 5)]
    rejects = platform.warehouse_frame("portfolio_trades_rejects").filter(
        pl.col("source_file") == "c_absurd.csv"
    )
    assert sorted(rejects.select("line", "reason").rows()) == [
        (2, "out_of_range_quantity;out_of_range_price"),
        (3, "bad_encoding"),
        (4, "malformed_row"),
    ]
    daily_run = _materialise(platform, {"holdings_daily"}, FIRST, LAST)
    assert daily_run.asset_checks == {("holdings_daily", "reconciliation"): True}
    daily = platform.warehouse_frame("holdings_daily")
    floats = daily.select(pl.col(pl.Float64))
    assert floats.width >= 5
    assert (
        floats.select(pl.all().is_finite().fill_null(True).all()).row(0) == (True,) * floats.width
    )
