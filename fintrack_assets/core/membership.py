"""Index membership over time: which symbols of a universe count on which sessions.

A point-in-time universe (`sp500_pit`) carries each symbol's membership spells in the
`member_spells` column as ISO 8601 intervals, `start/end` joined by `;`: a member from
`start` up to but not including `end` (the day its replacement's spell starts), an empty
`end` while still a member. A universe without the column, or a null value, means a member
on every session.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

MEMBER_SPELLS = "member_spells"

Spell = tuple[dt.date, dt.date | None]


def format_spells(spells: Sequence[Spell]) -> str:
    """`1996-01-02/2017-06-19;2019-03-01/`: the spells in order, an open end left empty."""
    return ";".join(
        f"{start.isoformat()}/{'' if end is None else end.isoformat()}"
        for start, end in sorted(spells)
    )


def parse_spells(text: str) -> list[Spell]:
    """The spells of `format_spells`' text; raises ValueError naming a malformed one."""
    spells: list[Spell] = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        start, sep, end = part.partition("/")
        try:
            first = dt.date.fromisoformat(start)
            last = dt.date.fromisoformat(end) if end else None
        except ValueError:
            raise ValueError(f"membership spell {part!r} is not start/end in ISO dates") from None
        if not sep or (last is not None and last <= first):
            raise ValueError(f"membership spell {part!r} does not end after it starts")
        spells.append((first, last))
    return spells


def spells_frame(universe: pl.DataFrame) -> pl.DataFrame:
    """(symbol, start, end) per spell; a symbol without spells gets one unbounded spell."""
    schema = {"symbol": pl.String, "start": pl.Date, "end": pl.Date}
    if MEMBER_SPELLS not in universe.columns:
        return universe.select(
            "symbol", pl.lit(None, pl.Date).alias("start"), pl.lit(None, pl.Date).alias("end")
        )
    rows: list[tuple[str, dt.date | None, dt.date | None]] = []
    for symbol, text in universe.select("symbol", MEMBER_SPELLS).iter_rows():
        if text is None:
            rows.append((symbol, None, None))
        else:
            rows.extend((symbol, start, end) for start, end in parse_spells(text))
    return pl.DataFrame(rows, schema=schema, orient="row")


def expected_pairs(universe: pl.DataFrame, sessions: Sequence[dt.date]) -> pl.DataFrame:
    """(symbol, date) for every session of `sessions` on which the symbol is a member."""
    days = pl.DataFrame({"date": list(sessions)}, schema={"date": pl.Date})
    spells = spells_frame(universe)
    within = (pl.col("start").is_null() | (pl.col("date") >= pl.col("start"))) & (
        pl.col("end").is_null() | (pl.col("date") < pl.col("end"))
    )
    return (
        spells.join(days, how="cross")
        .filter(within)
        .select("symbol", "date")
        .unique()
        .sort("symbol", "date")
    )


def members(universe: pl.DataFrame, sessions: Sequence[dt.date]) -> pl.DataFrame:
    """The universe's rows that are members on at least one of `sessions`."""
    present = expected_pairs(universe, sessions)["symbol"].unique()
    return universe.filter(pl.col("symbol").is_in(present.implode()))


def members_on(universe: pl.DataFrame, day: dt.date) -> list[str]:
    """The symbols that are members on `day` (any day, not only a session), sorted."""
    return expected_pairs(universe, [day])["symbol"].to_list()
