"""holdings_monthly once a month has ended."""

from dagster import DefaultScheduleStatus, build_schedule_from_partitioned_job

from fintrack_assets.defs.portfolio.jobs import holdings_monthly_job

holdings_monthly_schedule = build_schedule_from_partitioned_job(
    holdings_monthly_job,
    name="holdings_monthly_schedule",
    hour_of_day=6,
    default_status=DefaultScheduleStatus.RUNNING,
    description="holdings_monthly at 06:00 New York on the 1st, for the month that ended "
    "(after its last session's holdings).",
)
