"""The holdings replay as a plain loop over events, one position object per (portfolio,
symbol): the reference the vectorised core/holdings.replay is tested against. It is the
engine's first version, kept here as the spelled-out rules rather than for speed."""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import polars as pl

EPSILON = 1e-9
METHODS = ("average", "fifo")


@dataclass
class _Position:
    quantity: float = 0.0
    cost_basis: float = 0.0
    realized: float = 0.0
    dividends: float = 0.0
    lots: deque[list[float]] = field(default_factory=deque)
    """FIFO: [shares, cost per share] oldest first."""


def _corporate_actions(prices: pl.DataFrame, symbols: Iterable[str]) -> pl.DataFrame:
    return prices.filter(
        pl.col("symbol").is_in(list(symbols))
        & ((pl.col("split_ratio") != 1.0) | (pl.col("dividend") > 0))
    ).select("symbol", "date", "split_ratio", "dividend")


def reference_replay(
    trades: pl.DataFrame, prices: pl.DataFrame, method: str = "average"
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Replays every trade and corporate action in order. Returns (states: one row per
    (portfolio_id, symbol, date) on which a position changed, with its state at the end of
    that day; cash: one row per cash movement; oversold)."""
    if method not in METHODS:
        raise ValueError(f"unknown cost method {method!r}: use one of {', '.join(METHODS)}")
    held = trades.filter(pl.col("action").is_in(["BUY", "SELL"]))
    actions = _corporate_actions(prices, held["symbol"].unique().to_list())
    first_trade = held.group_by("portfolio_id", "symbol").agg(pl.col("date").min().alias("opened"))
    corporate = (
        first_trade.join(actions, on="symbol", how="inner")
        .filter(pl.col("date") > pl.col("opened"))
        .select(
            "portfolio_id",
            "symbol",
            "date",
            pl.lit(0, pl.Int8).alias("_order"),
            pl.lit("CORPORATE").alias("action"),
            pl.lit(None, pl.String).alias("trade_id"),
            pl.col("split_ratio").alias("quantity"),
            pl.col("dividend").alias("price"),
            pl.lit(0.0).alias("fees"),
        )
    )
    events = pl.concat(
        [
            corporate,
            held.select(
                "portfolio_id",
                "symbol",
                "date",
                pl.lit(1, pl.Int8).alias("_order"),
                "action",
                "trade_id",
                "quantity",
                "price",
                "fees",
            ),
        ]
    ).sort("portfolio_id", "symbol", "date", "_order", "trade_id")

    positions: dict[tuple[str, str], _Position] = {}
    states: list[tuple] = []
    cash: list[tuple] = []
    oversold: list[tuple] = []
    last_key: tuple[str, str, dt.date] | None = None
    for portfolio, symbol, day, _, action, trade_id, quantity, price, fees in events.iter_rows():
        position = positions.setdefault((portfolio, symbol), _Position())
        if action == "CORPORATE":
            if position.quantity > EPSILON:
                if quantity != 1.0:
                    position.quantity *= quantity
                    for lot in position.lots:
                        lot[0] *= quantity
                        lot[1] /= quantity
                if price > 0:
                    paid = position.quantity * price
                    position.dividends += paid
                    cash.append((day, portfolio, "dividends", paid))
            else:
                continue
        elif action == "BUY":
            cost = quantity * price + fees
            position.quantity += quantity
            position.cost_basis += cost
            position.lots.append([quantity, cost / quantity])
            cash.append((day, portfolio, "buys", quantity * price))
            cash.append((day, portfolio, "fees", fees))
        else:
            if quantity > position.quantity + EPSILON:
                oversold.append((trade_id, position.quantity))
                continue
            removed = _remove(position, quantity, method)
            position.realized += quantity * price - fees - removed
            cash.append((day, portfolio, "sells", quantity * price))
            cash.append((day, portfolio, "fees", fees))
        if position.quantity <= EPSILON:
            position.quantity, position.cost_basis = 0.0, 0.0
            position.lots.clear()
        key = (portfolio, symbol, day)
        state = (
            portfolio,
            symbol,
            day,
            position.quantity,
            position.cost_basis,
            position.realized,
            position.dividends,
        )
        if key == last_key:
            states[-1] = state
        else:
            states.append(state)
        last_key = key

    for portfolio, day, action, quantity, price, fees in (
        trades.filter(pl.col("action").is_in(["DEPOSIT", "WITHDRAWAL", "FEE"]))
        .select("portfolio_id", "date", "action", "quantity", "price", "fees")
        .iter_rows()
    ):
        amount = quantity * (price if price is not None else 1.0)
        kind = {"DEPOSIT": "deposits", "WITHDRAWAL": "withdrawals", "FEE": "fees"}[action]
        cash.append((day, portfolio, kind, amount))
        if fees:
            cash.append((day, portfolio, "fees", fees))

    state_frame = pl.DataFrame(
        states,
        schema={
            "portfolio_id": pl.String,
            "symbol": pl.String,
            "date": pl.Date,
            "quantity": pl.Float64,
            "cost_basis": pl.Float64,
            "realized_pnl": pl.Float64,
            "dividends": pl.Float64,
        },
        orient="row",
    )
    cash_frame = pl.DataFrame(
        cash,
        schema={
            "date": pl.Date,
            "portfolio_id": pl.String,
            "kind": pl.String,
            "amount": pl.Float64,
        },
        orient="row",
    )
    oversold_frame = pl.DataFrame(
        oversold, schema={"trade_id": pl.String, "shares_held": pl.Float64}, orient="row"
    )
    return state_frame, cash_frame, oversold_frame


def _remove(position: _Position, quantity: float, method: str) -> float:
    """Takes `quantity` shares out of the position; returns the cost basis they carried."""
    if method == "average":
        removed = position.cost_basis * quantity / position.quantity
        for lot in position.lots:
            lot[0] *= 1 - quantity / position.quantity
    else:
        removed, left = 0.0, quantity
        while left > EPSILON and position.lots:
            shares, per_share = position.lots[0]
            take = min(shares, left)
            removed += take * per_share
            left -= take
            if shares - take <= EPSILON:
                position.lots.popleft()
            else:
                position.lots[0][0] = shares - take
    position.quantity -= quantity
    position.cost_basis -= removed
    return removed
