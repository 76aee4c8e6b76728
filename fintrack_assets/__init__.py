"""fintrack_assets: the Dagster code location. `defs` is what Dagster loads."""

from fintrack_assets.definitions import defs

__all__ = ["defs"]
