"""A test server in a child process (its own GIL), for benchmarks and timing-sensitive tests:
it prints `listening on URL` once it serves, and its counters are at `<url>/__stub/stats`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Self

import httpx

STATS_PATH = "/__stub/stats"


class ChildServer:
    """Runs `python -m <module> <args>` from the project root."""

    def __init__(self, module: str, args: list[str], name: str) -> None:
        self.args = [sys.executable, "-m", module, *args]
        self.name = name
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> Self:
        self.process = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # blocks until the server is listening
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"the {self.name} did not start: {line!r}")
        self.url = line.removeprefix("listening on ").strip()
        return self

    def stats(self) -> dict[str, Any]:
        return httpx.get(self.url + STATS_PATH).json()  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
