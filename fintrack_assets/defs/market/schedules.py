"""daily_market_job after each session's close."""

from dagster import RunRequest

from fintrack_assets.automation import session_schedule
from fintrack_assets.defs.market.jobs import daily_market_job
from fintrack_assets.partitions import MARKET_CLOSE_PLUS

# Built by hand rather than from the partitioned job: trading_days opens a session's partition
# at 16:05, so on a holiday the job's latest partition would be the next session, still in the
# future.
daily_market_schedule = session_schedule(
    name="daily_market_schedule",
    job=daily_market_job,
    at=MARKET_CLOSE_PLUS,
    description="daily_market_job at 16:05 New York, Monday to Friday, for that day's session; "
    "nothing on an exchange holiday.",
    request=lambda moment: RunRequest(partition_key=moment.date().isoformat()),
)
