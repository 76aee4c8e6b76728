"""lake_maintenance every morning."""

from dagster import DefaultScheduleStatus, ScheduleDefinition

from fintrack_assets.defs.maintenance.jobs import lake_maintenance

lake_maintenance_schedule = ScheduleDefinition(
    name="lake_maintenance_schedule",
    job=lake_maintenance,
    cron_schedule="0 6 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="lake_maintenance daily at 06:00 UTC, after the night's writes.",
)
