"""Range integrity of raw_ohlcv and bronze_ohlcv through Dagster, on every storage pairing."""

import datetime as dt

import polars as pl
import pytest

from fintrack_assets.core.calendar import sessions_between
from fintrack_assets_tests.helpers import Platform

SESSIONS = sessions_between(dt.date(2025, 3, 3), dt.date(2025, 6, 3))[:60]
FIRST, LAST = SESSIONS[0].isoformat(), SESSIONS[-1].isoformat()
UNIVERSE = "AAPL,MSFT,XOM,JPM,SPY"


@pytest.fixture(params=["local+duckdb", "s3+duckdb", "local+postgresql"])
def platform(request, tmp_path, monkeypatch) -> Platform:
    lake, warehouse = request.param.split("+")
    env = {"FINTRACK_UNIVERSE": UNIVERSE}
    if lake == "local":
        env["FINTRACK_LAKE_URL"] = str(tmp_path / "lake")
    else:
        env["FINTRACK_LAKE_URL"] = f"s3://{request.getfixturevalue('s3_bucket')}/lake"
        env["AWS_ENDPOINT_URL"] = request.getfixturevalue("s3_endpoint")
    if warehouse == "duckdb":
        env["FINTRACK_WAREHOUSE_URL"] = f"duckdb:///{tmp_path}/warehouse.duckdb"
    else:
        env["FINTRACK_WAREHOUSE_URL"] = request.getfixturevalue("postgres_url")
    platform = Platform(env, monkeypatch)
    assert platform.universe().success
    return platform


def local_platform(tmp_path, monkeypatch, name: str) -> Platform:
    """A local lake and DuckDB warehouse under tmp_path/name, with the universe in place."""
    platform = Platform(
        {
            "FINTRACK_UNIVERSE": UNIVERSE,
            "FINTRACK_LAKE_URL": str(tmp_path / name / "lake"),
            "FINTRACK_WAREHOUSE_URL": f"duckdb:///{tmp_path}/{name}/warehouse.duckdb",
        },
        monkeypatch,
    )
    assert platform.universe().success
    return platform


def _counts(platform: Platform) -> dict[str, tuple[int, int]]:
    return {
        asset: (frame.height, frame["date"].n_unique())
        for asset in ("raw_ohlcv", "bronze_ohlcv")
        for frame in [platform.lake_frame(asset)]
    }


def test_one_run_over_60_sessions_gives_60_partitions_and_reruns_change_nothing(platform):
    run = platform.market(FIRST, LAST)
    assert run.success
    assert run.partitions["raw_ohlcv"] == {d.isoformat() for d in SESSIONS}
    assert run.partitions["bronze_ohlcv"] == {d.isoformat() for d in SESSIONS}
    assert run.checks == {"symbol_failures": True, "reject_share": True, "contract": True}
    expected = {"raw_ohlcv": (5 * 60, 60), "bronze_ohlcv": (5 * 60, 60)}
    assert _counts(platform) == expected
    assert platform.warehouse_frame("symbol_universe").height == 5

    again = platform.market(SESSIONS[17].isoformat())
    assert again.success and again.partitions["bronze_ohlcv"] == {SESSIONS[17].isoformat()}
    assert _counts(platform) == expected
    assert platform.market(FIRST, LAST).success
    assert _counts(platform) == expected


def _comparable(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.drop("ingested_at").sort("symbol", "date")


def test_a_range_run_equals_the_partitions_run_one_by_one(tmp_path, monkeypatch):
    keys = [d.isoformat() for d in SESSIONS[:8]]
    ranged = local_platform(tmp_path, monkeypatch, "ranged")
    single = local_platform(tmp_path, monkeypatch, "single")
    assert ranged.market(keys[0], keys[-1]).success
    for key in reversed(keys):
        assert single.market(key).success
    for asset in ("raw_ohlcv", "bronze_ohlcv", "bronze_ohlcv_rejects"):
        assert _comparable(ranged.lake_frame(asset)).equals(_comparable(single.lake_frame(asset)))
    assert ranged.lake_frame("bronze_ohlcv").height == 5 * 8


def test_bad_raw_bars_go_to_rejects_and_turn_the_check_red(tmp_path, monkeypatch):
    platform = local_platform(tmp_path, monkeypatch, "lake")
    day = SESSIONS[5]
    assert platform.market(day.isoformat(), assets=["raw_ohlcv"]).success
    raw = platform.lake_frame("raw_ohlcv")
    broken = pl.concat(
        [
            raw.with_columns(
                pl.when(pl.col("symbol") == "AAPL")
                .then(-1)
                .otherwise(pl.col("volume"))
                .alias("volume")
            ),
            raw.filter(pl.col("symbol") == "MSFT"),  # a duplicate bar
        ]
    )
    platform.lake("raw_ohlcv").replace_window(broken, "date", day, day + dt.timedelta(days=1))

    run = platform.market(day.isoformat(), assets=["bronze_ohlcv", "bronze_ohlcv_rejects"])
    assert run.success  # bad input never crashes the run
    assert run.checks["reject_share"] is False
    rejects = platform.lake_frame("bronze_ohlcv_rejects")
    assert sorted(rejects.select("symbol", "reason").rows()) == [
        ("AAPL", "negative_volume"),
        ("MSFT", "duplicate"),
    ]
    assert platform.lake_frame("bronze_ohlcv").height == 4


def test_a_session_that_has_not_closed_is_refused(tmp_path, monkeypatch):
    platform = local_platform(tmp_path, monkeypatch, "lake")
    future = sessions_between(
        dt.date.today() + dt.timedelta(days=7), dt.date.today() + dt.timedelta(days=30)
    )[0]
    run = platform.market(future.isoformat(), assets=["raw_ohlcv"])
    assert not run.success
    assert not platform.lake("raw_ohlcv").exists()
