"""Per-session freshness: the session due by 18:00 New York, judged partition by partition,
as the 18:00 schedule runs it."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from fintrack_assets.core.calendar import session_due
from fintrack_assets.defs.ops.checks import AS_OF_TAG, BY_MONTH, SESSION_ASSETS
from fintrack_assets_tests.helpers import QUIET, Platform, local_platform

NEW_YORK = ZoneInfo("America/New_York")
SIX_PM = dt.time(18, 0)


def _ny(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=NEW_YORK)


@pytest.mark.parametrize(
    ("now", "due"),
    [
        (_ny(2025, 3, 14, 18, 0), dt.date(2025, 3, 14)),  # Friday, at the deadline
        (_ny(2025, 3, 14, 17, 59), dt.date(2025, 3, 13)),  # not yet due: Thursday's
        (_ny(2025, 3, 17, 9, 30), dt.date(2025, 3, 14)),  # Monday morning: Friday's
        (_ny(2025, 3, 16, 12, 0), dt.date(2025, 3, 14)),  # Sunday
        (_ny(2025, 7, 4, 19, 0), dt.date(2025, 7, 3)),  # Independence Day: the day before
        (_ny(2025, 11, 28, 18, 30), dt.date(2025, 11, 28)),  # a half day is still a session
        (dt.datetime(2025, 3, 14, 22, 30, tzinfo=dt.UTC), dt.date(2025, 3, 14)),  # 18:30 NY
        (dt.datetime(2025, 3, 14, 21, 30, tzinfo=dt.UTC), dt.date(2025, 3, 13)),  # 17:30 NY
    ],
)
def test_the_session_due(now: dt.datetime, due: dt.date) -> None:
    assert session_due(now, SIX_PM) == due


@pytest.fixture
def platform(tmp_path, monkeypatch) -> Platform:
    platform = local_platform(tmp_path, monkeypatch)
    assert platform.market("2025-03-13", "2025-03-14").success  # raw and bronze only
    return platform


def _freshness(platform: Platform, as_of: dt.datetime) -> dict[str, tuple[bool, dict]]:
    result = platform.defs.resolve_job_def("session_freshness_job").execute_in_process(
        instance=platform.instance, tags={AS_OF_TAG: as_of.isoformat()}, run_config=QUIET
    )
    assert result.success
    return {
        e.asset_key.to_user_string(): (e.passed, e.metadata)
        for e in result.get_asset_check_evaluations()
    }


def test_each_asset_is_judged_on_the_session_due(platform: Platform) -> None:
    friday = _freshness(platform, _ny(2025, 3, 14, 18, 30))
    assert set(friday) == set(SESSION_ASSETS)
    assert {a for a, (passed, _) in friday.items() if passed} == {"raw_ohlcv", "bronze_ohlcv"}
    _, metadata = friday["silver_ohlcv_3d"]
    assert metadata["session"].value == "2025-03-14"
    assert metadata["overdue_minutes"].value == 30.0
    _, bronze = friday["bronze_ohlcv"]
    assert bronze["minutes_late"].value > 0  # materialised now, long after 2025-03-14 18:00

    # Silver is by month: March's materialisation after Friday's close lands Friday's session.
    assert platform.silver("2025-03-01").success
    refreshed = _freshness(platform, _ny(2025, 3, 14, 18, 30))
    passed, silver = refreshed["silver_ohlcv_3d"]
    assert passed and silver["session"].value == "2025-03-14" and silver["minutes_late"].value > 0

    # Monday after the deadline: Friday's data does not make Monday's session fresh.
    monday = _freshness(platform, _ny(2025, 3, 17, 18, 5))
    # (silver's March was materialised today, after Monday's close too.)
    assert not any(passed for a, (passed, _) in monday.items() if a not in BY_MONTH)
    assert monday["bronze_ohlcv"][1]["session"].value == "2025-03-17"

    # Before Friday's deadline the session due is Thursday's, which bronze has.
    thursday = _freshness(platform, _ny(2025, 3, 14, 17, 0))
    assert thursday["bronze_ohlcv"][0] and thursday["bronze_ohlcv"][1]["session"].value == (
        "2025-03-13"
    )
