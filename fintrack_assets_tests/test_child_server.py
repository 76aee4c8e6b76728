"""The test stubs' child processes stop on SIGTERM even when they were started by a process
that ignores SIGTERM, as the benchmark harness does after running Dagster in process while
SIGINT is ignored (a command started in the background by a non-interactive shell)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCENARIO = textwrap.dedent(
    """
    import signal

    from dagster._utils.interrupts import capture_interrupts

    from fintrack_assets_tests.fraud_api_stub import FraudApiProcess
    from fintrack_assets_tests.polygon_stub import StubProcess

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # what `command &` in a script gets
    with capture_interrupts():  # what every in-process Dagster run does
        pass
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN, signal.getsignal(signal.SIGTERM)
    for server in (FraudApiProcess(latency=0.0), StubProcess()):
        with server:
            process = server.process
            assert server.stats()["requests"] == 0
        print(type(server).__name__, process.returncode)
    """
)


def test_stubs_stop_on_sigterm_when_the_parent_ignores_it() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCENARIO],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Before the fix, the first `with` raised after 10 s: the child inherited SIG_IGN.
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n") == ["FraudApiProcess 0", "StubProcess 0", ""]
