"""The silver assets through Dagster: range runs, one-by-one runs, subsets, re-runs, checks."""

import datetime as dt

import polars as pl
import pytest
from dagster import AssetCheckKey, AssetKey
from polars.testing import assert_frame_equal

from fintrack_assets.core.calendar import sessions_between
from fintrack_assets.core.silver import INTERVALS
from fintrack_assets_tests.helpers import QUIET, Platform
from fintrack_assets_tests.silver_reference import SESSION_INDEX, reference

UNIVERSE = "AAPL,MSFT,XOM,JPM,SPY"
SILVER = [f"silver_ohlcv_{n}d" for n in INTERVALS]
# 2025-01-02 .. 2025-04-30: every interval has bucket ends inside, and the first 34- and
# 21-session buckets reach back before the first bronze session (partial bars).
SESSIONS = sessions_between(dt.date(2025, 1, 2), dt.date(2025, 5, 1))
FIRST, LAST = SESSIONS[0].isoformat(), SESSIONS[-1].isoformat()


def _platform(
    tmp_path, monkeypatch, name: str, lake_url: str | None = None, extra: dict | None = None
) -> Platform:
    """A platform whose lake is tmp_path/name (or `lake_url`), with the universe in place."""
    platform = Platform(
        {
            "FINTRACK_UNIVERSE": UNIVERSE,
            "FINTRACK_LAKE_URL": lake_url or str(tmp_path / name),
            "FINTRACK_WAREHOUSE_URL": f"duckdb:///{tmp_path}/{name}.duckdb",
            **(extra or {}),
        },
        monkeypatch,
    )
    assert platform.universe().success
    return platform


@pytest.fixture(params=["local", "s3"])
def platform(request, tmp_path, monkeypatch) -> Platform:
    if request.param == "local":
        return _platform(tmp_path, monkeypatch, "lake")
    bucket = request.getfixturevalue("s3_bucket")
    endpoint = request.getfixturevalue("s3_endpoint")
    return _platform(
        tmp_path, monkeypatch, "s3", f"s3://{bucket}/lake", {"AWS_ENDPOINT_URL": endpoint}
    )


def silver(platform: Platform, interval: int) -> pl.DataFrame:
    return platform.lake(f"silver_ohlcv_{interval}d").read_window().sort("symbol", "bar_end")


def test_one_range_run_builds_every_interval_like_the_reference_and_reruns_change_nothing(
    platform,
):
    run = platform.daily(FIRST, LAST)
    assert run.success
    for key in SILVER:
        assert run.partitions[key] == {"2025-01-01", "2025-02-01", "2025-03-01", "2025-04-01"}
    failed = {check for check, passed in run.asset_checks.items() if not passed}
    assert not failed
    assert ("silver_ohlcv_21d", "agrees_with_silver_ohlcv_3d") in run.asset_checks
    bronze = platform.lake_frame("bronze_ohlcv")
    end = SESSIONS[-1] + dt.timedelta(days=1)
    tables = {}
    for interval in INTERVALS:
        tables[interval] = silver(platform, interval)
        expected = reference(bronze, interval, SESSIONS[0], end)
        assert_frame_equal(tables[interval], expected, rel_tol=1e-12)
        assert tables[interval].height == expected.height > 0
    # The first 34-session bucket began in 2024: a partial bar with fewer days.
    first_34 = tables[34].filter(pl.col("bar_end") == pl.col("bar_end").min())
    assert (first_34["bar_start"] < SESSIONS[0]).all() and (first_34["n_days"] < 34).all()

    # A bucket end re-run alone, then the whole range again: nothing moves, nothing doubles.
    assert platform.daily("2025-03-20").success
    assert platform.daily(FIRST, LAST, assets=SILVER).success
    for interval in INTERVALS:
        assert_frame_equal(silver(platform, interval), tables[interval])


def test_a_range_run_equals_the_months_run_one_by_one(tmp_path, monkeypatch):
    months = ["2025-01-01", "2025-02-01", "2025-03-01"]
    ranged = _platform(tmp_path, monkeypatch, "ranged")
    single = _platform(tmp_path, monkeypatch, "single")
    for platform in (ranged, single):
        assert platform.market("2025-01-02", "2025-03-31").success
    assert ranged.silver(months[0], months[-1]).success
    for month in months:
        assert single.silver(month).success
    for interval in INTERVALS:
        one_run, one_by_one = silver(ranged, interval), silver(single, interval)
        assert one_run.height > 0, interval
        assert_frame_equal(one_run, one_by_one)


