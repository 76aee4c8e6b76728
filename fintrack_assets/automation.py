"""Jobs (and, with the orchestration issue, schedules and sensors)."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from fintrack_assets.partitions import trading_days

MARKET_ASSETS = AssetSelection.assets("raw_ohlcv", "bronze_ohlcv", "bronze_ohlcv_rejects")

daily_market_job = define_asset_job(
    "daily_market_job",
    selection=MARKET_ASSETS,
    partitions_def=trading_days,
    description="raw -> bronze for a session or, in one run, a range of sessions.",
)
