"""The payments job: what the payment files sensor runs for a day whose files changed."""

from dagster import define_asset_job

from fintrack_assets.defs.payments.assets import FAILURES, PAYMENTS, PREDICTIONS, REJECTS

payments_job = define_asset_job(
    "payments_job",
    selection=[PAYMENTS, REJECTS, PREDICTIONS, FAILURES],
    description="The day's payment files -> transactions and rejects -> fraud predictions.",
)
