"""When things run, in the words every domain uses: the automation conditions of the layers after
bronze, and the schedules that run on NYSE sessions only (none on an exchange holiday)."""

import datetime as dt
from collections.abc import Callable
from zoneinfo import ZoneInfo

from dagster import (
    AssetSelection,
    AutomationCondition,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,  # what define_asset_job returns; not exported
)

from fintrack_assets.core.calendar import TIMEZONE, is_session

FOLLOWS_UPSTREAM = (
    AutomationCondition.in_latest_time_window()
    & AutomationCondition.any_deps_updated().since_last_handled()
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
).with_label("follows_upstream")
"""Declarative automation for the layers after bronze: the latest session's partition is
requested once any of its upstream partitions is updated, when nothing upstream is still
running. Unlike `eager()` it does not wait for every mapped upstream partition to exist, so a
trailing window (silver's 34 sessions, risk's 253) that starts before the data does still
runs."""


def follows_upstream_once(*ready: str) -> AutomationCondition:
    """FOLLOWS_UPSTREAM, and only once each of `ready` (upstream asset keys) exists in the
    latest session or is requested in the same tick: holdings wait for portfolio_trades, risk
    waits for holdings_daily. Only the upstream's latest partition counts, not every one the
    input's partition mapping names: portfolio_returns reads the session before too, and does
    not wait for it."""
    absent = (
        AutomationCondition.in_latest_time_window()
        & AutomationCondition.missing()
        & ~AutomationCondition.will_be_requested()
    )
    waiting = AutomationCondition.any_deps_match(absent).allow(AssetSelection.assets(*ready))
    return (FOLLOWS_UPSTREAM & ~waiting).with_label(f"follows_upstream, needs {', '.join(ready)}")


def session_schedule(
    name: str,
    job: UnresolvedAssetJobDefinition,
    at: dt.time,
    description: str,
    request: Callable[[dt.datetime], RunRequest],
) -> ScheduleDefinition:
    """A schedule at `at` New York time on each NYSE session, RUNNING by default: on a session
    day `request` makes the run from the tick's time; on an exchange holiday the tick says why
    nothing runs."""

    @schedule(
        name=name,
        job=job,
        cron_schedule=f"{at.minute} {at.hour} * * 1-5",
        execution_timezone=TIMEZONE,
        default_status=DefaultScheduleStatus.RUNNING,
        description=description,
    )
    def on_sessions(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
        moment = context.scheduled_execution_time.astimezone(ZoneInfo(TIMEZONE))
        if not is_session(moment.date()):
            return SkipReason(f"{moment.date()} is no NYSE session")
        return request(moment)

    return on_sessions
