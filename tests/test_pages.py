"""AppTest tests of every page: widgets exist, jobs start once, the live area advances, errors are readable.

The drawing canvas cannot be imported outside a running app, so a fake `streamlit_drawable_canvas` module
stands in for it (it "paints" the top half of the canvas); the real canvas is driven in test_browser.py.
"""

from __future__ import annotations

import io
import json
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from misgan_core import DataSpec, MisGAN, MisGANConfig, open_run
from misgan_core.jobs import registry

ROOT = Path(__file__).resolve().parent.parent
HOME = str(ROOT / "workbench" / "Home.py")
TIMEOUT = 90


class _FakeCanvasResult:
    def __init__(self, image_data: np.ndarray | None) -> None:
        self.image_data = image_data
        self.json_data = {"objects": []}


def _fake_canvas_module(painted: str = "top") -> types.ModuleType:
    module = types.ModuleType("streamlit_drawable_canvas")
    calls: list[dict] = []

    def st_canvas(**kwargs: object) -> _FakeCanvasResult:
        calls.append(kwargs)
        h, w = int(kwargs["height"]), int(kwargs["width"])  # type: ignore[arg-type]
        rgba = np.zeros((h, w, 4), dtype=np.uint8)
        if module.painted == "top":  # type: ignore[attr-defined]
            rgba[: h // 2, :, :] = (255, 64, 64, 255)
        elif module.painted == "corners":  # type: ignore[attr-defined]
            # one image pixel's worth of stroke in the top-left and bottom-right corners of the canvas
            scale = w // 28
            rgba[:scale, :scale] = (255, 64, 64, 255)
            rgba[-scale:, -scale:] = (255, 64, 64, 255)
        return _FakeCanvasResult(rgba if kwargs.get("return_image_data") else None)

    module.st_canvas = st_canvas  # type: ignore[attr-defined]
    module.calls = calls  # type: ignore[attr-defined]
    module.painted = painted  # type: ignore[attr-defined]
    return module


@pytest.fixture()
def runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import torch

    from workbench import state

    root = tmp_path / "runs"
    monkeypatch.setenv("MISGAN_RUNS_DIR", str(root))
    # The app sets torch's process-wide thread count once; keep the test process's setting instead.
    monkeypatch.setattr(state, "_THREADS", torch.get_num_threads())
    yield root
    registry().stop_all(timeout=60)


@pytest.fixture()
def fake_canvas(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = _fake_canvas_module()
    monkeypatch.setitem(sys.modules, "streamlit_drawable_canvas", module)
    return module


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny MisGAN run with an imputer, made through the engine API (a few seconds)."""
    path = tmp_path_factory.mktemp("trained") / "tiny-imp"
    config = MisGANConfig(
        data=DataSpec(limit=200, mask="dropout", missing_rate=0.5),
        steps=3,
        imputer=True,
        fid_every=0,
        sample_every=3,
        log_every=1,
        checkpoint_every=3,
    )
    MisGAN(config, run_dir=path).train()
    return path


@pytest.fixture()
def runs_with_model(runs_dir: Path, trained_run: Path) -> Path:
    import shutil

    runs_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(trained_run, runs_dir / trained_run.name)
    return runs_dir / trained_run.name


def _app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(HOME, default_timeout=TIMEOUT).run()
    _no_exceptions(at)
    if page:
        at.switch_page(f"../pages/{page}.py").run()
        _no_exceptions(at)
    return at


def _no_exceptions(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def _png(
    size: tuple[int, int] = (40, 30), color: tuple[int, int, int] = (255, 255, 255), fmt: str = "PNG"
) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


def _set_small_training(at: AppTest, steps: int = 60) -> None:
    at.number_input(key="train-steps").set_value(steps)
    at.number_input(key="train-limit").set_value(200)
    at.number_input(key="train-fid-every").set_value(0)
    at.checkbox(key="train-imputer").set_value(False)
    at.run()
    _no_exceptions(at)


def _captions(at: AppTest) -> list[str]:
    return [c for image in at.image for c in image.captions]


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


# ---------------------------------------------------------------------------------------------
# Home


def test_home_shows_intro_device_datasets_and_quickstart(runs_dir: Path) -> None:
    at = _app()
    assert at.title[0].value == "MisGAN Workbench"
    assert any("mask generator" in m.value for m in at.markdown)
    assert any("CPU" in c.value or "GPU" in c.value for c in at.caption)
    datasets = at.table[0].value
    assert "mnist-5k" in list(datasets["dataset"])
    assert at.button(key="home-quickstart").label == "Start a first run"
    assert not _errors(at)


def test_home_quickstart_starts_one_job_and_opens_train(runs_dir: Path) -> None:
    before = len(registry().jobs())
    at = _app()
    at.button(key="home-quickstart").click().run()
    _no_exceptions(at)
    assert len(registry().jobs()) == before + 1
    assert at.title[0].value == "Train MisGAN"
    at2 = _app()  # a second browser session sees the running job and cannot start a twin
    assert at2.button(key="home-quickstart").disabled
    registry().stop_all(timeout=60)


# ---------------------------------------------------------------------------------------------
# Train


def test_train_widgets_and_preview(runs_dir: Path) -> None:
    at = _app("train")
    assert at.title[0].value == "Train MisGAN"
    labels = {w.label for w in at.number_input}
    assert {"Generator steps", "Batch size", "Learning rate", "Critic steps per generator step"} <= labels
    assert _metric(at, "Expected missing rate") == "75.0%"  # square 14 of 28x28
    assert at.image, "the preview grid of masked examples is missing"
    at.selectbox(key="train-mask").set_value(
        next(o for o in at.selectbox(key="train-mask").options if o.startswith("Independent dropout"))
    ).run()
    at.slider(key="train-rate").set_value(0.3).run()
    _no_exceptions(at)
    assert _metric(at, "Expected missing rate") == "30.0%"


def test_train_start_starts_exactly_one_job_and_live_area_advances(runs_dir: Path) -> None:
    at = _app("train")
    _set_small_training(at, steps=400)
    other = _app("train")  # a second session, rendered before the first one starts
    _set_small_training(other, steps=400)
    before = len(registry().jobs())
    at.button(key="train-start").click().run()
    _no_exceptions(at)
    assert len(registry().jobs()) == before + 1
    assert at.button(key="train-start").disabled  # no twin from a second click
    other.button(key="train-start").click().run()  # the other session's click finds the same job
    _no_exceptions(other)
    assert len(registry().jobs()) == before + 1
    job = registry().jobs()[-1]
    assert Path(job.key).parent == runs_dir.resolve()

    seen = []
    deadline = time.time() + 60
    while time.time() < deadline:
        at.run()
        _no_exceptions(at)
        seen.append(int(_metric(at, "Step")))
        if len(set(seen)) >= 3 and "Gx samples" in _captions(at):
            break
        time.sleep(0.5)
    assert len(set(seen)) >= 3 and seen == sorted(seen), seen
    assert "Gx samples" in _captions(at) and "Gm masks" in _captions(at)

    at.button(key=f"pause-{job.id}").click().run()
    assert job.snapshot().status == "paused"
    at.button(key=f"resume-{job.id}").click().run()
    assert job.snapshot().status == "running"
    at.button(key=f"stop-{job.id}").click().run()
    job.join(60)
    assert job.snapshot().status == "stopped"
    at.run()
    assert not at.button(key="train-start").disabled


def _train_small_job(at: AppTest, steps: int) -> tuple[Any, dict[str, Any]]:
    """Start a small job from the Train page as it is set, wait for it; (job, its run's config.json)."""
    _set_small_training(at, steps=steps)
    at.button(key="train-start").click().run()
    _no_exceptions(at)
    job = registry().jobs()[-1]
    job.join(120)
    return job, json.loads((Path(job.key) / "config.json").read_text())


def test_train_with_a_mask_model_that_sees_the_image(runs_dir: Path) -> None:
    """Self-masking missingness with the self-masking mask model: the job's run folder records the model and
    the model's own lambda (3) where the field is left empty, and the lambda asked for otherwise."""
    at = _app("train")
    box = at.selectbox(key="train-mask")
    box.set_value(next(o for o in box.options if o.startswith("Self-masking"))).run()
    at.selectbox(key="train-mask-model").set_value("self-masking")
    job, config = _train_small_job(at, steps=3)
    assert config["mask_model"] == "self-masking" and config["tau"] == 0.0
    assert config["data"]["mask"] == "self-masking" and config["temperature"] == 3.0  # the field left empty
    assert job.snapshot().status == "finished", job.snapshot()
    at.number_input(key="train-temperature").set_value(1.5)
    job, config = _train_small_job(at, steps=2)
    assert config["temperature"] == 1.5
    assert job.snapshot().status == "finished", job.snapshot()
    at.number_input(key="train-temperature").set_value(0.66)  # the paper's lambda, asked for, is kept
    job, config = _train_small_job(at, steps=1)
    assert config["temperature"] == 0.66 and config["mask_model"] == "self-masking"


def test_train_with_weight_averages_bf16_and_an_imputer_that_sees_the_mask(runs_dir: Path) -> None:
    at = _app("train")
    at.radio(key="train-recipe").set_value("paper (appendix D)")
    at.selectbox(key="train-imputer-sees-mask").set_value("yes")
    at.selectbox(key="train-imputer-critic-sees-mask").set_value("yes")
    at.selectbox(key="train-mask-activation").set_value("straight-through")
    at.number_input(key="train-ema").set_value(0.99)
    at.selectbox(key="train-precision").set_value("bf16")
    job, config = _train_small_job(at, steps=2)
    assert config["ema"] == 0.99 and (Path(job.key) / "model.safetensors").exists()
    assert config["precision"] == "bf16"
    assert config["imputer_sees_mask"] and config["imputer_critic_sees_mask"]
    assert config["recipe"] == "paper" and config["betas"] == [0.0, 0.9]  # the rest of the paper's recipe
    assert config["mask_activation"] == "straight-through"
    assert job.snapshot().status == "finished", job.snapshot()


def test_train_leaving_and_coming_back_shows_the_same_job(runs_dir: Path) -> None:
    at = _app("train")
    _set_small_training(at, steps=300)
    at.button(key="train-start").click().run()
    job = registry().jobs()[-1]
    at.switch_page("../pages/home.py").run()
    assert job.alive
    assert any(job.label in m.value for m in at.markdown)
    fresh = _app("train")  # a new session (closed browser, new tab) shows it too
    assert any(job.key in m.value for m in fresh.markdown)
    job.stop()


def test_train_missing_dataset_and_bad_own_data_show_messages(runs_dir: Path) -> None:
    at = _app("train")
    box = at.selectbox(key="train-dataset")
    missing = [o for o in box.options if "(downloadable" in o or "(missing" in o]
    if missing:
        box.set_value(missing[0]).run()
        _no_exceptions(at)
        assert any("is not on this machine" in e for e in _errors(at))
        assert at.button(key="train-start").disabled
    box = at.selectbox(key="train-dataset")
    box.set_value(next(o for o in box.options if o.startswith("your own data"))).run()
    at.text_input(key="train-own-path").set_value(str(runs_dir / "nope.npz")).run()
    _no_exceptions(at)
    assert any("does not exist" in e for e in _errors(at))
    assert at.button(key="train-start").disabled


# ---------------------------------------------------------------------------------------------
# Inpaint


def test_inpaint_without_runs_explains_what_to_do(runs_dir: Path, fake_canvas: types.ModuleType,
                                                  monkeypatch) -> None:
    import misgan_core.demo

    monkeypatch.setattr(misgan_core.demo, "ASSETS", runs_dir / "no-demo")  # as if no demo shipped
    at = _app("inpaint")
    assert any("No trained MisGAN run" in i.value for i in at.info)


def test_inpaint_paints_and_shows_k_draws(runs_with_model: Path, fake_canvas: types.ModuleType) -> None:
    at = _app("inpaint")
    assert not _errors(at)
    call = fake_canvas.calls[-1]
    assert call["width"] == 280 and call["height"] == 280  # 28x28 shown 10x larger
    assert call["return_image_data"] is True and call["drawing_mode"] == "freedraw"
    assert _metric(at, "Missing pixels") == "50%"  # the fake paints the top half
    at.slider(key="inpaint-k").set_value(5).run()
    _no_exceptions(at)
    assert any("5 imputations" in m.value for m in at.markdown)
    titles = _captions(at)  # under the images, so the images line up however the titles wrap
    assert any("Mean of 5 draws" in c for c in titles)
    assert any("std" in c for c in titles)
    # the demo that suits free-hand strokes is the one the page opens on
    assert at.selectbox(key="inpaint-run").value.endswith("demo-mnist-fc-rect")
    # other methods: the finished demos are pre-selected, the 3-step run is offered but not pre-selected
    others = at.multiselect(key="inpaint-others")
    assert len(others.options) == 3
    assert others.value and str(runs_with_model) not in others.value
    assert all("demo" in p for p in others.value)
    brush_key = fake_canvas.calls[-1]["key"]
    at.radio(key="inpaint-tool").set_value("Rectangle").run()
    assert fake_canvas.calls[-1]["drawing_mode"] == "rect"
    assert fake_canvas.calls[-1]["key"] == brush_key  # the same canvas: the strokes stay when the tool changes
    assert fake_canvas.calls[-1]["stroke_width"] == 0  # the rectangle covers exactly what was dragged
    at.radio(key="inpaint-meaning").set_value("observed").run()
    assert _metric(at, "Missing pixels") == "50%"


def test_inpaint_maps_canvas_pixels_to_image_pixels_exactly(runs_with_model: Path, fake_canvas) -> None:
    fake_canvas.painted = "corners"
    at = _app("inpaint")
    at.selectbox(key="inpaint-run").set_value(str(runs_with_model)).run()  # chosen by its folder
    call = fake_canvas.calls[-1]
    background = np.asarray(call["background_image"])
    assert background.shape[:2] == (280, 280)  # the image alone, no grid padding squeezed in
    run = open_run(runs_with_model)
    first = round(float(run.data.x[0, 0, 0, 0]) * 255)
    assert (background[:10, :10] == first).all()  # image pixel (0, 0) is canvas pixels 0-9 x 0-9
    # one image pixel's worth of stroke in each corner hides exactly 2 of the 784 pixels
    assert _metric(at, "Missing pixels") == f"{2 / 784:.0%}"
    at.number_input(key="inpaint-index").set_value(1).run()
    assert fake_canvas.calls[-1]["key"] == call["key"]  # the painted mask stays when the example changes


def test_inpaint_bad_uploads_show_readable_messages(
    runs_with_model: Path, fake_canvas: types.ModuleType
) -> None:
    at = _app("inpaint")
    at.radio(key="inpaint-source").set_value("Upload a PNG or JPEG").run()
    cases = [
        (b"", "empty"),
        (b"this is not an image", "not a readable image"),
        (_png(fmt="GIF"), "GIF image"),
        (_png()[:60], "damaged or truncated"),
    ]
    for content, message in cases:
        at.file_uploader(key="inpaint-upload").set_value(("digit.png", content, "image/png")).run()
        _no_exceptions(at)
        assert any(message in e for e in _errors(at)), (message, _errors(at))
    at.file_uploader(key="inpaint-upload").set_value(
        ("digit.jpg", _png((64, 48), fmt="JPEG"), "image/jpeg")
    ).run()
    _no_exceptions(at)
    assert not _errors(at)
    assert any("imputations" in m.value for m in at.markdown)


# ---------------------------------------------------------------------------------------------
# Compare


def test_compare_fits_a_baseline_and_evaluates(runs_with_model: Path, fake_canvas: types.ModuleType) -> None:
    at = _app("compare")
    assert at.button(key="compare-fit")
    for kind in ("mf", "zero"):
        at.checkbox(key=f"compare-fit-{kind}").uncheck()
    assert not at.checkbox(key="compare-fit-gain").value  # gradient-trained baselines are opt-in
    assert at.checkbox(key="compare-fit-mean").value
    at.number_input(key="compare-n").set_value(100)
    at.run()
    before = len(registry().jobs())
    at.button(key="compare-fit").click().run()
    _no_exceptions(at)
    assert len(registry().jobs()) == before + 1
    registry().jobs()[-1].join(60)
    at.run()
    _no_exceptions(at)
    assert at.checkbox(key="compare-use-mean").value
    assert not at.checkbox(key="compare-refit-mean").value  # fitted: refitting is opt-in
    assert any(m.value == "**Mean**" for m in at.markdown)  # a header over the Mean column
    at.button(key="compare-evaluate").click().run()
    _no_exceptions(at)
    table = next(d.value for d in at.dataframe if "RMSE (missing pixels)" in d.value.columns)
    # the paper-budget sweeps measured for the README are offered, drawn by the sweep's own figure code
    assert any("shipped" in o for o in at.selectbox(key="compare-sweep-folder").options)
    assert at.get("plotly_chart")
    # Mean, and the shipped square-14x14 demo (MisGAN), which matches this missingness
    assert list(table["method"]) == ["MisGAN", "Mean"]
    assert any("FID (LeNet features)" in c for c in table.columns)
    assert (table["RMSE (missing pixels)"] > 0).all()
    assert list(table["steps"]) == [18200, 1] and table["epochs"].iloc[0] == pytest.approx(1300, rel=0.01)
    # The trained tiny MisGAN run was made with dropout 0.5: it matches that missingness only.
    box = at.selectbox(key="compare-mask")
    box.set_value(next(o for o in box.options if o.startswith("Independent dropout"))).run()
    _no_exceptions(at)
    assert at.checkbox(key="compare-use-misgan").value


def test_inpaint_and_compare_take_a_miwae_run(runs_with_model: Path, fake_canvas: types.ModuleType) -> None:
    from misgan_core.methods import method

    path = runs_with_model.parent / "miwae-tiny"
    run = method("miwae").create(path, DataSpec(limit=200, mask="dropout", missing_rate=0.5),
                                 {"hidden": 32, "latent": 4, "k": 3, "impute_samples": 8})
    run.cadence = {"sample_every": 0}
    run.train(5)
    at = _app("inpaint")
    others = at.multiselect(key="inpaint-others")
    option = next(o for o in others.options if o.endswith("miwae-tiny"))
    others.set_value([option]).run()
    _no_exceptions(at)
    assert not _errors(at)
    at = _app("compare")
    box = at.selectbox(key="compare-mask")
    box.set_value(next(o for o in box.options if o.startswith("Independent dropout"))).run()
    at.number_input(key="compare-n").set_value(100).run()
    assert at.checkbox(key="compare-use-miwae").value
    at.button(key="compare-evaluate").click().run()
    _no_exceptions(at)
    table = next(d.value for d in at.dataframe if "RMSE (missing pixels)" in d.value.columns)
    row = table[table["method"] == "MIWAE"]
    assert len(row) == 1 and list(row["steps"]) == [5]  # its budget beside its figures


# ---------------------------------------------------------------------------------------------
# Runs


def test_runs_lists_exports_and_deletes_with_confirmation(runs_with_model: Path) -> None:
    (runs_with_model.parent / "broken").mkdir()
    (runs_with_model.parent / "broken" / "config.json").write_text("{not json")
    at = _app("runs")
    table = at.dataframe[0].value
    assert set(table["run"]) == {"tiny-imp", "broken"}
    assert any("unreadable" in p for p in table["problem"])
    at.selectbox(key="runs-selected").set_value(str(runs_with_model)).run()  # chosen by its folder
    _no_exceptions(at)
    assert at.button(key="runs-resume")
    assert at.download_button(key="runs-download")
    at.number_input(key="runs-export-n").set_value(10)
    at.number_input(key="runs-export-draws").set_value(2)
    at.button(key="runs-export").click().run()
    _no_exceptions(at)
    assert at.download_button(key="runs-npz") and at.download_button(key="runs-zip")
    assert at.button(key="runs-delete").disabled
    at.checkbox(key="runs-confirm-tiny-imp").check().run()
    at.button(key="runs-delete").click().run()
    _no_exceptions(at)
    assert not runs_with_model.exists()


def test_runs_keeps_the_chosen_folder_while_its_step_count_changes_and_the_export_names_it(
    runs_with_model: Path,
) -> None:
    import shutil

    from misgan_core import catalog
    from misgan_core.data import load_user_data

    shutil.copytree(runs_with_model, runs_with_model.parent / "another")
    at = _app("runs")
    box = at.selectbox(key="runs-selected")
    box.set_value(str(runs_with_model)).run()
    labels = list(at.selectbox(key="runs-selected").options)
    with (runs_with_model / "metrics.jsonl").open("a") as log:  # the run moves on, as a training run does
        log.write(json.dumps({"step": 7, "time": 3.0}) + "\n")
    at.run()
    _no_exceptions(at)
    assert at.selectbox(key="runs-selected").value == str(runs_with_model)
    assert list(at.selectbox(key="runs-selected").options) == labels  # labels carry no live step count
    assert any("tiny-imp" in m.value and "7 generator steps" in m.value for m in at.markdown)  # shown beside
    at.number_input(key="runs-export-n").set_value(10).run()
    at.button(key="runs-export").click().run()
    _no_exceptions(at)
    assert any("tiny-imp" in m.value and "tiny-imp-imputed.npz" in m.value for m in at.success)
    assert at.download_button(key="runs-npz")  # the file is offered
    held = at.session_state["runs-bundle"]
    meta = json.loads(str(np.load(io.BytesIO(held[2].npz))["meta"]))
    assert meta["run"] == "tiny-imp" and meta["run_dir"] == str(runs_with_model)
    assert meta["step"] == 3  # the checkpoint the export used (the log had moved on to 7)
    # the app's own export reads back as data: its incomplete input and masks
    path = catalog.save_upload("tiny-imp-imputed.npz", held[2].npz)
    back = load_user_data(path)
    assert back.x.shape == (10, 1, 28, 28) and 0 < float(back.m.mean()) < 1


def test_a_chosen_run_deleted_elsewhere_gives_way_to_an_existing_one_without_warnings(
    runs_with_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from streamlit.elements.lib import policies

    warned: list[str] = []
    monkeypatch.setattr(policies, "_shown_default_value_warning", False)
    monkeypatch.setattr(policies._LOGGER, "warning", lambda msg, *args, **kw: warned.append(msg % args))
    other = runs_with_model.parent / "another"
    shutil.copytree(runs_with_model, other)
    at = _app("runs")
    at.selectbox(key="runs-selected").set_value(str(other)).run()
    shutil.rmtree(other)  # deleted in another browser session
    at.run()
    _no_exceptions(at)
    assert at.selectbox(key="runs-selected").value == str(runs_with_model)
    assert any("Yes, delete tiny-imp" in c.label for c in at.checkbox)  # the page below names the same run
    assert not warned, warned


def test_runs_shows_curves_help_that_fits_the_method(runs_dir: Path) -> None:
    from misgan_core.cli import main

    args = ["--dataset", "mnist-5k", "--limit", "64", "--mask", "dropout", "--missing-rate", "0.5", "--steps", "3",
            "--batch-size", "16", "--out", str(runs_dir / "gain-run")]
    assert main(["baseline", "gain", *args]) == 0
    at = _app("runs")
    _no_exceptions(at)
    captions = [c.value for c in at.caption]
    assert any("loss this method minimises" in c for c in captions)
    assert not any("W_x" in c for c in captions)


def _charts(at: AppTest) -> list[str]:
    """The plotly figures a page drew, as their JSON specs."""
    return [c.proto.spec for c in at.get("plotly_chart")]


def test_compare_and_runs_draw_imputation_fid_against_training_time(runs_dir: Path,
                                                                    fake_canvas: types.ModuleType) -> None:
    from misgan_core import method

    spec = DataSpec(mask="square", mask_size=14, limit=64)  # the page's default missingness
    method("mean").create(runs_dir / "mean-curve", spec).train()
    method("convac").create(runs_dir / "convac-curve", spec, {"components": 2, "channels": 2},
                            eval_every=2).train(4)
    at = _app("compare")
    figure = next(c for c in _charts(at) if "Imputation FID against training time" in c)
    for name in ("Mean (1 fit)", "ConvAC (4 steps)", "split test", "500 examples"):
        assert name in figure, name
    assert '"type":"log"' in figure.replace(" ", "")
    # the shipped square-14x14 demo (MisGAN) logged no held-out points: the page says so
    assert any("No curve on split test for MisGAN" in c.value for c in at.caption)
    at.radio(key="compare-time-split").set_value("train").run()
    _no_exceptions(at)
    figure = next(c for c in _charts(at) if "Imputation FID against training time" in c)
    assert "split train" in figure and "MisGAN" in figure  # the demo logged its training-subset curve

    at = _app("runs")
    at.selectbox(key="runs-selected").set_value(str(runs_dir / "convac-curve")).run()
    _no_exceptions(at)
    assert any("imputation FID, split test (500 held-out examples)" in c for c in _charts(at))


def test_compare_shows_a_baseline_in_training_with_its_progress_and_does_not_compare_it(
    runs_with_model: Path, fake_canvas: types.ModuleType
) -> None:
    at = _app("compare")
    for kind in ("mean", "mf", "zero"):
        at.checkbox(key=f"compare-fit-{kind}").uncheck()
    at.checkbox(key="compare-fit-gain").check()
    at.number_input(key="compare-steps-gain").set_value(100_000).run()
    at.button(key="compare-fit").click().run()
    try:
        job = registry().jobs()[-1]
        deadline = time.time() + 60
        while job.snapshot().step < 1 and time.time() < deadline:  # a checkpoint may exist: it still trains
            time.sleep(0.5)
        at.run()
        _no_exceptions(at)
        assert any("GAIN" in m.value and "training" in m.value and "compared when done" in m.value
                   for m in at.markdown)
        assert not [c for c in at.checkbox if c.key == "compare-use-gain"]
        # the MisGAN selector holds a folder and defaults to the finished run for this missingness
        assert at.selectbox(key="compare-misgan").value.endswith("demo-mnist-fc-square14")
    finally:
        registry().stop_all(timeout=60)


def test_home_promises_the_time_this_machine_measured(runs_with_model: Path) -> None:
    config = json.loads((runs_with_model / "config.json").read_text())
    config["steps"] = 600
    (runs_with_model / "config.json").write_text(json.dumps(config))
    with (runs_with_model / "metrics.jsonl").open("a") as log:
        log.write(json.dumps({"step": 600, "time": 300.0}) + "\n")  # 2 generator steps per second
    at = _app()
    text = " ".join(m.value for m in at.markdown)
    assert "2.00 generator steps per second" in text and "about 16m 40s" in text  # 2,000 steps at 2/s
    assert "within a few minutes" not in text


def test_broken_run_folders_leave_every_page_working(runs_with_model: Path, fake_canvas) -> None:
    root = runs_with_model.parent
    for name, text in (("bad-json", "{not json"), ("bad-types", '{"kind": "misgan", "steps": "ten"}'),
                       ("bad-kind", '{"kind": "vae"}'), ("bad-data", '{"kind": "gain", "data": [1]}')):
        (root / name).mkdir()
        (root / name / "config.json").write_text(text)
    (root / "tiny-imp" / "metrics.jsonl").open("a").write('[1, 2]\n"text"\n{"step": "x"}\n')
    for page in ("home", "train", "inpaint", "compare", "runs"):
        at = _app(page)
        _no_exceptions(at)
    table = _app("runs").dataframe[0].value
    assert sum(1 for p in table["problem"] if p) == 4


def test_own_data_paths_outside_the_data_and_runs_folders_are_refused(runs_dir: Path) -> None:
    at = _app("train")
    box = at.selectbox(key="train-dataset")
    box.set_value(next(o for o in box.options if o.startswith("your own data"))).run()
    at.text_input(key="train-own-path").set_value("/etc").run()
    _no_exceptions(at)
    assert any("reads data only from under" in e for e in _errors(at))
    assert not any("/etc" in e and "exist" in e for e in _errors(at))  # says nothing of what is there


# ---------------------------------------------------------------------------------------------
# Theory


def test_theory_shows_equal_null_spaces_and_identifiability(runs_dir: Path) -> None:
    at = _app("theory")
    assert any("identical" in s.value for s in at.success)
    assert _metric(at, "Null space dimension") == "1"
    at.selectbox(key="theory-p").set_value("uniform").run()
    assert any("No: another distribution" in w.value for w in at.warning)
    at.selectbox(key="theory-p").set_value("sparse").run()
    at.number_input(key="theory-support").set_value(1).run()
    assert any(s.value.startswith("Yes") for s in at.success)
    box = at.selectbox(key="theory-q")
    box.set_value("independent dropout").run()
    _no_exceptions(at)
    assert _metric(at, "Null space dimension") == "0"
    assert any("invertible" in i.value for i in at.info)
    at.number_input(key="theory-n").set_value(4)
    at.number_input(key="theory-k").set_value(4)
    at.run()
    _no_exceptions(at)
    assert not _errors(at)  # 4 pixels offer at most 3 values: never a size it then refuses


def test_theory_mnar_case_contrasts_unrestricted_and_self_masking(runs_dir: Path) -> None:
    at = _app("theory")
    table = at.dataframe[-2].value
    verdict = dict(zip(table["mechanisms allowed"], table["p_x identified"], strict=True))
    assert verdict == {"unrestricted": "no", "self-masking": "yes"}
    assert "another p_x (unrestricted)" in at.dataframe[-1].value.columns
    at.selectbox(key="theory-mnar-px").set_value("independent").run()
    _no_exceptions(at)
    table = at.dataframe[-2].value
    assert list(table["p_x identified"]) == ["no", "no"]


def test_train_settings_survive_visits_to_two_pages_without_the_session_state_warning(
    runs_dir: Path, fake_canvas: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamlit.elements.lib import policies

    warned: list[str] = []
    monkeypatch.setattr(policies, "_shown_default_value_warning", False)  # it is logged once per process
    monkeypatch.setattr(policies._LOGGER, "warning", lambda msg, *args, **kw: warned.append(msg % args))
    at = _app("train")
    box = at.selectbox(key="train-mask")
    box.set_value(next(o for o in box.options if o.startswith("Self-masking"))).run()
    at.radio(key="train-direction").set_value("low").run()  # "dark ones"
    at.number_input(key="train-steps").set_value(1234)
    at.checkbox(key="train-imputer").set_value(False)
    at.selectbox(key="train-precision").set_value("bf16")
    at.number_input(key="train-batch-size").set_value(32).run()
    for page in ("home", "inpaint", "train"):
        at.switch_page(f"../pages/{page}.py").run()
        _no_exceptions(at)
    assert at.selectbox(key="train-mask").value.startswith("Self-masking")
    assert at.radio(key="train-direction").value == "low"
    assert at.number_input(key="train-steps").value == 1234
    assert at.checkbox(key="train-imputer").value is False
    assert at.selectbox(key="train-precision").value == "bf16"
    assert at.number_input(key="train-batch-size").value == 32
    assert not [w for w in warned if "Session State API" in w], warned


def test_train_caps_a_huge_step_count_with_a_message(runs_dir: Path) -> None:
    at = _app("train")
    at.number_input(key="train-steps").set_value(1e9).run()  # what the browser reads from "1e9"
    _no_exceptions(at)
    assert any("Generator steps: 1,000,000,000 is more" in w.value and "using 1,000,000" in w.value
               for w in at.warning)
    at.number_input(key="train-limit").set_value(200)
    at.number_input(key="train-fid-every").set_value(0).run()
    at.button(key="train-start").click().run()
    _no_exceptions(at)
    assert registry().jobs()[-1].snapshot().target == 1_000_000  # capped, not read as 1
    registry().stop_all(timeout=60)


def test_theory_offers_only_sizes_it_can_compute(runs_dir: Path) -> None:
    at = _app("theory")
    at.number_input(key="theory-k").set_value(4).run()
    at.number_input(key="theory-n").set_value(4).run()
    _no_exceptions(at)
    assert at.number_input(key="theory-k").value == 3 and at.number_input(key="theory-k").max == 3
    assert not _errors(at)
    assert any("openreview" in m.value for m in at.caption)


def _npz_upload() -> bytes:
    x = np.random.default_rng(0).random((40, 28, 28)).astype(np.float32)
    x[:, :10] = np.nan  # the top rows missing
    buf = io.BytesIO()
    np.savez(buf, x=x)
    return buf.getvalue()


def test_train_takes_an_uploaded_npz_and_a_zip_of_pngs(runs_dir: Path, tmp_path: Path, monkeypatch) -> None:
    import zipfile

    from PIL import Image

    monkeypatch.setenv("MISGAN_DATA_DIR", str(tmp_path / "data"))
    at = _app("train")
    box = at.selectbox(key="train-dataset")
    box.set_value(next(o for o in box.options if o.startswith("your own data"))).run()
    at.file_uploader(key="train-upload").set_value(("mine.npz", _npz_upload(), "application/octet-stream")).run()
    _no_exceptions(at)
    assert not _errors(at)
    kept = list((tmp_path / "data" / "uploads").glob("mine-*.npz"))
    assert len(kept) == 1 and _metric(at, "Missing in these examples") == f"{10 / 28:.1%}"
    assert not at.button(key="train-start").disabled
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        for i in range(3):
            png = io.BytesIO()
            Image.new("LA", (12, 12), (200, 255 if i else 0)).save(png, "PNG")
            z.writestr(f"../../evil/{i}.png", png.getvalue())  # names must not escape the uploads folder
    at.file_uploader(key="train-upload").set_value(("pngs.zip", archive.getvalue(), "application/zip")).run()
    _no_exceptions(at)
    assert not _errors(at) and not (tmp_path / "evil").exists()
    assert len(list((tmp_path / "data" / "uploads").glob("pngs-*/*.png"))) == 3
    at.file_uploader(key="train-upload").set_value(("bad.npz", b"not an npz", "application/octet-stream")).run()
    _no_exceptions(at)
    assert any("Cannot use bad.npz" in e for e in _errors(at))


def test_a_downloadable_dataset_offers_a_download_and_says_why_it_failed(runs_dir: Path, tmp_path, monkeypatch):
    from misgan_core import catalog

    monkeypatch.setenv("MISGAN_DATA_DIR", str(tmp_path / "data"))

    import dataclasses

    from misgan_core import data

    def offline(*args: object) -> None:  # what torchvision's download meets on a machine without network
        raise OSError("Network is unreachable")

    monkeypatch.setitem(data.DATASETS, "cifar10", dataclasses.replace(data.DATASETS["cifar10"], loader=offline))
    at = _app("train")
    box = at.selectbox(key="train-dataset")
    box.set_value(next(o for o in box.options if o.startswith("cifar10"))).run()
    assert any(str(tmp_path / "data") in e for e in _errors(at))
    at.button(key="train-download").click().run()
    _no_exceptions(at)
    assert any("could not download cifar10" in e and "no network" in e for e in _errors(at))
    # one readable line: no exception name, no command-line hint
    assert not any("--download" in e or "OSError" in e or "\n" in e for e in _errors(at))
    assert catalog.user_data_roots()[0] == (tmp_path / "data").resolve()


def test_train_refuses_hostile_uploads_in_one_line_and_keeps_working(runs_dir: Path, tmp_path: Path,
                                                                     monkeypatch) -> None:
    from bench.hostile_uploads import aes, big_png_zip, encrypted, png_bytes, small_npz, zip_bytes

    monkeypatch.setenv("MISGAN_DATA_DIR", str(tmp_path / "data"))
    small = zip_bytes({f"{i}.png": png_bytes(12, 12, "LA", (200, 255)) for i in range(3)})
    at = _app("train")
    box = at.selectbox(key="train-dataset")
    box.set_value(next(o for o in box.options if o.startswith("your own data"))).run()
    for name, data, said in (("bomb.zip", big_png_zip(25, 6000), "would take 6.7 GiB of memory once decoded"),
                             ("locked.zip", encrypted(small), "is encrypted"),
                             ("aes.zip", aes(small), "compression method 99"),
                             ("aes.npz", aes(small_npz()), "compression method 99")):
        at.file_uploader(key="train-upload").set_value((name, data, "application/octet-stream")).run()
        _no_exceptions(at)
        assert any(e.startswith(f"Cannot use {name}: ") and said in e for e in _errors(at)), _errors(at)
    at.file_uploader(key="train-upload").set_value(("mine.npz", small_npz(), "application/octet-stream")).run()
    _no_exceptions(at)
    assert not _errors(at) and not at.button(key="train-start").disabled
    assert [p.name[:5] for p in (tmp_path / "data" / "uploads").iterdir()] == ["mine-"]


def test_pages_tell_the_users_errors_from_bugs() -> None:
    def script() -> None:
        import streamlit as st

        from misgan_core import OptionError
        from workbench import widgets

        with widgets.guard("Could not start"):
            raise OptionError("steps must be at least 1; got 0")
        with widgets.guard("Could not delete"):
            raise TypeError("planted bug")
        st.write("still here")

    at = AppTest.from_function(script).run()
    _no_exceptions(at)
    assert _errors(at) == ["Could not start: steps must be at least 1; got 0",
                           "Could not delete: internal error: TypeError: planted bug (traceback in the server's "
                           "log; please report it)"]
    assert at.markdown[0].value == "still here"
