"""The one strict pattern a symbol must match before it touches a path or a query."""

from __future__ import annotations

import re

import polars as pl

SYMBOL_PATTERN = r"^\^?[A-Z0-9][A-Z0-9.\-=]{0,14}$"
"""Upper-case tickers, class shares (BRK-B, BRK.B), indices (^GSPC) and FX/futures (EUR=X)."""

_SYMBOL_RE = re.compile(SYMBOL_PATTERN)


class InvalidSymbolError(ValueError):
    pass


def is_valid_symbol(symbol: object) -> bool:
    return isinstance(symbol, str) and _SYMBOL_RE.fullmatch(symbol) is not None


def validate_symbols(symbols: list[str]) -> list[str]:
    bad = [s for s in symbols if not is_valid_symbol(s)]
    if bad:
        shown = ", ".join(repr(s) for s in bad[:5])
        raise InvalidSymbolError(f"invalid symbol(s) {shown}: a symbol matches {SYMBOL_PATTERN}")
    return symbols


def valid_symbol_expr(column: str = "symbol") -> pl.Expr:
    return pl.col(column).is_not_null() & pl.col(column).str.contains(SYMBOL_PATTERN)
