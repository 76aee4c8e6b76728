"""How figures read where people look (the UI's metadata, check results): money with its
currency and thousands separators, shares as percentages, durations in days, hours and
minutes, and table cells that keep every column and format each by its type."""

from __future__ import annotations

import datetime as dt
import math

import polars as pl
from tabulate import tabulate

CURRENCY = "USD"
"""The platform is USD-only (payments and trades are refused in any other currency)."""


def money(amount: float, currency: str = CURRENCY) -> str:
    """114450 -> '114,450.00 USD'."""
    return f"{amount:,.2f} {currency}"


def percent(share: float, digits: int = 2) -> str:
    """A share or rate (0.0115) as people read it: '1.15 %'."""
    return f"{share * 100:,.{digits}f} %"


def rate(count: float, seconds: float, unit: str = "rows") -> str:
    """'49,171 rows/s'; a run too short to time says so instead of dividing by zero."""
    if seconds <= 0:
        return f"{count:,.0f} {unit} in no measurable time"
    return f"{count / seconds:,.0f} {unit}/s"


def plural(count: int, word: str, plural_form: str | None = None) -> str:
    """'1 attempt', '3 attempts'; `plural_form` where adding an s is wrong ('2 batches')."""
    return f"{count} {word if count == 1 else plural_form or word + 's'}"


def duration(seconds: float) -> str:
    """`<1 s`, `42 s`, `1 min 4 s`, `3 h 5 min`, `1 day 2 h 34 min`: whole units, largest first;
    seconds count below an hour, minutes from there on. Progress ETAs and how late a session
    landed both read this way."""
    whole = round(abs(seconds))
    if whole < 1:
        return "<1 s"
    if whole < 3600:
        minutes, rest = divmod(whole, 60)
        parts = [f"{minutes} min"] if minutes else []
        return " ".join([*parts, f"{rest} s"] if rest else parts)
    days, rest = divmod(whole // 60, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [plural(days, "day")] if days else []
    parts += [f"{hours} h"] if hours else []
    parts += [f"{minutes} min"] if minutes else []
    return " ".join(parts)


def number(value: float) -> str:
    """A float cell: thousands separators and two decimals from 1 up (prices, amounts), four
    significant digits below (scores, returns, weights)."""
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if abs(value) >= 1:
        return f"{value:,.2f}"
    return f"{value:.4g}"


def cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return number(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dt.datetime):
        zone = f" {value.tzname()}" if value.tzinfo else ""
        return f"{value:%Y-%m-%d %H:%M:%S}{zone}"
    if isinstance(value, list):
        return ", ".join(cell(v) for v in value)
    return str(value)


def markdown_table(frame: pl.DataFrame, rows: int = 5) -> str:
    """The first `rows` rows, every column, each cell formatted by its type, numbers aligned
    right; nothing is cut (the UI scrolls a wide table in its dialog)."""
    head = frame.head(rows)
    numeric = [dtype.is_numeric() for dtype in head.dtypes]
    return tabulate(
        [[cell(v) for v in row] for row in head.iter_rows()],
        headers=head.columns,
        tablefmt="github",
        disable_numparse=True,
        colalign=["right" if n else "left" for n in numeric] or None,
    )
