"""Jobs and their schedules (the payments sensor lives beside its assets)."""

import datetime as dt
from zoneinfo import ZoneInfo

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    build_schedule_from_partitioned_job,
    define_asset_job,
    run_failure_sensor,
    schedule,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG as RANGE_END_TAG,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_START_TAG as RANGE_START_TAG,
)

from fintrack_assets.assets.risk import RISK_ASSET_KEYS
from fintrack_assets.assets.silver import silver_key
from fintrack_assets.checks import AS_OF_TAG, FRESHNESS_DEADLINE, session_freshness
from fintrack_assets.core.calendar import TIMEZONE, is_session
from fintrack_assets.core.silver import INTERVALS
from fintrack_assets.resources.alerts import AlertWebhook

MARKET_ASSETS = AssetSelection.assets(
    "raw_ohlcv", "bronze_ohlcv", "bronze_ohlcv_rejects", *(silver_key(n) for n in INTERVALS)
)
PORTFOLIO_ASSETS = AssetSelection.assets(
    "portfolio_trades", "portfolio_trades_rejects", "holdings_daily", *RISK_ASSET_KEYS
)


def _session_tick(context: ScheduleEvaluationContext) -> dt.datetime | SkipReason:
    """The tick's time in New York, or why nothing runs: the day is no NYSE session."""
    moment = context.scheduled_execution_time.astimezone(ZoneInfo(TIMEZONE))
    if not is_session(moment.date()):
        return SkipReason(f"{moment.date()} is no NYSE session")
    return moment


daily_market_job = define_asset_job(
    "daily_market_job",
    selection=MARKET_ASSETS | PORTFOLIO_ASSETS,
    description="raw -> bronze -> the six silver intervals, the trades landed so far -> "
    "holdings -> the six risk assets, for a session or, in one run, a range of sessions.",
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
    moment = _session_tick(context)
    if isinstance(moment, SkipReason):
        return moment
    return RunRequest(partition_key=moment.date().isoformat())


session_freshness_job = define_asset_job(
    "session_freshness_job",
    selection=AssetSelection.checks(session_freshness),
    description="The session_freshness check of every trading_days asset.",
)


@schedule(
    job=session_freshness_job,
    cron_schedule=f"{FRESHNESS_DEADLINE.minute} {FRESHNESS_DEADLINE.hour} * * 1-5",
    execution_timezone=TIMEZONE,
    default_status=DefaultScheduleStatus.RUNNING,
    description="At 18:00 New York on each session: has every trading_days asset that "
    "session's data? Nothing on an exchange holiday (no session was due).",
)
def session_freshness_schedule(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
    moment = _session_tick(context)
    if isinstance(moment, SkipReason):
        return moment
    return RunRequest(tags={AS_OF_TAG: moment.isoformat()})


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


automation_sensor = AutomationConditionSensorDefinition(
    "default_automation_condition_sensor",
    target=AssetSelection.all(),
    default_status=DefaultSensorStatus.RUNNING,
    description="Evaluates the assets' automation conditions (a new bronze session flows to "
    "silver, holdings and risk) every 30 seconds.",
)
"""Declared so it starts RUNNING: the one Dagster makes by itself starts stopped."""


@run_failure_sensor(
    name="run_failure_alert",
    default_status=DefaultSensorStatus.RUNNING,
    description="Logs every failed run and, when FINTRACK_ALERT_WEBHOOK_URL is set, POSTs it "
    "there with retries.",
)
def run_failure_alert(context: RunFailureSensorContext, alert_webhook: AlertWebhook) -> None:
    run = context.dagster_run
    message = context.failure_event.message or "the run failed"
    payload: dict[str, object] = {
        "text": f"fintrack: run {run.run_id} of {run.job_name} failed",
        "run_id": run.run_id,
        "job": run.job_name,
        "partition": run.tags.get("dagster/partition")
        or " .. ".join(
            t for t in (run.tags.get(RANGE_START_TAG), run.tags.get(RANGE_END_TAG)) if t
        ),
        "error": message[:1000],
    }
    context.log.error(f"ALERT: {payload['text']}: {payload['error']}")
    alert_webhook.send(payload, context.log)
