"""A real-browser harness for the dashboard: start the app on a free loopback port, drive it in
headless Chromium through the ``playwright`` package, time it, take screenshots, stop it.

Used by ``tests/test_browser.py`` (the demo-scale browser test) and
``benchmarks/dashboard_speed.py`` (the ImageNet-scale timing). Not imported by the app itself.

The browser is Debian's ``chromium`` (``/usr/bin/chromium``); nothing is downloaded.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Records every change of Streamlit's script state ("running" / "notRunning") with a timestamp,
# so a test can wait for one complete rerun after an interaction.
_OBSERVER_JS = """
() => {
  const app = document.querySelector('[data-testid="stApp"]');
  window.__stEvents = [];
  const obs = new MutationObserver(() => {
    window.__stEvents.push([app.getAttribute('data-test-script-state'), performance.now()]);
  });
  obs.observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
}
"""
_RERUN_DONE_JS = """
() => {
  const ev = window.__stEvents || [];
  const ran = ev.findIndex(e => e[0] === 'running');
  if (ran < 0) return false;
  const app = document.querySelector('[data-testid="stApp"]');
  return app.getAttribute('data-test-script-state') === 'notRunning'
      && document.querySelectorAll('[data-stale="true"]').length === 0;
}
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def browser_available() -> str | None:
    """``None`` when the browser test can run, else the reason it cannot."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} not found (install Debian's chromium package)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed"
    return None


@dataclass
class Server:
    """A running ``streamlit run app/Home.py`` process."""

    proc: subprocess.Popen
    port: int
    started: float
    ready: float | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def startup_seconds(self) -> float:
        return (self.ready or time.perf_counter()) - self.started


def streamlit_command(run: str | os.PathLike | None, port: int, address: str = "127.0.0.1") -> list[str]:
    """The command line that starts the dashboard (``python -m app.serve``, imports pre-warmed)."""
    cmd = [sys.executable, "-m", "app.serve", "--port", str(port), "--address", address]
    if run is not None:
        cmd.append(str(run))
    return cmd


def start_server(run: str | os.PathLike | None, *, port: int | None = None, env: dict | None = None,
                 log: Path | None = None, timeout: float = 60.0) -> Server:
    """Start the app and wait until ``/_stcore/health`` answers ``ok``."""
    port = port or free_port()
    full_env = dict(os.environ)
    full_env.update(env or {})
    out = open(log, "wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(streamlit_command(run, port), cwd=REPO, env=full_env, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(proc, port, time.perf_counter(), log=log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode} (log: {log})")
        try:
            with urllib.request.urlopen(server.url + "/_stcore/health", timeout=1) as resp:
                if resp.read().strip() == b"ok":
                    server.ready = time.perf_counter()
                    return server
        except OSError:
            pass
        time.sleep(0.1)
    stop_server(server)
    raise RuntimeError(f"streamlit did not answer on {server.url} within {timeout:.0f} s (log: {log})")


def stop_server(server: Server) -> None:
    """Stop the server process group this harness started (SIGTERM, then SIGKILL)."""
    proc = server.proc
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextmanager
def running_app(run, **kwargs) -> Iterator[Server]:
    """Context manager: a started server that is always stopped afterwards."""
    server = start_server(run, **kwargs)
    try:
        yield server
    finally:
        stop_server(server)


#: Hosts a dashboard page or the report may talk to; anything else is a request to the web.
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: URL schemes that never leave the machine.
LOCAL_SCHEMES = frozenset({"file", "data", "blob", "about"})


def is_local_url(url: str) -> bool:
    """True when ``url`` stays on this machine (loopback host, or a file:/data:/blob: URL).

    >>> is_local_url("http://127.0.0.1:8501/_stcore/health"), is_local_url("file:///tmp/r.html")
    (True, True)
    >>> is_local_url("https://fonts.googleapis.com/css"), is_local_url("http://localhost.evil.com/")
    (False, False)
    """
    parts = urlsplit(url)
    if parts.scheme in LOCAL_SCHEMES:
        return True
    return (parts.hostname or "") in LOCAL_HOSTS


@dataclass
class RequestLog:
    """Every request a browser page made (``page.on("request")``), in order."""

    urls: list[str] = field(default_factory=list)

    def foreign(self) -> list[str]:
        """The requests to any host other than this machine (should be none)."""
        return [u for u in self.urls if not is_local_url(u)]

    def hosts(self) -> list[str]:
        """The distinct hosts (or schemes for file:/data: URLs) seen, sorted."""
        return sorted({urlsplit(u).hostname or urlsplit(u).scheme for u in self.urls})


@contextmanager
def chromium_page(width: int = 1400, height: int = 1000, requests: RequestLog | None = None,
                  block_foreign: bool = True):
    """A fresh headless Chromium page (closed afterwards).

    With ``requests``, every request the page makes is appended to it; with ``block_foreign`` a
    request to any other host is recorded and then aborted (the test fails on it rather than
    waiting for a network that is not there).
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            if requests is not None:
                context.on("request", lambda r: requests.urls.append(r.url))
            if block_foreign:
                def route(r):
                    if is_local_url(r.request.url):
                        r.continue_()
                    else:
                        r.abort()

                context.route("**/*", route)
            page = context.new_page()
            yield page
        finally:
            browser.close()


def wait_for_charts(page, min_charts: int = 1, timeout: float = 30.0) -> float:
    """Wait until ``min_charts`` plotly charts are drawn and the script is idle; returns seconds."""
    t0 = time.perf_counter()
    page.wait_for_function(
        """(n) => {
            const app = document.querySelector('[data-testid="stApp"]');
            return app && app.getAttribute('data-test-script-state') === 'notRunning'
                && document.querySelectorAll('.js-plotly-plot .main-svg').length >= n;
        }""", arg=min_charts, timeout=timeout * 1000)
    return time.perf_counter() - t0


def exceptions_on_page(page) -> list[str]:
    """Texts of the Streamlit exception boxes on the page (empty when there are none)."""
    return [e.inner_text() for e in page.query_selector_all('[data-testid="stException"]')]


def threshold_slider(page):
    """The ``<input type="range">`` of the sidebar's threshold slider."""
    sliders = page.locator('[data-testid="stSlider"]').filter(has_text="Threshold")
    return sliders.first.locator('input[type="range"]')


def move_threshold(page, presses: int = 1, key: str = "ArrowRight", timeout: float = 30.0) -> float:
    """Focus the threshold slider, press ``key`` ``presses`` times, wait for one full rerun.

    Returns the seconds from the key press until the rerun finished and no element is stale.
    """
    slider = threshold_slider(page)
    slider.focus()
    page.evaluate(_OBSERVER_JS)
    t0 = time.perf_counter()
    for _ in range(presses):
        slider.press(key)
    page.wait_for_function(_RERUN_DONE_JS, timeout=timeout * 1000)
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length > 0",
                           timeout=timeout * 1000)
    return time.perf_counter() - t0


@dataclass
class Timings:
    """What one browser session measured (seconds)."""

    server_startup: float = 0.0
    first_chart: float = 0.0
    threshold_rerender: list[float] = field(default_factory=list)
    screenshots: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"server_startup_s": round(self.server_startup, 3), "first_chart_s": round(self.first_chart, 3),
                "threshold_rerender_s": [round(x, 3) for x in self.threshold_rerender],
                "threshold_rerender_max_s": round(max(self.threshold_rerender, default=0.0), 3),
                "screenshots": self.screenshots}
