"""End to end in a real browser: Debian's chromium driven by Playwright against `streamlit run`.

Opens Home, starts a short training on the Train page and waits for a sample grid and a curve, paints a
stroke with the mouse on Inpaint's real canvas and waits for the K imputations, and visits every page.
Screenshots of each page go to artifacts/screenshots/ (git-ignored; CI keeps them as artifacts).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from misgan_core import DataSpec, MisGAN, MisGANConfig

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / "artifacts" / "screenshots"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"{CHROMIUM} is missing: apt-get install chromium (Debian's build; Playwright "
        f"cannot download browsers here)",
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"streamlit exited with {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}"
            )
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"streamlit did not answer at {url} within {timeout:.0f}s")


def _listening(port: int) -> list[str]:
    """Hex local addresses of the sockets listening on `port` (from /proc/net/tcp and tcp6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:
                    found.append(address)
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A streamlit server on a free port, with a runs folder holding a tiny trained run with an imputer."""
    runs = tmp_path_factory.mktemp("browser-runs")
    MisGAN(
        MisGANConfig(data=DataSpec(limit=500), steps=20, imputer=True, fid_every=0, sample_every=20,
                     checkpoint_every=20),
        run_dir=runs / "tiny-imputer",
    ).train()
    port = _free_port()
    env = {**os.environ, "MISGAN_RUNS_DIR": str(runs), "PYTHONUNBUFFERED": "1"}
    log = open(runs.parent / "streamlit.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "workbench/Home.py",
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--browser.gatherUsageStats",
            "false",
            "--server.fileWatcherType",
            "none",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        # Private by default (workbench/.streamlit/config.toml): the server listens on the loopback address only.
        assert _listening(port) and all(a in ("0100007F", "00000000000000000000000001000000") for a in _listening(port))
        yield url, runs
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def page(server: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1400, "height": 2400},
        )
        try:
            pg = context.pages[0] if context.pages else context.new_page()
            pg.set_default_timeout(60_000)
            yield pg
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


HEADINGS = {
    "Home": "MisGAN Workbench",
    "Train": "Train MisGAN",
    "Inpaint": "Inpaint",
    "Compare": "Compare imputation methods",
    "Runs": "Runs",
    "Theory": "Theory: does the fill value",
}


def _open(page, url: str, title: str) -> None:  # noqa: ANN001 - a Playwright Page
    """Follow the navigation link, as a person would, and wait for the page's heading."""
    page.get_by_role("link", name=title, exact=True).first.click()
    # A page's first render imports its modules and lists the runs: on a busy 2-core host it has taken over
    # 60 s (Compare, right after a training job stopped), so allow what the test's other waits allow.
    page.get_by_role("heading", name=HEADINGS[title]).first.wait_for(timeout=120_000)


def _settle(page) -> None:  # noqa: ANN001
    page.wait_for_load_state("networkidle")  # lazily loaded widgets (the data grid) fetch their code
    page.wait_for_timeout(1500)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=60_000)


