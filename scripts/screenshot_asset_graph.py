"""Screenshot the global asset graph from the Dagster UI in headless Chromium, for the README.

    python scripts/screenshot_asset_graph.py                  # writes docs/images/asset-graph.png
    python scripts/screenshot_asset_graph.py /tmp/graph.png   # anywhere else

Starts `dagster-webserver -m fintrack_assets` on a free 127.0.0.1 port with a throwaway
DAGSTER_HOME (an SQLite instance) and the embedded defaults, lake and warehouse pointed into
the same temporary directory, so nothing is written into the repository but the PNG. Then
Playwright drives the system Chromium to /asset-groups ("Global asset lineage") with every group
expanded, the sidebar hidden and the nodes showing their kind tags only, in a window sized so
that the UI's own zoom-to-fit lands on --scale, where every node shows its whole name.

Needs the dev and screenshot extras (`make screenshot` installs the latter) and a Chromium:
`apt-get install chromium` (Playwright's own browser download is not used).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

try:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import Page, sync_playwright
except ImportError:
    sys.exit("screenshot_asset_graph: needs Playwright: pip install -e '.[screenshot]'")

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "docs" / "images" / "asset-graph.png"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# The UI draws full asset cards from a zoom of 0.6 on (MINIMAL_SCALE in Dagster's
# AssetGraphExplorer); below it, nodes become boxes with middle-truncated names.
MIN_FULL_SCALE = 0.6
# The UI's localStorage: navigation collapsed, asset cards showing their kind tags only (status,
# checks and the rest would all read "never materialized" and make every card taller).
SETTINGS = {
    "dagster-nav-collapsed": True,
    "asset-node-facets": ["kind-tag"],
    "asset-graph-direction": "horizontal",
}
TOOLBAR_MARGIN = 2 * 60  # the search bar floats over the top of the (vertically centred) graph
BOTTOM_MARGIN = 24  # below the lowest group once the empty room under the graph is cut off

QUERY_WORKSPACE = """{ workspaceOrError { __typename
  ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } } } }
  ... on PythonError { message } } }"""
QUERY_ASSETS = "{ assetNodes { groupName } }"
MUTATION_NUX_SEEN = "mutation { setNuxSeen }"  # no "Join the Dagster community" dialog

# Run in every document before the UI: the settings, and graphState() for the waits below.
INIT_SCRIPT = """
Object.entries(SETTINGS).forEach(([k, v]) => localStorage.setItem(k, JSON.stringify(v)));
window.graphState = () => {
  const svg = document.querySelector('svg[class*="svgContainer"]');
  if (!svg) return null;
  const box = svg.parentElement.parentElement.getBoundingClientRect();
  const groups = [...svg.querySelectorAll('foreignObject')].map((f) => f.getBoundingClientRect());
  return {
    width: Number(svg.getAttribute('width')),
    height: Number(svg.getAttribute('height')),
    scale: new DOMMatrixReadOnly(getComputedStyle(svg.parentElement).transform).a,
    x: box.x, y: box.y, viewWidth: box.width, viewBottom: box.bottom,
    contentBottom: Math.max(...groups.map((g) => g.bottom)),
    nodes: document.querySelectorAll('[class*="AssetNode_assetNodeContainer"]').length,
    fonts: document.fonts.status,
  };
};""".replace("SETTINGS", json.dumps(SETTINGS))
# True (with the state) once `condition` on graphState() `s` has held with the same state for
# `steady` polls in a row, i.e. an animation or a late render has finished.
WAIT_STEADY = """(steady) => {
  const s = graphState(), key = JSON.stringify(s);
  if (!s || !(CONDITION)) { window.streak = 0; return false; }
  window.streak = key === window.lastState ? window.streak + 1 : 1;
  window.lastState = key;
  return window.streak >= steady && s;
}"""


class ScreenshotError(RuntimeError):
    """Something on the way to the picture failed; the message says what."""


def find_program(names: tuple[str, ...], hint: str) -> str:
    for name in names:
        beside = Path(sys.executable).parent / name  # the venv's, even if it is not activated
        if path := str(beside) if beside.exists() else shutil.which(name):
            return path
    raise ScreenshotError(f"none of {', '.join(names)} found: {hint}")


def graphql(base: str, query: str) -> dict[str, Any]:
    payload = httpx.post(f"{base}/graphql", json={"query": query}, timeout=30).json()
    if payload.get("errors"):
        raise ScreenshotError(f"GraphQL error: {payload['errors'][0].get('message')}")
    return dict(payload["data"])


def wait_for_location(
    base: str, server: subprocess.Popen[bytes], log: Path, deadline: float
) -> list[str]:
    """Every asset's group, once every code location has loaded."""
    while server.poll() is None and time.monotonic() < deadline:
        try:
            workspace = graphql(base, QUERY_WORKSPACE)["workspaceOrError"]
        except httpx.TransportError:  # not answering yet
            time.sleep(0.5)
            continue
        if workspace["__typename"] == "PythonError":
            raise ScreenshotError(f"workspace failed to load: {workspace['message']}")
        entries = workspace["locationEntries"]
        for entry in entries:
            if (error := entry["locationOrLoadError"]) and error["__typename"] == "PythonError":
                raise ScreenshotError(f"code location {entry['name']} failed: {error['message']}")
        if entries and all(entry["loadStatus"] == "LOADED" for entry in entries):
            if groups := [node["groupName"] for node in graphql(base, QUERY_ASSETS)["assetNodes"]]:
                return groups
            raise ScreenshotError("the code location loaded but defines no assets")
        time.sleep(0.5)
    what = "timed out" if server.poll() is None else f"exited with {server.returncode}"
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
    raise ScreenshotError(f"dagster-webserver {what} before the code location loaded:\n{tail}")


