"""Issue 17, items 5 and 6: what a run meets first.

An input whose upstream was never materialised fails its step with one sentence naming the
asset to materialise first (and the partition), never a DuckDB, PostgreSQL or Delta error, and
without the retry policy waiting for a table that will not appear.

Selecting a main asset without its rejects (or failures) companion runs, and the companion's
rows are still written and its partitions recorded as materialised; selecting the companion
alone runs too, and writes only the companion."""

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from dagster import AssetKey, DagsterInstance
from dagster._core.instance.ref import InstanceRef
from deltalake import DeltaTable

from fintrack_assets.io_managers.lake import LakeTable
from fintrack_assets.resources.fraud_scorers import FraudScorer
from fintrack_assets.resources.landing import LandingZone
from fintrack_assets_tests.fraud_api_stub import Answer, FraudApiStub
from fintrack_assets_tests.helpers import QUIET, Platform, RunSummary
from fintrack_assets_tests.polygon_stub import RecordedPolygon, Response, StubServer, load

BIN = Path(sys.executable).parent
DAY = "2025-03-05"  # a Wednesday session
SUNDAY = "2025-03-02"
BUCKET_END = "2025-02-24"  # a 34-session silver bucket ends on this session
BUCKET_MONTH = "2025-02-01"  # its silver partition


def expected(asset: str, partition: str | None = None) -> str:
    command = f"dagster asset materialize -m fintrack_assets --select {asset}"
    if partition:
        command += f" --partition {partition}"
    return f"{asset} has not been materialised yet: materialise it first ({command})"


@pytest.fixture(params=["duckdb", "postgresql"])
def warehouse_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path}/warehouse.duckdb"
    return str(request.getfixturevalue("postgres_url"))


def _platform(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    warehouse: str = "",
    resources: dict[str, Any] | None = None,
) -> Platform:
    """A new lake and warehouse: nothing materialised, not even the universe."""
    return Platform(
        {
            "FINTRACK_UNIVERSE": "AAPL,MSFT,SPY",
            "FINTRACK_LAKE_URL": str(tmp_path / "lake"),
            "FINTRACK_WAREHOUSE_URL": warehouse or f"duckdb:///{tmp_path}/warehouse.duckdb",
        },
        monkeypatch,
        resources,
    )


def _dagster(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "fintrack_assets", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _run(platform: Platform, assets: set[str], partition: str | None = None) -> RunSummary:
    job = platform.defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={AssetKey(a) for a in assets}
    )
    tags = (
        {
            "dagster/asset_partition_range_start": partition,
            "dagster/asset_partition_range_end": partition,
        }
        if partition
        else {}
    )
    return platform._run(job, tags, QUIET)


def _fails_with(run: RunSummary, sentence: str) -> None:
    assert not run.success
    assert sentence in run.failure
    assert run.failure.strip().count("\n") == 0  # the sentence, no wrapped cause below it
    for noise in ("Catalog Error", "UndefinedTable", "does not exist", "no lake table"):
        assert noise not in run.failure


def test_dagster_asset_materialize_on_a_new_home_names_the_missing_universe(
    tmp_path: Path, warehouse_url: str
) -> None:
    """The issue's command, as a new user runs it, on a new DAGSTER_HOME, lake and warehouse."""
    (tmp_path / "home").mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "home"),
        "FINTRACK_LAKE_URL": str(tmp_path / "lake"),
        "FINTRACK_WAREHOUSE_URL": warehouse_url,
        "FINTRACK_UNIVERSE": "AAPL,MSFT",
    }
    done = _dagster(
        [
            "--select",
            "raw_ohlcv,bronze_ohlcv,bronze_ohlcv_rejects",
            "--partition",
            "2024-02-15",
        ],
        tmp_path,
        env,
    )
    shown = done.stdout + done.stderr
    assert done.returncode != 0
    assert expected("symbol_universe") in shown
    assert "Catalog Error" not in shown and "UndefinedTable" not in shown
    assert "STEP_UP_FOR_RETRY" not in shown  # raw_ohlcv's retry policy does not wait for it
    assert not (tmp_path / "lake" / "raw_ohlcv").exists()


