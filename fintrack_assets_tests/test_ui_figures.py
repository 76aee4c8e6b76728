"""What the UI shows after runs: each partition its own figures and the run's labelled as the
run's, money and shares as people write them, late sessions said in words, check descriptions
as sentences, blocking contracts, and a payments sensor that never re-requests processed files."""

import datetime as dt
import os
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from dagster import (
    AssetCheckSeverity,
    AssetKey,
    AssetRecordsFilter,
    SensorResult,
    SkipReason,
    build_sensor_context,
)

from fintrack_assets.core.display import duration, markdown_table, money, percent, plural, rate
from fintrack_assets.defs.ops.checks import AS_OF_TAG
from fintrack_assets.defs.payments.sensors import payment_files_sensor
from fintrack_assets.metadata import reject_share_check, share_threshold
from fintrack_assets.resources.landing import LandingZone
from fintrack_assets_tests.helpers import QUIET, Platform, local_platform
from fintrack_assets_tests.test_fraud_assets import GOOD, NEXT_DAY

SESSIONS = ["2025-03-12", "2025-03-13", "2025-03-14"]
NEW_YORK = ZoneInfo("America/New_York")


def _local(tmp_path: Path) -> dict[str, str]:
    """A local lake and an embedded DuckDB under `tmp_path`."""
    return {
        "FINTRACK_LAKE_URL": str(tmp_path / "lake"),
        "FINTRACK_WAREHOUSE_URL": f"duckdb:///{tmp_path}/warehouse.duckdb",
    }


def _materializations(platform: Platform, asset: str) -> dict[str, dict]:
    """Each partition's latest materialisation metadata, by partition key."""
    records = platform.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset)), limit=1000, ascending=True
    ).records
    return {
        r.partition_key: dict(r.asset_materialization.metadata)
        for r in records
        if r.asset_materialization is not None and r.partition_key is not None
    }


def test_money_shares_rates_and_durations_read_as_people_write_them():
    assert money(114450) == "114,450.00 USD"
    assert money(-1234.5) == "-1,234.50 USD"
    assert percent(0.0115) == "1.15 %"
    assert percent(0) == "0.00 %"
    assert rate(98342, 2.0) == "49,171 rows/s"
    assert duration(1594 * 60) == "1 day 2 h 34 min"
    assert duration(2 * 86400 + 60) == "2 days 1 min"
    assert duration(5 * 60 + 10) == "5 min 10 s"
    assert duration(40) == "40 s"
    assert [plural(n, "attempt") for n in (0, 1, 3)] == ["0 attempts", "1 attempt", "3 attempts"]
    assert [plural(n, "batch", "batches") for n in (1, 2)] == ["1 batch", "2 batches"]


def test_a_preview_keeps_every_column_and_formats_each_by_type():
    frame = pl.DataFrame(
        {
            "portfolio_id": ["GROWTH"],
            "market_value": [114450.0],
            "weight": [0.012345678],
            "volume": [12345678],
            "scored_at": [dt.datetime(2025, 3, 14, 21, 5, 7, 123456, tzinfo=dt.UTC)],
            **{f"extra_column_{i}": [i] for i in range(15)},
        }
    )
    table = markdown_table(frame)
    header, _, row = table.splitlines()
    assert header.count("|") == frame.width + 1  # nothing cut
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:5] == ["GROWTH", "114,450.00", "0.01235", "12,345,678", "2025-03-14 21:05:07 UTC"]


def test_a_partition_shows_its_own_figures_and_the_run_its_own_labelled(tmp_path, monkeypatch):
    platform = local_platform(tmp_path, monkeypatch)
    assert platform.market(SESSIONS[0], SESSIONS[-1]).success
    bronze = platform.lake_frame("bronze_ohlcv")
    per_day = {d.isoformat(): n for d, n in bronze.group_by("date").len().iter_rows()}
    assert len(per_day) == 3 and sum(per_day.values()) == bronze.height

    materialised = _materializations(platform, "bronze_ohlcv")
    assert set(materialised) == set(SESSIONS)
    for key in SESSIONS:
        metadata = materialised[key]
        assert metadata["dagster/row_count"].value == per_day[key]
        assert "rows_in_run" not in metadata and "sessions" not in metadata
    for key in SESSIONS[:-1]:
        assert not any(label.startswith("run/") for label in materialised[key])
    last = materialised[SESSIONS[-1]]
    assert last["run/rows"].value == bronze.height
    assert last["run/sessions"].value == 3 and last["run/partitions"].value == 3
    raw = _materializations(platform, "raw_ohlcv")
    assert raw[SESSIONS[0]]["source"].value == "synthetic"  # true of each partition
    assert "run/symbols_requested" in raw[SESSIONS[-1]]