def test_each_month_counts_its_own_bars_and_a_rerun_keeps_the_others(tmp_path, monkeypatch):
    platform = _platform(tmp_path, monkeypatch, "lake")
    assert platform.daily("2025-02-03", "2025-03-31").success
    before = {n: silver(platform, n) for n in INTERVALS}
    march = sessions_between(dt.date(2025, 3, 1), dt.date(2025, 4, 1))
    run = platform.silver("2025-03-01")
    assert run.success and run.partitions["silver_ohlcv_3d"] == {"2025-03-01"}
    for interval in INTERVALS:
        # A bucket ends on session i when i + 1 is a multiple of the interval; 5 symbols.
        ends = [d for d in march if (SESSION_INDEX[d] + 1) % interval == 0]
        figures = run.metadata[f"silver_ohlcv_{interval}d"]
        assert figures["dagster/row_count"].value == 5 * len(ends), interval
        if ends:
            assert figures["last_bar_end"].value == max(ends).isoformat()
        assert_frame_equal(silver(platform, interval), before[interval])
    # By hand: March 2025 has 21 sessions, 6,328 (3 March) .. 6,348 (31 March); the 34-session
    # bucket 186 (6,324 .. 6,357) ends on 11 April, so March ends none, and the 21-session
    # bucket 301 (6,321 .. 6,341) ends on 20 March.
    assert SESSION_INDEX[march[0]] == 6328 and len(march) == 21
    assert run.metadata["silver_ohlcv_34d"]["dagster/row_count"].value == 0
    assert run.metadata["silver_ohlcv_21d"]["dagster/row_count"].value == 5


def test_one_interval_can_be_materialised_alone(tmp_path, monkeypatch):
    platform = _platform(tmp_path, monkeypatch, "lake")
    assert platform.market(FIRST, LAST).success
    run = platform.daily(FIRST, LAST, assets=["silver_ohlcv_8d"])
    assert run.success and set(run.partitions) == {"silver_ohlcv_8d"}
    assert {asset for asset, _ in run.asset_checks} == {"silver_ohlcv_8d"}
    assert not platform.lake("silver_ohlcv_3d").exists()
    bronze = platform.lake_frame("bronze_ohlcv")
    expected = reference(bronze, 8, SESSIONS[0], SESSIONS[-1] + dt.timedelta(days=1))
    assert_frame_equal(silver(platform, 8), expected, rel_tol=1e-12)


def test_the_nesting_check_goes_red_when_the_stored_intervals_disagree(tmp_path, monkeypatch):
    platform = _platform(tmp_path, monkeypatch, "lake")
    assert platform.daily("2025-02-03", "2025-03-31").success
    three = platform.lake("silver_ohlcv_3d")
    # Inflate one 3-session bar's high inside the 21-session bucket ending 2025-03-20.
    day = dt.date(2025, 3, 17)
    bars = three.read_window("bar_end", day, day + dt.timedelta(days=1))
    assert bars.height == 5
    tampered = bars.with_columns(
        pl.when(pl.col("symbol") == "MSFT").then(pl.col("high") * 3).otherwise("high").alias("high")
    )
    three.replace_window(tampered, "bar_end", day, day + dt.timedelta(days=1))

    job = platform.defs.resolve_job_def("silver_job").get_subset(
        asset_selection=set(),
        asset_check_selection={
            AssetCheckKey(AssetKey("silver_ohlcv_21d"), "agrees_with_silver_ohlcv_3d")
        },
    )
    summary = platform._run(
        job,
        {
            "dagster/asset_partition_range_start": "2025-03-01",
            "dagster/asset_partition_range_end": "2025-03-01",
        },
        QUIET,
    )
    assert summary.asset_checks == {("silver_ohlcv_21d", "agrees_with_silver_ohlcv_3d"): False}


def test_lake_maintenance_of_the_code_location_keeps_every_table_as_it_was(tmp_path, monkeypatch):
    platform = _platform(tmp_path, monkeypatch, "lake")
    assert platform.daily("2024-12-02", "2025-02-28").success  # two years of partitions
    assert platform.daily("2025-02-24").success  # and a second file in 2025
    tables = ["raw_ohlcv", "bronze_ohlcv", "bronze_ohlcv_rejects", *SILVER]
    before = {t: platform.lake(t).read_window() for t in tables}
    files_before = {t: platform.lake(t).active_files().height for t in tables}

    job = platform.defs.resolve_job_def("lake_maintenance")
    config = {"ops": {"maintain_lake_tables": {"config": {"retention_hours": 0}}}}
    result = job.execute_in_process(
        instance=platform.instance, run_config={**QUIET, **config}, raise_on_error=False
    )
    assert result.success
    observed = {
        e.event_specific_data.asset_observation.asset_key.to_user_string()
        for e in result.all_events
        if e.event_type_value == "ASSET_OBSERVATION"
    }
    assert observed == set(tables)
    for table in tables:
        after = platform.lake(table).read_window()
        key = ["symbol", "bar_end"] if table.startswith("silver") else ["symbol", "date"]
        assert_frame_equal(after.sort(key), before[table].sort(key))
        assert platform.lake(table).active_files().height <= files_before[table]
        assert platform.lake(table).pending_partitions() == []