def test_raw_ohlcv_names_symbol_universe(tmp_path, monkeypatch, warehouse_url):
    platform = _platform(tmp_path, monkeypatch, warehouse_url)
    _fails_with(_run(platform, {"raw_ohlcv"}, DAY), expected("symbol_universe"))


def test_bronze_names_raw_ohlcv_and_its_partition(tmp_path, monkeypatch):
    platform = _platform(tmp_path, monkeypatch)
    assert platform.universe().success
    run = _run(platform, {"bronze_ohlcv", "bronze_ohlcv_rejects"}, DAY)
    _fails_with(run, expected("raw_ohlcv", DAY))


def test_silver_names_bronze_ohlcv(tmp_path, monkeypatch):
    platform = _platform(tmp_path, monkeypatch)
    run = _run(platform, {"silver_ohlcv_34d"}, BUCKET_MONTH)
    # The command names the last session of the month's bronze window.
    _fails_with(run, expected("bronze_ohlcv", "2025-02-28"))


def test_silver_whose_window_starts_before_the_first_bronze_session_still_runs(
    tmp_path, monkeypatch
):
    """The 34-session window of the first bronze session reaches 33 sessions with no data:
    the table exists, so that is history not there yet, not a missing upstream."""
    platform = _platform(tmp_path, monkeypatch)
    assert platform.universe().success
    assert platform.market(BUCKET_END).success
    run = _run(platform, {"silver_ohlcv_34d"}, BUCKET_MONTH)
    assert run.success, run.failure
    bars = platform.lake("silver_ohlcv_34d").read_window()
    assert bars.height == 3 and bars["n_days"].to_list() == [1, 1, 1]


def _with_empty_trades(platform: Platform) -> None:
    """portfolio_trades materialised from an empty landing folder: no trade reads bronze."""
    assert platform.universe().success
    assert _run(platform, {"portfolio_trades", "portfolio_trades_rejects"}).success


def test_holdings_names_portfolio_trades(tmp_path, monkeypatch, warehouse_url):
    platform = _platform(tmp_path, monkeypatch, warehouse_url)
    _fails_with(_run(platform, {"holdings_daily"}, DAY), expected("portfolio_trades"))


def test_holdings_names_bronze_ohlcv(tmp_path, monkeypatch):
    platform = _platform(tmp_path, monkeypatch)
    _with_empty_trades(platform)
    _fails_with(_run(platform, {"holdings_daily"}, DAY), expected("bronze_ohlcv", DAY))


def test_portfolio_trades_names_bronze_ohlcv(tmp_path, monkeypatch):
    platform = _platform(tmp_path, monkeypatch)
    assert platform.universe().success
    trades = (
        "trade_id,portfolio_id,date,symbol,action,quantity,price,fees,currency\n"
        "T1,P1,2025-03-03,,DEPOSIT,1000,1,0,USD\n"
        "T2,P1,2025-03-04,AAPL,BUY,1,200,0,USD\n"
    )
    LandingZone(str(tmp_path / "lake")).write("portfolio_trades", "a.csv", trades.encode())
    run = _run(platform, {"portfolio_trades", "portfolio_trades_rejects"})
    # The replay reads bronze over the trades' dates, up to the last one.
    _fails_with(run, expected("bronze_ohlcv", "2025-03-04"))


def test_holdings_monthly_names_holdings_daily(tmp_path, monkeypatch):
    platform = _platform(tmp_path, monkeypatch)
    _with_empty_trades(platform)
    run = _run(platform, {"holdings_monthly"}, "2025-03-01")
    # March 2025's last session is Monday the 31st.
    _fails_with(run, expected("holdings_daily", "2025-03-31"))


