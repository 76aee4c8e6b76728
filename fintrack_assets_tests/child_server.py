"""A test server in a child process (its own GIL), for benchmarks and timing-sensitive tests:
it prints `listening on URL` once it serves, and its counters are at `<url>/__stub/stats`.

The child stops on SIGTERM whatever it inherited (`serve_until_terminated`). A child inherits
an ignored signal across exec, and a parent that ran Dagster in process while SIGINT was
ignored (any command started in the background by a non-interactive shell) ignores SIGTERM
too: Dagster's `capture_interrupts` leaves SIGTERM mapped to SIGINT's handler, here
`SIG_IGN`. A stub relying on the default action then outlived `terminate()`.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from socketserver import BaseServer
from types import FrameType
from typing import Any, NoReturn, Self

import httpx

STATS_PATH = "/__stub/stats"
STOP_TIMEOUT = 10.0
"""Seconds a child has to exit after SIGTERM before it is killed and `stop` raises."""


def _exit(signum: int, frame: FrameType | None) -> NoReturn:
    raise SystemExit(0)


def serve_until_terminated(server: BaseServer, url: str) -> None:
    """The child's main loop: announce `url`, serve until SIGTERM or SIGINT, close the socket.

    Installing handlers overrides an inherited `SIG_IGN`; the handler's `SystemExit` leaves
    `serve_forever` from the main thread (request threads are daemons).
    """
    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, _exit)
    print(f"listening on {url}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


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
        """SIGTERM, then wait; a child still there after `STOP_TIMEOUT` is killed, and that
        is an error (the server does not stop on SIGTERM)."""
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise RuntimeError(
                f"the {self.name} (pid {process.pid}) did not exit within {STOP_TIMEOUT:.0f} s "
                "of SIGTERM; killed"
            ) from None
        finally:
            if process.stdout is not None:
                process.stdout.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
