"""daily_market_job after each session's close."""

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from fintrack_assets.automation import session_tick
from fintrack_assets.core.calendar import TIMEZONE
from fintrack_assets.defs.market.jobs import daily_market_job


@schedule(
    job=daily_market_job,
    cron_schedule="5 16 * * 1-5",
    execution_timezone=TIMEZONE,
    default_status=DefaultScheduleStatus.RUNNING,
    description="daily_market_job at 16:05 New York, Monday to Friday, for that day's session; "
    "nothing on an exchange holiday.",
)
def daily_market_schedule(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
    """Built by hand rather than from the partitioned job: trading_days opens a session's
    partition at 16:05, so on a holiday the job's latest partition would be the next session,
    still in the future."""
    moment = session_tick(context)
    if isinstance(moment, SkipReason):
        return moment
    return RunRequest(partition_key=moment.date().isoformat())
