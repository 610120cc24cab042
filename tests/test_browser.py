"""End to end in a real browser: Debian's chromium driven by Playwright against `streamlit run`.

Home's start button shows within a 1280x720 window and opens Train on the running job's live view; Train
settings survive visits to two other pages; on Runs, a run chosen while it trains stays chosen through the
live refreshes and its export names it; Compare fits and evaluates baselines; a stroke painted with the mouse
on Inpaint's real canvas gives K imputations, and the strokes stay when the tool changes; every page is
visited. Full-page screenshots go to artifacts/screenshots/ (git-ignored); with MISGAN_DOC_SCREENSHOTS=1
small ones of each page also go to docs/img/ (committed, for the README).
"""

from __future__ import annotations

import io
import json
import os
import re
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
DOC_SHOTS = ROOT / "docs" / "img"
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
            viewport={"width": 1280, "height": 720},  # Home's start button must show without scrolling
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
    # A page's first render imports its modules and lists the runs: on a busy 2-core host it has taken over
    # 60 s (Compare, right after a training job stopped), so allow what the test's other waits allow. A click
    # that lands while a live fragment redraws can be lost: after a minute, click once more.
    heading = page.get_by_role("heading", name=HEADINGS[title]).first
    for attempt in range(2):
        page.get_by_role("link", name=title, exact=True).first.click()
        try:
            heading.wait_for(timeout=60_000 * (attempt + 1))
            return
        except Exception:
            if attempt:
                page.screenshot(path=str(SHOTS / f"failure-{title}.png"), full_page=True)  # what showed instead
                raise


def _settle(page) -> None:  # noqa: ANN001
    page.wait_for_load_state("networkidle")  # lazily loaded widgets (the data grid) fetch their code
    page.wait_for_timeout(1500)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=60_000)


def _shot(page, name: str) -> None:  # noqa: ANN001
    """A full-page screenshot for CI, and with MISGAN_DOC_SCREENSHOTS=1 a small one of the window for docs/img
    (64-colour PNG)."""
    from PIL import Image

    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    if not os.environ.get("MISGAN_DOC_SCREENSHOTS"):  # refresh the committed docs/img only when asked
        return
    DOC_SHOTS.mkdir(parents=True, exist_ok=True)
    window = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    window.quantize(colors=64).save(DOC_SHOTS / f"{name}.png", optimize=True)


