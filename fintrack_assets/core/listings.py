"""The `all` universe: every actively listed US stock and ETF, parsed from what a provider
publishes. Pure: the payloads come in (resources/listings.py and PolygonProvider.listing
fetch them), a universe frame and the rows left out, each with its reason, go out.

What counts as "stock or ETF" (docs/decisions.md):
- Polygon's reference tickers: types `CS` (common stock), `OS` (ordinary shares) and `ADRC`
  (ADR of common stock) are equities, `ETF` is an ETF. Preferreds (`PFD`), warrants, rights,
  units, ETNs, ETVs, funds and the rest are left out with the type as the reason.
- Nasdaq Trader's symbol directories (`nasdaqlisted.txt`, `otherlisted.txt`): a row with
  `ETF` = Y is an ETF; any other row is an equity unless it is a test issue, a preferred
  share (`$` in the ACT symbol, e.g. `ABR$D`, or "Preferred Stock" in its security name)
  or, by its security name, a warrant, right or unit. Class shares keep their class with
  Yahoo's dash (`BRK.B` -> `BRK-B`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import polars as pl

from fintrack_assets.core.universe import (
    ALL_SYNTHETIC_SYMBOLS,
    UNIVERSE_SCHEMA,
    synthetic_universe,
)

LEFT_OUT_SCHEMA = {"symbol": pl.String, "name": pl.String, "reason": pl.String}
"""A listing row that is not in the universe: its symbol as listed, name and why."""

POLYGON_TYPES = {"CS": "equity", "OS": "equity", "ADRC": "equity", "ETF": "etf"}
"""Polygon reference ticker types that count as a US stock or ETF, and our asset_type."""

NASDAQ_LISTED = "nasdaqlisted.txt"
OTHER_LISTED = "otherlisted.txt"
DIRECTORY_SYMBOL = {NASDAQ_LISTED: "Symbol", OTHER_LISTED: "ACT Symbol"}
"""The column holding each directory's symbol; the other columns are shared by name."""
FOOTER = "File Creation Time"

_NOT_A_SHARE = re.compile(r"\b(warrants?|rights?|units?)\b", re.IGNORECASE)
_PREFERRED = re.compile(r"\bpreferred (stock|shares?)\b", re.IGNORECASE)
"""Nasdaq-listed preferreds have no `$` (`AGNCN`); their name says it. `Preferred Bank -
Common Stock` is not one."""


class ListingError(ValueError):
    """A listing payload that cannot be read as a whole (truncated, wrong columns)."""