def test_a_share_in_a_check_reads_as_a_percentage(tmp_path, monkeypatch):
    platform = local_platform(tmp_path, monkeypatch)
    result = (
        platform.defs.resolve_job_def("daily_market_job")
        .get_subset(
            asset_selection={
                AssetKey(a) for a in ("raw_ohlcv", "bronze_ohlcv", "bronze_ohlcv_rejects")
            }
        )
        .execute_in_process(
            instance=platform.instance,
            tags={
                "dagster/asset_partition_range_start": SESSIONS[0],
                "dagster/asset_partition_range_end": SESSIONS[0],
            },
            run_config=QUIET,
        )
    )
    checks = {e.check_name: e.metadata for e in result.get_asset_check_evaluations()}
    assert checks["reject_share"]["reject_share"].value == "0.00 %"
    assert checks["reject_share"]["threshold"].value == "1.00 %"
    assert checks["symbol_failures"]["threshold"].value == "5.00 %"


def test_the_reject_share_check_holds_up_to_its_threshold_and_lists_the_reasons():
    def check(rejected: int, total: int, counts: dict[str, int]) -> dict:
        result = reject_share_check(
            "trades",
            rejected,
            total,
            threshold=0.25,
            severity=AssetCheckSeverity.WARN,
            counts=counts,
            metadata={"rows": total},
        )
        assert result.check_name == "reject_share" and result.asset_key == AssetKey("trades")
        assert result.severity == AssetCheckSeverity.WARN
        return {"passed": result.passed, **{k: v.value for k, v in result.metadata.items()}}

    # 2 of 8 is 25 %: at the threshold, it holds; 3 of 8 (37.5 %) does not.
    assert check(2, 8, {"bad_date": 1, "oversell": 1}) == {
        "passed": True,
        "reject_share": "25.00 %",
        "threshold": "25.00 %",
        "rows": 8,
        "reason/bad_date": 1,
        "reason/oversell": 1,
    }
    assert check(3, 8, {"oversell": 3})["passed"] is False
    assert check(3, 8, {"oversell": 3})["reject_share"] == "37.50 %"
    # No rows at all is no share of rejects.
    assert check(0, 0, {}) == {
        "passed": True,
        "reject_share": "0.00 %",
        "threshold": "25.00 %",
        "rows": 0,
    }
    field = share_threshold(0.05, "The check fails above this share")
    assert field.default == 0.05
    assert field.description == "The check fails above this share (0.05 = 5 %)."


def test_a_late_session_says_how_late_in_words(tmp_path, monkeypatch):
    platform = local_platform(tmp_path, monkeypatch)
    assert platform.market("2025-03-13", "2025-03-14").success
    result = platform.defs.resolve_job_def("session_freshness_job").execute_in_process(
        instance=platform.instance,
        tags={AS_OF_TAG: dt.datetime(2025, 3, 14, 18, 30, tzinfo=NEW_YORK).isoformat()},
        run_config=QUIET,
    )
    evaluations = {e.asset_key.to_user_string(): e for e in result.get_asset_check_evaluations()}
    [record] = platform.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("bronze_ohlcv"), asset_partitions=["2025-03-14"]),
        limit=1,
    ).records
    deadline = dt.datetime(2025, 3, 14, 18, 0, tzinfo=NEW_YORK).timestamp()
    # Past an hour, lateness reads in whole minutes: the seconds are dropped, not rounded.
    minutes = round(record.timestamp - deadline) // 60
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    words = " ".join(
        part
        for part in (
            f"{days} day{'s' * (days != 1)}" if days else "",
            f"{hours} h" if hours else "",
            f"{mins} min" if mins else "",
        )
        if part
    )
    bronze = evaluations["bronze_ohlcv"]
    assert bronze.passed
    assert bronze.description == (f"2025-03-14 landed {words} after the 18:00 New York deadline.")
    assert bronze.metadata["late_by"].value == words
    silver = evaluations["silver_ohlcv_3d"]
    assert not silver.passed
    assert silver.description.startswith(
        "2025-03-14 has not landed: 30 min past the 18:00 New York deadline"
    )


