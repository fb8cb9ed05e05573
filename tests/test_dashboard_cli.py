"""`blockout dashboard` as a real process on a free loopback port (issue 8): the URL appears only once
the server answers, and every stop signal takes the server child down with the parent.

One test runs the real Streamlit server (SIGTERM, the signal of the bug report); the others swap in a
tiny health-answering server (same parent code, started in a fraction of the time) to cover SIGHUP,
SIGINT and SIGKILL of the parent.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blockout.cmd_dashboard import server_answers

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "checkpoints" / "demo"

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc to find the child")

#: A stand-in server: watches its parent like app.serve, waits a moment (so the URL cannot be
#: printed early by accident), then answers /_stcore/health on 127.0.0.1.
FAKE_SERVER = r"""
import http.server, sys, time
from app.serve import die_with_parent
port, parent = int(sys.argv[1]), int(sys.argv[2])
die_with_parent(parent)
time.sleep(1.0)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/_stcore/health" else 404)
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"""

#: Runs `blockout dashboard` with the stand-in server as its child.
FAKE_CLI = r"""
import os, sys
import blockout.cli as cli
import blockout.cmd_dashboard as cmd
cmd.dashboard_command = lambda port, address, run: [sys.executable, "-c", sys.argv[1], str(port), str(os.getpid())]
sys.exit(cli.main(sys.argv[2:]))
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def url_line(proc, before: list | None = None) -> str:
    """The CLI's URL line; blocks until it or EOF. Lines printed before it go to ``before``."""
    for line in proc.stdout:
        if line.startswith("Blockout dashboard:"):
            return line
        if before is not None:
            before.append(line)
    return ""


def start(port: int, fake: bool) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    args = ["dashboard", str(DEMO), "--port", str(port), "--address", "127.0.0.1"]
    cmd = [sys.executable, "-c", FAKE_CLI, FAKE_SERVER, *args] if fake else [sys.executable, "-m", "blockout.cli", *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def run_and_stop(sig, fake: bool):
    port = free_port()
    health = f"http://127.0.0.1:{port}/_stcore/health"
    proc = start(port, fake)
    server = []
    try:
        before = []
        line = url_line(proc, before)  # blocks until the CLI prints the URL (or exits)
        if not fake:  # regression: Streamlit's banner printed the URL twice more before ours
            assert before == [], before
        # the URL is printed only once the health endpoint answers
        assert line.startswith(f"Blockout dashboard: http://127.0.0.1:{port}"), line
        assert server_answers(health)
        server = children(proc.pid)
        assert len(server) == 1 and alive(server[0])
        if sig == signal.SIGKILL:  # cannot be caught: the server watches its parent (--parent-pid)
            proc.kill()
            proc.wait(timeout=30)
        else:
            proc.send_signal(sig)  # the parent only, not its process group
            assert proc.wait(timeout=60) == (0 if sig == signal.SIGINT else 128 + sig)
        assert wait_gone(server[0], 30), f"server {server[0]} outlived the dashboard command ({sig!r})"
        assert not server_answers(health)
    finally:
        for pid in [proc.pid, *server]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_streamlit_server_stops_on_sigterm():
    run_and_stop(signal.SIGTERM, fake=False)


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGINT, signal.SIGKILL])
def test_every_signal_stops_the_server(sig):
    run_and_stop(sig, fake=True)


def test_server_that_dies_early_is_one_line_error():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    script = FAKE_CLI.replace("sys.argv[1], str(port)", "'raise SystemExit(3)', str(port)")
    proc = subprocess.run([sys.executable, "-c", script, "", "dashboard", str(DEMO), "--port", str(free_port())],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Blockout dashboard:" not in proc.stdout
    assert proc.stderr.strip().splitlines()[-1].startswith("blockout: error: the dashboard server exited with code 3")
