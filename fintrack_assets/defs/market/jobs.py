"""The main job: a session (or, in one run, a range of sessions) from the provider to risk."""

from dagster import AssetSelection, define_asset_job

from fintrack_assets.defs.risk.assets import RISK_ASSET_KEYS

MARKET_ASSETS = AssetSelection.assets(
    "raw_ohlcv", "bronze_ohlcv", "bronze_ohlcv_rejects", "treasury_yields"
)
PORTFOLIO_ASSETS = AssetSelection.assets(
    "portfolio_trades", "portfolio_trades_rejects", "holdings_daily", *RISK_ASSET_KEYS
)

daily_market_job = define_asset_job(
    "daily_market_job",
    selection=MARKET_ASSETS | PORTFOLIO_ASSETS,
    description="raw -> bronze, the treasury yields, the trades landed so far -> holdings -> the "
    "six risk assets, for a session or, in one run, a range of sessions. The silver bars follow "
    "by month (silver_job, or declarative automation for the month in progress).",
)
