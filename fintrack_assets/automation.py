"""Jobs (and, with the orchestration issue, schedules and sensors)."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

MARKET_ASSETS = AssetSelection.assets("raw_ohlcv", "bronze_ohlcv", "bronze_ohlcv_rejects")

daily_market_job = define_asset_job(
    "daily_market_job",
    selection=MARKET_ASSETS,
    description="raw -> bronze for a session or, in one run, a range of sessions.",
)