def test_browser_end_to_end(server: tuple[str, Path], page) -> None:  # noqa: ANN001
    url, runs = server
    # A first visit straight to a sub-page of a fresh server shows "Page not found": load / first.
    page.goto(url + "/")
    page.get_by_role("heading", name="MisGAN Workbench").wait_for()
    page.get_by_text("Datasets").first.wait_for()
    _settle(page)
    page.screenshot(path=str(SHOTS / "home.png"), full_page=True)

    # Train: a short run on 500 examples; a sample grid and a curve must appear while it trains.
    _open(page, url, "Train")
    steps = page.get_by_role("spinbutton", name="Generator steps")
    steps.fill("300")
    steps.press("Enter")
    limit = page.get_by_role("spinbutton", name="Use only the first N examples (0 = all)")
    limit.fill("500")
    limit.press("Enter")
    _settle(page)
    page.get_by_role("button", name="Start training").click()
    # the job is named by what it trains (method, data, missingness, budget), and its own settings are shown
    page.get_by_text("mnist-5k (first 500), square 14x14 observed · 300 generator steps").first.wait_for()
    page.get_by_text("Settings of this job").first.wait_for()
    page.get_by_text("Gx samples").first.wait_for(timeout=90_000)
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=90_000)
    page.wait_for_timeout(3000)
    page.screenshot(path=str(SHOTS / "train.png"), full_page=True)
    page.get_by_role("button", name="Stop").first.click()
    page.get_by_text("stopped").first.wait_for(timeout=90_000)

    # Compare: fit the closed-form baselines (ticked by default) and evaluate them beside MisGAN.
    _open(page, url, "Compare")
    _settle(page)
    page.get_by_role("button", name="Fit the ticked baselines").click()
    page.get_by_text("Include Mean").first.wait_for(timeout=90_000)
    page.get_by_text("Include MF").first.wait_for(timeout=90_000)
    _settle(page)
    page.get_by_role("button", name="Evaluate 4 method(s) on 500 examples").click()
    page.get_by_text("Lowest imputation FID (LeNet features)").first.wait_for(timeout=120_000)
    _settle(page)
    page.screenshot(path=str(SHOTS / "compare.png"), full_page=True)

    # Inpaint: paint a stroke with the mouse on the real canvas; K imputations appear.
    _open(page, url, "Inpaint")
    canvas = page.locator("canvas.upper-canvas").first
    canvas.wait_for()
    page.get_by_text("Nothing is missing yet").first.wait_for()
    box = canvas.bounding_box()
    assert box and box["width"] >= 250, box
    y = box["y"] + box["height"] * 0.45
    page.mouse.move(box["x"] + box["width"] * 0.1, y)
    page.mouse.down()
    for i in range(1, 21):
        page.mouse.move(box["x"] + box["width"] * (0.1 + 0.04 * i), y + box["height"] * 0.01 * i, steps=2)
    page.mouse.up()
    try:
        page.get_by_text("8 imputations").first.wait_for(timeout=60_000)
    except Exception:
        page.screenshot(path=str(SHOTS / "failure.png"), full_page=True)  # what the page showed instead
        raise
    page.get_by_text("Mean of 8 draws").first.wait_for()
    page.get_by_text("MisGAN (this run)").first.wait_for()  # the other methods beside it, under headers
    page.get_by_text("Truth", exact=True).first.wait_for()
    _settle(page)
    page.screenshot(path=str(SHOTS / "inpaint.png"), full_page=True)

    # The border-pixel stroke: a rectangle over canvas pixels 0-9 (top left) and 270-279 (bottom right) of
    # the 280-pixel canvas hides exactly image pixels (0, 0) and (27, 27), no neighbour.
    page.get_by_text("Rectangle", exact=True).first.click()
    _settle(page)
    canvas = page.locator("canvas.upper-canvas").first
    box = canvas.bounding_box()
    for corner in (0, 270):
        page.mouse.move(box["x"] + corner + 0.5, box["y"] + corner + 0.5)
        page.mouse.down()
        page.mouse.move(box["x"] + corner + 9.5, box["y"] + corner + 9.5, steps=4)
        page.mouse.up()
        _settle(page)
    page.get_by_text("2 of 784 pixels missing").first.wait_for(timeout=60_000)

    # Runs: delete a run, then the selector and the page below it name the same, existing run.
    _open(page, url, "Runs")
    _settle(page)
    page.screenshot(path=str(SHOTS / "runs.png"), full_page=True)
    doomed = next(p.name for p in runs.iterdir() if (p / "config.json").exists() and p.name != "tiny-imputer")
    page.get_by_role("combobox", name="Run").click()
    page.get_by_role("option").filter(has_text=doomed).first.click()
    _settle(page)
    page.get_by_text("Resume, download, delete").first.click()
    page.get_by_text(f"Yes, delete {doomed} and every file in it").first.click()
    page.get_by_role("button", name="Delete run").first.click()
    _settle(page)
    page.wait_for_timeout(2000)
    assert not (runs / doomed).exists()
    shown = page.get_by_role("combobox", name="Run").input_value()
    assert doomed not in shown and shown.strip(), shown
    assert shown.split(" · ")[0].strip() in page.get_by_text("Yes, delete").first.inner_text()  # the same run below

    _open(page, url, "Theory")
    _settle(page)
    page.screenshot(path=str(SHOTS / "theory.png"), full_page=True)
    page.get_by_text("identical").first.wait_for()
    assert any("mnist-5k" in p.name and p.name != "tiny-imputer" for p in runs.iterdir()), \
        "the Train page made no run folder"
