"""Company fundamentals and treasury yields: table shapes, provider payloads -> rows, and the
point-in-time view of fundamentals (`fundamentals_as_of`).

Pure: frames and payloads in, frames out. A quarter's figures are known from its
`filing_date`; nothing here lets a figure be seen before that day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import polars as pl

FIGURES: tuple[str, ...] = (
    "revenue",
    "net_income",
    "eps",
    "shares_outstanding",
    "total_assets",
    "total_liabilities",
    "operating_cash_flow",
)
"""The quarterly key figures, each nullable where the provider lacks it."""

FUNDAMENTALS_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "fiscal_period": pl.String(),
    "period_end": pl.Date(),
    "filing_date": pl.Date(),
    **{figure: pl.Float64() for figure in FIGURES},
    "source": pl.String(),
    "fetched_at": pl.Datetime("us", "UTC"),
}
FUNDAMENTALS_KEY = ("symbol", "period_end")

TENORS: dict[str, str] = {
    "yield_3m": "3-month (13-week bill)",
    "yield_5y": "5-year",
    "yield_10y": "10-year",
    "yield_30y": "30-year",
}
"""The yield columns (percent: 4.25 is 4.25 %) and what each is."""
YIELDS_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date(),
    **{column: pl.Float64() for column in TENORS},
    "source": pl.String(),
}

FILING_LAG_DAYS = 45
"""When a provider gives no filing date: a quarter is taken as known 45 days after its end
(the SEC's 10-Q deadline for most filers is 40 or 45 days; docs/decisions.md)."""
EARNINGS_WINDOW_DAYS = 120
"""An earnings date up to this many days after a quarter's end is that quarter's release."""
TTM_SPAN_DAYS = 300
"""Four quarters are consecutive when the oldest ends at most this long before the newest (three
quarters apart is 273-276 days); a gap (a quarter the provider lacks) leaves `eps_ttm` null."""

_RAW_SCHEMA: dict[str, pl.DataType] = {
    key: value for key, value in FUNDAMENTALS_SCHEMA.items() if key not in ("source", "fetched_at")
}


def empty_fundamentals() -> pl.DataFrame:
    return pl.DataFrame(schema=FUNDAMENTALS_SCHEMA)


def empty_yields() -> pl.DataFrame:
    return pl.DataFrame(schema=YIELDS_SCHEMA)


def calendar_quarter(period_end: dt.date) -> str:
    """`2024Q3` for a quarter ending in July to September: the label when a provider names
    no fiscal period (fiscal years that do not end in December differ from it)."""
    return f"{period_end.year}Q{(period_end.month - 1) // 3 + 1}"


def stamped(rows: pl.DataFrame, source: str, fetched_at: dt.datetime) -> pl.DataFrame:
    """Provider rows (the columns before `source`) as the table's: one row per key (the
    latest filing of a period wins), `source` and `fetched_at` added, sorted."""
    return (
        rows.select(list(_RAW_SCHEMA))
        .cast(dict(_RAW_SCHEMA))
        .sort(*FUNDAMENTALS_KEY, "filing_date")
        .unique(FUNDAMENTALS_KEY, keep="last", maintain_order=True)
        .with_columns(
            pl.lit(source, pl.String).alias("source"),
            pl.lit(fetched_at, pl.Datetime("us", "UTC")).alias("fetched_at"),
        )
    )


def refreshed(
    fetched: pl.DataFrame, previous: pl.DataFrame | None, symbols: Sequence[str], source: str
) -> pl.DataFrame:
    """The table after a refresh: what was fetched, over the previous table's rows of the same
    source for the universe's `symbols` (a fetched period replaces its stored row; a period
    no longer served, or a symbol that failed this time, keeps what was stored). Rows of
    symbols that left the universe, or from another source, are not carried over."""
    kept = empty_fundamentals()
    if previous is not None and not previous.is_empty():
        kept = previous.select(list(FUNDAMENTALS_SCHEMA)).filter(
            pl.col("symbol").is_in(list(symbols)) & (pl.col("source") == source)
        )
    return (
        pl.concat([kept.cast(dict(FUNDAMENTALS_SCHEMA)), fetched.cast(dict(FUNDAMENTALS_SCHEMA))])
        .unique(FUNDAMENTALS_KEY, keep="last", maintain_order=True)
        .sort(*FUNDAMENTALS_KEY)
    )


def fundamentals_as_of(
    fundamentals: pl.DataFrame, dates: pl.DataFrame | Sequence[dt.date]
) -> pl.DataFrame:
    """Per (symbol, date): the figures known on that date, point in time.

    Known means filed on or before the date (`filing_date <= date`); of the known quarters the
    one with the latest `period_end` is the row (a late or restated filing of an older quarter
    does not displace a newer quarter already known). `eps_ttm` is the sum of the eps of the
    last four known quarters, null when fewer than four are known, one of them lacks eps, or
    they are not consecutive (`TTM_SPAN_DAYS`). A date before a symbol's first filing gets
    nulls.

    `dates` is a list of dates (every symbol of `fundamentals` on each) or a frame with a
    `date` column and optionally a `symbol` column (then exactly its pairs). The result holds
    `symbol, date`, the table's other columns and `eps_ttm`, sorted by symbol and date.
    """
    if isinstance(dates, pl.DataFrame):
        pairs = dates.select(
            pl.col("date").cast(pl.Date), *(["symbol"] if "symbol" in dates.columns else [])
        )
    else:
        pairs = pl.DataFrame({"date": list(dates)}, schema={"date": pl.Date})
    if "symbol" not in pairs.columns:
        symbols = fundamentals.select(pl.col("symbol").unique().sort())
        pairs = symbols.join(pairs.unique(), how="cross")
    pairs = pairs.select(pl.col("symbol").cast(pl.String), "date").unique()
    table = fundamentals.select(list(FUNDAMENTALS_SCHEMA)).cast(dict(FUNDAMENTALS_SCHEMA))
    # Each (symbol, filing_date) is a moment the known set changes; its state is computed once
    # from the rows known then, and every date takes the state of its last moment.
    moments = table.select("symbol", pl.col("filing_date").alias("known_from")).unique()
    known = (
        moments.join(table, on="symbol")
        .filter(pl.col("filing_date") <= pl.col("known_from"))
        .sort("symbol", "known_from", "period_end")
    )
    last4 = pl.col("eps").tail(4)
    consecutive = (
        pl.col("period_end").last() - pl.col("period_end").tail(4).first()
    ) <= pl.duration(days=TTM_SPAN_DAYS)
    states = known.group_by("symbol", "known_from").agg(
        *(pl.col(column).last() for column in table.columns if column != "symbol"),
        pl.when((pl.len() >= 4) & (last4.null_count() == 0) & consecutive)
        .then(last4.sum())
        .otherwise(None)
        .cast(pl.Float64)
        .alias("eps_ttm"),
    )
    return (
        pairs.sort("date")
        .join_asof(
            states.sort("known_from"),
            left_on="date",
            right_on="known_from",
            by="symbol",
            strategy="backward",
            check_sortedness=False,  # both sides sorted on their date above
        )
        .drop("known_from")
        .sort("symbol", "date")
    )


# -- Polygon ---------------------------------------------------------------------------------


def _value(financials: Mapping[str, Any], statement: str, *names: str) -> float | None:
    """`financials[statement][name].value` for the first name present, as a float."""
    section = financials.get(statement)
    if not isinstance(section, Mapping):
        return None
    for name in names:
        item = section.get(name)
        if isinstance(item, Mapping) and item.get("value") is not None:
            try:
                return float(item["value"])
            except (TypeError, ValueError):
                return None
    return None


def _date(value: object) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        return None


def polygon_financials(
    results: Sequence[Mapping[str, Any]], symbol: str
) -> tuple[pl.DataFrame, int]:
    """Polygon's `/vX/reference/financials` quarterly records of one ticker as rows (before
    `source` and `fetched_at`), and how many records were unusable (no `end_date`, or not a
    quarter). A record without `filing_date` is known `FILING_LAG_DAYS` after its end."""
    rows: list[dict[str, Any]] = []
    malformed = 0
    for record in results:
        end = _date(record.get("end_date"))
        period = str(record.get("fiscal_period") or "")
        year = str(record.get("fiscal_year") or "")
        if end is None or period not in ("Q1", "Q2", "Q3", "Q4"):
            malformed += 1
            continue
        filed = _date(record.get("filing_date")) or end + dt.timedelta(days=FILING_LAG_DAYS)
        financials = record.get("financials")
        financials = financials if isinstance(financials, Mapping) else {}
        rows.append(
            {
                "symbol": symbol,
                "fiscal_period": f"{year}{period}" if year.isdigit() else calendar_quarter(end),
                "period_end": end,
                "filing_date": filed,
                "revenue": _value(financials, "income_statement", "revenues"),
                "net_income": _value(
                    financials,
                    "income_statement",
                    "net_income_loss",
                    "net_income_loss_attributable_to_parent",
                ),
                "eps": _value(financials, "income_statement", "basic_earnings_per_share"),
                "shares_outstanding": _value(
                    financials, "income_statement", "basic_average_shares"
                ),
                "total_assets": _value(financials, "balance_sheet", "assets"),
                "total_liabilities": _value(financials, "balance_sheet", "liabilities"),
                "operating_cash_flow": _value(
                    financials, "cash_flow_statement", "net_cash_flow_from_operating_activities"
                ),
            }
        )
    return pl.DataFrame(rows, schema=_RAW_SCHEMA, orient="row"), malformed


POLYGON_TENORS = {
    "yield_3_month": "yield_3m",
    "yield_5_year": "yield_5y",
    "yield_10_year": "yield_10y",
    "yield_30_year": "yield_30y",
}


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # NaN is no yield


def polygon_yields(results: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """Polygon's `/fed/v1/treasury-yields` records as (date, the four yields); a record with
    no readable date or none of the four yields is dropped (it says nothing)."""
    rows = []
    for record in results:
        day = _date(record.get("date"))
        values = {ours: _number(record.get(theirs)) for theirs, ours in POLYGON_TENORS.items()}
        if day is not None and any(v is not None for v in values.values()):
            rows.append({"date": day, **values})
    schema = {k: v for k, v in YIELDS_SCHEMA.items() if k != "source"}
    return pl.DataFrame(rows, schema=schema, orient="row").unique("date", keep="last").sort("date")


# -- Yahoo -----------------------------------------------------------------------------------

YAHOO_TENORS = {"^IRX": "yield_3m", "^FVX": "yield_5y", "^TNX": "yield_10y", "^TYX": "yield_30y"}
"""Yahoo's yield indices; it quotes them in percent (^TNX 4.25 is 4.25 %)."""

YAHOO_ITEMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "revenue": ("income", ("TotalRevenue", "OperatingRevenue")),
    "net_income": ("income", ("NetIncome", "NetIncomeCommonStockholders")),
    "eps": ("income", ("BasicEPS",)),
    "shares_outstanding": ("balance", ("OrdinarySharesNumber", "ShareIssued")),
    "total_assets": ("balance", ("TotalAssets",)),
    "total_liabilities": ("balance", ("TotalLiabilitiesNetMinorityInterest",)),
    "operating_cash_flow": (
        "cashflow",
        ("OperatingCashFlow", "CashFlowFromContinuingOperatingActivities"),
    ),
}
"""Each figure's statement and its row names in yfinance's raw (`pretty=False`) statements,
in order of preference. Shares fall back to the income statement's `BasicAverageShares`."""


def _statement_values(frame: pd.DataFrame | None, names: Sequence[str]) -> dict[dt.date, float]:
    """{period end: value} of the first of `names` that the statement has (NaN is absent)."""
    if frame is None or frame.empty:
        return {}
    for name in names:
        if name in frame.index:
            row = frame.loc[name]
            return {
                pd.Timestamp(column).date(): float(value)
                for column, value in row.items()
                if value is not None and not pd.isna(value)
            }
    return {}


def yahoo_filing_dates(
    period_ends: Sequence[dt.date], earnings_dates: Sequence[dt.date]
) -> dict[dt.date, dt.date]:
    """Each quarter's release: the first earnings date after its end within
    `EARNINGS_WINDOW_DAYS`, else its end plus `FILING_LAG_DAYS`."""
    released = sorted(earnings_dates)
    out = {}
    for end in period_ends:
        after = [d for d in released if end < d <= end + dt.timedelta(days=EARNINGS_WINDOW_DAYS)]
        out[end] = after[0] if after else end + dt.timedelta(days=FILING_LAG_DAYS)
    return out


def yahoo_fundamentals(
    symbol: str,
    statements: Mapping[str, pd.DataFrame | None],
    earnings_dates: Sequence[dt.date],
) -> pl.DataFrame:
    """yfinance's quarterly statements (`income`, `balance`, `cashflow`: rows are items, columns
    period ends) as rows before `source`; a period end any statement has is a quarter."""
    values = {
        figure: _statement_values(statements.get(statement), names)
        for figure, (statement, names) in YAHOO_ITEMS.items()
    }
    if not values["shares_outstanding"]:
        values["shares_outstanding"] = _statement_values(
            statements.get("income"), ("BasicAverageShares",)
        )
    ends = sorted({end for by_end in values.values() for end in by_end})
    filed = yahoo_filing_dates(ends, earnings_dates)
    rows = [
        {
            "symbol": symbol,
            "fiscal_period": calendar_quarter(end),
            "period_end": end,
            "filing_date": filed[end],
            **{figure: values[figure].get(end) for figure in FIGURES},
        }
        for end in ends
    ]
    return pl.DataFrame(rows, schema=_RAW_SCHEMA, orient="row")


def yahoo_yields(closes: pl.DataFrame) -> pl.DataFrame:
    """Long (symbol, date, close) of Yahoo's yield indices as one row per date with a yield
    (before `source`); a tenor Yahoo did not serve that day is null."""
    wide = (
        closes.filter(pl.col("symbol").is_in(list(YAHOO_TENORS)) & pl.col("close").is_not_null())
        .with_columns(pl.col("symbol").replace_strict(YAHOO_TENORS).alias("tenor"))
        .pivot(on="tenor", index="date", values="close", aggregate_function="last")
    )
    for column in TENORS:
        if column not in wide.columns:
            wide = wide.with_columns(pl.lit(None, pl.Float64).alias(column))
    return wide.select("date", *(pl.col(c).cast(pl.Float64) for c in TENORS)).sort("date")


def missing_sessions(yields: pl.DataFrame, sessions: Sequence[dt.date]) -> list[dt.date]:
    """Sessions of the window without a row."""
    have = set(yields["date"].to_list())
    return [day for day in sessions if day not in have]


def reporting_symbols(universe: pl.DataFrame) -> tuple[list[str], list[str]]:
    """(symbols that file company reports: the universe's equities, symbols that do not: ETFs,
    indices like ^GSPC, FX and futures with '=')."""
    reports = (pl.col("asset_type").fill_null("equity") == "equity") & ~(
        pl.col("symbol").str.starts_with("^") | pl.col("symbol").str.contains("=", literal=True)
    )
    marked = universe.select("symbol", reports.alias("reports"))
    return (
        marked.filter("reports")["symbol"].to_list(),
        marked.filter(~pl.col("reports"))["symbol"].to_list(),
    )
