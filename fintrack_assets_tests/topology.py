"""The docker-compose deployment as local processes: each service is a child process in its
own process group with its output in a log file, so a test can start the real topology,
talk to it over HTTP, read its logs when something fails and leave nothing running."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

BIN = Path(sys.executable).parent
"""The virtualenv's scripts (dagster, dagster-webserver, dagster-daemon)."""

T = TypeVar("T")


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 80) -> str:
    if not path.exists():
        return "(no log)"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


class ServiceDied(RuntimeError):
    """A service exited while the test still needed it."""


class Topology:
    """Services started in `cwd` (like the image's WORKDIR) with their output in `logs` (not
    under DAGSTER_HOME: Dagster owns $DAGSTER_HOME/logs and moves it away); `stop` ends every
    process group it started and any process left behind that carries `marker` (the test's
    own DAGSTER_HOME) in its environment."""

    def __init__(self, cwd: Path, logs: Path, marker: str) -> None:
        self.cwd = cwd
        self.marker = marker
        self.logs = logs
        self.logs.mkdir(parents=True, exist_ok=True)
        self.services: list[Service] = []
        self.commands: list[Path] = []

    def _spawn(self, log: Path, args: list[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(
                args,
                cwd=self.cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, ended as a whole
            )

    def start(self, name: str, args: list[str], env: Mapping[str, str]) -> Service:
        log = self.logs / f"{name}.log"
        service = Service(name, self._spawn(log, args, env), log)
        self.services.append(service)
        return service

    def run(self, name: str, args: list[str], env: Mapping[str, str], timeout: float) -> None:
        """A one-shot command (like compose's pools-init); fails with its output."""
        log = self.logs / f"{name}.log"
        self.commands.append(log)
        process = self._spawn(log, args, env)
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()
            raise
        if returncode != 0:
            raise RuntimeError(f"{name} exited with {returncode}:\n{tail(log)}")

    def check_alive(self) -> None:
        for service in self.services:
            code = service.process.poll()
            if code is not None:
                raise ServiceDied(f"{service.name} exited with {code}:\n{tail(service.log)}")

    def wait_for(
        self, what: str, probe: Callable[[], T | None], deadline: float, interval: float = 0.5
    ) -> T:
        """Polls `probe` until it returns something other than None, every service still up,
        or fails at `deadline` (a time.monotonic() value)."""
        while True:
            self.check_alive()
            value = probe()
            if value is not None:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            time.sleep(interval)

    @contextmanager
    def explain(self) -> Iterator[None]:
        """Adds the tail of every log to an exception raised inside, so a failure in CI says
        what the services were doing."""
        try:
            yield
        except Exception as exc:
            exc.add_note(self.report())
            raise

    def report(self, lines: int = 80) -> str:
        """The tail of every log, for a failure message."""
        parts = [
            f"----- {log.stem} (last {lines} lines) -----\n{tail(log, lines)}"
            for log in [*self.commands, *(s.log for s in self.services)]
        ]
        return "\n".join(parts)

    def stop(self, grace: float = 10.0) -> list[str]:
        """SIGTERM to every process group, SIGKILL to what is left of them after `grace`
        seconds, then SIGKILL to any process of ours still alive `grace` seconds later.
        Returns those last ones (pid and command): nothing should outlive its group."""
        groups = {service.process.pid for service in self.services}
        for pgid in groups:
            _signal_group(pgid, signal.SIGTERM)
        _wait_until(lambda: not any(p.pgid in groups for p in _processes()), grace)
        for pgid in groups:
            _signal_group(pgid, signal.SIGKILL)
        for service in self.services:
            service.process.wait(timeout=grace)  # reaps the group leaders
        _wait_until(lambda: not self.strays(), grace)
        strays = {pid: _command_line(pid) for pid in self.strays()}
        for pid in strays:
            _signal(pid, signal.SIGKILL)
        return [f"{pid}: {command}" for pid, command in strays.items()]

    def strays(self) -> list[int]:
        """Live processes whose environment holds our marker (e.g. a run worker)."""
        needle = self.marker.encode()
        return [p.pid for p in _processes() if p.pid != os.getpid() and needle in p.environ()]


@dataclass(frozen=True)
class _Process:
    pid: int
    pgid: int

    def environ(self) -> list[bytes]:
        try:
            return (Path("/proc") / str(self.pid) / "environ").read_bytes().split(b"\0")
        except OSError:
            return []


def _processes() -> list[_Process]:
    """Every live (not zombie) process in /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":  # state, ppid, pgrp, ...
            found.append(_Process(int(entry.name), int(fields[2])))
    return found


def _wait_until(done: Callable[[], bool], seconds: float) -> None:
    end = time.monotonic() + seconds
    while not done() and time.monotonic() < end:
        time.sleep(0.1)


def _command_line(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "?"


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _signal(pid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, sig)


class GraphQLError(RuntimeError):
    pass


class GraphQL:
    """The webserver's GraphQL endpoint."""

    def __init__(self, base_url: str) -> None:
        self.url = f"{base_url}/graphql"
        self.client = httpx.Client(timeout=60.0)

    def __call__(self, query: str, **variables: Any) -> dict[str, Any]:
        response = self.client.post(self.url, json={"query": query, "variables": variables})
        if response.status_code != 200:
            raise GraphQLError(f"HTTP {response.status_code}: {response.text[:4000]}")
        body = response.json()
        if body.get("errors"):
            raise GraphQLError(str(body["errors"])[:4000])
        data: dict[str, Any] = body["data"]
        return data

    def __enter__(self) -> GraphQL:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()
