"""Test stand-ins for `treasury_yields` and `company_fundamentals`, the upstreams that risk's
ir_beta and sector valuation read, while the branch that defines them (mkt-fundamentals) has
not landed: an asset's input must name a defined asset, so the tests' code location adds these
when the package does not define them, and the tests write their tables directly. Once the
package defines both keys, `with_stand_ins` adds nothing and this module can go."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import polars as pl
from dagster import AssetKey, AssetsDefinition, Definitions, Failure, asset

from fintrack_assets.io_managers.context import PARTITION_EXPR
from fintrack_assets.io_managers.lake import LakeIOManager
from fintrack_assets.io_managers.warehouse import WarehouseIOManager
from fintrack_assets.partitions import trading_days

_WRITTEN_BY_TESTS = "a test stand-in: the tests write this table directly"


@asset(
    key="treasury_yields",
    partitions_def=trading_days,
    io_manager_key="lake",
    metadata={PARTITION_EXPR: "date"},
    group_name="market",
    kinds={"polars"},
    description="Test stand-in (lake, trading_days): date, yield_3m, yield_5y, yield_10y, "
    "yield_30y in percent, source.",
)
def treasury_yields() -> None:
    raise Failure(_WRITTEN_BY_TESTS)


@asset(
    key="company_fundamentals",
    io_manager_key="warehouse",
    group_name="market",
    kinds={"polars"},
    description="Test stand-in (warehouse, unpartitioned): quarterly figures per symbol, point "
    "in time by filing_date.",
)
def company_fundamentals() -> None:
    raise Failure(_WRITTEN_BY_TESTS)


STAND_INS: list[AssetsDefinition] = [treasury_yields, company_fundamentals]
_ADDED: set[str] = set()


def with_stand_ins(domains: Callable[[], Definitions]) -> Callable[[], Definitions]:
    """`domains` plus the stand-ins for the keys it does not define."""
    cache: list[Definitions] = []

    def patched() -> Definitions:
        if not cache:
            found = domains()
            defined = {
                key
                for a in found.assets or []
                for key in (a.keys if isinstance(a, AssetsDefinition) else [a.key])
            }
            missing = [s for s in STAND_INS if not (s.keys & defined)]
            _ADDED.update(key.to_user_string() for s in missing for key in s.keys)
            cache.append(
                Definitions.merge(found, Definitions(assets=missing)) if missing else found
            )
        return cache[0]

    patched.cache_clear = getattr(domains, "cache_clear", lambda: None)  # type: ignore[attr-defined]
    return patched


def added_stand_ins() -> set[str]:
    """The keys the tests' code location has as stand-ins (none once the package defines them):
    tests of what the package itself defines leave them out."""
    import fintrack_assets.definitions as definitions

    definitions.domains()
    return set(_ADDED)


def write_yields(lake: LakeIOManager, frame: pl.DataFrame) -> None:
    """treasury_yields' table over the frame's dates, as its asset would write it."""
    first, last = frame["date"].min(), frame["date"].max()
    assert isinstance(first, dt.date) and isinstance(last, dt.date)
    lake.write(AssetKey("treasury_yields"), frame, "date", (first, last + dt.timedelta(days=1)))


def write_fundamentals(warehouse: WarehouseIOManager, frame: pl.DataFrame) -> None:
    warehouse.write(AssetKey("company_fundamentals"), frame, "date", None)
