"""raw_ohlcv at real scale: batches staged in the lake so a run that dies resumes, `mode:
missing` that fetches only the absent pairs, and progress lines that say how far and how long."""

from __future__ import annotations

import csv
import datetime as dt
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from dagster import AssetKey, Failure
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from fintrack_assets.core.calendar import sessions_between
from fintrack_assets.core.fetch_plan import FetchProgress, missing_pairs, stage_key
from fintrack_assets.io_managers.lake import LakeTable
from fintrack_assets.io_managers.stage import KEY, STAGE_ROOT
from fintrack_assets.resources.budget import UNLIMITED
from fintrack_assets.resources.fetching import BatchBars, Log, Plan
from fintrack_assets.resources.market_data import MarketDataResource, SyntheticProvider
from fintrack_assets_tests.helpers import Platform
from fintrack_assets_tests.polygon_stub import Response, StubServer, SyntheticPolygon

FIRST, LAST = "2024-03-01", "2024-03-28"
SESSIONS = sessions_between(dt.date(2024, 3, 1), dt.date(2024, 3, 29))
SYMBOLS = [f"SYN{i:04d}" for i in range(9)]

FETCHED: list[tuple[int, tuple[str, ...], dt.date, dt.date]] = []
"""(batch, symbols, first session, last session) of every batch the provider produced."""
CRASH_AFTER: list[int] = []
"""While it holds n, the provider fails once n batches have been fetched."""


class Recording:
    """The synthetic provider, two symbols a batch, recording each batch it fetches and
    failing part way when told to (as a killed or crashed fetch would)."""

    name = "synthetic"
    budget = UNLIMITED

    def __init__(self, universe: pl.DataFrame) -> None:
        self.inner = SyntheticProvider(universe, batch_size=2)

    def batch_size_for(self, sessions: int) -> int:
        return 2

    def fetch_batches(
        self, plan: Plan, sessions: Sequence[dt.date], log: Log
    ) -> Iterator[BatchBars]:
        for piece in self.inner.fetch_batches(plan, sessions, log):
            if CRASH_AFTER and len(FETCHED) >= CRASH_AFTER[0]:
                CRASH_AFTER.clear()
                raise Failure("the fetch died part way", allow_retries=False)
            FETCHED.append((piece.number, tuple(piece.symbols), sessions[0], sessions[-1]))
            yield piece

    def symbol_metadata(self, symbols: Sequence[str], log: Log) -> Any:
        return self.inner.symbol_metadata(symbols, log)


class RecordingMarketData(MarketDataResource):
    def provider(self, universe: pl.DataFrame) -> Recording:  # type: ignore[override]
        return Recording(universe)


@pytest.fixture(autouse=True)
def _fresh_records() -> Iterator[None]:
    FETCHED.clear()
    CRASH_AFTER.clear()
    yield
    FETCHED.clear()
    CRASH_AFTER.clear()


def platform(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, s3: dict[str, str] | None = None
) -> Platform:
    lake = {"FINTRACK_LAKE_URL": str(tmp_path / name / "lake")} if s3 is None else s3
    made = Platform(
        {
            "FINTRACK_UNIVERSE": "synthetic:9",
            **lake,
            "FINTRACK_WAREHOUSE_URL": f"duckdb:///{tmp_path / name}.duckdb",
            "FINTRACK_START_DATE": "2024-01-02",
        },
        monkeypatch,
        resources={"market_data": RecordingMarketData()},
    )
    assert made.universe().success
    return made


def raw_rows(made: Platform) -> pl.DataFrame:
    return made.lake_frame("raw_ohlcv").drop("ingested_at")


def staged_keys(made: Platform) -> list[str]:
    lake = made.defs.resources["lake"]
    uri = f"{lake.lake_url}/{STAGE_ROOT}/raw_ohlcv"  # type: ignore[union-attr]
    options = lake.storage_options or None  # type: ignore[union-attr]
    try:
        table = DeltaTable(uri, storage_options=options)
    except TableNotFoundError:
        return []
    return sorted(set(table.to_pyarrow_table(columns=[KEY]).column(KEY).to_pylist()))


def raw_config(**config: Any) -> dict[str, Any]:
    return {"ops": {"raw_ohlcv": {"config": config}}}


def test_the_progress_line_counts_resumed_batches_but_times_only_this_attempt() -> None:
    progress = FetchProgress(batches=27, symbols=5_400)
    progress.resumed(batches=13, symbols=2_600, rows=1_040_000, failed=2)
    progress.advance(symbols=200, rows=80_000, failed=1)
    # 200 symbols fetched in 10 s is 20 a second; 2,600 symbols are left: 130 s.
    assert progress.line(number=14, elapsed=10.0) == (
        "batch 14/27 (51 %): 2,800/5,400 symbols, 1,120,000 rows, 3 failed so far, "
        "20 symbols/s, ETA 2 min 10 s"
    )
    figures = progress.figures(elapsed=10.0)
    assert figures["percent_done"] == round(100 * 2_800 / 5_400, 1)
    assert figures["eta"] == "2 min 10 s"


