"""Landing CSVs of portfolio trades -> typed, validated trades; bad rows rejected with reasons.

Pure: bytes in, frames out (the landing zone reads the files, the asset writes the tables).
Nothing is dropped silently: every row of every file ends up either valid or a reject with
its `;`-joined reasons, and a file with no row to blame becomes one reject row. Files are read
a physical line at a time (core/csv_lines.py, shared with payments): a broken line, however
long or garbled, costs that line alone.

Conventions (the holdings engine in core/holdings.py relies on them):
- Values are trimmed; an empty cell is null. `action` and `symbol` are upper-cased, `currency`
  must be USD in any case and comes out as "USD". Dates are ISO `YYYY-MM-DD`.
- BUY / SELL: `symbol` must be in the known universe, `quantity` > 0 shares (SELL too: the
  action gives the direction), `price` > 0 USD per share.
- DEPOSIT / WITHDRAWAL / FEE are cash actions: `quantity` is the USD amount (> 0), `price` is
  empty or 1 (anything else is `cash_price_not_one`, so quantity x price is always the
  amount), and `symbol` is empty or "CASH" (anything else is `unknown_symbol`). Valid cash
  rows come out with `symbol` null and `price` 1.0. "CASH" is never a tradable symbol.
- `fees` (USD, >= 0) are charged on top of any action; empty means 0.
- Every number has a plausible ceiling (`LIMITS`): above it the row is
  `out_of_range_<column>`, so no absurd value (1e308) reaches the holdings as inf or NaN.
- Of several rows with one `trade_id`, the first in (date, source_file, line) order among
  the rows with no other reason is kept, the later ones are `duplicate_trade_id`, also
  across files. A rejected row never blocks a later good one with its id.
"""

from __future__ import annotations

import io
from collections.abc import Collection

import polars as pl

from fintrack_assets.core.bronze import reject_counts
from fintrack_assets.core.calendar import nyse_sessions
from fintrack_assets.core.csv_lines import line_chunks, read_header, split_line

__all__ = [
    "ACTIONS",
    "CASH_ACTIONS",
    "LIMITS",
    "REJECT_SCHEMA",
    "TRADED_SCHEMA",
    "TRADE_COLUMNS",
    "TRADE_SCHEMA",
    "parse_trades",
    "reject_counts",
    "validate_trades",
]

ACTIONS = ("BUY", "SELL", "DEPOSIT", "WITHDRAWAL", "FEE")
CASH_ACTIONS = ("DEPOSIT", "WITHDRAWAL", "FEE")
CASH_SYMBOL = "CASH"

TRADE_SCHEMA: dict[str, pl.DataType] = {
    "trade_id": pl.String(),
    "portfolio_id": pl.String(),
    "date": pl.Date(),
    "symbol": pl.String(),
    "action": pl.String(),
    "quantity": pl.Float64(),
    "price": pl.Float64(),
    "fees": pl.Float64(),
    "currency": pl.String(),
}
TRADE_COLUMNS = tuple(TRADE_SCHEMA)
TRADED_SCHEMA: dict[str, pl.DataType] = TRADE_SCHEMA | {
    "source_file": pl.String(),
    "line": pl.Int64(),
}
"""Typed trades as parse_trades returns them and validate_trades keeps them."""

REJECT_SCHEMA: dict[str, pl.DataType] = {c: pl.String() for c in TRADE_COLUMNS} | {
    "source_file": pl.String(),
    "line": pl.Int64(),
    "reason": pl.String(),
}
"""Rejects of both stages share this schema (values as text) so they concatenate plainly.
`line` is null for a reject that stands for a whole unreadable file."""

_NUMBERS = ("quantity", "price", "fees")
LIMITS = {"quantity": 1e9, "price": 1e6, "fees": 1e6}
"""Numeric column -> the largest plausible value (`out_of_range_<column>` above it): a billion
shares or USD a row, a million USD a share or in fees. Far beyond any real trade, and small
enough that quantity x price and every sum of them stay finite and exact to the cent."""
_CHUNK_LINES = 10_000


def _empty_rejects() -> pl.DataFrame:
    return pl.DataFrame(schema=REJECT_SCHEMA)


def _file_reject(source: str, reason: str) -> pl.DataFrame:
    """One reject row standing for a whole file, so even an unreadable file is counted."""
    row: dict[str, object] = dict.fromkeys(TRADE_COLUMNS) | {
        "source_file": source,
        "line": None,
        "reason": reason,
    }
    return pl.DataFrame([row], schema=REJECT_SCHEMA)


