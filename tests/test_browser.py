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
        # Private by default (.streamlit/config.toml): the server listens on the loopback address only.
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
    page.get_by_role("heading", name=HEADINGS[title]).first.wait_for()


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
    page.get_by_text("8 imputations").first.wait_for(timeout=60_000)
    page.get_by_text("Mean of 8 draws").first.wait_for()
    page.get_by_text("Columns: truth | input | MisGAN (this run)").first.wait_for()  # the baselines beside it
    _settle(page)
    page.screenshot(path=str(SHOTS / "inpaint.png"), full_page=True)

    for name, file in (("Runs", "runs"), ("Theory", "theory")):
        _open(page, url, name)
        _settle(page)
        page.screenshot(path=str(SHOTS / f"{file}.png"), full_page=True)
    page.get_by_text("identical").first.wait_for()
    assert any("mnist-5k" in p.name and p.name != "tiny-imputer" for p in runs.iterdir()), \
        "the Train page made no run folder"