def test_a_stage_is_reused_only_for_the_same_provider_batches_sessions_and_mode() -> None:
    plan = [(1, ["AAA", "BBB"]), (2, ["CCC"])]
    key = stage_key("synthetic", plan, SESSIONS, "replace")
    assert key == stage_key("synthetic", [(1, ["AAA", "BBB"]), (2, ["CCC"])], SESSIONS, "replace")
    others = {
        stage_key("polygon", plan, SESSIONS, "replace"),
        stage_key("synthetic", [(1, ["AAA", "BBB"]), (2, ["CCD"])], SESSIONS, "replace"),
        stage_key("synthetic", plan, SESSIONS[1:], "replace"),
        stage_key("synthetic", plan, SESSIONS, "missing"),
    }
    assert key not in others and len(others) == 4
    one = pl.DataFrame({"symbol": ["AAA"], "date": [SESSIONS[0]]})
    two = pl.DataFrame({"symbol": ["AAA"], "date": [SESSIONS[1]]})
    assert stage_key("synthetic", plan, SESSIONS, "missing", one) != stage_key(
        "synthetic", plan, SESSIONS, "missing", two
    )


def test_missing_pairs_are_the_expected_ones_not_stored() -> None:
    d1, d2 = SESSIONS[:2]
    expected = pl.DataFrame({"symbol": ["A", "A", "B", "B"], "date": [d1, d2, d1, d2]})
    existing = pl.DataFrame({"symbol": ["A", "B", "C"], "date": [d1, d2, d1]})
    assert missing_pairs(expected, existing).rows() == [("A", d2), ("B", d1)]


def test_a_range_that_died_part_way_resumes_without_fetching_its_staged_batches_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = platform(tmp_path, monkeypatch, "uninterrupted")
    assert reference.market(FIRST, LAST, assets=["raw_ohlcv"]).success
    # 9 symbols, 2 a batch: 5 batches.
    assert sorted(batch for batch, *_ in FETCHED) == [1, 2, 3, 4, 5]
    expected = raw_rows(reference)
    assert expected.height == 9 * len(SESSIONS)
    FETCHED.clear()

    made = platform(tmp_path, monkeypatch, "resumed")
    CRASH_AFTER.append(3)
    assert not made.market(FIRST, LAST, assets=["raw_ohlcv"]).success
    assert [batch for batch, *_ in FETCHED] == [1, 2, 3]
    assert not made.lake("raw_ohlcv").exists()  # nothing committed: the window is atomic
    assert len(staged_keys(made)) == 1

    FETCHED.clear()
    run = made.market(FIRST, LAST, assets=["raw_ohlcv"])
    assert run.success
    assert [batch for batch, *_ in FETCHED] == [4, 5]
    assert raw_rows(made).equals(expected)
    assert staged_keys(made) == []  # the stage goes once the window is committed

    FETCHED.clear()
    assert made.market(FIRST, LAST, assets=["raw_ohlcv"]).success  # a plain re-run
    assert [batch for batch, *_ in FETCHED] == [1, 2, 3, 4, 5]
    assert raw_rows(made).equals(expected)


def test_resume_and_missing_work_on_an_s3_lake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_endpoint: str, s3_bucket: str
) -> None:
    s3 = {"FINTRACK_LAKE_URL": f"s3://{s3_bucket}/lake", "AWS_ENDPOINT_URL": s3_endpoint}
    made = platform(tmp_path, monkeypatch, "s3", s3)
    CRASH_AFTER.append(2)
    assert not made.market(FIRST, LAST, assets=["raw_ohlcv"]).success
    assert len(staged_keys(made)) == 1
    FETCHED.clear()
    assert made.market(FIRST, LAST, assets=["raw_ohlcv"]).success
    assert [batch for batch, *_ in FETCHED] == [3, 4, 5]
    assert staged_keys(made) == []
    complete = raw_rows(made)
    assert complete.height == 9 * len(SESSIONS)

    lake = made.defs.resources["lake"]
    table = DeltaTable(made.lake("raw_ohlcv").uri, storage_options=lake.storage_options)  # type: ignore[union-attr]
    table.delete(f"symbol = 'SYN0004' AND date = '{SESSIONS[7].isoformat()}'")
    FETCHED.clear()
    run = made.market(FIRST, LAST, assets=["raw_ohlcv"], run_config=raw_config(mode="missing"))
    assert run.success
    assert [(1, ("SYN0004",), SESSIONS[7], SESSIONS[7])] == FETCHED
    assert raw_rows(made).equals(complete)