def wait_for(page: Page, what: str, condition: str, deadline: float, steady: int = 1) -> Any:
    """The graph's state once the JS `condition` on it (`s`) holds (and has held steadily)."""
    page.evaluate("window.lastState = null")
    timeout = max(deadline - time.monotonic(), 1) * 1000
    predicate = WAIT_STEADY.replace("CONDITION", condition)
    try:
        return page.wait_for_function(
            predicate, arg=steady, polling=250, timeout=timeout
        ).json_value()
    except PlaywrightError as exc:
        raise ScreenshotError(
            f"waiting for {what}: {exc.message}; last: {page.evaluate('graphState()')}"
        ) from None


def capture(chromium: str, url: str, asset_count: int, scale: float, deadline: float) -> bytes:
    width, height = 1600, 1000  # to measure the page's layout in, first
    with (
        sync_playwright() as playwright,
        playwright.chromium.launch(executable_path=chromium) as browser,
    ):
        page = browser.new_page(viewport={"width": width, "height": height})
        page.add_init_script(INIT_SCRIPT)
        page.goto(url)
        wait_for(page, "the asset graph", "s.nodes > 0", deadline)
        page.locator('button:has([aria-label="panel_show_right"])').click()  # "Hide sidebar"
        state = wait_for(page, "the sidebar to close", "s.x < 200", deadline)

        # A window in which fitting the graph to the viewport's width gives `scale` and whose
        # height holds the whole graph at that scale.
        right_gap = width - state["x"] - state["viewWidth"]
        bottom_gap = height - state["viewBottom"]
        width = round(state["x"] + state["width"] * scale + right_gap)
        height = round(state["y"] + state["height"] * scale + bottom_gap + TOOLBAR_MARGIN)
        page.set_viewport_size({"width": width, "height": height})
        resized = f"Math.abs(s.viewWidth - {state['width'] * scale}) < 2"
        wait_for(page, "the window to resize", resized, deadline)
        # A double click on the graph's background is the UI's zoom-to-fit (fit to width).
        page.locator('svg[class*="svgContainer"]').locator("xpath=../..").dispatch_event("dblclick")
        at_scale = f"Math.abs(s.scale - {scale}) < 0.01"
        state = wait_for(
            page, "the zoom to fit", f"{at_scale} && s.fonts === 'loaded'", deadline, 4
        )

        # Then cut the room below the graph off; the zoom stays, the controls move up.
        height = min(height, round(state["contentBottom"]) + BOTTOM_MARGIN)
        page.set_viewport_size({"width": width, "height": height})
        shrunk = f"Math.abs(s.viewBottom - {height - bottom_gap}) < 2 && {at_scale}"
        state = wait_for(page, "the window to shrink", shrunk, deadline, 4)
        if state["nodes"] != asset_count:
            raise ScreenshotError(f"the page shows {state['nodes']} of the {asset_count} assets")
        return page.screenshot(type="png", timeout=60_000)


