"""fintrack_assets: the Dagster code location. `code_location` is what `dagster ... -m
fintrack_assets` loads, lazily: importing the package reads no environment. `dg` loads the same
loader as `fintrack_assets.definitions:defs`; the domains live in the `defs/` folder."""

from fintrack_assets.definitions import defs as code_location

__all__ = ["code_location"]
