"""No table holds an inf or a NaN: every contract refuses one in any float column, and
holdings_daily's reconciliation fails on one."""

import datetime as dt
import math

import pandera.polars as pa
import polars as pl
import pytest

from fintrack_assets import schemas
from fintrack_assets.core.trades import parse_trades, validate_trades
from fintrack_assets.defs.portfolio.assets import _reconciliation
from fintrack_assets_tests.test_bronze import bar
from fintrack_assets_tests.test_bronze import frame as bronze_frame
from fintrack_assets_tests.test_trades import GOOD as TRADE
from fintrack_assets_tests.test_trades import KNOWN
from fintrack_assets_tests.test_trades import csv as trades_csv

DAY = dt.date(2025, 7, 3)


def _trades() -> pl.DataFrame:
    parsed, _ = parse_trades(trades_csv(TRADE), "a.csv")
    valid, _ = validate_trades(parsed, KNOWN)
    return valid


def _payments() -> pl.DataFrame:
    floats = ("amount", "lat", "lon", "merch_lat", "merch_lon")
    return pl.DataFrame(
        [
            {
                "transaction_id": "t1",
                "account_id": "A",
                "ts": dt.datetime(2025, 7, 3, 10, tzinfo=dt.UTC),
                "amount": 20.0,
                "currency": "USD",
                "merchant": "shop",
                "category": "grocery",
                "lat": 40.0,
                "lon": -74.0,
                "merch_lat": 40.1,
                "merch_lon": -74.1,
                "date": DAY,
            }
        ],
        schema_overrides={"ts": pl.Datetime("us", "UTC")} | dict.fromkeys(floats, pl.Float64),
    )


def _returns() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "date": [DAY],
            "portfolio_id": ["P1"],
            "market_value": [1000.0],
            "net_flow": [0.0],
            "daily_return": [0.01],
            "benchmark_return": [0.005],
        }
    )


VALID = {
    schemas.PortfolioTrade: _trades,
    schemas.PaymentTransaction: _payments,
    schemas.BronzeOHLCV: lambda: bronze_frame(bar()),
    schemas.PortfolioReturn: _returns,
}
CASES = [
    (model, column, value)
    for model, make in VALID.items()
    for column, dtype in make().schema.items()
    if dtype == pl.Float64
    for value in (math.inf, -math.inf, math.nan)
]


@pytest.mark.parametrize(("model", "column", "value"), CASES)
def test_a_contract_refuses_inf_and_nan_in_each_float_column(model, column, value):
    good = VALID[model]()
    assert schemas.contract_failures(model, good) is None
    failures = schemas.contract_failures(model, good.with_columns(pl.lit(value).alias(column)))
    assert failures is not None and "floats_are_finite" in failures


def test_every_contract_has_the_finite_check():
    models = [
        m
        for name, m in vars(schemas).items()
        if isinstance(m, type) and issubclass(m, pa.DataFrameModel) and not name.startswith("_")
    ]
    assert len(models) >= 11
    for model in models:
        checks = [c.name for c in model.to_schema().checks]
        assert "floats_are_finite" in checks, model.__name__


def _book(market_value: float) -> pl.DataFrame:
    """A day of one portfolio: 5,000 deposited, 10 AAPL bought at 200 (close 210)."""
    return pl.DataFrame(
        {
            "date": [DAY, DAY],
            "portfolio_id": ["P1", "P1"],
            "symbol": ["AAPL", "CASH"],
            "quantity": [10.0, 3000.0],
            "close": [210.0, 1.0],
            "market_value": [2100.0, 3000.0],
            "unrealized_pnl": [market_value, 0.0],
            "weight": [2100 / 5100, 3000 / 5100],
        }
    )


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_holdings_reconciliation_fails_on_a_non_finite_number(value):
    trades = pl.DataFrame(
        {
            "date": [DAY, DAY],
            "portfolio_id": ["P1", "P1"],
            "action": ["DEPOSIT", "BUY"],
            "quantity": [5000.0, 10.0],
            "price": [1.0, 200.0],
            "fees": [0.0, 0.0],
        }
    )
    flows = pl.DataFrame(
        {"date": [DAY], "portfolio_id": ["P1"], "dividends": [0.0]},
    )
    assert _reconciliation(_book(100.0), flows, trades).passed
    failed = _reconciliation(_book(value), flows, trades)
    assert not failed.passed and failed.metadata["rows_not_finite"].value == 1


@pytest.mark.parametrize("store", ["warehouse", "lake"])
@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_an_io_manager_refuses_to_write_a_non_finite_value(tmp_path, store, bad) -> None:
    """Before the write, whichever asset computed the frame: the table is never created."""
    from dagster import AssetKey

    from fintrack_assets.io_managers.context import NonFiniteValues, NotMaterialised
    from fintrack_assets.io_managers.lake import LakeIOManager
    from fintrack_assets.io_managers.warehouse import WarehouseIOManager

    frame = pl.DataFrame(
        {
            "date": [DAY, DAY, DAY],
            "symbol": ["AAPL", "MSFT", "SPY"],
            "market_value": [100.0, bad, None],  # a null is missing, not non-finite
            "weight": [0.5, 0.5, bad],
        }
    )
    manager = (
        WarehouseIOManager(url=f"duckdb:///{tmp_path}/w.duckdb")
        if store == "warehouse"
        else LakeIOManager(lake_url=str(tmp_path / "lake"), storage_options={})
    )
    window = (DAY, DAY + dt.timedelta(days=1))
    with pytest.raises(NonFiniteValues) as refused:
        manager.write(AssetKey("holdings_daily"), frame, "date", window)
    assert refused.value.description == (
        "holdings_daily was not written: non-finite values (inf or NaN) in "
        "market_value (1), weight (1)"
    )
    with pytest.raises(NotMaterialised):
        if store == "warehouse":
            manager.warehouse.read("holdings_daily")
        else:
            manager.table(["holdings_daily"]).read_window()
    finite = frame.with_columns(pl.col("market_value", "weight").fill_nan(0.0).clip(-1e9, 1e9))
    manager.write(AssetKey("holdings_daily"), finite, "date", window)
