"""Each asset's catalog entry: where it is stored, who owns it, where its code is.

The storage depends on the settings (DuckDB or PostgreSQL, a local or an S3 lake), so it is
set when the definitions are built, not in the asset decorators, which name only what
computes (`polars`). Per asset:

- kinds: `duckdb` or `postgres` for warehouse tables, `deltalake` (and `s3` on S3) for lake
  tables, next to the decorator's own;
- `dagster/table_name`, `dagster/storage_kind` and `dagster/uri` after OpenLineage's dataset
  naming: a warehouse table is `database.fintrack.table` in the namespace `postgres://host:port`
  (or the DuckDB file), a lake table is its Delta table path. No user, password or query
  parameter of any URL reaches them;
- owners: `team:fintrack-data` unless the asset names its own (Dagster's `team:` form);
- code references: the file and line of the function that computes it, as links into the
  repository when a `GitSource` is given.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from dagster import (
    AnchorBasedFilePathMapping,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    BetaWarning,
    link_code_references_to_git,
    with_source_code_references,
)

from fintrack_assets.io_managers.warehouse import SCHEMA
from fintrack_assets.settings import Settings

OWNER = "team:fintrack-data"
"""Owner of every asset that names none."""

PACKAGE_ROOT = Path(__file__).resolve().parent


@dataclass(frozen=True)
class GitSource:
    """The repository's web address (GitHub or GitLab) and branch that code links point to."""

    url: str
    branch: str


@dataclass(frozen=True)
class Storage:
    """Where one store keeps its tables: kinds, storage kind and each table's name and URI."""

    kinds: frozenset[str]
    storage_kind: str
    namespace: str
    """The URI prefix of every table, without credentials."""
    database: str | None
    """The warehouse's database (catalog); None for the lake, whose tables are paths."""

    def metadata(self, key: AssetKey) -> dict[str, Any]:
        if self.database is None:
            name = "/".join([self.namespace, *key.path])
            uri = name if "://" in name else Path(name).as_uri()
        else:
            name = f"{self.database}.{SCHEMA}.{'__'.join(key.path)}"
            uri = f"{self.namespace}/{name}"
        return {
            "dagster/table_name": name,
            "dagster/storage_kind": self.storage_kind,
            "dagster/uri": uri,
        }


def warehouse_storage(url: str) -> Storage:
    """FINTRACK_WAREHOUSE_URL's store, by host (PostgreSQL) or file (DuckDB), never its user
    or password."""
    parts = urlsplit(url)
    if parts.scheme in ("postgresql", "postgres"):
        host = parts.hostname or "localhost"
        if ":" in host:
            host = f"[{host}]"
        return Storage(
            kinds=frozenset({"postgres"}),
            storage_kind="postgres",
            namespace=f"postgres://{host}:{parts.port or 5432}",
            database=unquote(parts.path.strip("/")),
        )
    path = url.removeprefix("duckdb:///")
    return Storage(
        kinds=frozenset({"duckdb"}),
        storage_kind="duckdb",
        namespace=f"duckdb://{path}",
        database=Path(path).stem,  # DuckDB names an attached file's catalog by its stem
    )


def lake_storage(url: str) -> Storage:
    """FINTRACK_LAKE_URL's store; an S3 URL loses any user info and query it carried."""
    if url.startswith("s3://"):
        parts = urlsplit(url)
        bucket = parts.netloc.rpartition("@")[2]
        return Storage(
            kinds=frozenset({"deltalake", "s3"}),
            storage_kind="deltalake",
            namespace=f"s3://{bucket}{parts.path.rstrip('/')}",
            database=None,
        )
    return Storage(
        kinds=frozenset({"deltalake"}),
        storage_kind="deltalake",
        namespace=url.rstrip("/"),
        database=None,
    )


def catalog(
    assets: Iterable[AssetsDefinition], settings: Settings, git: GitSource | None = None
) -> list[AssetsDefinition]:
    """`assets` with their catalog entries (see the module docstring)."""
    stores = {
        "warehouse": warehouse_storage(settings.warehouse_url.value),
        "lake": lake_storage(settings.lake_url),
    }
    with warnings.catch_warnings():
        # Code references are a beta API; the UI needs them, the user needs no warning.
        warnings.simplefilter("ignore", BetaWarning)
        referenced: Sequence[Any] = with_source_code_references(list(assets))
        if git is not None:
            referenced = link_code_references_to_git(
                referenced,
                git_url=git.url.rstrip("/"),
                git_branch=git.branch,
                file_path_mapping=AnchorBasedFilePathMapping(
                    local_file_anchor=PACKAGE_ROOT / "__init__.py",
                    file_anchor_path_in_repository=f"{PACKAGE_ROOT.name}/__init__.py",
                ),
            )
    return [_entries(assets_def, stores) for assets_def in referenced]


def _entries(assets_def: AssetsDefinition, stores: dict[str, Storage]) -> AssetsDefinition:
    def entry(spec: AssetSpec) -> AssetSpec:
        storage = stores.get(assets_def.get_io_manager_key_for_asset_key(spec.key))
        return spec.replace_attributes(
            owners=spec.owners or [OWNER],
            kinds=spec.kinds | storage.kinds if storage else spec.kinds,
            metadata={**spec.metadata, **(storage.metadata(spec.key) if storage else {})},
        )

    return assets_def.map_asset_specs(entry)
