"""Jobs (and, with the orchestration issue, schedules and sensors)."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from fintrack_assets.assets.silver import silver_key
from fintrack_assets.core.silver import INTERVALS

MARKET_ASSETS = AssetSelection.assets(
    "raw_ohlcv", "bronze_ohlcv", "bronze_ohlcv_rejects", *(silver_key(n) for n in INTERVALS)
)

daily_market_job = define_asset_job(
    "daily_market_job",
    selection=MARKET_ASSETS,
    description="raw -> bronze -> the six silver intervals for a session or, in one run, a "
    "range of sessions.",
)
