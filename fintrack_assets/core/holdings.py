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
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

import polars as pl

from fintrack_assets.core.calendar import sessions_between

CASH = "CASH"
CostMethod = Literal["average", "fifo"]
METHODS: tuple[str, ...] = get_args(CostMethod)
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


POSITION = ["portfolio_id", "symbol"]
_BUY, _SELL, _CORPORATE = (pl.col("action") == a for a in ("BUY", "SELL", "CORPORATE"))


def replay(
    trades: pl.DataFrame, prices: pl.DataFrame, method: str = "average"
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Replays every trade and corporate action in order, vectorised over all positions.
    Returns (states: one row per (portfolio_id, symbol, date) on which a position changed,
    with its state at the end of that day; cash: one row per cash movement; oversold).

    Shares are tracked in *units*: shares divided by the product of the splits so far, so a
    split changes no unit count and a position's units are a running sum of its trades. A
    position's *life* runs from its first buy to the sell that closes it; cost basis is a
    per-life scan: average cost scales it by the units a sell leaves, FIFO reads it off the
    cumulative cost of the lots at the units sold so far."""
    if method not in METHODS:
        raise ValueError(f"unknown cost method {method!r}: use one of {', '.join(METHODS)}")
    events = _events(trades, prices)
    refused: list[pl.DataFrame] = []
    while True:
        walked = _units(events)
        # A refused sell changes nothing, so a later sell of the same position may fit once
        # an earlier one is refused: refuse the first oversell of each position, walk again.
        over = (
            walked.filter(_SELL & (pl.col("quantity") > pl.col("_held") + EPSILON))
            .group_by(POSITION)
            .agg(pl.all().sort_by("_seq").first())
        )
        if over.is_empty():
            break
        refused.append(over.select("trade_id", pl.col("_held").alias("shares_held")))
        events = events.filter(~pl.col("_seq").is_in(over["_seq"].implode()))
    walked = _costs(_lives(walked), method)
    oversold = (
        pl.concat(refused).sort("trade_id")
        if refused
        else pl.DataFrame(schema={"trade_id": pl.String, "shares_held": pl.Float64})
    )
    return _states(walked), _cash(walked, trades), oversold


def _events(trades: pl.DataFrame, prices: pl.DataFrame) -> pl.DataFrame:
    """Buys, sells and the corporate actions after each position's first trade, in replay
    order: by position, date, corporate actions before trades, then trade_id."""
    held = trades.filter(pl.col("action").is_in(["BUY", "SELL"]))
    actions = _corporate_actions(prices, held["symbol"].unique().to_list())
    first_trade = held.group_by(POSITION).agg(pl.col("date").min().alias("opened"))
    corporate = (
        first_trade.join(actions, on="symbol", how="inner")
        .filter(pl.col("date") > pl.col("opened"))
        .select(
            *POSITION,
            "date",
            pl.lit(0, pl.Int8).alias("_order"),
            pl.lit("CORPORATE").alias("action"),
            pl.lit(None, pl.String).alias("trade_id"),
            pl.col("split_ratio").alias("quantity"),
            pl.col("dividend").alias("price"),
            pl.lit(0.0).alias("fees"),
        )
    )
    columns = [*POSITION, "date", "_order", "action", "trade_id", "quantity", "price", "fees"]
    trades_in_order = held.select(
        *POSITION,
        "date",
        pl.lit(1, pl.Int8).alias("_order"),
        "action",
        "trade_id",
        pl.col("quantity").cast(pl.Float64),
        pl.col("price").cast(pl.Float64),
        pl.col("fees").cast(pl.Float64).fill_null(0.0),
    )
    return (
        pl.concat([corporate.select(columns), trades_in_order.select(columns)])
        .sort(*POSITION, "date", "_order", "trade_id", nulls_last=False, maintain_order=True)
        .with_row_index("_seq")
        .with_columns(pl.struct(POSITION).rle_id().alias("_pos"))
    )


def _units(events: pl.DataFrame) -> pl.DataFrame:
    """Per event: `_split` (the splits so far, from the position's first event), `_du` (the
    units it adds), `_u` (units after it) and `_held` (shares held before it)."""
    split = pl.when(_CORPORATE).then(pl.col("quantity")).otherwise(1.0)
    units = (
        pl.when(_BUY)
        .then(pl.col("quantity") / pl.col("_split"))
        .when(_SELL)
        .then(-pl.col("quantity") / pl.col("_split"))
        .otherwise(0.0)
    )
    return (
        events.with_columns(split.cum_prod().over("_pos").alias("_split"))
        .with_columns(units.alias("_du"))
        .with_columns(pl.col("_du").cum_sum().over("_pos").alias("_u"))
        .with_columns(
            (pl.col("_u") * pl.col("_split")).shift(1).over("_pos").fill_null(0.0).alias("_held")
        )
    )


def _lives(walked: pl.DataFrame) -> pl.DataFrame:
    """Numbers each position's lives (a sell that leaves no shares ends one), drops the
    corporate actions that meet no shares, and recounts units within each life, so a closed
    position reopens from exactly zero."""
    closes = _SELL & (pl.col("_u") * pl.col("_split") <= EPSILON)
    return (
        walked.with_columns(closes.alias("_closes"))
        .with_columns(
            pl.col("_closes")
            .shift(1)
            .fill_null(False)
            .cast(pl.Int32)
            .cum_sum()
            .over("_pos")
            .alias("_life")
        )
        .filter(~(_CORPORATE & (pl.col("_held") <= EPSILON)))
        .with_columns(pl.struct("_pos", "_life").rle_id().alias("_life"))
        .with_columns(pl.col("_du").cum_sum().over("_life").alias("_u"))
        .with_columns(
            pl.when(pl.col("_closes"))
            .then(0.0)
            .otherwise(pl.col("_u") * pl.col("_split"))
            .alias("_shares")
        )
    )


def _costs(walked: pl.DataFrame, method: str) -> pl.DataFrame:
    """Adds `_basis` (cost basis after the event), `_realized` and `_dividend` (this event's)."""
    life = "_life"
    cost = pl.when(_BUY).then(pl.col("quantity") * pl.col("price") + pl.col("fees")).otherwise(0.0)
    walked = walked.with_columns(cost.alias("_cost"))
    if method == "average":
        # A sell keeps the basis in proportion to the units it leaves: B_k = F_k * sum(c_j/F_j)
        # with F the running product of those proportions (0 at the close, the life's end).
        left = (
            pl.when(pl.col("_closes"))
            .then(0.0)
            .when(_SELL)
            .then(pl.col("_u") / pl.col("_u").shift(1).over(life))
            .otherwise(1.0)
        )
        walked = walked.with_columns(left.cum_prod().over(life).alias("_kept"))
        added = pl.when(pl.col("_cost") != 0).then(pl.col("_cost") / pl.col("_kept")).otherwise(0.0)
        basis = pl.col("_kept") * added.cum_sum().over(life)
    else:
        # The first x units ever sold in a life cost C(x): the lots' cumulative cost curve,
        # linear inside each lot. Basis = all lots' cost - C(units sold so far).
        sold = (-pl.col("_du")).clip(lower_bound=0.0).cum_sum().over(life)
        walked = walked.with_columns(sold.alias("_sold"))
        lots = (
            walked.filter(_BUY)
            .with_columns(
                (pl.col("_du").cum_sum().over(life) - pl.col("_du")).alias("_lot_start"),
                (pl.col("_cost").cum_sum().over(life) - pl.col("_cost")).alias("_cost_before"),
                (pl.col("_cost") / pl.col("_du")).alias("_unit_cost"),
            )
            .select(life, "_lot_start", "_cost_before", "_unit_cost")
            .sort("_lot_start")
        )
        walked = (
            walked.sort("_sold")
            .join_asof(
                lots,
                left_on="_sold",
                right_on="_lot_start",
                by=life,
                strategy="backward",
                check_sortedness=False,
            )
            .sort("_seq")
        )
        consumed = pl.col("_cost_before") + (pl.col("_sold") - pl.col("_lot_start")) * pl.col(
            "_unit_cost"
        )
        basis = pl.col("_cost").cum_sum().over(life) - consumed
    walked = walked.with_columns(
        pl.when(pl.col("_closes")).then(0.0).otherwise(basis).alias("_basis")
    )
    removed = pl.col("_basis").shift(1).over(life).fill_null(0.0) - pl.col("_basis")
    return walked.with_columns(
        pl.when(_SELL)
        .then(pl.col("quantity") * pl.col("price") - pl.col("fees") - removed)
        .otherwise(0.0)
        .alias("_realized"),
        pl.when(_CORPORATE)
        .then(pl.col("_shares") * pl.col("price"))
        .otherwise(0.0)
        .alias("_dividend"),
    )


def _states(walked: pl.DataFrame) -> pl.DataFrame:
    """The state at the end of each day a position changed: its last event of the day."""
    last_of_day = (pl.col("_pos") != pl.col("_pos").shift(-1)) | (
        pl.col("date") != pl.col("date").shift(-1)
    )
    return (
        walked.select(
            *POSITION,
            "date",
            # Shares to 1e-9: what a chain of unit conversions leaves beyond that is float noise.
            pl.col("_shares").round(9).alias("quantity"),
            pl.col("_basis").alias("cost_basis"),
            pl.col("_realized").cum_sum().over("_pos").alias("realized_pnl"),
            pl.col("_dividend").cum_sum().over("_pos").alias("dividends"),
            last_of_day.fill_null(True).alias("_last"),
        )
        .filter("_last")
        .drop("_last")
    )


def _cash(walked: pl.DataFrame, trades: pl.DataFrame) -> pl.DataFrame:
    """Every cash movement: buys and sells at their gross value, their fees, dividends paid,
    and the cash actions (their USD amount is `quantity`)."""
    gross = pl.col("quantity") * pl.col("price")
    positions = pl.concat(
        [
            walked.filter(_BUY).select(
                "date", "portfolio_id", pl.lit("buys").alias("kind"), gross.alias("amount")
            ),
            walked.filter(_SELL).select(
                "date", "portfolio_id", pl.lit("sells").alias("kind"), gross.alias("amount")
            ),
            walked.filter(~_CORPORATE).select(
                "date", "portfolio_id", pl.lit("fees").alias("kind"), pl.col("fees").alias("amount")
            ),
            walked.filter(pl.col("_dividend") > 0).select(
                "date",
                "portfolio_id",
                pl.lit("dividends").alias("kind"),
                pl.col("_dividend").alias("amount"),
            ),
        ],
        how="vertical_relaxed",
    )
    accounts = trades.filter(pl.col("action").is_in(["DEPOSIT", "WITHDRAWAL", "FEE"]))
    kind = pl.col("action").replace_strict(
        {"DEPOSIT": "deposits", "WITHDRAWAL": "withdrawals", "FEE": "fees"}
    )
    amount = pl.col("quantity").cast(pl.Float64) * pl.col("price").cast(pl.Float64).fill_null(1.0)
    fees = pl.col("fees").cast(pl.Float64).fill_null(0.0)
    cash = pl.concat(
        [
            positions,
            accounts.select("date", "portfolio_id", kind.alias("kind"), amount.alias("amount")),
            accounts.filter(fees != 0).select(
                "date", "portfolio_id", pl.lit("fees").alias("kind"), fees.alias("amount")
            ),
        ],
        how="vertical_relaxed",
    )
    return cash.select(
        pl.col("date").cast(pl.Date),
        pl.col("portfolio_id").cast(pl.String),
        pl.col("kind").cast(pl.String),
        pl.col("amount").cast(pl.Float64),
    )


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
    # Summed in (date, portfolio, symbol) order, so a window and its sessions one by one add
    # the same numbers in the same order: identical weights to the last bit.
    value = pl.col("market_value").sum().over("date", "portfolio_id")
    daily = (
        daily.sort("date", "portfolio_id", "symbol")
        .with_columns(
            pl.when(value != 0).then(pl.col("market_value") / value).otherwise(None).alias("weight")
        )
        .select(list(HOLDINGS_SCHEMA))
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
