"""Jobs and their schedules (the payments sensor lives beside its assets)."""

from zoneinfo import ZoneInfo

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    build_schedule_from_partitioned_job,
    define_asset_job,
    schedule,
)

from fintrack_assets.assets.silver import silver_key
from fintrack_assets.core.calendar import TIMEZONE, is_session
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
    day = context.scheduled_execution_time.astimezone(ZoneInfo(TIMEZONE)).date()
    if not is_session(day):
        return SkipReason(f"{day} is no NYSE session")
    return RunRequest(partition_key=day.isoformat())


holdings_monthly_job = define_asset_job(
    "holdings_monthly_job",
    selection=AssetSelection.assets("holdings_monthly"),
    description="holdings_monthly for a month (or, in one run, a range of months).",
)

holdings_monthly_schedule = build_schedule_from_partitioned_job(
    holdings_monthly_job,
    name="holdings_monthly_schedule",
    hour_of_day=6,
    default_status=DefaultScheduleStatus.RUNNING,
    description="holdings_monthly at 06:00 New York on the 1st, for the month that ended "
    "(after its last session's holdings).",
)
