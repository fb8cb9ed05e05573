"""Dashboard speed in a real browser: the bundled demo run and an ImageNet-scale run (issue 4).

Demo run (``checkpoints/demo``): time to the first chart (target <= 5 s after the server is
ready) and the re-render time of threshold changes on the branch-tree page (target <= 1 s).

Uses the synthetic run of the analysis benchmark (trunk 2048 -> 4096 -> 4096 -> 1000 classes,
k = 15, ten snapshots; reused from ``.bench/analysis_imagenet`` when ``benchmarks/analysis_speed.py``
already built it, else built under ``.bench/dashboard_imagenet``), starts the dashboard on a free
loopback port with the same harness as ``tests/test_browser.py`` (``app.browser``), opens it in
headless Chromium and measures:

* ``first_chart_s``: navigation to the first chart on screen on the Overview page (fresh browser
  profile); ``page_complete_s``: until the page is complete, including the verdict at the top;
* per page (branch tree, weight blocks): time to the page's charts, then the re-render time of
  each threshold change made with the keyboard (target <= 3 s on the branch-tree page).

Results are printed and written to ``benchmarks/results/dashboard_speed.json``; screenshots go to
``test-artifacts/``. The server is always stopped.

    python benchmarks/dashboard_speed.py [--presses 4] [--rebuild]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.runfolder import atomic_write_json  # noqa: E402
from analysis.synthetic import make_synthetic_run  # noqa: E402
from app import browser  # noqa: E402

SPEC = dict(trunk=2048, hidden=(4096, 4096), classes=1000, clusters=15, groups=5, n_snapshots=10, noise=0.05, seed=0)
TARGET_RERENDER_S = 3.0
DEMO_RUN = ROOT / "checkpoints" / "demo"
DEMO_TARGET_FIRST_CHART_S, DEMO_TARGET_RERENDER_S = 5.0, 1.0
RESULTS = ROOT / "benchmarks" / "results" / "dashboard_speed.json"
ARTIFACTS = ROOT / "test-artifacts"


def _spec_json() -> str:
    return json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in SPEC.items()}, sort_keys=True)


def locate_run(rebuild: bool) -> tuple[Path, float]:
    """The ImageNet-scale run folder (shared with the analysis benchmark when it matches)."""
    shared = ROOT / ".bench" / "analysis_imagenet"
    stamp = shared / "bench_spec.json"
    if not rebuild and stamp.is_file() and stamp.read_text() == _spec_json():
        return shared, 0.0
    own = ROOT / ".bench" / "dashboard_imagenet"
    stamp = own / "bench_spec.json"
    if not rebuild and stamp.is_file() and stamp.read_text() == _spec_json():
        return own, 0.0
    t = time.perf_counter()
    make_synthetic_run(own, **SPEC)
    stamp.write_text(_spec_json())
    return own, time.perf_counter() - t


def measure_page(page, url: str, name: str, min_charts: int, presses: int) -> dict:
    t0 = time.perf_counter()
    page.goto(url)
    browser.wait_for_charts(page, min_charts=min_charts, timeout=120)
    load = time.perf_counter() - t0
    times = []
    keys = ["ArrowRight"] * (presses // 2) + ["ArrowLeft"] * (presses - presses // 2)
    for key in keys:
        times.append(browser.move_threshold(page, key=key, timeout=120))
        if browser.exceptions_on_page(page):
            raise RuntimeError(f"exception on the {name} page: {browser.exceptions_on_page(page)}")
    page.screenshot(path=str(ARTIFACTS / f"bench_{name}.png"))
    return {"page_load_s": round(load, 3), "threshold_rerender_s": [round(t, 3) for t in times],
            "threshold_rerender_max_s": round(max(times), 3)}


def first_chart_seconds(page, url: str) -> tuple[float, float]:
    """Navigation to ``url`` until its first plotly chart is on screen, and until the page is
    complete (script idle: on the Overview that includes the verdict's permutation nulls, which
    fill the slot at the top after the charts are drawn); fresh browser profile."""
    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 1",
                           timeout=120_000)
    visible = time.perf_counter() - t0
    browser.wait_for_charts(page, min_charts=1, timeout=120)
    return round(visible, 3), round(time.perf_counter() - t0, 3)


def measure_demo(presses: int) -> dict:
    """First chart and branch-tree threshold re-renders on the bundled demo run."""
    server = browser.start_server(DEMO_RUN, env={"BLOCKOUT_CHECKPOINTS": str(DEMO_RUN.parent)},
                                  log=ARTIFACTS / "bench_demo_server.log", timeout=120)
    out = {"run": "checkpoints/demo", "server_startup_s": round(server.startup_seconds, 3),
           "targets": {"first_chart_s": DEMO_TARGET_FIRST_CHART_S, "threshold_rerender_s": DEMO_TARGET_RERENDER_S}}
    try:
        with browser.chromium_page() as page:
            out["first_chart_s"], out["page_complete_s"] = first_chart_seconds(page, server.url)
            out["branch_tree"] = measure_page(page, server.url + "/branch_tree", "demo_branch_tree", 2, presses)
    finally:
        browser.stop_server(server)
    out["pass"] = (out["first_chart_s"] <= DEMO_TARGET_FIRST_CHART_S
                   and out["branch_tree"]["threshold_rerender_max_s"] <= DEMO_TARGET_RERENDER_S)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=4, help="threshold changes per page (default 4)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the synthetic run")
    args = parser.parse_args(argv)
    reason = browser.browser_available()
    if reason:
        print(f"skipped: {reason}")
        return 0
    ARTIFACTS.mkdir(exist_ok=True)
    demo = measure_demo(args.presses) if (DEMO_RUN / "run.json").is_file() else None
    run, build_s = locate_run(args.rebuild)
    server = browser.start_server(run, env={"BLOCKOUT_CHECKPOINTS": str(run.parent)},
                                  log=ARTIFACTS / "bench_server.log", timeout=120)
    record = {"spec": {k: list(v) if isinstance(v, tuple) else v for k, v in SPEC.items()},
              "run": str(run.relative_to(ROOT)) if run.is_relative_to(ROOT) else run.name,  # no machine paths
              "build_s": round(build_s, 1), "server_startup_s": round(server.startup_seconds, 3),
              "target_threshold_rerender_s": TARGET_RERENDER_S,
              "machine": {"cpus": os.cpu_count(), "loadavg_1min": os.getloadavg()[0], "python": platform.python_version()}}
    try:
        with browser.chromium_page() as page:
            record["first_chart_s"], record["page_complete_s"] = first_chart_seconds(page, server.url)
            record["branch_tree"] = measure_page(page, server.url + "/branch_tree", "branch_tree", 2, args.presses)
            record["weight_blocks"] = measure_page(page, server.url + "/weight_blocks", "weight_blocks", 2, args.presses)
    finally:
        browser.stop_server(server)
    record["pass"] = record["branch_tree"]["threshold_rerender_max_s"] <= TARGET_RERENDER_S
    record = {"demo": demo, "imagenet": record,
              "pass": record["pass"] and (demo is None or demo["pass"])}
    record["measured"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS, record)
    print(json.dumps(record, indent=1))
    return 0 if record["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
