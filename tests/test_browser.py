"""The one real-browser test: the dashboard in headless Chromium (Debian's /usr/bin/chromium via playwright).

Starts the app on a free loopback port (``python -m app.serve``), waits for the charts, moves the
threshold slider with the keyboard, checks that the charts re-render with no exception box on
the page, saves screenshots under ``test-artifacts/`` and writes the timings to
``benchmarks/results/dashboard_browser.json``. The server is always stopped (``finally``).

Run on the bundled demo run (``checkpoints/demo``) when it exists, else on a synthetic run of the
same shape (100 CIFAR-100 classes, 20 clusters, two hidden sets of 80).
"""

import json
import time
from pathlib import Path

import pytest

from app import browser

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
#: Timings of this run, for a look; the issue's speed targets are measured by
#: benchmarks/dashboard_speed.py, not asserted here (tests share the cores with other tests).
RESULTS = ARTIFACTS / "browser_timings.json"
TARGET_FIRST_CHART_S, TARGET_RERENDER_S = 5.0, 1.0

pytestmark = [pytest.mark.browser]

_reason = browser.browser_available()
if _reason:
    pytestmark.append(pytest.mark.skip(reason=_reason))


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    demo = REPO / "checkpoints" / "demo"
    if (demo / "run.json").is_file():
        return demo, "checkpoints/demo"
    from analysis.synthetic import make_synthetic_run

    names = json.loads((REPO / "blockout" / "data" / "cifar_labels.json").read_text())["fine_label_names"]
    root = tmp_path_factory.mktemp("ck")
    path = make_synthetic_run(root / "demo", trunk=128, hidden=(80, 80), classes=100,
                              clusters=20, groups=5, n_snapshots=10, class_names=names)
    make_synthetic_run(root / "small", classes=20, clusters=4, groups=2, class_names=names[:20])  # to compare
    return path, "synthetic stand-in (100 classes, k = 20)"


@pytest.fixture(scope="module")
def server(demo_run, tmp_path_factory):
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / "browser_server.log"
    srv = browser.start_server(demo_run[0], env={"BLOCKOUT_CHECKPOINTS": str(demo_run[0].parent)}, log=log)
    try:
        yield srv
    finally:
        browser.stop_server(srv)
        assert srv.proc.poll() is not None, "the streamlit server is still running"


def _shot(page, name: str, timings: browser.Timings) -> None:
    path = ARTIFACTS / f"browser_{name}.png"
    page.screenshot(path=str(path))
    timings.screenshots.append(str(path.relative_to(REPO)))


def test_dashboard_in_chromium(server, demo_run):
    timings = browser.Timings(server_startup=server.startup_seconds)
    with browser.chromium_page() as page:
        t0 = time.perf_counter()
        page.goto(server.url)
        browser.wait_for_charts(page, min_charts=1)
        timings.first_chart = time.perf_counter() - t0
        assert browser.exceptions_on_page(page) == []
        _shot(page, "overview", timings)

        page.goto(server.url + "/branch_tree")
        browser.wait_for_charts(page, min_charts=2)
        _shot(page, "branch_tree", timings)
        before = page.locator('[data-testid="stSlider"]').filter(has_text="Threshold").inner_text()
        for key in ("ArrowRight", "ArrowRight", "ArrowLeft", "ArrowLeft"):
            timings.threshold_rerender.append(browser.move_threshold(page, key=key))
            assert browser.exceptions_on_page(page) == []
            assert page.locator(".js-plotly-plot .main-svg").count() >= 2  # the charts are back
        page.keyboard.press("ArrowRight")  # leave it moved for the screenshot
        browser.threshold_slider(page).press("ArrowRight")
        page.wait_for_function("() => document.querySelector('[data-testid=\"stApp\"]')"
                               ".getAttribute('data-test-script-state') === 'notRunning'")
        after = page.locator('[data-testid="stSlider"]').filter(has_text="Threshold").inner_text()
        assert before != after, "the threshold slider did not move"
        browser.wait_for_charts(page, min_charts=2)
        _shot(page, "branch_tree_moved", timings)

        # (compare draws its chart only when a second run exists under checkpoints/)
        for name, n in (("weight_blocks", 2), ("emergence", 3), ("wordnet", 2), ("compare", 0), ("export", 0)):
            page.goto(f"{server.url}/{name}")
            browser.wait_for_charts(page, min_charts=n)
            assert browser.exceptions_on_page(page) == [], name
            _shot(page, name, timings)

    record = {"run": demo_run[1], "url": "127.0.0.1 (loopback)", **timings.as_dict(),
              "targets": {"first_chart_s": TARGET_FIRST_CHART_S, "threshold_rerender_s": TARGET_RERENDER_S},
              "note": "first_chart_s: navigation start to the first plotly chart drawn, in a fresh browser "
                      "profile (cold JS cache), after the server answered /_stcore/health",
              "measured": time.strftime("%Y-%m-%dT%H:%M:%S")}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    from analysis.runfolder import atomic_write_json

    atomic_write_json(RESULTS, record)
    print(json.dumps(record, indent=1))
