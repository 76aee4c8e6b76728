"""The landing zone: files people drop under `<FINTRACK_LAKE_URL>/landing/<dataset>/*.csv`.

Listing and reading only, on a local folder or S3 alike; parsing is core's job (bytes in,
frames out), so this stays small and dagster-free. S3 goes through pyarrow's S3FileSystem,
configured from the same storage options the lake uses (settings.s3_storage_options):
`AWS_ENDPOINT_URL` (http allowed, for MinIO or a test server), `AWS_REGION`, and keys from
the options or, when absent, pyarrow's own lookup (the `AWS_*` environment, profiles, roles).
Credentials never appear in a repr or an exception raised here.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from pyarrow import fs as pafs

DATASET_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
"""A dataset name becomes a path segment, so it may not carry `/`, `..` or anything else."""
DAY_FOLDER = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")
"""A day's sub-folder (`date=YYYY-MM-DD`, Hive style), as payment files land."""


@dataclass(frozen=True)
class LandingFile:
    """One landing file as listed: enough to read it and to tell whether it changed."""

    path: str
    """`s3://bucket/key` on S3, an absolute path on a local lake."""
    size: int
    mtime: dt.datetime
    """UTC."""
    etag: str | None
    """S3's ETag where the listing gives one (pyarrow's does not), else None."""

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def validate_dataset(dataset: str) -> str:
    if not isinstance(dataset, str) or not DATASET_PATTERN.fullmatch(dataset):
        raise ValueError(
            f"invalid landing dataset {dataset!r}: a dataset matches ^[a-z][a-z0-9_]*$"
        )
    return dataset


def _folder_of(file: LandingFile) -> str:
    return file.path.rsplit("/", 2)[-2] if file.path.count("/") >= 2 else ""


def _utc(moment: dt.datetime | None) -> dt.datetime:
    if moment is None:
        return dt.datetime.fromtimestamp(0, dt.UTC)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def s3_filesystem(storage_options: Mapping[str, str] | None = None) -> pafs.S3FileSystem:
    """pyarrow's S3 client for the storage options. Keys are passed only as a pair; without
    them pyarrow finds credentials itself, exactly as the AWS SDK would."""
    options = {k.upper(): v for k, v in (storage_options or {}).items() if v}
    kwargs: dict[str, object] = {
        "region": options.get("AWS_REGION") or options.get("AWS_DEFAULT_REGION") or "us-east-1"
    }
    endpoint = options.get("AWS_ENDPOINT_URL")
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        kwargs["endpoint_override"] = parts.netloc + parts.path.rstrip("/")
        kwargs["scheme"] = parts.scheme
    if options.get("AWS_ACCESS_KEY_ID") and options.get("AWS_SECRET_ACCESS_KEY"):
        kwargs["access_key"] = options["AWS_ACCESS_KEY_ID"]
        kwargs["secret_key"] = options["AWS_SECRET_ACCESS_KEY"]
        if options.get("AWS_SESSION_TOKEN"):
            kwargs["session_token"] = options["AWS_SESSION_TOKEN"]
    return pafs.S3FileSystem(**kwargs)  # type: ignore[arg-type]


