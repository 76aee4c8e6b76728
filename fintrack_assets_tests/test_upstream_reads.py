"""Upstream reads are stated in the graph: each input loads its partition mapping's window (and
only the columns it asks for) from the lake or the warehouse, eagerly or as a LazyFrame; the
upstream reader reads a declared upstream over a window its asset states, and refuses one the
asset does not declare. The project's mappings name the sessions the exchange calendar says."""

import datetime as dt
import warnings
from pathlib import Path

import exchange_calendars
import polars as pl
import pytest
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    BetaWarning,
    DailyPartitionsDefinition,
    TimeWindowPartitionMapping,
    asset,
    materialize,
)

from fintrack_assets.definitions import build_defs
from fintrack_assets.io_managers.context import Rows
from fintrack_assets.io_managers.lake import LakeIOManager
from fintrack_assets.io_managers.reader import UndeclaredUpstream, UpstreamReader
from fintrack_assets.io_managers.warehouse import WarehouseIOManager
from fintrack_assets.settings import Settings

D = dt.date
DAYS = DailyPartitionsDefinition(start_date="2025-01-01", timezone="America/New_York")
BEFORE_TWO = TimeWindowPartitionMapping(start_offset=-2, allow_nonexistent_upstream_partitions=True)
SYMBOLS = ["A", "B", "C"]


def _rows(day: dt.date) -> pl.DataFrame:
    """Three symbols; close = the day of the month + 0.1 x the symbol's rank (A=1, B=2, C=3)."""
    return pl.DataFrame(
        {
            "date": [day] * 3,
            "symbol": SYMBOLS,
            "close": [day.day + 0.1 * (i + 1) for i in range(3)],
            "note": ["x"] * 3,
        }
    )


def _day(context: AssetExecutionContext) -> dt.date:
    return dt.date.fromisoformat(context.partition_key)


@asset(partitions_def=DAYS, io_manager_key="lake")
def prices(context: AssetExecutionContext) -> pl.DataFrame:
    return _rows(_day(context))


@asset(partitions_def=DAYS, io_manager_key="warehouse")
def book(context: AssetExecutionContext) -> pl.DataFrame:
    return _rows(_day(context))


SEEN: dict[str, pl.DataFrame] = {}
"""What the readers below were handed, by asset (the runs execute in process)."""


@asset(
    partitions_def=DAYS,
    io_manager_key="warehouse",
    ins={
        "prices": AssetIn(partition_mapping=BEFORE_TWO, metadata={"columns": ["date", "close"]}),
        "book": AssetIn(partition_mapping=BEFORE_TWO, metadata={"columns": ["symbol", "date"]}),
    },
)
def eager(prices: pl.DataFrame, book: pl.DataFrame) -> None:
    SEEN["eager/prices"], SEEN["eager/book"] = prices, book


@asset(
    partitions_def=DAYS,
    io_manager_key="warehouse",
    ins={
        "prices": AssetIn(partition_mapping=BEFORE_TWO),
        "book": AssetIn(partition_mapping=BEFORE_TWO),
    },
)
def lazy(prices: pl.LazyFrame, book: pl.LazyFrame) -> None:
    assert isinstance(prices, pl.LazyFrame) and isinstance(book, pl.LazyFrame)
    for name, frame in (("prices", prices), ("book", book)):
        SEEN[f"lazy/{name}"] = (
            frame.filter(pl.col("symbol") == "B").select("date", "close").collect()
        )


@asset(partitions_def=DAYS, io_manager_key="warehouse", deps=[prices, book])
def replayed(context: AssetExecutionContext, upstream_reader: UpstreamReader) -> None:
    window = Rows(window=(D(2025, 1, 1), D(2025, 1, 3)), columns=["date", "symbol", "close"])
    SEEN["replayed/prices"] = upstream_reader.read(context, prices.key, window)
    SEEN["replayed/book"] = upstream_reader.scan(context, book.key, window).collect()


@asset(partitions_def=DAYS, io_manager_key="warehouse", deps=[prices])
def sneaky(context: AssetExecutionContext, upstream_reader: UpstreamReader) -> None:
    upstream_reader.read(context, book.key, Rows(window=(D(2025, 1, 1), D(2025, 1, 2))))


ASSETS = [prices, book, eager, lazy, replayed, sneaky]


@pytest.fixture
def stores(tmp_path: Path) -> dict[str, object]:
    lake = LakeIOManager(lake_url=str(tmp_path / "lake"), storage_options={})
    warehouse = WarehouseIOManager(url=f"duckdb:///{tmp_path}/warehouse.duckdb")
    resources = {
        "lake": lake,
        "warehouse": warehouse,
        "upstream_reader": UpstreamReader(lake=lake, warehouse=warehouse),
    }
    for day in ("2025-01-01", "2025-01-02", "2025-01-03", "2025-01-04"):
        assert materialize(ASSETS, selection=[prices, book], partition_key=day, resources=resources)
    return resources


def _run(stores: dict[str, object], reader: object, day: str = "2025-01-03") -> bool:
    SEEN.clear()
    result = materialize(
        ASSETS, selection=[reader], partition_key=day, resources=stores, raise_on_error=False
    )
    return result.success