def test_a_stage_of_another_window_or_resume_off_is_never_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = platform(tmp_path, monkeypatch, "stale")
    CRASH_AFTER.append(2)
    assert not made.market(FIRST, LAST, assets=["raw_ohlcv"]).success
    FETCHED.clear()
    assert made.market(FIRST, "2024-03-27", assets=["raw_ohlcv"]).success
    assert [batch for batch, *_ in FETCHED] == [1, 2, 3, 4, 5]
    FETCHED.clear()
    assert made.market(
        FIRST, LAST, assets=["raw_ohlcv"], run_config=raw_config(resume=False)
    ).success
    assert [batch for batch, *_ in FETCHED] == [1, 2, 3, 4, 5]


def test_mode_missing_fetches_exactly_the_absent_pairs_and_leaves_stored_rows_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = platform(tmp_path, monkeypatch, "missing")
    assert made.market(FIRST, LAST, assets=["raw_ohlcv"]).success
    complete = made.lake_frame("raw_ohlcv")
    gone = [("SYN0002", SESSIONS[3]), ("SYN0002", SESSIONS[4]), ("SYN0007", SESSIONS[10])]
    table = DeltaTable(str(made.lake("raw_ohlcv").uri))
    for symbol, day in gone:
        table.delete(f"symbol = '{symbol}' AND date = '{day.isoformat()}'")
    before = made.lake("raw_ohlcv").version()

    FETCHED.clear()
    run = made.market(FIRST, LAST, assets=["raw_ohlcv"], run_config=raw_config(mode="missing"))
    assert run.success
    # Only the two symbols with gaps, over the sessions that span the gaps.
    assert [(1, ("SYN0002", "SYN0007"), SESSIONS[3], SESSIONS[10])] == FETCHED
    after = made.lake_frame("raw_ohlcv")
    assert after.drop("ingested_at").equals(complete.drop("ingested_at"))
    # Untouched rows keep their ingestion time: the merge rewrote nothing that was there.
    kept = ~pl.struct("symbol", "date").is_in(
        pl.DataFrame(gone, schema=["symbol", "date"], orient="row").to_struct().implode()
    )
    assert after.filter(kept)["ingested_at"].equals(complete.filter(kept)["ingested_at"])
    assert made.lake("raw_ohlcv").version() == (before or 0) + 1  # one merge commit

    event = made.instance.get_latest_materialization_event(AssetKey("raw_ohlcv"))
    assert event is not None and event.asset_materialization is not None
    assert event.asset_materialization.partition == LAST
    metadata = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    assert metadata["run/pairs_missing"] == 3
    assert metadata["run/pairs_fetched"] == 3
    assert metadata["run/pairs_still_missing"] == 0
    assert metadata["rows_merged"] == 3  # exactly the deleted pairs were inserted
    assert metadata["dagster/row_count"] == 9  # the partition's rows, stored and merged
    FETCHED.clear()
    again = made.market(FIRST, LAST, assets=["raw_ohlcv"], run_config=raw_config(mode="missing"))
    assert again.success
    assert FETCHED == []  # nothing missing any more


# -- a real `dagster asset materialize` killed with SIGKILL part way -----------------------

BIN = Path(sys.executable).parent
STUB_TICKERS = [f"SYN{i:04d}" for i in range(200)]
HELD = set(STUB_TICKERS[100:])
"""Batches 3 and 4 (50 symbols a batch): their requests wait until the run is killed."""
HALF_STAGED = re.compile(r"batch \d+/4 \((?:2 done, )?50 %\)")


class Gate:
    """The synthetic Polygon, holding every range request for a HELD ticker until `opened`."""

    def __init__(self) -> None:
        self.router = SyntheticPolygon(STUB_TICKERS)
        self.opened = threading.Event()

    def __call__(self, path: str, query: dict[str, str]) -> Response:
        match = SyntheticPolygon.RANGE.match(path)
        if match and match.group(1) in HELD:
            self.opened.wait(timeout=120)
        return self.router(path, query)


def ranged(seen: list[tuple[str, str, str | None]]) -> list[str]:
    """The tickers whose range requests the stub saw, in order."""
    return [m.group(1) for path, _, _ in seen if (m := SyntheticPolygon.RANGE.match(path))]