class LandingZone:
    """Lists and reads `<lake_url>/landing/<dataset>/*.csv` (non-recursive, sorted by path)."""

    def __init__(self, lake_url: str, storage_options: Mapping[str, str] | None = None) -> None:
        self.lake_url = lake_url.rstrip("/")
        self._is_s3 = self.lake_url.startswith("s3://")
        self._storage_options = dict(storage_options or {})
        self._s3: pafs.S3FileSystem | None = None
        if self._is_s3:
            parts = urlsplit(self.lake_url)
            if not parts.netloc:
                raise ValueError(f"lake URL {self.lake_url!r} names no bucket")
            self._s3_root = f"{parts.netloc}{parts.path}".rstrip("/")
        else:
            self._local_root = Path(self.lake_url).expanduser().resolve()

    def __repr__(self) -> str:
        return f"LandingZone({self.lake_url!r})"

    def _filesystem(self) -> pafs.S3FileSystem:
        if self._s3 is None:
            self._s3 = s3_filesystem(self._storage_options)
        return self._s3

    def folder(self, dataset: str) -> str:
        """Where a dataset lands: `s3://bucket/prefix/landing/<dataset>` or a local path."""
        validate_dataset(dataset)
        if self._is_s3:
            return f"s3://{self._s3_root}/landing/{dataset}"
        return str(self._local_root / "landing" / dataset)

    def list_files(
        self, dataset: str, day: dt.date | None = None, recursive: bool = False
    ) -> list[LandingFile]:
        """The dataset's `*.csv` files, sorted by path; a folder that does not exist is [].
        `day` lists its `date=YYYY-MM-DD/` sub-folder instead; `recursive` every file below
        the dataset's folder (what a sensor watches)."""
        validate_dataset(dataset)
        relative = f"landing/{dataset}" + (f"/date={day.isoformat()}" if day else "")
        if self._is_s3:
            selector = pafs.FileSelector(
                f"{self._s3_root}/{relative}", recursive=recursive, allow_not_found=True
            )
            files = [
                LandingFile(f"s3://{info.path}", int(info.size or 0), _utc(info.mtime), None)
                for info in self._filesystem().get_file_info(selector)
                if info.type == pafs.FileType.File and info.base_name.endswith(".csv")
            ]
        else:
            folder = self._local_root / relative
            entries = (
                (folder.rglob("*.csv") if recursive else folder.glob("*.csv"))
                if folder.is_dir()
                else []
            )
            files = []
            for entry in entries:
                if entry.is_file():
                    stat = entry.stat()
                    files.append(
                        LandingFile(
                            str(entry),
                            stat.st_size,
                            dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC),
                            None,
                        )
                    )
        return sorted(files, key=lambda f: f.path)

    def day_of(self, file: LandingFile) -> dt.date | None:
        """The day of a file under a `date=YYYY-MM-DD/` folder, else None."""
        match = DAY_FOLDER.fullmatch(_folder_of(file))
        if not match:
            return None
        try:
            return dt.date.fromisoformat(match.group(1))
        except ValueError:
            return None

    def why_no_day(self, file: LandingFile) -> str | None:
        """Why a file has no day (so no run reads it), in words for a log line; None when it
        has one. A folder that looks like a day but is not one (`date=2024-5-1`,
        `date=2024-02-30`) is told apart from a file outside any `date=` folder."""
        if self.day_of(file) is not None:
            return None
        folder = _folder_of(file)
        if folder.startswith("date="):
            return f"its folder {folder!r} is not a date=YYYY-MM-DD day (e.g. date=2024-05-01)"
        return "not under a date=YYYY-MM-DD/ folder"

    def _check_inside(self, file: LandingFile) -> None:
        """Only files under this zone's `landing/` are read, so a LandingFile built by hand
        cannot point elsewhere."""
        landing = (
            f"s3://{self._s3_root}/landing/" if self._is_s3 else f"{self._local_root}/landing/"
        )
        if not file.path.startswith(landing) or ".." in file.path.split("/"):
            raise ValueError(f"{file.path!r} is not a file of the landing zone {landing!r}")

    def read_csv(self, file: LandingFile) -> bytes:
        """The file's whole content."""
        with self.open(file) as stream:
            return bytes(stream.read())

    def open(self, file: LandingFile) -> BinaryIO:
        """A binary stream over the file, read as it is consumed (large files stay on disk or
        in S3); close it after use (`with zone.open(f) as stream`)."""
        self._check_inside(file)
        if self._is_s3:
            return self._filesystem().open_input_stream(file.path.removeprefix("s3://"))  # type: ignore[return-value]
        return Path(file.path).open("rb")

    def write(self, dataset: str, name: str, content: bytes, day: dt.date | None = None) -> str:
        """Drops a file into the dataset's folder, or its `date=YYYY-MM-DD/` sub-folder for
        `day` (what an upstream system or the demo does); returns its path. `name` is a plain
        file name."""
        if "/" in name or name.startswith(".") or not name.endswith(".csv"):
            raise ValueError(f"{name!r} is not a plain .csv file name")
        folder = self.folder(dataset) + (f"/date={day.isoformat()}" if day else "")
        if self._is_s3:
            with self._filesystem().open_output_stream(
                f"{folder.removeprefix('s3://')}/{name}"
            ) as stream:
                stream.write(content)
            return f"{folder}/{name}"
        path = Path(folder) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        return str(path)
