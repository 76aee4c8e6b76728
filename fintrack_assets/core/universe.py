"""Universes: which symbols the market assets fetch, with name, sector and industry."""

from __future__ import annotations

import datetime as dt
from importlib import resources
from pathlib import Path

import polars as pl

from fintrack_assets.core.membership import MEMBER_SPELLS, Spell, format_spells
from fintrack_assets.core.symbols import valid_symbol_expr

UNIVERSE_SCHEMA = {
    "symbol": pl.String,
    "name": pl.String,
    "sector": pl.String,
    "industry": pl.String,
    "asset_type": pl.String,
}

SECTORS = [
    "Information Technology",
    "Health Care",
    "Financials",
    "Consumer Discretionary",
    "Communication Services",
    "Industrials",
    "Consumer Staples",
    "Energy",
    "Utilities",
    "Real Estate",
    "Materials",
]


LISTED_AT = "listed_at"
LISTING_SOURCE = "listing_source"
STORED_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    **UNIVERSE_SCHEMA,
    MEMBER_SPELLS: pl.String,
    LISTED_AT: pl.Datetime("us", "UTC"),
    LISTING_SOURCE: pl.String,
}
"""What `symbol_universe` stores besides `metadata_refreshed_at`: membership spells for
`sp500_pit`, when and from whom the listing of `all` came; null for the other universes."""

ALL_SYNTHETIC_SYMBOLS = 5_400
"""The synthetic market's `all`: about as many symbols as the US lists stocks and ETFs."""

SPECS = ("sample", "sp500", "sp500_pit", "all")


def _shipped(name: str) -> Path:
    return Path(str(resources.files("fintrack_assets") / "data" / name))


def sample_universe() -> pl.DataFrame:
    return pl.read_csv(_shipped("sample_universe.csv"), schema=UNIVERSE_SCHEMA)


def sp500_universe() -> pl.DataFrame:
    """S&P 500 constituents as of the shipped snapshot (2026-08-08, see data/README.md)."""
    raw = pl.read_csv(_shipped("sp500_constituents.csv"), infer_schema=False)
    return raw.select(
        pl.col("Symbol").str.replace_all(r"\.", "-").alias("symbol"),
        pl.col("Security").alias("name"),
        pl.col("GICS Sector").alias("sector"),
        pl.col("GICS Sub-Industry").alias("industry"),
        pl.lit("equity").alias("asset_type"),
    )


def sp500_pit_universe() -> pl.DataFrame:
    """Every symbol that was in the S&P 500 between 1996-01-02 and 2025-11-16, one row each
    with its membership spells (`member_spells`), from the shipped point-in-time list
    (data/sp500_history, see data/README.md). Tickers are spelled as we do (`BRK.B` ->
    `BRK-B`); name, sector and industry come from the shipped constituents where the symbol
    is still in them, null for the delisted and renamed (their sector reads "Unknown")."""
    spells = pl.read_csv(
        _shipped("sp500_history/sp500_ticker_start_end.csv"),
        schema={"ticker": pl.String, "start_date": pl.Date, "end_date": pl.Date},
    )
    by_symbol: dict[str, list[Spell]] = {}
    for ticker, start, end in spells.iter_rows():
        symbol = ticker.strip().replace(".", "-")
        by_symbol.setdefault(symbol, []).append((start, end))
    listed = pl.DataFrame(
        {
            "symbol": list(by_symbol),
            MEMBER_SPELLS: [format_spells(s) for s in by_symbol.values()],
        },
        schema={"symbol": pl.String, MEMBER_SPELLS: pl.String},
    )
    return (
        listed.join(sp500_universe(), on="symbol", how="left")
        .with_columns(pl.col("asset_type").fill_null("equity"))
        .select(*UNIVERSE_SCHEMA, MEMBER_SPELLS)
        .sort("symbol")
    )


