"""Yahoo daily history -> bars as traded.

`yf.download(..., auto_adjust=False, actions=True, group_by="ticker")` returns one wide
pandas frame: a `(Ticker, Price)` column MultiIndex, a tz-naive `Date` index that is the union
of every ticker's sessions, and all-NaN columns for a ticker that failed (with only the six
price fields, no actions). Its `Close`, `Volume` and `Dividends` are split-adjusted back to
today; bronze wants them as traded, so they are rebuilt from the symbol's split history.
`Adj Close` (splits and dividends) is the provider's total-return close and stays as served.
"""

from __future__ import annotations

import pandas as pd
import polars as pl

_FIELDS = {
    "Open": "open",
    "High": "high",
    "Low": "low",
    "Close": "close",
    "Adj Close": "adj_close",
    "Volume": "volume",
    "Dividends": "dividend",
}
SPLITS_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "date": pl.Date(),
    "ratio": pl.Float64(),
}
PRICE_DECIMALS = 4


def _ticker_level(columns: pd.MultiIndex) -> int:
    """Which column level holds tickers: `group_by="ticker"` puts them first, the default last."""
    if "Ticker" in columns.names:
        return list(columns.names).index("Ticker")
    return 1 if "Close" in columns.get_level_values(0) else 0


def yahoo_long(frame: pd.DataFrame | None, tickers: list[str]) -> tuple[pl.DataFrame, list[str]]:
    """(bars per ticker and date as Yahoo served them, tickers that returned no data).

    Dates where a ticker has no price at all are the padding of yfinance's outer join across
    tickers (an index trades on a day an equity does not), not bars. A ticker with no priced
    row is failed; so is one yfinance left out of the frame.
    """
    pieces: list[pl.DataFrame] = []
    returned: set[str] = set()
    if frame is not None and not frame.empty and isinstance(frame.columns, pd.MultiIndex):
        level = _ticker_level(frame.columns)
        for ticker in frame.columns.get_level_values(level).unique():
            part = frame.xs(ticker, axis=1, level=level)
            fields = {f: c for f, c in _FIELDS.items() if f in part.columns}
            if "Close" not in fields or part["Close"].isna().all():
                continue
            data = {c: part[f].to_numpy(dtype="float64") for f, c in fields.items()}
            piece = pl.DataFrame(
                {
                    "symbol": [str(ticker)] * len(part),
                    "date": [d.date() for d in pd.DatetimeIndex(part.index)],
                    **data,
                }
            )
            priced = piece.filter(
                pl.any_horizontal(pl.col(c).is_not_nan() for c in ("open", "high", "low", "close"))
            )
            pieces.append(priced)
            returned.add(str(ticker))
    failed = [t for t in tickers if t not in returned]
    if not pieces:
        return empty_yahoo_bars(), failed
    return pl.concat([p.select(_columns(p)) for p in pieces], how="diagonal_relaxed"), failed


def _columns(piece: pl.DataFrame) -> list[pl.Expr]:
    out = [pl.col("symbol"), pl.col("date")]
    for name in _FIELDS.values():
        if name in piece.columns:
            out.append(pl.col(name).cast(pl.Float64).fill_nan(None))
        else:
            out.append(pl.lit(None, dtype=pl.Float64).alias(name))
    return out


def empty_yahoo_bars() -> pl.DataFrame:
    return pl.DataFrame(
        schema={"symbol": pl.String, "date": pl.Date} | {c: pl.Float64 for c in _FIELDS.values()}
    )


def splits_frame(history: dict[str, pd.Series]) -> pl.DataFrame:
    """`Ticker.splits` per symbol (ratio by ex-date, New York time) as one long frame."""
    rows = [
        (symbol, pd.Timestamp(when).date(), float(ratio))
        for symbol, series in history.items()
        for when, ratio in series.items()
        if ratio and ratio > 0 and ratio != 1.0
    ]
    return pl.DataFrame(rows, schema=SPLITS_SCHEMA, orient="row")


def as_traded(bars: pl.DataFrame, splits: pl.DataFrame) -> pl.DataFrame:
    """Undoes Yahoo's split adjustment: a bar on day d is scaled by every split after d.

    The factor is the product of split ratios strictly after d (a split's own day is already
    on the new basis). Prices and dividends multiply by it, volume divides by it; `split_ratio`
    is the split effective that day.
    """
    ordered = splits.sort("symbol", "date")
    after = ordered.with_columns(
        pl.col("ratio").reverse().cum_prod().reverse().over("symbol").alias("factor")
    ).select("symbol", pl.col("date").alias("next_split"), "factor")
    scaled = (
        bars.sort("symbol", "date")
        .join_asof(
            after.sort("symbol", "next_split"),
            left_on="date",
            right_on="next_split",
            by="symbol",
            strategy="forward",
            allow_exact_matches=False,
            check_sortedness=False,  # both sides sorted by (symbol, date) above
        )
        .join(
            ordered.select("symbol", "date", pl.col("ratio").alias("split_ratio")),
            on=["symbol", "date"],
            how="left",
        )
        .with_columns(pl.col("factor").fill_null(1.0), pl.col("split_ratio").fill_null(1.0))
    )
    return scaled.select(
        "symbol",
        "date",
        *[
            (pl.col(c) * pl.col("factor")).round(PRICE_DECIMALS).alias(c)
            for c in ("open", "high", "low", "close")
        ],
        pl.col("adj_close").round(PRICE_DECIMALS),
        (pl.col("volume") / pl.col("factor")).round(0).cast(pl.Int64).alias("volume"),
        (pl.col("dividend").fill_null(0.0) * pl.col("factor")).round(6).alias("dividend"),
        "split_ratio",
    )