def test_portfolio_returns_names_holdings_daily(tmp_path, monkeypatch, warehouse_url):
    platform = _platform(tmp_path, monkeypatch, warehouse_url)
    _with_empty_trades(platform)
    # Bronze is there: with several inputs missing, the first one Dagster loads is named.
    assert platform.market(DAY).success
    run = _run(platform, {"portfolio_returns"}, DAY)
    _fails_with(run, expected("holdings_daily", DAY))


def test_portfolio_risk_names_portfolio_returns(tmp_path, monkeypatch):
    platform = _platform(tmp_path, monkeypatch)
    _with_empty_trades(platform)
    assert platform.market(DAY).success
    assert _run(platform, {"holdings_daily"}, DAY).success
    _fails_with(_run(platform, {"portfolio_risk"}, DAY), expected("portfolio_returns", DAY))


def test_risk_on_a_new_platform_names_bronze_first(tmp_path, monkeypatch):
    """Nothing materialised: Dagster loads an asset's inputs in key order, so bronze_ohlcv is
    the one named."""
    platform = _platform(tmp_path, monkeypatch)
    _fails_with(_run(platform, {"portfolio_risk"}, DAY), expected("bronze_ohlcv", DAY))


def test_fraud_predictions_name_each_missing_payments_table_and_the_calendar_day(
    tmp_path, monkeypatch
):
    platform = _platform(tmp_path, monkeypatch)
    fraud = {"fraud_predictions", "fraud_prediction_failures"}
    _fails_with(_run(platform, fraud, SUNDAY), expected("payment_transaction_rejects", SUNDAY))
    assert _run(platform, {"payment_transaction_rejects"}, SUNDAY).success
    _fails_with(_run(platform, fraud, SUNDAY), expected("payment_transactions", SUNDAY))


def test_a_stored_but_empty_window_is_not_a_missing_table(tmp_path, monkeypatch):
    """holdings_daily exists but holds no row of the month: holdings_monthly runs."""
    platform = _platform(tmp_path, monkeypatch)
    _with_empty_trades(platform)
    assert platform.market("2025-02-03").success
    assert _run(platform, {"holdings_daily"}, "2025-02-03").success
    run = _run(platform, {"holdings_monthly"}, "2025-03-01")
    assert run.success, run.failure
    assert platform.warehouse_frame("holdings_monthly").height == 0


SESSION = "2024-06-10"
GROUPED = f"/v2/aggs/grouped/locale/us/market/stocks/{SESSION}"


class PolygonWithABadBar(RecordedPolygon):
    """The recorded grouped-daily answer of 2024-06-10 with MSFT's volume made negative."""

    def __call__(self, path: str, query: dict[str, str]) -> Response:
        if path != GROUPED:
            return super().__call__(path, query)
        body = load(f"grouped_{SESSION}.json")
        for bar in body["results"]:
            if bar["T"] == "MSFT":
                bar["v"] = -100.0
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()