def synthetic_universe(n: int) -> pl.DataFrame:
    """N generated symbols spread evenly across the sectors, for load tests."""
    width = max(4, len(str(n)))
    return pl.DataFrame(
        {
            "symbol": [f"SYN{i:0{width}d}" for i in range(n)],
            "name": [f"Synthetic {i}" for i in range(n)],
            "sector": [SECTORS[i % len(SECTORS)] for i in range(n)],
            "industry": ["Synthetic"] * n,
            "asset_type": ["equity"] * n,
        },
        schema=UNIVERSE_SCHEMA,
    )


def symbols_universe(symbols: list[str]) -> pl.DataFrame:
    """An ad-hoc list: names and sectors come from the shipped lists where they are known."""
    known = pl.concat([sample_universe(), sp500_universe()]).unique("symbol", keep="first")
    listed = pl.DataFrame({"symbol": symbols}, schema={"symbol": pl.String})
    return (
        listed.join(known, on="symbol", how="left")
        .with_columns(pl.col("asset_type").fill_null("equity"))
        .select(list(UNIVERSE_SCHEMA))
    )


def csv_universe(path: Path) -> pl.DataFrame:
    """A user CSV with at least a `symbol` column; other universe columns are optional."""
    raw = pl.read_csv(path, infer_schema=False)
    raw = raw.rename({c: c.strip().lower() for c in raw.columns})
    if "symbol" not in raw.columns:
        raise ValueError(f"{path}: a universe CSV needs a 'symbol' column, found {raw.columns}")
    for column in UNIVERSE_SCHEMA:
        if column not in raw.columns:
            raw = raw.with_columns(pl.lit(None, dtype=pl.String).alias(column))
    return raw.select(pl.col(c).str.strip_chars() for c in UNIVERSE_SCHEMA).with_columns(
        pl.col("asset_type").fill_null("equity")
    )


