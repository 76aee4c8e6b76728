"""The freshness check on its own job, so its schedule runs it without materialising anything."""

from dagster import AssetSelection, define_asset_job

from fintrack_assets.defs.ops.checks import session_freshness

session_freshness_job = define_asset_job(
    "session_freshness_job",
    selection=AssetSelection.checks(session_freshness),
    description="The session_freshness check of every trading_days asset.",
)
