"""The Alignment, Compare and Search screenshots, from the demo sweep (explore_demo.toml) in headless Chromium.

    optical sweep --config docs/screenshots/explore_demo.toml --out runs/demo
    python docs/screenshots/take_explore.py docs/screenshots      # OPTICAL_RUNS if the sweep is not under runs/

Alignment: swa me5-L1 pure OT at step 0 beside step 25 (it has collapsed: query cosine > 0.9) on one colour
scale; Compare: its KD and OT cells from their records; Search: the KD student's checkpoint on an NTREX headline.
"""

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

PROJECT = Path(__file__).resolve().parents[2]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"


def idle(page):
    page.wait_for_timeout(800)
    page.wait_for_selector(IDLE, timeout=600_000)


def choose(page, label: str, option: str):
    page.locator("[data-testid='stSelectbox']").filter(has=page.get_by_text(label, exact=True)).first.click()
    page.get_by_role("option", name=option, exact=True).click()
    idle(page)


def shot(page, path: Path, height: int):
    page.set_viewport_size({"width": 1400, "height": height})
    page.locator("h1").first.scroll_into_view_if_needed()
    page.wait_for_timeout(2000)
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": 1400, "height": 1000})


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    empty = out / ".no-checkpoints"  # the sweep's kept checkpoints are the only students listed
    empty.mkdir(exist_ok=True)
    env = dict(os.environ, OPTICAL_CHECKPOINTS=str(empty))
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(PROJECT / "app.py"), "--server.headless",
                               "true", "--browser.gatherUsageStats", "false", "--server.port", str(port)],
                              cwd=PROJECT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(180):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)  # the main script first: it registers the pages
            idle(page)
            page.goto(f"{url}/alignment")
            idle(page)
            choose(page, "Study", "sweep runs/demo")
            page.locator("[data-testid='stSelectbox']").filter(has=page.get_by_text("Panel pair", exact=True)).click()
            page.get_by_role("option").nth(4).click()  # an NTREX headline of the panel
            idle(page)
            page.get_by_role("slider").nth(1).focus()
            page.keyboard.press("ArrowLeft")  # the right-hand plan one recorded step earlier: 400 -> 25
            idle(page)
            shot(page, out / "alignment.png", 1750)
            page.goto(f"{url}/compare")
            idle(page)
            choose(page, "Study", "sweep runs/demo")
            page.get_by_text(re.compile(r"· A - B = [+-]")).first.click()
            idle(page)
            shot(page, out / "compare.png", 1750)
            page.goto(f"{url}/search")
            idle(page)
            page.locator(".js-plotly-plot").first.wait_for(timeout=600_000)
            shot(page, out / "search.png", 2300)
            assert page.locator("[data-testid='stException']").count() == 0
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=20)
        empty.rmdir()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else PROJECT / "docs" / "screenshots")