def test_every_check_description_is_a_sentence(tmp_path, monkeypatch):
    graph = Platform(_local(tmp_path), monkeypatch).defs.resolve_asset_graph()
    specs = [spec for assets in graph.assets_defs for spec in assets.check_specs]
    assert "session_freshness" in {spec.name for spec in specs} and len(specs) > 20
    for spec in specs:
        text = spec.description or ""
        name = f"{spec.asset_key.to_user_string()}:{spec.name}"
        assert text[:1].isupper() and text.endswith("."), (name, text)
        assert not re.search(r"<=|>=|schemas\.| = ", text), (name, text)


def test_contracts_of_bronze_trades_and_payments_block_downstream(tmp_path, monkeypatch):
    platform = local_platform(tmp_path, monkeypatch)
    blocking = {
        spec.asset_key.to_user_string()
        for assets in platform.defs.resolve_asset_graph().assets_defs
        for spec in assets.check_specs
        if spec.name == "contract" and spec.blocking
    }
    assert {"bronze_ohlcv", "portfolio_trades", "payment_transactions"} <= blocking

    # raw rows without a source: validation has no reason to refuse them, the contract does.
    assert platform.market(SESSIONS[0]).success
    raw = platform.lake("raw_ohlcv")
    day = dt.date.fromisoformat(SESSIONS[0])
    broken = raw.read_window().with_columns(pl.lit(None, pl.String).alias("source"))
    raw.replace_window(broken, "date", day, day + dt.timedelta(days=1))
    run = platform.daily(
        SESSIONS[0], assets=["bronze_ohlcv", "bronze_ohlcv_rejects", "silver_ohlcv_3d"]
    )
    assert not run.success
    assert run.asset_checks[("bronze_ohlcv", "contract")] is False
    assert "silver_ohlcv_3d" not in run.partitions  # waited for data that passed: never ran
    assert "blocking asset check" in run.failure


@pytest.fixture
def payments(tmp_path, monkeypatch) -> tuple[Platform, LandingZone]:
    return Platform(_local(tmp_path), monkeypatch), LandingZone(str(tmp_path / "lake"))


def _tick(platform: Platform, cursor: str | None = None) -> SensorResult | SkipReason:
    context = build_sensor_context(
        instance=platform.instance,
        cursor=cursor,
        definitions=platform.defs,
        resources={"lake": platform.defs.resources["lake"]},
    )
    return payment_files_sensor(context)


def test_days_processed_by_another_run_are_not_requested_again(payments):
    platform, zone = payments
    first = zone.write("payment_transactions", "a.csv", GOOD.encode(), dt.date(2025, 3, 2))
    zone.write("payment_transactions", "a.csv", NEXT_DAY.encode(), dt.date(2025, 3, 3))
    job = platform.defs.resolve_job_def("payments_job")
    tags = {
        "dagster/asset_partition_range_start": "2025-03-02",
        "dagster/asset_partition_range_end": "2025-03-03",
    }
    assert platform._run(job, tags, QUIET).success  # in process, as the demo runs it

    quiet = _tick(platform)
    assert isinstance(quiet, SensorResult) and quiet.run_requests == []
    assert isinstance(_tick(platform, quiet.cursor), SkipReason)

    # The same file uploaded again with new content: its day, and only its day, is requested.
    later = os.stat(first).st_mtime + 5
    os.utime(first, (later, later))
    changed = _tick(platform, quiet.cursor)
    assert [r.partition_key for r in changed.run_requests] == ["2025-03-02"]
    # The run key follows the content: the same files give the same key from any cursor.
    assert _tick(platform).run_requests[0].run_key == changed.run_requests[0].run_key


def test_a_day_never_processed_is_requested(payments):
    platform, zone = payments
    zone.write("payment_transactions", "a.csv", GOOD.encode(), dt.date(2025, 3, 2))
    result = _tick(platform)
    assert [r.partition_key for r in result.run_requests] == ["2025-03-02"]
