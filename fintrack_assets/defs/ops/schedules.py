"""The freshness check at each session's deadline."""

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from fintrack_assets.automation import session_tick
from fintrack_assets.core.calendar import TIMEZONE
from fintrack_assets.defs.ops.checks import AS_OF_TAG, FRESHNESS_DEADLINE
from fintrack_assets.defs.ops.jobs import session_freshness_job


@schedule(
    job=session_freshness_job,
    cron_schedule=f"{FRESHNESS_DEADLINE.minute} {FRESHNESS_DEADLINE.hour} * * 1-5",
    execution_timezone=TIMEZONE,
    default_status=DefaultScheduleStatus.RUNNING,
    description="At 18:00 New York on each session: has every trading_days asset that "
    "session's data? Nothing on an exchange holiday (no session was due).",
)
def session_freshness_schedule(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
    moment = session_tick(context)
    if isinstance(moment, SkipReason):
        return moment
    return RunRequest(tags={AS_OF_TAG: moment.isoformat()})