def test_inputs_load_their_mappings_window_and_the_columns_they_ask_for(stores):
    assert _run(stores, eager)
    # 2025-01-03 with the two days before it, from both stores.
    assert SEEN["eager/prices"].columns == ["date", "close"]
    assert SEEN["eager/prices"].sort("date", "close").rows() == [
        (D(2025, 1, d), d + 0.1 * rank) for d in (1, 2, 3) for rank in (1, 2, 3)
    ]
    assert SEEN["eager/book"].columns == ["symbol", "date"]
    assert sorted(SEEN["eager/book"]["date"].unique()) == [
        D(2025, 1, 1),
        D(2025, 1, 2),
        D(2025, 1, 3),
    ]
    assert SEEN["eager/book"].height == 9


def test_a_lazyframe_input_is_filtered_before_it_is_read(stores):
    assert _run(stores, lazy, "2025-01-04")
    for store in ("prices", "book"):
        assert SEEN[f"lazy/{store}"].sort("date").rows() == [
            (D(2025, 1, 2), 2.2),
            (D(2025, 1, 3), 3.2),
            (D(2025, 1, 4), 4.2),
        ]


def test_the_first_partition_reads_what_exists(stores):
    assert _run(stores, lazy, "2025-01-01")
    assert SEEN["lazy/prices"].rows() == [(D(2025, 1, 1), 1.2)]


def test_the_upstream_reader_reads_a_declared_upstream_where_it_is_kept(stores):
    assert _run(stores, replayed, "2025-01-04")
    for store in ("prices", "book"):
        frame = SEEN[f"replayed/{store}"]
        assert frame.columns == ["date", "symbol", "close"]
        assert sorted(frame["date"].unique()) == [D(2025, 1, 1), D(2025, 1, 2)]
        assert frame.filter(pl.col("symbol") == "C")["close"].sort().to_list() == [1.3, 2.3]


def test_the_upstream_reader_refuses_an_undeclared_upstream(stores):
    result = materialize(
        ASSETS,
        selection=[sneaky],
        partition_key="2025-01-02",
        resources=stores,
        raise_on_error=False,
    )
    assert not result.success
    error = result.get_step_failure_events()[0].event_specific_data.error
    while error.cause is not None:
        error = error.cause
    assert error.cls_name == UndeclaredUpstream.__name__
    assert error.message.strip().endswith(
        "UndeclaredUpstream: sneaky read book without declaring it: add it to the asset's deps "
        "or ins"
    )


# The project's own mappings, against the exchange calendar (XNYS) directly.

XNYS = exchange_calendars.get_calendar("XNYS")


def _sessions(first: dt.date, last: dt.date) -> list[str]:
    return [day.date().isoformat() for day in XNYS.sessions_in_range(first, last)]


def _before(day: str, sessions: int) -> dt.date:
    return XNYS.sessions_window(day, -(sessions + 1))[0].date()


@pytest.fixture(scope="module")
def graph():
    with warnings.catch_warnings():  # set up before conftest's per-test quieting of these
        warnings.simplefilter("ignore", BetaWarning)
        return build_defs(Settings.from_env({})).resolve_asset_graph()


def _upstream(graph, child: str, parent: str, key: str) -> list[str]:
    mapped = graph.get_parent_partition_keys_for_child(key, AssetKey(parent), AssetKey(child))
    return list(mapped.partitions_subset.get_partition_keys())


@pytest.mark.parametrize(
    ("child", "parent", "sessions_before"),
    [
        ("portfolio_returns", "holdings_daily", 1),
        ("portfolio_returns", "bronze_ohlcv", 2),
        ("portfolio_risk", "portfolio_returns", 253),
        ("portfolio_risk", "holdings_daily", 0),
        ("portfolio_risk", "bronze_ohlcv", 64),
        ("portfolio_risk", "treasury_yields", 90),  # ir_beta's 90 changes: 90 + 1 yields
        ("portfolio_factor_exposures", "portfolio_returns", 253),
        ("portfolio_factor_exposures", "bronze_ohlcv", 254),
        ("holding_correlations", "bronze_ohlcv", 64),
        ("sector_exposure", "holdings_daily", 0),
        ("portfolio_stress_tests", "portfolio_returns", 0),
        ("portfolio_stress_tests", "portfolio_risk", 0),
    ],
)
def test_risk_inputs_reach_back_the_sessions_their_windows_need(
    graph, child, parent, sessions_before
):
    day = "2024-06-03"
    expected = _sessions(_before(day, sessions_before), D(2024, 6, 3))
    assert _upstream(graph, child, parent, day) == expected


@pytest.mark.parametrize(
    ("month", "opening"),
    [("2024-02-01", "2024-01-31"), ("2024-04-01", "2024-03-28"), ("2025-01-01", "2024-12-31")],
)
def test_a_month_reads_its_sessions_and_the_last_one_before_it(graph, month, opening):
    """2024-03-29 was Good Friday: April's opening value is March 28th's."""
    first = D.fromisoformat(month)
    following = (first + dt.timedelta(days=32)).replace(day=1)
    expected = [opening, *_sessions(first, following - dt.timedelta(days=1))]
    assert _upstream(graph, "holdings_monthly", "holdings_daily", month) == expected
