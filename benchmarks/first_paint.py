"""The Overview's first paint on a fresh app: seconds from the Streamlit server answering HTTP to the page
done running with the study's answer on screen.

Each run starts its own server (`streamlit run app.py --server.headless true`), waits for /_stcore/health,
then opens the Overview in Debian's headless Chromium (already launched, so its start is not counted) and
waits until `[data-testid='stApp'][data-test-script-state='notRunning']` holds and the answer's first sentence
(the regime) and the OT - KD figure are on screen (the first paint; the figure is the PNG that publish drew, or
the plotly chart for a study without one). Prints a markdown table with the milestones on
the way: the app shell attached, the answer shown. `--resources` adds, for the last run, what the browser fetched
from its /_stcore/health check on (Streamlit loads an element's code when the first such element arrives: a data
grid or a JSON viewer on the page is a megabyte of code to fetch and parse before the page settles).

    .venv/bin/python benchmarks/first_paint.py [--runs 3] [--app-dir .] [--resources]

`--app-dir` runs another checkout's app (e.g. an older commit exported with `git archive`) with its own
optical_core first on the path, against the same study folders.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
DONE = "[data-testid='stApp'][data-test-script-state='notRunning']"
# The answer's first generated sentence starts with one of these (students learned or not).
REGIME = re.compile(r"^(Students learn|The students did not learn)")
# The OT - KD figure: the published PNG decoded on screen, or (a study without one) the plotly chart drawn.
FIGURE = ("() => [...document.querySelectorAll(\"[data-testid='stImage'] img\")].some(i => i.complete && "
          "i.naturalWidth > 0) || !!document.querySelector('.js-plotly-plot .main-svg')")


def free_port() -> int:
    for port in range(8500, 8600):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)):
                return port
    raise RuntimeError("no free port in 8500-8599")


def wait_for_health(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with {process.returncode}")
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("streamlit did not answer")


# (name, start ms, end ms, kB) of every fetch from the frontend's /_stcore/health check (before it connects) on
RESOURCES = ("() => { const all = performance.getEntriesByType('resource'); "
             "const health = all.find(e => e.name.endsWith('/_stcore/health')); "
             "return all.filter(e => !health || e.startTime >= health.startTime).map(e => "
             "[e.name.split('/').pop(), Math.round(e.startTime), Math.round(e.responseEnd), "
             "Math.round(e.transferSize / 1024)]); }")


def one_run(browser, app_dir: Path) -> dict:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(app_dir))
    started = time.monotonic()
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                               "--browser.gatherUsageStats", "false", "--server.port", str(port)],
                              cwd=app_dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_health(url, server)
        answered = time.monotonic()
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.wait_for_selector("[data-testid='stApp']", timeout=300_000)
        shell = time.monotonic()
        page.get_by_text(REGIME).first.wait_for(state="visible", timeout=300_000)
        answer = time.monotonic()
        page.wait_for_function(FIGURE, timeout=300_000)
        page.wait_for_selector(DONE, timeout=300_000)
        painted = time.monotonic()
        errors = page.locator("[data-testid='stException']").count()
        resources = page.evaluate(RESOURCES)
        page.close()
        return dict(server_start_s=answered - started, shell_s=shell - answered, answer_s=answer - answered,
                    first_paint_s=painted - answered, exceptions=errors, resources=resources)
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--app-dir", default=str(Path(__file__).resolve().parent.parent))
    parser.add_argument("--resources", action="store_true",
                        help="list what the last run fetched from its health check on")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    app_dir = Path(args.app_dir).resolve()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        runs = [one_run(browser, app_dir) for _ in range(args.runs)]
        browser.close()
    print(f"Overview first paint, {app_dir}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    columns = ("server_start_s", "shell_s", "answer_s", "first_paint_s")
    print("| run | server start | app shell | answer shown | first paint (done, figures) | exceptions |")
    print("|---|---|---|---|---|---|")
    for i, r in enumerate(runs, start=1):
        print(f"| {i} | " + " | ".join(f"{r[c]:.2f}" for c in columns) + f" | {r['exceptions']} |")
    print("| median | " + " | ".join(f"{statistics.median(r[c] for r in runs):.2f}" for c in columns) + " | |")
    print("\nSeconds; every column after the first counts from the server answering /_stcore/health.")
    if args.resources:
        print("\nThe last run's fetches from its health check on (ms from the page's start; kB transferred):\n")
        print("| resource | start | end | kB |\n|---|---|---|---|")
        for name, start, end, kb in runs[-1]["resources"]:
            print(f"| {name} | {start} | {end} | {kb} |")


if __name__ == "__main__":
    main()
