"""fintrack_assets: the Dagster code location. `defs` is what Dagster loads, lazily: importing
the package reads no environment."""

from fintrack_assets.definitions import defs

__all__ = ["defs"]