def split_valid(universe: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(valid rows, rejected rows with a reason): bad or repeated symbols never go further."""
    marked = universe.with_row_index("_row").with_columns(
        pl.when(~valid_symbol_expr())
        .then(pl.lit("bad_symbol"))
        .when(pl.col("_row") != pl.col("_row").min().over("symbol"))
        .then(pl.lit("duplicate"))
        .alias("reason")
    )
    kept = [c for c in universe.columns if c in STORED_SCHEMA]
    valid = marked.filter(pl.col("reason").is_null()).select(kept)
    rejected = marked.filter(pl.col("reason").is_not_null()).drop("_row")
    return valid.sort("symbol"), rejected


def parse_universe_spec(spec: str) -> tuple[str, str | int | list[str] | Path]:
    """('sample'|'sp500'|'sp500_pit'|'all', name) · ('synthetic', N) · ('csv', path) ·
    ('symbols', [..])."""
    from fintrack_assets.core.symbols import validate_symbols

    text = spec.strip()
    if text in SPECS:
        return text, text
    if text.startswith("synthetic:"):
        count = text.removeprefix("synthetic:")
        if not count.isdigit() or int(count) < 1:
            raise ValueError("synthetic:N needs a whole number N >= 1")
        return "synthetic", int(count)
    if text.lower().endswith(".csv") or "/" in text:
        path = Path(text).expanduser().resolve()
        if not path.is_file():
            raise ValueError(f"no universe CSV at {path}")
        return "csv", path
    symbols = [s.strip().upper() for s in text.split(",") if s.strip()]
    if not symbols:
        raise ValueError("an empty symbol list")
    return "symbols", validate_symbols(symbols)


def load_universe(spec: str) -> pl.DataFrame:
    """The universe a spec names. `all` is a provider's listing, which core does not fetch:
    `symbol_universe` asks the provider (resources/listings.py) and parses it here
    (core/listings.py)."""
    kind, value = parse_universe_spec(spec)
    if kind == "all":
        raise ValueError("the 'all' universe is the market-data provider's listing, not a file")
    if kind == "sample":
        return sample_universe()
    if kind == "sp500":
        return sp500_universe()
    if kind == "sp500_pit":
        return sp500_pit_universe()
    if kind == "synthetic":
        assert isinstance(value, int)
        return synthetic_universe(value)
    if kind == "csv":
        assert isinstance(value, Path)
        return csv_universe(value)
    assert isinstance(value, list)
    return symbols_universe(value)


METADATA = ["name", "sector", "industry"]
REFRESHED_AT = "metadata_refreshed_at"


def _still_fresh(
    previous: pl.DataFrame | None, now: dt.datetime, max_age: dt.timedelta
) -> pl.DataFrame:
    """Provider metadata from the previous table that is younger than `max_age`."""
    schema = {"symbol": pl.String, **dict.fromkeys(METADATA, pl.String)}
    if previous is None or REFRESHED_AT not in previous.columns:
        return pl.DataFrame(schema={**schema, REFRESHED_AT: pl.Datetime("us", "UTC")})
    refreshed = pl.col(REFRESHED_AT).dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    return previous.select(*schema, refreshed).filter(pl.col(REFRESHED_AT) >= now - max_age)


def stale_symbols(
    universe: pl.DataFrame, previous: pl.DataFrame | None, now: dt.datetime, max_age: dt.timedelta
) -> list[str]:
    """Symbols whose provider metadata is missing or older than `max_age`."""
    fresh = _still_fresh(previous, now, max_age)["symbol"]
    return universe.filter(~pl.col("symbol").is_in(fresh.implode()))["symbol"].to_list()


def with_provider_metadata(
    universe: pl.DataFrame,
    previous: pl.DataFrame | None,
    fetched: pl.DataFrame,
    now: dt.datetime,
    max_age: dt.timedelta,
) -> pl.DataFrame:
    """The universe with name, sector and industry from the provider where it has them.

    Per field, a value fetched now beats one cached in the previous table (if still fresh),
    which beats the shipped list; a provider that knows no sector never blanks ours.
    `metadata_refreshed_at` says when the provider last answered for the symbol.
    """
    stamped = fetched.select("symbol", *METADATA).with_columns(
        pl.lit(now).dt.convert_time_zone("UTC").dt.cast_time_unit("us").alias(REFRESHED_AT)
    )
    cached = _still_fresh(previous, now, max_age)
    newest = pl.concat(
        [stamped, cached.filter(~pl.col("symbol").is_in(stamped["symbol"].implode()))]
    )
    merged = universe.join(newest, on="symbol", how="left", suffix="_provider")
    return merged.with_columns(pl.coalesce(f"{c}_provider", c).alias(c) for c in METADATA).select(
        *(c for c in universe.columns if c != REFRESHED_AT), REFRESHED_AT
    )


def with_stored_columns(universe: pl.DataFrame) -> pl.DataFrame:
    """The universe with every column `symbol_universe` stores, absent ones null, in order."""
    return universe.with_columns(
        pl.lit(None, dtype).alias(column)
        for column, dtype in STORED_SCHEMA.items()
        if column not in universe.columns
    ).select(*STORED_SCHEMA, *(c for c in universe.columns if c not in STORED_SCHEMA))


def stamped_listing(listing: pl.DataFrame, source: str, now: dt.datetime) -> pl.DataFrame:
    """A listing just received from `source`, stamped with when and from whom."""
    return listing.select(*UNIVERSE_SCHEMA).with_columns(
        pl.lit(now).dt.convert_time_zone("UTC").dt.cast_time_unit("us").alias(LISTED_AT),
        pl.lit(source, pl.String).alias(LISTING_SOURCE),
    )


def cached_listing(
    previous: pl.DataFrame | None, source: str, now: dt.datetime, max_age: dt.timedelta
) -> pl.DataFrame | None:
    """The listing the previous table holds when it came from `source` no longer than
    `max_age` ago (rows stamped at the same time), else None. A table written before the
    listing columns existed, or for another universe, holds none."""
    if previous is None or not {LISTED_AT, LISTING_SOURCE} <= set(previous.columns):
        return None
    listed = previous.filter(
        pl.col(LISTED_AT).is_not_null() & (pl.col(LISTING_SOURCE) == source)
    ).with_columns(pl.col(LISTED_AT).dt.convert_time_zone("UTC").dt.cast_time_unit("us"))
    if listed.is_empty() or listed[LISTED_AT].min() < now - max_age:  # type: ignore[operator]
        return None
    return listed.select(*UNIVERSE_SCHEMA, LISTED_AT, LISTING_SOURCE)