def test_dagster_asset_materialize_raw_and_bronze_keeps_the_rejects(tmp_path: Path) -> None:
    """The names in the design, as the README gives them, on the real CLI."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "FINTRACK_LAKE_URL": str(tmp_path / "lake"),
        "FINTRACK_WAREHOUSE_URL": f"duckdb:///{tmp_path}/warehouse.duckdb",
        "FINTRACK_UNIVERSE": "AAPL,MSFT",
    }
    universe = _dagster(["--select", "symbol_universe"], tmp_path, env)
    assert universe.returncode == 0, universe.stderr[-2000:]
    with StubServer(PolygonWithABadBar()) as polygon:
        polygon_env = {
            **env,
            "FINTRACK_MARKET_DATA": "polygon",
            "POLYGON_API_KEY": "pk_test_selection",
            "FINTRACK_POLYGON_URL": polygon.url,
        }
        done = _dagster(
            ["--select", "raw_ohlcv,bronze_ohlcv", "--partition", SESSION], tmp_path, polygon_env
        )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "DagsterInvalidSubsetError" not in done.stderr

    bronze = pl.from_arrow(DeltaTable(str(tmp_path / "lake" / "bronze_ohlcv")).to_pyarrow_table())
    assert isinstance(bronze, pl.DataFrame)
    assert bronze.select("symbol", "close").rows() == [("AAPL", 193.12)]
    rejects = LakeTable(str(tmp_path / "lake" / "bronze_ohlcv_rejects")).read_window()
    assert rejects.select("symbol", "date", "volume", "reason").rows() == [
        ("MSFT", dt.date(2024, 6, 10), -100, "negative_volume")
    ]
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        for asset in ("raw_ohlcv", "bronze_ohlcv", "bronze_ohlcv_rejects"):
            assert instance.get_materialized_partitions(AssetKey(asset)) == {SESSION}


def _materialised(platform: Platform, asset: str) -> set[str]:
    return platform.instance.get_materialized_partitions(AssetKey(asset))


def test_bronze_alone_writes_and_records_its_rejects_and_rejects_alone_runs(tmp_path, monkeypatch):
    platform = _platform(tmp_path, monkeypatch)
    assert platform.universe().success
    key = DAY
    day = dt.date.fromisoformat(key)
    assert platform.market(key, assets=["raw_ohlcv"]).success
    raw = platform.lake_frame("raw_ohlcv")
    broken = raw.with_columns(
        pl.when(pl.col("symbol") == "AAPL").then(-1).otherwise(pl.col("volume")).alias("volume")
    )
    platform.lake("raw_ohlcv").replace_window(broken, "date", day, day + dt.timedelta(days=1))

    run = platform.market(key, assets=["bronze_ohlcv"])
    assert run.success, run.failure
    assert platform.lake_frame("bronze_ohlcv")["symbol"].to_list() == ["MSFT", "SPY"]
    rejects = platform.lake_frame("bronze_ohlcv_rejects")
    assert rejects.select("symbol", "reason").rows() == [("AAPL", "negative_volume")]
    assert run.partitions["bronze_ohlcv_rejects"] == {key}
    assert _materialised(platform, "bronze_ohlcv_rejects") == {key}
    assert run.asset_checks[("bronze_ohlcv", "reject_share")] is False  # 1 of 3
    assert run.asset_checks[("bronze_ohlcv", "contract")] is True

    bronze_version = platform.lake("bronze_ohlcv").version()
    alone = platform.market(key, assets=["bronze_ohlcv_rejects"])
    assert alone.success, alone.failure
    assert set(alone.partitions) == {"bronze_ohlcv_rejects"}
    assert alone.asset_checks == {}
    assert platform.lake("bronze_ohlcv").version() == bronze_version
    again = platform.lake_frame("bronze_ohlcv_rejects")
    assert again.select("symbol", "reason").rows() == [("AAPL", "negative_volume")]


HEADER = (
    "transaction_id,account_id,ts,amount,currency,merchant,category,lat,lon,merch_lat,merch_lon"
)
PAYMENTS = f"""{HEADER}
t1,A,2025-03-02T10:00:00Z,20.00,USD,shop1,grocery,,,,
t2,A,2025-03-02T11:00:00Z,30.00,USD,shop1,grocery,,,,
t3,B,2025-03-02T12:00:00Z,40.00,USD,shop2,grocery,,,,
bad1,A,2025-03-02T13:00:00Z,-5,USD,shop1,grocery,,,,
bad2,B,2025-03-02T14:00:00Z,5,EUR,shop1,grocery,,,,
"""


@pytest.fixture
def fraud_api():
    with FraudApiStub() as server:
        yield server


def test_payments_and_fraud_each_run_without_their_companion(tmp_path, monkeypatch, fraud_api):
    # Batches of 2 in file order: [t1, t2] [t3]; the second fails, so t3 is a failure.
    fraud_api.script = lambda call: Answer(status=500) if call.key == "t3" else None
    scorer = FraudScorer(
        kind="http", api_url=fraud_api.url, batch_size=2, max_attempts=1, backoff_seconds=0.01
    )
    platform = _platform(tmp_path, monkeypatch, resources={"fraud_scorer": scorer})
    zone = LandingZone(str(tmp_path / "lake"))
    zone.write("payment_transactions", "a.csv", PAYMENTS.encode(), dt.date(2025, 3, 2))

    payments = _run(platform, {"payment_transactions"}, SUNDAY)
    assert payments.success, payments.failure
    assert sorted(platform.warehouse_frame("payment_transactions")["transaction_id"]) == [
        "t1",
        "t2",
        "t3",
    ]
    rejects = platform.warehouse_frame("payment_transaction_rejects")
    assert sorted(rejects.select("transaction_id", "reason").rows()) == [
        ("bad1", "non_positive_amount"),
        ("bad2", "non_usd"),
    ]
    assert _materialised(platform, "payment_transaction_rejects") == {SUNDAY}
    assert payments.asset_checks[("payment_transactions", "reject_share")] is False  # 2 of 5
    assert payments.asset_checks[("payment_transactions", "contract")] is True
    assert _run(platform, {"payment_transaction_rejects"}, SUNDAY).success

    fraud = _run(platform, {"fraud_predictions"}, SUNDAY)
    assert fraud.success, fraud.failure
    assert sorted(platform.warehouse_frame("fraud_predictions")["transaction_id"]) == ["t1", "t2"]
    failures = platform.warehouse_frame("fraud_prediction_failures")
    assert failures.select("transaction_id", "attempts").rows() == [("t3", 1)]
    assert _materialised(platform, "fraud_prediction_failures") == {SUNDAY}
    assert fraud.asset_checks == {("fraud_predictions", "no_failed_batches"): False}

    fraud_api.script = None
    alone = _run(platform, {"fraud_prediction_failures"}, SUNDAY)
    assert alone.success, alone.failure
    assert alone.asset_checks == {}
    assert platform.warehouse_frame("fraud_prediction_failures").is_empty()
    assert sorted(platform.warehouse_frame("fraud_predictions")["transaction_id"]) == ["t1", "t2"]


TRADES = """trade_id,portfolio_id,date,symbol,action,quantity,price,fees,currency
T1,P1,2025-03-03,,DEPOSIT,10000,1,0,USD
T2,P1,2025-03-03,AAPL,BUY,10,200,1,USD
T3,P1,2025-03-04,NOPE,BUY,1,10,0,USD
T4,P1,2025-03-04,AAPL,BUY,1,200,0,EUR
"""


@pytest.fixture
def trades_platform(tmp_path, monkeypatch, warehouse_url) -> Platform:
    platform = _platform(tmp_path, monkeypatch, warehouse_url)
    assert platform.universe().success
    assert platform.market("2025-03-03", "2025-03-04").success
    LandingZone(str(tmp_path / "lake")).write("portfolio_trades", "a.csv", TRADES.encode())
    return platform


def test_trades_alone_writes_and_records_their_rejects(trades_platform):
    platform = trades_platform
    run = _run(platform, {"portfolio_trades"})
    assert run.success, run.failure
    assert sorted(platform.warehouse_frame("portfolio_trades")["trade_id"]) == ["T1", "T2"]
    rejects = platform.warehouse_frame("portfolio_trades_rejects")
    assert sorted(rejects.select("trade_id", "reason").rows()) == [
        ("T3", "unknown_symbol"),
        ("T4", "non_usd"),
    ]
    recorded = platform.instance.get_latest_materialization_event(
        AssetKey("portfolio_trades_rejects")
    )
    assert recorded is not None
    assert run.asset_checks[("portfolio_trades", "reject_share")] is False  # 2 of 4
    assert run.asset_checks[("portfolio_trades", "contract")] is True

    alone = _run(platform, {"portfolio_trades_rejects"})
    assert alone.success, alone.failure
    assert alone.asset_checks == {}
    assert platform.warehouse_frame("portfolio_trades_rejects").height == 2