def _left_out(rows: list[tuple[str | None, str | None, str]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=LEFT_OUT_SCHEMA, orient="row")


def _universe(rows: list[tuple[str, str | None, str]]) -> pl.DataFrame:
    """(symbol, name, asset_type) rows as a universe frame; sector and industry unknown."""
    frame = pl.DataFrame(
        rows, schema={"symbol": pl.String, "name": pl.String, "asset_type": pl.String}, orient="row"
    )
    return frame.with_columns(
        pl.lit(None, pl.String).alias("sector"), pl.lit(None, pl.String).alias("industry")
    ).select(list(UNIVERSE_SCHEMA))


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def polygon_listing(results: Iterable[Mapping[str, Any]]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(universe, left out) from the `results` of Polygon's `/v3/reference/tickers` pages.
    Tickers are spelled as we do (`BRK.B` -> `BRK-B`); the strict symbol pattern is
    `split_valid`'s, applied afterwards like for every universe."""
    kept: list[tuple[str, str | None, str]] = []
    left: list[tuple[str | None, str | None, str]] = []
    for record in results:
        ticker, name = _text(record.get("ticker")), _text(record.get("name"))
        kind = _text(record.get("type"))
        if ticker is None:
            left.append((None, name, "no ticker in the listing record"))
        elif kind not in POLYGON_TYPES:
            left.append((ticker, name, f"type {kind or 'missing'}: not a stock or ETF"))
        else:
            kept.append((ticker.replace(".", "-"), name, POLYGON_TYPES[kind]))
    return _universe(kept), _left_out(left)


def nasdaq_directory(text: str, file: str) -> tuple[pl.DataFrame, pl.DataFrame, str]:
    """(universe, left out, the file's creation time) from one of Nasdaq Trader's symbol
    directories: pipe-delimited, a header row, and a `File Creation Time: ...` footer whose
    absence means the file was cut short (`ListingError`, nothing of it is used)."""
    lines = [line.rstrip("\r") for line in text.split("\n") if line.strip()]
    if not lines:
        raise ListingError(f"{file} is empty")
    if not lines[-1].startswith(FOOTER):
        raise ListingError(f"{file} has no '{FOOTER}' footer: the download was cut short")
    created = lines[-1].split("|", 1)[0].partition(":")[2].strip()
    header = [column.strip() for column in lines[0].split("|")]
    needed = [DIRECTORY_SYMBOL[file], "Security Name", "ETF", "Test Issue"]
    missing = [column for column in needed if column not in header]
    if missing:
        raise ListingError(f"{file} lacks the column(s) {', '.join(missing)}")
    at = {column: header.index(column) for column in needed}
    kept: list[tuple[str, str | None, str]] = []
    left: list[tuple[str | None, str | None, str]] = []
    for number, line in enumerate(lines[1:-1], start=2):
        fields = line.split("|")
        if len(fields) != len(header):
            wrong = f"{file} line {number}: {len(fields)} fields, not {len(header)}"
            left.append((None, None, wrong))
            continue
        symbol, name = _text(fields[at[needed[0]]]), _text(fields[at["Security Name"]])
        etf = fields[at["ETF"]].strip() == "Y"
        if symbol is None:
            left.append((None, name, f"{file} line {number}: no symbol"))
        elif fields[at["Test Issue"]].strip() == "Y":
            left.append((symbol, name, "test issue"))
        elif "$" in symbol or (not etf and name is not None and _PREFERRED.search(name)):
            left.append((symbol, name, "preferred share: not a stock or ETF"))
        elif not etf and name is not None and _NOT_A_SHARE.search(name):
            left.append((symbol, name, "warrant, right or unit: not a stock or ETF"))
        else:
            kept.append((symbol.replace(".", "-"), name, "etf" if etf else "equity"))
    return _universe(kept), _left_out(left), created


def nasdaq_listing(directories: Mapping[str, str]) -> tuple[pl.DataFrame, pl.DataFrame, str]:
    """Both directories (file name -> text) as one universe, the rows left out, and the files'
    creation times (`nasdaqlisted.txt 0312202421:31, otherlisted.txt ...`)."""
    universes, left_out, created = [], [], []
    for file, text in directories.items():
        universe, left, stamp = nasdaq_directory(text, file)
        universes.append(universe)
        left_out.append(left)
        created.append(f"{file} {stamp}")
    return pl.concat(universes), pl.concat(left_out), ", ".join(created)


def synthetic_listing(n: int = ALL_SYNTHETIC_SYMBOLS) -> pl.DataFrame:
    """The synthetic market's `all`: `synthetic:N`'s symbols, with one in twenty an ETF (no
    sector, like a real listing's ETFs) so the listing has both kinds."""
    universe = synthetic_universe(n)
    etf = pl.int_range(pl.len()) % 20 == 19
    return universe.with_columns(
        pl.when(etf).then(pl.lit("etf")).otherwise(pl.col("asset_type")).alias("asset_type"),
        pl.when(etf).then(None).otherwise(pl.col("sector")).alias("sector"),
    )


__all__ = [
    "LEFT_OUT_SCHEMA",
    "NASDAQ_LISTED",
    "OTHER_LISTED",
    "POLYGON_TYPES",
    "ListingError",
    "nasdaq_directory",
    "nasdaq_listing",
    "polygon_listing",
    "synthetic_listing",
]