def test_browser_end_to_end(server: tuple[str, Path], page) -> None:  # noqa: ANN001
    url, runs = server
    # A first visit straight to a sub-page of a fresh server shows "Page not found": load / first.
    page.goto(url + "/")
    page.get_by_role("heading", name="MisGAN Workbench").wait_for()
    page.get_by_text("Datasets").first.wait_for()
    _settle(page)
    # Home's start button is above the fold of a 1280x720 window.
    start = page.get_by_role("button", name="Start a first run")
    box = start.bounding_box()
    assert box and box["y"] + box["height"] <= 720, box
    _shot(page, "home")

    # One click starts the first run and Train opens on its live view, above the form.
    page.set_viewport_size({"width": 1400, "height": 1000})
    start.click()
    page.get_by_role("heading", name="Train MisGAN").wait_for(timeout=120_000)
    page.get_by_text("mnist-5k, dropout 50%").first.wait_for()
    live = page.get_by_role("heading", name="Live training").first
    form = page.get_by_role("heading", name="Data and missingness").first
    live.wait_for()
    assert live.bounding_box()["y"] < form.bounding_box()["y"] and live.bounding_box()["y"] < 1000
    page.get_by_text("Settings of this job").first.wait_for()
    page.get_by_text("Gx samples").first.wait_for(timeout=90_000)
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=90_000)
    _settle(page)
    _shot(page, "train")

    # Train settings survive visits to two other pages.
    steps = page.get_by_role("spinbutton", name="Generator steps")
    steps.fill("1234")
    steps.press("Enter")
    _settle(page)
    page.get_by_role("combobox", name="Missingness").click()
    page.get_by_role("option").filter(has_text="Self-masking").first.click()
    _settle(page)
    page.get_by_text("dark ones").first.click()
    _settle(page)
    for title in ("Home", "Inpaint", "Train"):
        _open(page, url, title)
        _settle(page)
    assert page.get_by_role("spinbutton", name="Generator steps").input_value() == "1234"
    assert "Self-masking" in page.get_by_role("combobox", name="Missingness").input_value()
    assert page.get_by_role("radio", name="dark ones").is_checked()
    page.get_by_role("button", name="Stop").first.click()  # the first run has shown what it must
    page.get_by_text("stopped").first.wait_for(timeout=90_000)

    # Runs: choose a run while it trains; it stays chosen through the live refreshes, and its export names it.
    _open(page, url, "Runs")
    _settle(page)
    page.get_by_role("combobox", name="Run").click()
    page.get_by_role("option").filter(has_text="tiny-imputer").first.click()
    _settle(page)
    page.get_by_text("Resume, download, delete").first.click()
    more = page.get_by_role("spinbutton", name="More generator steps")
    more.fill("400")
    more.press("Enter")
    page.get_by_role("button", name="Resume training").click()
    progress = page.get_by_text(re.compile(r"tiny-imputer: (running|starting): step"))
    progress.first.wait_for(timeout=60_000)
    seen = set()
    for _ in range(6):  # several live refreshes (every 3 s) while it trains
        page.wait_for_timeout(2500)
        seen.add(progress.first.inner_text())
        assert "tiny-imputer" in page.get_by_role("combobox", name="Run").input_value()
    assert len(seen) >= 2, seen  # the step count beside the selector moved on
    page.mouse.move(1, 1)  # away from the Resume button, whose tooltip would cover the tabs
    page.keyboard.press("Escape")
    page.get_by_text("Export imputations").first.click()
    n = page.get_by_role("spinbutton", name="Examples (from the start of the run's data)")
    n.fill("50")
    n.press("Enter")
    _settle(page)
    page.get_by_role("button", name="Prepare the export").click()
    page.get_by_text("tiny-imputer-imputed.npz").first.wait_for(timeout=90_000)
    with page.expect_download() as download:
        page.get_by_role("button", name="Download .npz").click()
    assert download.value.suggested_filename == "tiny-imputer-imputed.npz"
    saved = runs.parent / "export.npz"
    download.value.save_as(saved)
    import numpy as np

    meta = json.loads(str(np.load(saved)["meta"]))
    assert meta["run"] == "tiny-imputer" and meta["kind"] == "misgan" and meta["run_dir"].endswith("tiny-imputer")
    _shot(page, "runs")

    # Compare: fit the closed-form baselines (ticked by default) and evaluate them beside MisGAN.
    _open(page, url, "Compare")
    _settle(page)
    page.get_by_role("button", name="Fit the ticked baselines").click()
    page.get_by_text("Include Mean").first.wait_for(timeout=90_000)
    page.get_by_text("Include MF").first.wait_for(timeout=90_000)
    _settle(page)
    page.get_by_role("button", name="Evaluate 4 method(s) on 500 examples").click()
    page.get_by_text("Lowest imputation FID (LeNet features)").first.wait_for(timeout=120_000)
    page.get_by_text("Scored on the train split").first.wait_for()
    _settle(page)
    _shot(page, "compare")

    # Inpaint: paint a stroke with the mouse on the real canvas; K imputations appear.
    _open(page, url, "Inpaint")
    canvas = page.locator("canvas.upper-canvas").first
    canvas.wait_for()
    page.get_by_text("Nothing is missing yet").first.wait_for()
    canvas.scroll_into_view_if_needed()
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
    _shot(page, "inpaint")
    painted = page.get_by_text(re.compile(r"[0-9,]+ of 784 pixels missing")).first.inner_text()

    # The strokes stay when the tool changes. Then, on a cleared canvas, a rectangle over canvas pixels 0-9
    # (top left) and 270-279 (bottom right) of the 280-pixel canvas hides exactly image pixels (0, 0) and
    # (27, 27), no neighbour.
    page.get_by_text("Rectangle", exact=True).first.click()
    _settle(page)
    assert page.get_by_text(re.compile(r"[0-9,]+ of 784 pixels missing")).first.inner_text() == painted
    page.get_by_role("button", name="Reset canvas & history").first.click()
    page.get_by_text("Nothing is missing yet").first.wait_for(timeout=60_000)
    canvas = page.locator("canvas.upper-canvas").first
    canvas.scroll_into_view_if_needed()
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
    assert shown.split(" · ")[-1].strip() in page.get_by_text("Yes, delete").first.inner_text()  # the same run below

    _open(page, url, "Theory")
    _settle(page)
    _shot(page, "theory")
    page.get_by_text("identical").first.wait_for()
    assert any("mnist-5k" in p.name and p.name != "tiny-imputer" for p in runs.iterdir()), \
        "the first run made no run folder"
