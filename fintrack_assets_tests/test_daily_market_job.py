"""daily_market_job as the schedule runs it: one session (or a range in one run) through raw,
bronze, the trades landed so far, holdings and the six risk assets (silver follows by month:
test_silver_assets, test_automation)."""

import datetime as dt

import polars as pl
import pytest

from fintrack_assets.defs.risk.assets import RISK_ASSET_KEYS
from fintrack_assets.resources.landing import LandingZone
from fintrack_assets_tests.helpers import QUIET, Platform, local_platform

SESSIONS = ["2025-03-10", "2025-03-11", "2025-03-12", "2025-03-13", "2025-03-14"]
TRADING_DAY_ASSETS = {
    "raw_ohlcv",
    "bronze_ohlcv",
    "bronze_ohlcv_rejects",
    "treasury_yields",
    "holdings_daily",
    *RISK_ASSET_KEYS,
}
BOOK = """trade_id,portfolio_id,date,symbol,action,quantity,price,fees,currency
T1,P1,2025-03-10,,DEPOSIT,10000,1,0,USD
T2,P1,2025-03-10,AAPL,BUY,10,200,0,USD
T3,P1,2025-03-12,SPY,BUY,5,560,0,USD
"""


@pytest.fixture
def platform(tmp_path, monkeypatch) -> Platform:
    return local_platform(tmp_path, monkeypatch)


def _job_run(platform: Platform, first: str, last: str):
    """The job whole, as the schedule and a UI backfill launch it (no subset)."""
    job = platform.defs.resolve_job_def("daily_market_job")
    tags = {
        "dagster/asset_partition_range_start": first,
        "dagster/asset_partition_range_end": last,
    }
    return platform._run(job, tags, QUIET)


def test_the_job_is_the_whole_chain_of_a_session() -> None:
    from fintrack_assets.definitions import defs as load_defs

    defs = load_defs()

    job = defs.resolve_job_def("daily_market_job")
    selected = {key.to_user_string() for key in job.asset_layer.selected_asset_keys}
    assert selected == TRADING_DAY_ASSETS | {"portfolio_trades", "portfolio_trades_rejects"}


def test_a_range_runs_raw_to_risk_in_one_run(platform: Platform, tmp_path) -> None:
    LandingZone(str(tmp_path / "lake")).write("portfolio_trades", "book.csv", BOOK.encode())
    run = _job_run(platform, SESSIONS[0], SESSIONS[-1])
    assert run.success, run.failure
    assert {a for a in TRADING_DAY_ASSETS if run.partitions[a] != set(SESSIONS)} == set()
    assert all(run.checks.values()), {k: v for k, v in run.asset_checks.items() if not v}
    assert run.freshness_checked == TRADING_DAY_ASSETS - {"bronze_ohlcv_rejects"}

    holdings = platform.warehouse_frame("holdings_daily")
    aapl = holdings.filter(pl.col("symbol") == "AAPL").sort("date")
    assert aapl["date"].cast(pl.String).to_list() == SESSIONS
    assert aapl["quantity"].to_list() == [10.0] * 5
    cash = holdings.filter((pl.col("symbol") == "CASH") & (pl.col("date") == dt.date(2025, 3, 14)))
    assert cash["quantity"].to_list() == [10_000 - 10 * 200 - 5 * 560]
    risk = platform.warehouse_frame("portfolio_risk")
    assert sorted(risk["date"].cast(pl.String).to_list()) == SESSIONS

    # The next session alone, as the 16:05 schedule requests it.
    job = platform.defs.resolve_job_def("daily_market_job")
    result = job.execute_in_process(
        instance=platform.instance, partition_key="2025-03-17", run_config=QUIET
    )
    assert result.success
    after = platform.warehouse_frame("holdings_daily")
    assert after.filter(pl.col("date") == dt.date(2025, 3, 17))["symbol"].sort().to_list() == [
        "AAPL",
        "CASH",
        "SPY",
    ]


def test_without_trades_the_job_still_succeeds(platform: Platform) -> None:
    run = _job_run(platform, SESSIONS[0], SESSIONS[1])
    assert run.success, run.failure
    assert run.partitions["portfolio_risk"] == set(SESSIONS[:2])
    assert platform.warehouse_frame("holdings_daily").is_empty()
