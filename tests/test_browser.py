"""One end-to-end test in a real headless Chromium (Debian's), driving the running app.

Set OPTICAL_SCREENSHOTS=<dir> to save a screenshot of every page (the README's pictures).

The app is the committed one as a fresh clone has it, with no sweep of its own (OPTICAL_RUNS is empty) and one
tiny checkpoint for the pages that need a student: the Alignment and Compare pages open on the first committed
study with plan and top-document records, results/explore (results/study's cells ran before those records existed).
"""

import os
import re
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
         ("scaling", "Scaling results"), ("compare", "Compare students"), ("search", "Search"),
         ("checkpoints", "Checkpoints")]
TALL = {"alignment": 1700, "compare": 1700, "search": 2300}  # screenshots that show more than the first screen
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_checkpoint, tmp_path_factory):
    ckpts = tmp_path_factory.mktemp("browser_ckpts")
    shutil.copytree(tiny_checkpoint, ckpts / "tiny-me5-ot")
    port = free_port()
    env = dict(os.environ, OPTICAL_RUNS=str(tmp_path_factory.mktemp("no_runs")), OPTICAL_CHECKPOINTS=str(ckpts))
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
            if path == "":  # the answer in three sentences above the OT - KD figure (the rest in expanders)
                page.get_by_text("The answer", exact=True).first.wait_for(timeout=60_000)
                page.get_by_text(re.compile(r"^(Students learn|The students did not learn)")).first.wait_for(
                    timeout=60_000)  # the regime, first
                page.locator("[data-testid='stImage'] img").first.wait_for(timeout=120_000)  # publish's figure
                page.get_by_text("Interactive figure").first.click()  # and the same figure in plotly
                page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
            if path == "alignment":  # a committed study cell's recorded plans at two steps, no weights loaded
                page.locator(".js-plotly-plot").nth(3).wait_for(timeout=120_000)
                headers = page.get_by_text(re.compile(r" · step \d+ · mrr@10 ")).all_inner_texts()
                steps = {re.search(r" · step (\d+) · ", h).group(1) for h in headers}
                assert len(headers) == 2 and len(steps) == 2, headers  # one cell, two of its recorded steps
                assert all(h.startswith("swa · me5-L1 · ot · seed 0") for h in headers), headers
            if path == "compare":  # two study cells from their records
                page.get_by_text("Queries where they differ most").wait_for(timeout=120_000)
                page.get_by_text(re.compile(r"· A - B = [+-]")).first.click()
                page.get_by_text(re.compile(r", its top 3$")).first.wait_for(timeout=60_000)
            if path == "search":  # the student, the raw teacher, BM25 and mE5 side by side, and the plan
                page.get_by_text("mE5 off the shelf").first.wait_for(timeout=300_000)
                page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
                assert page.get_by_text("relevant", exact=True).count() >= 1  # the headline's own article
            assert page.locator("[data-testid='stException']").count() == 0, path
            if shots:
                Path(shots).mkdir(parents=True, exist_ok=True)
                page.set_viewport_size({"width": 1400, "height": TALL.get(path, 1000)})
                page.locator("h1").first.scroll_into_view_if_needed()  # from the top, whatever was opened
                page.wait_for_timeout(1500)
                page.screenshot(path=str(Path(shots) / f"{path or 'overview'}.png"), full_page=False)
                page.set_viewport_size({"width": 1400, "height": 1000})
        browser.close()
    server_log = log.read_text(errors="replace")
    # The file watcher is off (.streamlit/config.toml): a watched project once filled the log with these.
    assert "Inotify" not in server_log and "Traceback" not in server_log, server_log[-2000:]
