"""holdings_monthly on its own job: months are not sessions, so the daily job cannot carry it."""

from dagster import AssetSelection, define_asset_job

holdings_monthly_job = define_asset_job(
    "holdings_monthly_job",
    selection=AssetSelection.assets("holdings_monthly"),
    description="holdings_monthly for a month (or, in one run, a range of months).",
)
