"""One end-to-end test in a real headless Chromium (Debian's), driving the running app.

Set OPTICAL_SCREENSHOTS=<dir> to save a screenshot of every page (the README's pictures).
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import PROJECT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PAGES = [("", "Does student size change"), ("train", "Train a student"), ("alignment", "Token alignments"),
         ("scaling", "Scaling results"), ("compare", "Compare checkpoints"), ("checkpoints", "Checkpoints")]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(quick_sweep, tiny_checkpoint, tmp_path_factory):
    ckpts = tmp_path_factory.mktemp("browser_ckpts")
    shutil.copytree(tiny_checkpoint, ckpts / "tiny-me5-ot")
    port = free_port()
    env = dict(os.environ, OPTICAL_RUNS=str(quick_sweep[0].parent), OPTICAL_CHECKPOINTS=str(ckpts))
    log = tmp_path_factory.mktemp("streamlit_log") / "server.log"
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(PROJECT / "app.py"), "--server.headless",
                             "true", "--browser.gatherUsageStats", "false", "--server.port", str(port)],
                            cwd=PROJECT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("streamlit did not answer on its port: " + log.read_text(errors="replace")[-2000:])
    yield url, log
    proc.terminate()
    proc.wait(timeout=20)


@pytest.mark.browser
def test_every_page_renders_in_headless_chromium(server):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    url, log = server
    shots = os.environ.get("OPTICAL_SCREENSHOTS")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        for path, heading in PAGES:
            page.goto(f"{url}/{path}")
            page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=180_000)
            page.get_by_text(heading).first.wait_for(timeout=60_000)
            assert page.locator("[data-testid='stException']").count() == 0, path
            if path == "":
                page.get_by_text("OT minus KD in mrr@10").first.wait_for(timeout=60_000)
            if path == "alignment":
                page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
            if shots:
                Path(shots).mkdir(parents=True, exist_ok=True)
                page.wait_for_timeout(1500)
                page.screenshot(path=str(Path(shots) / f"{path or 'overview'}.png"), full_page=False)
        browser.close()
    server_log = log.read_text(errors="replace")
    # The file watcher is off (.streamlit/config.toml): a watched project once filled the log with these.
    assert "Inotify" not in server_log and "Traceback" not in server_log, server_log[-2000:]
