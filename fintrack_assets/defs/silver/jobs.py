"""The six silver intervals on their own job: their partitions are months, not sessions."""

from dagster import AssetSelection, define_asset_job

silver_job = define_asset_job(
    "silver_job",
    selection=AssetSelection.groups("silver"),
    description="The six silver intervals for a month (the month in progress: the bars of its "
    "closed sessions) or, in one run, a range of months. Declarative automation runs the "
    "latest month after each new bronze session.",
)
