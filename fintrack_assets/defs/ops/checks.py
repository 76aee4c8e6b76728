"""Checks across layers: each trading_days asset has its session's data by 18:00 New York."""

import datetime as dt
from collections.abc import Iterator
from zoneinfo import ZoneInfo

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetRecordsFilter,
    MetadataValue,
    multi_asset_check,
)

from fintrack_assets.core.calendar import TIMEZONE, session_due
from fintrack_assets.core.display import duration
from fintrack_assets.core.silver import INTERVALS
from fintrack_assets.defs.risk.assets import RISK_ASSET_KEYS
from fintrack_assets.defs.silver.assets import silver_key
from fintrack_assets.partitions import MARKET_CLOSE_PLUS

FRESHNESS_DEADLINE = dt.time(18, 0)
"""A session's data is due by 18:00 New York time on the session's day."""
FRESHNESS_CHECK = "session_freshness"
AS_OF_TAG = "fintrack/freshness_as_of"
"""A run tag (ISO datetime) that evaluates the check as of that moment: the schedule sets its
tick's time, so a late run judges the session that was due at the tick."""
SESSION_ASSETS = (
    "raw_ohlcv",
    "bronze_ohlcv",
    *(silver_key(n) for n in INTERVALS),
    "treasury_yields",
    "holdings_daily",
    *RISK_ASSET_KEYS,
)
"""The assets whose sessions users wait for (rejects tables excluded)."""
BY_MONTH = frozenset(silver_key(n) for n in INTERVALS)
"""On session_months: a session has landed once its month is materialised after the session
closed."""


def _as_of(context: AssetCheckExecutionContext) -> dt.datetime:
    tagged = context.run.tags.get(AS_OF_TAG)
    if tagged is None:
        return dt.datetime.now(ZoneInfo(TIMEZONE))
    moment = dt.datetime.fromisoformat(tagged)
    if moment.tzinfo is None:
        raise ValueError(f"{AS_OF_TAG} needs a timezone offset: {tagged!r}")
    return moment


@multi_asset_check(
    specs=[
        AssetCheckSpec(
            FRESHNESS_CHECK,
            asset=key,
            description="The newest session due (by 18:00 New York on its day) has been "
            "materialised; metadata says when, or how overdue it is.",
        )
        for key in SESSION_ASSETS
    ],
    can_subset=True,
)
def session_freshness(context: AssetCheckExecutionContext) -> Iterator[AssetCheckResult]:
    """Per partition rather than per asset: a materialisation of any other session (yesterday's,
    a backfill of last year) does not make today's session fresh. Dagster's FreshnessPolicy
    judges an asset's latest materialisation on a cron, which knows no exchange holidays.
    A session that landed after its deadline passes (its data is there) and says how late in
    words; only a session still missing fails. The silver bars are by month: the session has
    landed there with the month's first materialisation after the session's close."""
    now = _as_of(context)
    session = session_due(now, FRESHNESS_DEADLINE)
    deadline = dt.datetime.combine(session, FRESHNESS_DEADLINE, ZoneInfo(TIMEZONE))
    closed = dt.datetime.combine(session, MARKET_CLOSE_PLUS, ZoneInfo(TIMEZONE)).timestamp()
    for check_key in context.selected_asset_check_keys:
        monthly = check_key.asset_key.to_user_string() in BY_MONTH
        records = context.instance.fetch_materializations(
            AssetRecordsFilter(
                asset_key=check_key.asset_key,
                asset_partitions=[(session.replace(day=1) if monthly else session).isoformat()],
                after_timestamp=closed if monthly else None,
            ),
            limit=1,
            ascending=True,
        ).records
        metadata: dict[str, MetadataValue] = {
            "session": MetadataValue.text(session.isoformat()),
            "deadline": MetadataValue.timestamp(deadline),
            "as_of": MetadataValue.timestamp(now),
        }
        due = f"the {deadline:%H:%M} New York deadline"
        if records:
            landed = records[0].timestamp
            metadata["first_materialized_at"] = MetadataValue.timestamp(landed)
            late = landed - deadline.timestamp()
            metadata["minutes_late"] = MetadataValue.float(round(max(late, 0.0) / 60, 1))
            if late > 0:
                metadata["late_by"] = MetadataValue.text(duration(late))
                description = f"{session} landed {duration(late)} after {due}."
            else:
                description = f"{session} landed on time, {duration(late)} before {due}."
        else:
            overdue = now.timestamp() - deadline.timestamp()
            metadata["overdue_minutes"] = MetadataValue.float(round(overdue / 60, 1))
            metadata["overdue_by"] = MetadataValue.text(duration(overdue))
            description = (
                f"{session} has not landed: {duration(overdue)} past {due} "
                f"({deadline:%Y-%m-%d %H:%M %Z})."
            )
        yield AssetCheckResult(
            asset_key=check_key.asset_key,
            check_name=FRESHNESS_CHECK,
            passed=bool(records),
            severity=AssetCheckSeverity.ERROR,
            description=description,
            metadata=metadata,
        )