def _read_rows(
    content: bytes,
) -> tuple[list[str], str | None, list[tuple[int, list[str] | None, str | None]]]:
    """(header, its problem, [(line, fields, problem)]) read line by line by the reader
    payments share (core/csv_lines.py), with physical 1-based line numbers; blank lines are
    skipped. A line that cannot be split has no fields and says why."""
    stream = io.BytesIO(content)
    first, rest, number = read_header(stream)
    if first is None:
        return [], None, []
    fields, header_problem = split_line(first)
    header = [f.strip().lower() for f in fields or []]
    if fields is None and header_problem != "bad_encoding":
        header_problem = "unreadable_csv"
    rows: list[tuple[int, list[str] | None, str | None]] = []
    for start, blob in line_chunks(stream, rest, number, _CHUNK_LINES):
        for k, line in enumerate(blob.split(b"\n")):
            if line.strip():
                rows.append((start + k, *split_line(line)))
    return header, header_problem, rows


def parse_trades(content: bytes, source: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(trades typed as TRADED_SCHEMA, rejects as REJECT_SCHEMA) of one landing CSV. Never
    raises on bad content: every value is read as text first and typed afterwards, so one bad
    cell rejects its row (`unparseable_<column>`), not the file, and one bad line its line
    alone (`bad_encoding`, `malformed_row`, `line_too_long`: csv_lines.split_line). A non-UTF-8 or
    unreadable header rejects every row (`bad_encoding`, `unreadable_csv`), a missing header
    column every row as `missing_column:<name>`; extra columns are ignored. A file-level
    problem with no rows to blame becomes one reject with a null `line`."""
    header, header_problem, rows = _read_rows(content)
    if not header and header_problem is None:
        return pl.DataFrame(schema=TRADED_SCHEMA), _file_reject(source, "empty_file")

    # Columns of a mis-decoded header are noise: bad_encoding alone says what to fix.
    file_reasons = (
        [header_problem]
        if header_problem
        else [f"missing_column:{c}" for c in TRADE_COLUMNS if c not in header]
    )
    position = {name: header.index(name) for name in TRADE_COLUMNS if name in header}
    records = []
    for line, fields, problem in rows:
        cells = fields or []
        record: dict[str, object] = {
            name: cells[i] if i < len(cells) else None for name, i in position.items()
        }
        record["line"] = line
        record["_field_count_ok"] = len(cells) == len(header)
        record["_line_problem"] = problem
        records.append(record)
    raw = pl.DataFrame(
        records,
        schema={c: pl.String() for c in TRADE_COLUMNS}
        | {"line": pl.Int64(), "_field_count_ok": pl.Boolean(), "_line_problem": pl.String()},
    ).with_columns(pl.col(c).str.strip_chars().replace("", None) for c in TRADE_COLUMNS)
    raw = raw.with_columns(pl.lit(source, pl.String).alias("source_file"))

    if file_reasons:
        if raw.is_empty():
            return pl.DataFrame(schema=TRADED_SCHEMA), _file_reject(source, ";".join(file_reasons))
        rejects = raw.with_columns(pl.lit(";".join(file_reasons)).alias("reason"))
        return pl.DataFrame(schema=TRADED_SCHEMA), rejects.select(list(REJECT_SCHEMA))

    broken = pl.col("_line_problem").is_not_null()
    line_rejects = raw.filter(broken).with_columns(pl.col("_line_problem").alias("reason"))
    raw = raw.filter(~broken)
    typed = {
        "date": pl.col("date").str.strptime(pl.Date, "%Y-%m-%d", strict=False),
        **{c: pl.col(c).cast(pl.Float64, strict=False) for c in _NUMBERS},
    }
    parsed = raw.with_columns(**{f"_{c}": expr for c, expr in typed.items()})
    checks = {"bad_field_count": ~pl.col("_field_count_ok")} | {
        f"unparseable_{c}": pl.col(c).is_not_null()
        & (pl.col(f"_{c}").is_null() | ~pl.col(f"_{c}").cast(pl.Float64).is_finite())
        if c in _NUMBERS
        else pl.col(c).is_not_null() & pl.col(f"_{c}").is_null()
        for c in typed
    }
    parsed = parsed.with_columns(_reasons(checks))
    rejects = pl.concat(
        [
            line_rejects.select(list(REJECT_SCHEMA)),
            parsed.filter(pl.col("reason").is_not_null()).select(list(REJECT_SCHEMA)),
        ]
    ).sort("line")
    trades = (
        parsed.filter(pl.col("reason").is_null())
        .with_columns(pl.col(f"_{c}").alias(c) for c in typed)
        .select(pl.col(c).cast(t) for c, t in TRADED_SCHEMA.items())
    )
    return trades, rejects


def _reasons(checks: dict[str, pl.Expr]) -> pl.Expr:
    """`reason`: the names of the checks a row fails, ';'-joined; null when it fails none
    (a check that evaluates to null counts as passed, so write checks null-safe)."""
    joined = pl.concat_str(
        [pl.when(expr.fill_null(False)).then(pl.lit(name)) for name, expr in checks.items()],
        separator=";",
        ignore_nulls=True,
    )
    return pl.when(joined == "").then(None).otherwise(joined).alias("reason")


def _positive(column: str) -> pl.Expr:
    """A finite number above zero; spelled out because polars orders NaN above every number."""
    return pl.col(column).is_finite().fill_null(False) & (pl.col(column) > 0).fill_null(False)


def validate_trades(
    trades: pl.DataFrame, known_symbols: Collection[str]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(valid, rejects) of parsed trades (TRADED_SCHEMA, one or many files). Valid rows are
    normalised (see the module docstring), sorted by (portfolio_id, date, trade_id) and match
    schemas.PortfolioTrade; rejects carry the input values as text plus `reason`, in
    (date, source_file, line) order. Oversells are the holdings engine's to find."""
    frame = trades.select(pl.col(c).cast(t) for c, t in TRADED_SCHEMA.items()).with_columns(
        pl.col("action").str.strip_chars().str.to_uppercase().alias("_action"),
        pl.col("symbol").str.strip_chars().str.to_uppercase().replace("", None).alias("_symbol"),
    )
    known = pl.Series([s for s in known_symbols if s != CASH_SYMBOL], dtype=pl.String).implode()
    sessions = pl.Series(nyse_sessions(), dtype=pl.Date).implode()
    is_cash = pl.col("_action").is_in(list(CASH_ACTIONS))
    is_trade = pl.col("_action").is_in(["BUY", "SELL"])
    checks = {
        "missing_trade_id": pl.col("trade_id").str.strip_chars().replace("", None).is_null(),
        "missing_portfolio_id": pl.col("portfolio_id")
        .str.strip_chars()
        .replace("", None)
        .is_null(),
        "unknown_action": pl.col("_action").is_null() | ~pl.col("_action").is_in(list(ACTIONS)),
        "unknown_symbol": (
            is_trade & (pl.col("_symbol").is_null() | ~pl.col("_symbol").is_in(known))
        )
        | (is_cash & pl.col("_symbol").is_not_null() & (pl.col("_symbol") != CASH_SYMBOL)),
        "non_session_date": pl.col("date").is_null() | ~pl.col("date").is_in(sessions),
        "non_usd": pl.col("currency").is_null()
        | (pl.col("currency").str.strip_chars().str.to_uppercase() != "USD"),
        "non_positive_quantity": ~_positive("quantity"),
        "non_positive_price": is_trade & ~_positive("price"),
        "cash_price_not_one": is_cash
        & pl.col("price").is_not_null()
        & (pl.col("price").is_nan() | (pl.col("price") != 1.0)),
        "negative_fees": pl.col("fees").is_not_null()
        & (pl.col("fees").is_nan() | (pl.col("fees") < 0)),
    } | {
        f"out_of_range_{c}": pl.col(c).is_finite() & (pl.col(c) > limit)
        for c, limit in LIMITS.items()
    }
    marked = (
        frame.sort("date", "source_file", "line", nulls_last=True, maintain_order=True)
        .with_row_index("_row")
        .with_columns(_reasons(checks))
    )
    ok = pl.col("reason").is_null()
    first_ok = marked.filter(ok).group_by("trade_id").agg(pl.col("_row").min().alias("_keep"))
    marked = marked.join(first_ok, on="trade_id", how="left").with_columns(
        pl.when(ok & (pl.col("_row") != pl.col("_keep")))
        .then(pl.lit("duplicate_trade_id"))
        .otherwise(pl.col("reason"))
        .alias("reason")
    )
    valid = (
        marked.filter(pl.col("reason").is_null())
        .with_columns(
            pl.col("trade_id").str.strip_chars(),
            pl.col("portfolio_id").str.strip_chars(),
            pl.col("_action").alias("action"),
            pl.when(is_cash).then(None).otherwise(pl.col("_symbol")).alias("symbol"),
            pl.when(is_cash).then(1.0).otherwise(pl.col("price")).alias("price"),
            pl.col("fees").fill_null(0.0),
            pl.lit("USD").alias("currency"),
        )
        .select(list(TRADED_SCHEMA))
        .sort("portfolio_id", "date", "trade_id")
    )
    rejects = (
        marked.filter(pl.col("reason").is_not_null())
        .sort("_row")
        .select(pl.col(c).cast(t) for c, t in REJECT_SCHEMA.items())
    )
    return valid, rejects
