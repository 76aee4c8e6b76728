"""The freshness check at each session's deadline."""

from dagster import RunRequest

from fintrack_assets.automation import session_schedule
from fintrack_assets.defs.ops.checks import AS_OF_TAG, FRESHNESS_DEADLINE
from fintrack_assets.defs.ops.jobs import session_freshness_job

session_freshness_schedule = session_schedule(
    name="session_freshness_schedule",
    job=session_freshness_job,
    at=FRESHNESS_DEADLINE,
    description="At 18:00 New York on each session: has every trading_days asset that "
    "session's data? Nothing on an exchange holiday (no session was due).",
    request=lambda moment: RunRequest(tags={AS_OF_TAG: moment.isoformat()}),
)