def cli_env(tmp_path: Path, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FINTRACK_", "DAGSTER_"))}
    (tmp_path / "home").mkdir(exist_ok=True)
    return env | {
        "DAGSTER_HOME": str(tmp_path / "home"),
        "FINTRACK_MARKET_DATA": "polygon",
        "POLYGON_API_KEY": "test-key",
        "FINTRACK_POLYGON_URL": url,
        "FINTRACK_UNIVERSE": "synthetic:200",
        "FINTRACK_START_DATE": "2024-01-02",
        "FINTRACK_LAKE_URL": str(tmp_path / "lake"),
        "FINTRACK_WAREHOUSE_URL": f"duckdb:///{tmp_path}/warehouse.duckdb",
    }


def materialize(*args: str) -> list[str]:
    return [str(BIN / "dagster"), "asset", "materialize", "-m", "fintrack_assets", *args]


RANGE_ARGS = ("--select", "raw_ohlcv", "--partition-range", f"{FIRST}...{LAST}")


def test_a_materialize_killed_with_sigkill_resumes_from_its_staged_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate()
    with StubServer(gate) as stub:
        env = cli_env(tmp_path, stub.url)
        root = Path(__file__).resolve().parents[1]
        universe = subprocess.run(
            materialize("--select", "symbol_universe"),
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert universe.returncode == 0, universe.stderr[-2000:]

        stub.reset()
        child = subprocess.Popen(
            materialize(*RANGE_ARGS),
            cwd=root,
            env=env,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        assert child.stderr is not None
        seen: list[str] = []
        try:
            for line in child.stderr:  # blocks on the child's output: no polling
                seen.append(line)
                if HALF_STAGED.search(line):
                    break
            else:
                pytest.fail("the run ended before staging two batches:\n" + "".join(seen[-30:]))
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=60)
        finally:
            gate.opened.set()
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
            child.stderr.close()
        first_attempt = ranged(stub.seen)
        assert set(STUB_TICKERS[:100]) <= set(first_attempt)

        stub.reset()
        again = subprocess.run(
            materialize(*RANGE_ARGS),
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert again.returncode == 0, again.stderr[-3000:]
        second_attempt = ranged(stub.seen)
        # Batches 1 and 2 were staged: not one of their tickers was asked for again.
        assert sorted(second_attempt) == STUB_TICKERS[100:]
        assert "resuming: 2 batches of 4" in again.stderr

        reference = Platform(
            {
                "FINTRACK_MARKET_DATA": "polygon",
                "POLYGON_API_KEY": "test-key",
                "FINTRACK_POLYGON_URL": stub.url,
                "FINTRACK_UNIVERSE": "synthetic:200",
                "FINTRACK_START_DATE": "2024-01-02",
                "FINTRACK_LAKE_URL": str(tmp_path / "reference" / "lake"),
                "FINTRACK_WAREHOUSE_URL": f"duckdb:///{tmp_path}/reference.duckdb",
            },
            monkeypatch,
        )
        assert reference.universe().success
        assert reference.market(FIRST, LAST, assets=["raw_ohlcv"]).success

    resumed = LakeTable(str(tmp_path / "lake" / "raw_ohlcv")).read_window()
    expected = reference.lake_frame("raw_ohlcv")
    assert resumed.height == 200 * len(SESSIONS)
    assert (
        resumed.drop("ingested_at")
        .sort("symbol", "date")
        .equals(expected.drop("ingested_at").sort("symbol", "date"))
    )


# -- a point-in-time universe: each session fetches that session's members ---------------

SP500_SPELLS = Path(__file__).resolve().parents[1] / "fintrack_assets" / "data" / "sp500_history"


def members_by_csv(day: dt.date) -> set[str]:
    """A plain reading of the shipped spell file: member from start up to (not on) end."""
    with (SP500_SPELLS / "sp500_ticker_start_end.csv").open() as handle:
        return {
            row["ticker"].replace(".", "-")
            for row in csv.DictReader(handle)
            if dt.date.fromisoformat(row["start_date"]) <= day
            and (not row["end_date"] or day < dt.date.fromisoformat(row["end_date"]))
        }


def test_sp500_pit_fetches_each_sessions_members_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = Platform(
        {
            "FINTRACK_UNIVERSE": "sp500_pit",
            "FINTRACK_LAKE_URL": str(tmp_path / "lake"),
            "FINTRACK_WAREHOUSE_URL": f"duckdb:///{tmp_path}/warehouse.duckdb",
            "FINTRACK_START_DATE": "2024-01-02",
        },
        monkeypatch,
    )
    assert made.universe().success
    # Friday before the 2024-09-23 replacement, the day itself, and the day after.
    days = [dt.date(2024, 9, 20), dt.date(2024, 9, 23), dt.date(2024, 9, 24)]
    assert made.market(days[0].isoformat(), days[-1].isoformat(), assets=["raw_ohlcv"]).success
    raw = made.lake_frame("raw_ohlcv")
    for day in days:
        assert set(raw.filter(pl.col("date") == day)["symbol"]) == members_by_csv(day)
    assert raw.filter(pl.col("date") == days[1]).height == 503
    by_symbol = {s: set(g["date"]) for (s,), g in raw.group_by("symbol")}
    for gone in ("AAL", "BIO", "ETSY"):
        assert by_symbol[gone] == {days[0]}
    for joined in ("DELL", "ERIE", "PLTR"):
        assert by_symbol[joined] == {days[1], days[2]}
