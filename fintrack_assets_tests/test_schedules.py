"""Schedules evaluated at the moments they tick, as the daemon would."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from dagster import DagsterInstance, build_schedule_context

from fintrack_assets.definitions import defs as load_defs
from fintrack_assets.defs.ops.checks import AS_OF_TAG

defs = load_defs()

NEW_YORK = ZoneInfo("America/New_York")


def _tick(name: str, when: dt.datetime):
    schedule = defs.resolve_schedule_def(name)
    with build_schedule_context(
        instance=DagsterInstance.ephemeral(),
        scheduled_execution_time=when,
        repository_def=defs.get_repository_def(),
    ) as context:
        return schedule.evaluate_tick(context)


def test_the_market_schedule_ticks_at_16_05_new_york_on_weekdays():
    schedule = defs.resolve_schedule_def("daily_market_schedule")
    assert (schedule.cron_schedule, schedule.execution_timezone) == (
        "5 16 * * 1-5",
        "America/New_York",
    )
    assert schedule.job_name == "daily_market_job"


@pytest.mark.parametrize(
    ("moment", "partitions"),
    [
        (dt.datetime(2025, 3, 14, 16, 5, tzinfo=NEW_YORK), ["2025-03-14"]),
        (dt.datetime(2025, 7, 4, 16, 5, tzinfo=NEW_YORK), []),  # Independence Day
        (dt.datetime(2025, 12, 25, 16, 5, tzinfo=NEW_YORK), []),  # Christmas
        (dt.datetime(2025, 11, 28, 16, 5, tzinfo=NEW_YORK), ["2025-11-28"]),  # half day
    ],
)
def test_the_market_schedule_requests_that_days_session_and_nothing_on_holidays(moment, partitions):
    result = _tick("daily_market_schedule", moment)
    assert [r.partition_key for r in result.run_requests or []] == partitions
    if not partitions:
        assert "no NYSE session" in (result.skip_message or "")


def test_the_monthly_schedule_requests_the_month_that_ended():
    result = _tick("holdings_monthly_schedule", dt.datetime(2025, 4, 1, 6, tzinfo=NEW_YORK))
    assert [r.partition_key for r in result.run_requests] == ["2025-03-01"]
    schedule = defs.resolve_schedule_def("holdings_monthly_schedule")
    assert schedule.cron_schedule == "0 6 1 * *"


def test_the_maintenance_schedule_stays_at_06_00_utc():
    schedule = defs.resolve_schedule_def("lake_maintenance_schedule")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 6 * * *", "UTC")


def test_the_freshness_schedule_ticks_at_18_00_on_sessions() -> None:
    schedule = defs.resolve_schedule_def("session_freshness_schedule")
    assert (schedule.cron_schedule, schedule.execution_timezone) == (
        "0 18 * * 1-5",
        "America/New_York",
    )
    requests = _tick(
        "session_freshness_schedule", dt.datetime(2025, 3, 14, 18, tzinfo=NEW_YORK)
    ).run_requests
    assert [r.tags[AS_OF_TAG] for r in requests] == ["2025-03-14T18:00:00-04:00"]
    holiday = _tick("session_freshness_schedule", dt.datetime(2025, 7, 4, 18, tzinfo=NEW_YORK))
    assert not holiday.run_requests and "no NYSE session" in (holiday.skip_message or "")
