"""Start the dashboard with its heavy imports done before the first browser connects.

``python -m app.serve [RUN] [--port N] [--address A]`` is ``streamlit run app/Home.py -- RUN``
headless, except that numpy, scipy, networkx, pandas, plotly and :mod:`analysis` are imported
first: Streamlit runs the script only when a browser connects, so without this the first page
pays for the imports (about 2–3 s on a busy two-core machine). ``blockout dashboard`` and the
browser harness start the app this way; ``streamlit run app/Home.py`` works the same, only its
first page is slower.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def prewarm() -> None:
    """Import what the pages need (no Streamlit caches are created here)."""
    import networkx  # noqa: F401
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    import plotly.graph_objects  # noqa: F401
    import plotly.express  # noqa: F401
    import plotly.subplots  # noqa: F401
    import scipy.cluster.hierarchy  # noqa: F401
    import scipy.stats  # noqa: F401

    import analysis.blocks  # noqa: F401
    import analysis.compare  # noqa: F401 (scikit-learn)
    import analysis.dynamics  # noqa: F401
    import analysis.export  # noqa: F401
    import analysis.graphs  # noqa: F401
    import analysis.hierarchy  # noqa: F401
    import analysis.run  # noqa: F401
    import analysis.summary  # noqa: F401
    import analysis.wordnet  # noqa: F401


def streamlit_argv(run: str | None, port: int, address: str = "127.0.0.1", headless: bool = True) -> list[str]:
    """Arguments of ``streamlit run`` for the dashboard."""
    argv = ["run", str(REPO / "app" / "Home.py"), "--server.port", str(port), "--server.address", address,
            "--server.headless", "true" if headless else "false", "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none", "--client.toolbarMode", "viewer"]
    if run is not None:
        argv += ["--", str(run)]
    return argv


def die_with_parent(parent_pid: int) -> None:
    """Stop (SIGTERM) when process ``parent_pid`` dies, even by SIGKILL; exit now if it is gone.

    ``blockout dashboard`` stops its server on every signal it can catch; this covers the one it
    cannot. Linux only (``prctl(PR_SET_PDEATHSIG)``); elsewhere only the gone-already check runs.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        sys.exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.serve", description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", help="run folder to open first (default: checkpoints/demo)")
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--parent-pid", type=int, default=None,
                        help="stop when this process dies (blockout dashboard passes its own pid)")
    args = parser.parse_args(argv)
    if args.parent_pid is not None:
        die_with_parent(args.parent_pid)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    prewarm()
    from streamlit.web import cli as stcli

    sys.argv = ["streamlit", *streamlit_argv(args.run, args.port, args.address)]
    return int(stcli.main() or 0)


if __name__ == "__main__":
    sys.exit(main())
