"""Declarative automation: a new bronze partition flows to silver, holdings and risk with no
hand-made chain (the daemon's automation sensor evaluates the same way)."""

import datetime as dt
from zoneinfo import ZoneInfo

from dagster import AssetKey, evaluate_automation_conditions

from fintrack_assets.core.silver import INTERVALS
from fintrack_assets.defs.risk.assets import RISK_ASSET_KEYS
from fintrack_assets.resources.landing import LandingZone
from fintrack_assets_tests.helpers import QUIET, Platform

SESSION = "2025-03-14"
MONTH = "2025-03-01"
AFTER_CLOSE = dt.datetime(2025, 3, 14, 17, 0, tzinfo=ZoneInfo("America/New_York"))
SILVER = {f"silver_ohlcv_{n}d" for n in INTERVALS}
TRADES = """trade_id,portfolio_id,date,symbol,action,quantity,price,fees,currency
T1,P1,2025-03-13,,DEPOSIT,10000,1,0,USD
"""


def _requested(result) -> dict[str, set[str]]:
    return {
        key.to_user_string(): set(partitions)
        for key, partitions in result._requested_partitions_by_asset_key.items()
        if partitions
    }


def test_a_new_bronze_session_requests_silver_holdings_and_risk_once(tmp_path, monkeypatch):
    platform = Platform(
        {
            "FINTRACK_UNIVERSE": "AAPL,MSFT,SPY",
            "FINTRACK_LAKE_URL": str(tmp_path / "lake"),
            "FINTRACK_WAREHOUSE_URL": f"duckdb:///{tmp_path}/warehouse.duckdb",
        },
        monkeypatch,
    )
    first = evaluate_automation_conditions(
        defs=platform.defs, instance=platform.instance, evaluation_time=AFTER_CLOSE
    )
    assert _requested(first) == {}  # nothing upstream has changed

    assert platform.universe().success
    LandingZone(str(tmp_path / "lake")).write("portfolio_trades", "t.csv", TRADES.encode())
    trades = platform.defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={AssetKey("portfolio_trades"), AssetKey("portfolio_trades_rejects")}
    )
    assert platform.market("2025-03-13", SESSION).success  # raw -> bronze, in one run
    assert platform._run(trades, {}, QUIET).success
    second = evaluate_automation_conditions(
        defs=platform.defs,
        instance=platform.instance,
        evaluation_time=AFTER_CLOSE + dt.timedelta(minutes=1),
        cursor=first.cursor,
    )
    requested = _requested(second)
    # One tick requests the whole chain for the session (silver: its month, the one in
    # progress at the evaluation time); Dagster runs it in dependency order.
    downstream = ("holdings_daily", *RISK_ASSET_KEYS)
    assert requested == {key: {SESSION} for key in downstream} | {key: {MONTH} for key in SILVER}

    third = evaluate_automation_conditions(
        defs=platform.defs,
        instance=platform.instance,
        evaluation_time=AFTER_CLOSE + dt.timedelta(minutes=2),
        cursor=second.cursor,
    )
    assert _requested(third) == {}  # requested once, not on every tick


def test_without_trades_only_silver_follows_bronze(tmp_path, monkeypatch):
    platform = Platform(
        {
            "FINTRACK_UNIVERSE": "AAPL,MSFT,SPY",
            "FINTRACK_LAKE_URL": str(tmp_path / "lake"),
            "FINTRACK_WAREHOUSE_URL": f"duckdb:///{tmp_path}/warehouse.duckdb",
        },
        monkeypatch,
    )
    first = evaluate_automation_conditions(
        defs=platform.defs, instance=platform.instance, evaluation_time=AFTER_CLOSE
    )
    assert platform.universe().success
    assert platform.market(SESSION).success
    second = evaluate_automation_conditions(
        defs=platform.defs,
        instance=platform.instance,
        evaluation_time=AFTER_CLOSE + dt.timedelta(minutes=1),
        cursor=first.cursor,
    )
    # portfolio_trades was never materialised: holdings wait for it, and risk for holdings.
    assert _requested(second) == {key: {MONTH} for key in SILVER}
