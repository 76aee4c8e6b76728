"""A deterministic sample of trades for the demo: three portfolios of different styles whose
history meets a split and several dividends of the market they trade in."""

from __future__ import annotations

import datetime as dt

import polars as pl

from fintrack_assets.core.trades import TRADE_SCHEMA


def sample_trades(bars: pl.DataFrame) -> pl.DataFrame:
    """Trades at the day's close over the sessions of `bars` (bronze columns):

    - INCOME buys the four most generous dividend payers on the first session and holds,
      adding a deposit each month;
    - GROWTH buys the symbol whose split comes latest in the window before it splits, and
      sells half of the (split) position after;
    - TRADER rotates through the four busiest names every ten sessions, paying fees on both
      sides, an account fee and a withdrawal.
    """
    days = sorted(bars["date"].unique().to_list())
    if len(days) < 3:
        raise ValueError("the sample needs at least 3 sessions of bars")
    close = {(s, d): c for s, d, c in bars.select("symbol", "date", "close").iter_rows()}
    trades: list[tuple] = []

    def add(
        portfolio: str,
        day: dt.date,
        action: str,
        symbol: str | None,
        qty: float,
        price: float,
        fees: float = 0.0,
    ) -> None:
        trades.append(
            (
                f"{portfolio}-{len(trades) + 1:05d}",
                portfolio,
                day,
                symbol,
                action,
                qty,
                price,
                fees,
                "USD",
            )
        )

    payers = (
        bars.filter(pl.col("dividend") > 0)
        .group_by("symbol")
        .agg((pl.col("dividend") / pl.col("close")).sum().alias("yield"))
        .sort("yield", "symbol", descending=[True, False])
        .head(4)["symbol"]
        .to_list()
    )
    first = days[0]
    add("INCOME", first, "DEPOSIT", None, 100_000, 1.0)
    for symbol in payers:
        if (symbol, first) in close:
            add("INCOME", first, "BUY", symbol, 100.0, close[(symbol, first)], 1.0)
    month = first.month
    for day in days[1:]:
        if day.month != month:
            month = day.month
            add("INCOME", day, "DEPOSIT", None, 2_000, 1.0)

    splits = bars.filter(pl.col("split_ratio") != 1.0).sort("date", "symbol")
    split = (
        splits.filter(pl.col("date") > days[min(5, len(days) - 1)]).tail(1)
        if not splits.is_empty()
        else splits
    )
    add("GROWTH", first, "DEPOSIT", None, 50_000, 1.0)
    if not split.is_empty():
        symbol, split_day = split["symbol"][0], split["date"][0]
        at = days.index(split_day)
        buy_day, sell_day = days[max(0, at - 5)], days[min(len(days) - 1, at + 5)]
        if (symbol, buy_day) in close and (symbol, sell_day) in close:
            add("GROWTH", buy_day, "BUY", symbol, 60.0, close[(symbol, buy_day)], 2.0)
            shares = 60.0 * float(split["split_ratio"][0])
            add("GROWTH", sell_day, "SELL", symbol, shares / 2, close[(symbol, sell_day)], 2.0)

    busiest = (
        bars.group_by("symbol")
        .agg(pl.col("volume").sum())
        .sort("volume", "symbol", descending=[True, False])
        .head(4)["symbol"]
        .to_list()
    )
    add("TRADER", first, "DEPOSIT", None, 30_000, 1.0)
    held: tuple[str, float] | None = None
    for i, day in enumerate(days[::10]):
        if held is not None and (held[0], day) in close:
            add("TRADER", day, "SELL", held[0], held[1], close[(held[0], day)], 4.95)
            held = None
        symbol = busiest[i % len(busiest)]
        if (symbol, day) in close:
            qty = float(int(5_000 / close[(symbol, day)]))
            add("TRADER", day, "BUY", symbol, qty, close[(symbol, day)], 4.95)
            held = (symbol, qty)
    add("TRADER", days[len(days) // 2], "FEE", None, 25.0, 1.0)
    add("TRADER", days[-3], "WITHDRAWAL", None, 1_000.0, 1.0)

    return pl.DataFrame(
        trades,
        schema=TRADE_SCHEMA,
        orient="row",
    ).sort("date", "portfolio_id", "trade_id")
