"""trades + corporate actions -> daily holdings, by average cost (FIFO as an option).

The user enters only what they did (BUY, SELL, DEPOSIT, WITHDRAWAL, FEE). Splits and cash
dividends come from bronze on their dates: on session D a split first multiplies the shares
carried from D-1 (cost basis unchanged), then the dividend of D is paid on those shares (the
ex-date: shares bought on D do not earn it), then D's trades apply in trade order.

Cash actions carry their USD amount as `quantity` (price 1). A BUY costs quantity x price +
fees, which all go into the cost basis; a SELL brings quantity x price - fees, and its
realised P&L is that minus the basis it removes. A SELL beyond the shares held is refused
(`oversell`) and changes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import polars as pl

from fintrack_assets.core.calendar import sessions_between

CASH = "CASH"
METHODS = ("average", "fifo")
EPSILON = 1e-9
"""Shares below this count as none (float residue of partial sells)."""

HOLDINGS_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date(),
    "portfolio_id": pl.String(),
    "symbol": pl.String(),
    "quantity": pl.Float64(),
    "avg_cost": pl.Float64(),
    "cost_basis": pl.Float64(),
    "close": pl.Float64(),
    "market_value": pl.Float64(),
    "unrealized_pnl": pl.Float64(),
    "realized_pnl": pl.Float64(),
    "dividends": pl.Float64(),
    "weight": pl.Float64(),
}
"""Per symbol, `realized_pnl` and `dividends` are cumulative since the position's first trade;
on the CASH row (quantity = cash in USD) they are the portfolio's cumulative totals, so
nothing realised is lost when a position closes and drops out."""


@dataclass
class _Position:
    quantity: float = 0.0
    cost_basis: float = 0.0
    realized: float = 0.0
    dividends: float = 0.0
    lots: deque[list[float]] = field(default_factory=deque)
    """FIFO: [shares, cost per share] oldest first."""


@dataclass(frozen=True)
class Holdings:
    daily: pl.DataFrame
    """HOLDINGS_SCHEMA rows for the sessions of the window."""
    cash_flows: pl.DataFrame
    """Per (date, portfolio_id): deposits, withdrawals, buys, sells, dividends, fees: what
    moved cash that day (buys and sells at their gross value; fees of trades included)."""
    oversold: pl.DataFrame
    """SELL trades refused because they exceeded the shares held, with the shares held."""


def _corporate_actions(prices: pl.DataFrame, symbols: Iterable[str]) -> pl.DataFrame:
    return prices.filter(
        pl.col("symbol").is_in(list(symbols))
        & ((pl.col("split_ratio") != 1.0) | (pl.col("dividend") > 0))
    ).select("symbol", "date", "split_ratio", "dividend")


def replay(
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


CASH_KINDS = ("deposits", "withdrawals", "buys", "sells", "dividends", "fees")


def daily_cash_flows(cash: pl.DataFrame) -> pl.DataFrame:
    """One row per (date, portfolio_id) with a column per kind of cash movement."""
    if cash.is_empty():
        return pl.DataFrame(
            schema={"date": pl.Date, "portfolio_id": pl.String}
            | {kind: pl.Float64 for kind in CASH_KINDS}
        )
    return (
        cash.group_by("date", "portfolio_id", "kind")
        .agg(pl.col("amount").sum())
        .pivot(on="kind", index=["date", "portfolio_id"], values="amount")
        .with_columns(
            [pl.lit(0.0).alias(k) for k in CASH_KINDS if k not in cash["kind"].unique().to_list()]
        )
        .select("date", "portfolio_id", *[pl.col(k).fill_null(0.0) for k in CASH_KINDS])
        .sort("portfolio_id", "date")
    )


def holdings(
    trades: pl.DataFrame,
    prices: pl.DataFrame,
    start: dt.date,
    end: dt.date,
    method: str = "average",
) -> Holdings:
    """Holdings for every session in [start, end), from every trade up to end (earlier
    trades make the opening state, so a window gives what its sessions give one by one).

    `prices` is bronze (symbol, date, close, dividend, split_ratio) from the first trade on;
    a held symbol without a bar on D is valued at its last close before D."""
    trades = trades.filter(pl.col("date") < end)
    prices = prices.select(
        "symbol",
        "date",
        *(pl.col(c).cast(pl.Float64) for c in ("close", "split_ratio", "dividend")),
    )
    states, cash, oversold = replay(trades, prices, method)
    flows = daily_cash_flows(cash)
    sessions = pl.DataFrame({"date": sessions_between(start, end)}, schema={"date": pl.Date})
    positions = _positions_on_sessions(states, sessions)
    closes = prices.select("symbol", "date", "close").sort("date")
    valued = (
        positions.sort("date")
        .join_asof(closes, on="date", by="symbol", strategy="backward", check_sortedness=False)
        .with_columns(
            pl.when(pl.col("quantity") > 0)
            .then(pl.col("cost_basis") / pl.col("quantity"))
            .otherwise(0.0)
            .alias("avg_cost"),
            (pl.col("quantity") * pl.col("close")).alias("market_value"),
        )
        .with_columns((pl.col("market_value") - pl.col("cost_basis")).alias("unrealized_pnl"))
    )
    cash_rows = _cash_rows(flows, states, sessions)
    daily = pl.concat(
        [
            valued.with_columns(pl.lit(None, pl.Float64).alias("weight")).select(
                pl.col(c).cast(t) for c, t in HOLDINGS_SCHEMA.items()
            ),
            cash_rows,
        ],
        how="vertical",
    )
    value = daily.group_by("date", "portfolio_id").agg(pl.col("market_value").sum().alias("_value"))
    daily = (
        daily.join(value, on=["date", "portfolio_id"])
        .with_columns(
            pl.when(pl.col("_value") != 0)
            .then(pl.col("market_value") / pl.col("_value"))
            .otherwise(None)
            .alias("weight")
        )
        .select(list(HOLDINGS_SCHEMA))
        .sort("date", "portfolio_id", "symbol")
    )
    return Holdings(daily=daily, cash_flows=flows, oversold=oversold)


def _positions_on_sessions(states: pl.DataFrame, sessions: pl.DataFrame) -> pl.DataFrame:
    """Each position's state on each session of the window: its last change on or before the
    session. A position shows while it holds shares, and on the day it closes."""
    if states.is_empty() or sessions.is_empty():
        return states.clear().with_columns(pl.lit(None, pl.Date).alias("changed"))

    opened = states.group_by("portfolio_id", "symbol").agg(pl.col("date").min().alias("opened"))
    grid = opened.join(sessions, how="cross").filter(pl.col("date") >= pl.col("opened"))
    return (
        grid.sort("date")
        .join_asof(
            states.sort("date").with_columns(pl.col("date").alias("changed")),
            on="date",
            by=["portfolio_id", "symbol"],
            strategy="backward",
            check_sortedness=False,
        )
        .filter((pl.col("quantity") > 0) | (pl.col("changed") == pl.col("date")))
        .drop("opened")
    )


def _cash_rows(flows: pl.DataFrame, states: pl.DataFrame, sessions: pl.DataFrame) -> pl.DataFrame:
    """The CASH row of each portfolio on each session from its first cash movement on."""
    if flows.is_empty() or sessions.is_empty():
        return pl.DataFrame(schema=HOLDINGS_SCHEMA)
    balance = flows.with_columns(
        (
            pl.col("deposits")
            - pl.col("withdrawals")
            - pl.col("buys")
            + pl.col("sells")
            + pl.col("dividends")
            - pl.col("fees")
        )
        .cum_sum()
        .over("portfolio_id", order_by="date")
        .alias("cash"),
        pl.col("dividends")
        .cum_sum()
        .over("portfolio_id", order_by="date")
        .alias("dividends_total"),
    ).select("portfolio_id", "date", "cash", "dividends_total")
    realized = (
        states.sort("date")
        .with_columns(
            pl.col("realized_pnl")
            .diff()
            .over("portfolio_id", "symbol")
            .fill_null(pl.col("realized_pnl"))
        )
        .group_by("portfolio_id", "date")
        .agg(pl.col("realized_pnl").sum())
        .sort("date")
        .with_columns(pl.col("realized_pnl").cum_sum().over("portfolio_id").alias("realized_total"))
        .select("portfolio_id", "date", "realized_total")
    )
    started = flows.group_by("portfolio_id").agg(pl.col("date").min().alias("first"))
    grid = (
        started.join(sessions, how="cross").filter(pl.col("date") >= pl.col("first")).sort("date")
    )
    rows = grid.join_asof(
        balance.sort("date"),
        on="date",
        by="portfolio_id",
        strategy="backward",
        check_sortedness=False,
    ).join_asof(realized, on="date", by="portfolio_id", strategy="backward", check_sortedness=False)
    return rows.select(
        "date",
        "portfolio_id",
        pl.lit(CASH).alias("symbol"),
        pl.col("cash").alias("quantity"),
        pl.lit(1.0).alias("avg_cost"),
        pl.col("cash").alias("cost_basis"),
        pl.lit(1.0).alias("close"),
        pl.col("cash").alias("market_value"),
        pl.lit(0.0).alias("unrealized_pnl"),
        pl.col("realized_total").fill_null(0.0).alias("realized_pnl"),
        pl.col("dividends_total").fill_null(0.0).alias("dividends"),
        pl.lit(None, pl.Float64).alias("weight"),
    )


MONTHLY_SCHEMA: dict[str, pl.DataType] = {
    "month": pl.Date(),
    **{k: v for k, v in HOLDINGS_SCHEMA.items() if k not in ("realized_pnl", "dividends")},
    "realized_pnl_month": pl.Float64(),
    "dividends_month": pl.Float64(),
    "fees_month": pl.Float64(),
    "net_flows_month": pl.Float64(),
    "portfolio_value": pl.Float64(),
    "return_month": pl.Float64(),
}
"""The month-end snapshot (`date` is the month's last session) with the month's realised P&L
and dividends per row (the CASH row: the portfolio's), and per portfolio, repeated on its
rows: fees, net external flows (deposits - withdrawals), value and time-weighted return."""


def next_month(month: dt.date) -> dt.date:
    """The first day of the month after `month`'s."""
    return (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def monthly(daily: pl.DataFrame, flows: pl.DataFrame, month: dt.date) -> pl.DataFrame:
    """holdings_monthly for `month` (its first day) from the daily holdings of the month and
    of the last session before it (`daily`), and the month's `daily_cash_flows`.

    The return chains daily returns with external flows excluded: a flow counts as arriving
    at the start of its day, r = V_d / (V_{d-1} + F_d) - 1."""
    following = next_month(month)
    in_month = daily.filter(pl.col("date").is_between(month, following, closed="left"))
    if in_month.is_empty():
        return pl.DataFrame(schema=MONTHLY_SCHEMA)
    month_end = in_month["date"].max()
    before = daily.filter(pl.col("date") < month)
    previous = (
        before.filter(pl.col("date") == before["date"].max()) if not before.is_empty() else before
    )
    month_flows = flows.filter(pl.col("date").is_between(month, following, closed="left"))
    value = (
        daily.filter(pl.col("date") < following)
        .group_by("portfolio_id", "date")
        .agg(pl.col("market_value").sum().alias("value"))
        .join(
            month_flows.select(
                "portfolio_id", "date", (pl.col("deposits") - pl.col("withdrawals")).alias("flow")
            ),
            on=["portfolio_id", "date"],
            how="left",
        )
        .with_columns(pl.col("flow").fill_null(0.0))
        .sort("portfolio_id", "date")
        .with_columns(pl.col("value").shift().over("portfolio_id").fill_null(0.0).alias("prior"))
        .filter(pl.col("date") >= month)
        .with_columns(
            pl.when(pl.col("prior") + pl.col("flow") > 0)
            .then(pl.col("value") / (pl.col("prior") + pl.col("flow")))
            .otherwise(1.0)
            .alias("growth")
        )
        .group_by("portfolio_id")
        .agg(
            (pl.col("growth").product() - 1.0).alias("return_month"),
            pl.col("value").last().alias("portfolio_value"),
        )
    )
    totals = month_flows.group_by("portfolio_id").agg(
        pl.col("fees").sum().alias("fees_month"),
        (pl.col("deposits") - pl.col("withdrawals")).sum().alias("net_flows_month"),
    )
    start_of = previous.select(
        "portfolio_id",
        "symbol",
        pl.col("realized_pnl").alias("_realized_before"),
        pl.col("dividends").alias("_dividends_before"),
    )
    snapshot = in_month.filter(pl.col("date") == month_end)
    return (
        snapshot.join(start_of, on=["portfolio_id", "symbol"], how="left")
        .join(totals, on="portfolio_id", how="left")
        .join(value, on="portfolio_id", how="left")
        .with_columns(
            pl.lit(month).alias("month"),
            (pl.col("realized_pnl") - pl.col("_realized_before").fill_null(0.0)).alias(
                "realized_pnl_month"
            ),
            (pl.col("dividends") - pl.col("_dividends_before").fill_null(0.0)).alias(
                "dividends_month"
            ),
            pl.col("fees_month").fill_null(0.0),
            pl.col("net_flows_month").fill_null(0.0),
        )
        .select(pl.col(c).cast(t) for c, t in MONTHLY_SCHEMA.items())
        .sort("portfolio_id", "symbol")
    )


def external_flows(trades: pl.DataFrame) -> pl.DataFrame:
    """Per (date, portfolio_id): deposits, withdrawals and fees straight from the trades (no
    replay): what `monthly` needs besides the daily holdings."""
    amount = pl.col("quantity") * pl.col("price").fill_null(1.0)
    return (
        trades.group_by("date", "portfolio_id")
        .agg(
            amount.filter(pl.col("action") == "DEPOSIT").sum().alias("deposits"),
            amount.filter(pl.col("action") == "WITHDRAWAL").sum().alias("withdrawals"),
            (
                pl.col("fees").fill_null(0.0).sum() + amount.filter(pl.col("action") == "FEE").sum()
            ).alias("fees"),
        )
        .sort("portfolio_id", "date")
    )
