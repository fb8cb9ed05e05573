"""``blockout dashboard [RUN]``: start the Streamlit dashboard (``app/``) and stop it with us.

The server is a child process (``python -m app.serve``) that also watches our pid; every way out
of this command (Ctrl-C, SIGTERM, SIGHUP, an error) takes it down.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from blockout.errors import UserError


def add_dashboard(sub) -> None:
    p = sub.add_parser("dashboard", help="open the Streamlit dashboard on a run",
                       description="Start the dashboard (app/Home.py, headless) on RUN (default: checkpoints/demo, "
                                   "else the first run under checkpoints/) and print its URL once the server "
                                   "answers. Ctrl-C (or SIGTERM / SIGHUP) stops it, server included.")
    p.add_argument("run", metavar="RUN", nargs="?", default=None, help="run folder to open first")
    p.add_argument("--port", type=int, default=None, metavar="N",
                   help="port to listen on (default: 8501, or a free port when 8501 is taken)")
    p.add_argument("--address", default="127.0.0.1", metavar="A",
                   help="address to listen on (default: 127.0.0.1; 0.0.0.0 to serve the network)")
    p.add_argument("--startup-timeout", type=float, default=180.0, metavar="S",
                   help="seconds to wait for the server to answer (default: 180)")
    p.set_defaults(handler=cmd_dashboard)


def _port_free(address: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


#: Signals that stop ``blockout dashboard`` and, with it, its server child.
STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP")


class _Stop(Exception):
    """Raised in the main thread by a stop signal."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def server_answers(url: str, timeout: float = 1.0) -> bool:
    """True when ``url`` (the health endpoint) answers 200 ``ok``; never through a proxy."""
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def stop_child(proc, grace: float = 10.0) -> None:
    """SIGTERM the server, then SIGKILL it if it has not exited after ``grace`` seconds."""
    import subprocess

    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def dashboard_command(port: int, address: str, run: str | None) -> list[str]:
    """The server child's command line: ``python -m app.serve`` watching this process."""
    import os

    # --parent-pid: the server also stops if we die without running our handlers (SIGKILL)
    cmd = [sys.executable, "-m", "app.serve", "--port", str(port), "--address", address,
           "--parent-pid", str(os.getpid())]
    if run is not None:
        cmd.append(str(Path(run).resolve()))
    return cmd


def cmd_dashboard(args: argparse.Namespace) -> int:
    import signal
    import subprocess
    import time

    if args.run is not None:
        from analysis.run import read_run_meta

        read_run_meta(args.run)  # the same validated check every reader makes, before the server starts
    port = args.port
    if port is None:
        port = 8501
        if not _port_free(args.address, port):
            import socket

            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((args.address, 0))
                port = int(s.getsockname()[1])
    elif not 0 < port < 65536 or not _port_free(args.address, port):
        raise UserError(f"port {port} is not free on {args.address}; pick another with --port")
    host = "127.0.0.1" if args.address in ("0.0.0.0", "") else args.address
    url = f"http://{host}:{port}"
    repo = Path(__file__).resolve().parents[1]
    cmd = dashboard_command(port, args.address, args.run)

    def on_signal(signum, frame):
        raise _Stop(signum)

    # Handlers before the child exists, so no signal can slip between its start and their install.
    previous = {}
    for name in STOP_SIGNALS:
        sig = getattr(signal, name, None)
        if sig is not None:
            previous[sig] = signal.signal(sig, on_signal)
    proc = None
    try:
        print(f"starting the dashboard server on port {port} ...", file=sys.stderr, flush=True)
        # Streamlit's own banner (stdout) repeats the URL twice more; its log and errors go to stderr
        proc = subprocess.Popen(cmd, cwd=repo, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + float(args.startup_timeout)
        while not server_answers(url + "/_stcore/health"):
            if proc.poll() is not None:
                raise UserError(f"the dashboard server exited with code {proc.returncode} before answering on {url}")
            if time.monotonic() > deadline:
                raise UserError(f"the dashboard server did not answer on {url} within {args.startup_timeout:g} s")
            time.sleep(0.2)
        print(f"Blockout dashboard: {url}  (Ctrl-C to stop)", flush=True)
        return int(proc.wait())
    except _Stop as stop:
        # Ctrl-C is the normal way to stop it; other signals report themselves (128 + signal)
        return 0 if stop.signum == signal.SIGINT else 128 + int(stop.signum)
    finally:
        # every way out (signal, error, normal exit) takes the server down with us
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        if proc is not None:
            stop_child(proc)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