def shrink_png(data: bytes) -> tuple[bytes, tuple[int, int]]:
    """A 256-colour palette: grey lines and text on white lose nothing visible, the file halves."""
    with Image.open(io.BytesIO(data)) as image:
        buffer = io.BytesIO()
        image.convert("RGB").quantize(256).save(buffer, "PNG", optimize=True)
        return (buffer.getvalue() if buffer.tell() < len(data) else data), image.size


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group the child leads, SIGKILL if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
                proc.wait(15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--scale", type=float, default=0.65, help="zoom of the graph (0.65)")
    parser.add_argument("--timeout", type=float, default=180, help="seconds for it all (180)")
    args = parser.parse_args(argv)
    if not 0.1 <= args.scale <= 1.0:
        parser.error("--scale must be between 0.1 and 1.0")
    if args.scale < MIN_FULL_SCALE:
        print(f"note: below {MIN_FULL_SCALE} the UI draws nodes with truncated names")

    started = time.monotonic()
    deadline = started + args.timeout
    chromium = find_program(BROWSERS, "apt-get install chromium (Debian/Ubuntu)")
    webserver = find_program(("dagster-webserver",), "pip install -e '.[dev]'")
    with tempfile.TemporaryDirectory(prefix="fintrack-screenshot-") as tmp:
        workdir = Path(tmp)
        (workdir / "home").mkdir()
        (workdir / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        # The embedded defaults whatever this shell exports, pointed into the temporary directory.
        env = {k: v for k, v in os.environ.items() if not k.startswith("FINTRACK_")}
        env |= {
            "DAGSTER_HOME": str(workdir / "home"),
            "FINTRACK_LAKE_URL": str(workdir / "lake"),
            "FINTRACK_WAREHOUSE_URL": f"duckdb:///{workdir / 'warehouse.duckdb'}",
        }
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        base, log = f"http://127.0.0.1:{port}", workdir / "webserver.log"
        command = [webserver, "-m", "fintrack_assets", "-h", "127.0.0.1", "-p", str(port)]
        with log.open("wb") as out:  # in a process group of its own, code server included
            server = subprocess.Popen(
                command, cwd=workdir, env=env, stdout=out, stderr=out, start_new_session=True
            )
        try:
            print(f"dagster-webserver on {base} ...")
            groups = wait_for_location(base, server, log, deadline)
            print(f"loaded after {time.monotonic() - started:.1f}s: {len(groups)} assets")
            graphql(base, MUTATION_NUX_SEEN)
            expanded = ",".join(f"global@global:{group}" for group in sorted(set(groups)))
            url = f"{base}/asset-groups?{urllib.parse.urlencode({'expanded': expanded})}"
            png = capture(chromium, url, len(groups), args.scale, deadline)
        finally:
            stop_group(server)

    png, (width, height) = shrink_png(png)
    output: Path = args.output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(png)
    size = f"{width}x{height} px, {len(png) / 1024:.0f} KB"
    print(f"wrote {output}: {size} in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ScreenshotError as exc:
        sys.exit(f"screenshot_asset_graph: {exc}")
    except PlaywrightError as exc:
        sys.exit(f"screenshot_asset_graph: in the browser: {exc.message}")
    except KeyboardInterrupt:
        sys.exit(130)
