"""Run folders under crashes and concurrent use, and bad input of every kind: a clear one-line error or a valid
result, never another exception, never lost or changed data."""

from __future__ import annotations

import io
import itertools
import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from misgan_core import CheckpointError, DatasetError, DataSpec, MisGAN, MisGANConfig, RunDir, open_run
from misgan_core.catalog import run_info
from misgan_core.cli import main
from misgan_core.data import incomplete_from_arrays, load_user_data
from misgan_core.export import ImageInputError, image_to_tensor
from misgan_core.runs import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _tiny_run(path: Path, steps: int = 2, **kw) -> MisGAN:
    config = MisGANConfig(data=DataSpec(limit=64), steps=steps, batch_size=16, fid_every=0, imputer=True,
                          sample_every=1000, **kw)
    return MisGAN(config, run_dir=path).train()


def _snapshot(folder: Path) -> dict[str, tuple[float, bytes]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


# -- fuzzing the readers ------------------------------------------------------------------------------


def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@FUZZ
@given(data=st.binary(max_size=600), cut=st.integers(0, 2000), seed=st.integers(0, 2 ** 16))
def test_npz_loader_gives_a_dataset_or_a_clear_error(tmp_path, data, cut, seed) -> None:
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(0, 5, size=int(rng.integers(1, 5))))
    dtype = rng.choice(["float32", "float64", "uint8", "int16", "complex64", "bool"])
    valid = _npz_bytes(x=(rng.random(shape) * 2 - 0.5).astype(dtype), m=rng.integers(-1, 3, size=shape))
    for i, blob in enumerate((data, valid, valid[:cut])):
        path = tmp_path / f"f{i}.npz"
        path.write_bytes(blob)
        try:
            out = load_user_data(path)
        except DatasetError as err:
            assert str(err) and "\n" not in str(err).strip()
        else:
            observed = out.m.bool().expand_as(out.x)
            assert out.x.dtype == torch.float32 and torch.isfinite(out.x).all()
            assert ((out.x[observed] >= 0) & (out.x[observed] <= 1)).all() and set(out.m.unique().tolist()) <= {0, 1}


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_claiming(width: int, height: int) -> bytes:
    """A small, well-formed PNG whose header claims width x height pixels (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + \
        _chunk(b"IEND", b"")


@FUZZ
@given(blob=st.binary(max_size=400), cut=st.integers(1, 300))
def test_png_folder_loader_gives_a_dataset_or_a_clear_error(tmp_path, blob, cut) -> None:
    from PIL import Image

    folder = tmp_path / "pngs"
    folder.mkdir(exist_ok=True)
    for f in folder.iterdir():
        f.unlink()
    good = io.BytesIO()
    Image.new("LA", (8, 8), (200, 255)).save(good, "PNG")
    (folder / "a.png").write_bytes(good.getvalue())
    (folder / "b.png").write_bytes(blob if blob[:1] != b"\x89" else good.getvalue()[:cut])
    try:
        out = load_user_data(folder)
    except DatasetError as err:
        assert "\n" not in str(err).strip()
    else:
        assert out.shape == (1, 8, 8) and len(out) == 2


def test_decompression_bombs_and_16_bit_pngs(tmp_path) -> None:
    from PIL import Image

    bomb = tmp_path / "bomb"
    bomb.mkdir()
    (bomb / "a.png").write_bytes(_png_claiming(20000, 20000))
    with pytest.raises(DatasetError, match="pixels"):
        load_user_data(bomb)
    (bomb / "a.png").write_bytes(_png_claiming(8000, 8000))  # under Pillow's own limit, over ours
    with pytest.raises(DatasetError, match="8000x8000"):
        load_user_data(bomb)
    with pytest.raises(ImageInputError):
        image_to_tensor(_png_claiming(20000, 20000), (1, 28, 28))
    wide = tmp_path / "wide"
    wide.mkdir()
    values = np.full((4, 4), 32768, dtype=np.uint16)  # mid grey in 16 bits
    Image.fromarray(values).save(wide / "a.png")
    out = load_user_data(wide)
    assert float(out.x.mean()) == pytest.approx(128 / 255, abs=1 / 255)  # scaled, not clipped to white


@pytest.mark.parametrize("m,message", [
    (np.full((2, 3, 4, 4), 2), "only 0"), (np.full((2, 3, 4, 4), -1), "only 0"),
])
def test_per_channel_masks_with_bad_values_are_refused(m, message) -> None:
    with pytest.raises(DatasetError, match=message):
        incomplete_from_arrays(np.random.rand(2, 3, 4, 4).astype(np.float32), m)


def test_complex_data_is_refused() -> None:
    with pytest.raises(DatasetError, match="real numbers"):
        incomplete_from_arrays(np.ones((2, 4, 4), dtype=np.complex64))


@FUZZ
@given(blob=st.binary(max_size=300))
def test_uploads_give_an_image_or_a_clear_error(blob) -> None:
    try:
        out = image_to_tensor(blob, (1, 28, 28))
    except ImageInputError as err:
        assert str(err)
    else:
        assert out.shape == (1, 1, 28, 28)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=3), max_leaves=8)


_COPIES = itertools.count()


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("good") / "run"
    _tiny_run(path)
    return path


@pytest.mark.slow
@FUZZ
@given(field=st.sampled_from(["arch", "steps", "data", "imputer", "batch_size", "kind", "tau", "betas", "lr"]),
       value=json_values, lines=st.lists(json_values, max_size=5))
def test_config_and_metrics_fuzz_give_a_listing_and_a_clear_error(tmp_path, good_run, field, value, lines) -> None:
    import shutil

    run = tmp_path / f"r{next(_COPIES)}"
    shutil.copytree(good_run, run)
    config = json.loads((run / "config.json").read_text())
    config[field] = value
    (run / "config.json").write_text(json.dumps(config))
    with open(run / "metrics.jsonl", "a") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")
    info = run_info(run)  # never raises: a broken folder is listed with its reason
    assert isinstance(info.step, int) and isinstance(info.title, str)
    assert all(isinstance(r, dict) for r in read_jsonl(run / "metrics.jsonl"))
    try:
        opened = open_run(run)
    except (CheckpointError, DatasetError, ValueError) as err:
        assert str(err)
    else:
        assert opened.step == 2


def test_a_state_file_holding_a_tensor_or_a_corrupt_best_file_is_a_clear_error(tmp_path, capsys) -> None:
    _tiny_run(tmp_path / "r")  # checkpoints at step 1 (kept as the previous pair) and step 2
    torch.save(torch.zeros(3), tmp_path / "r" / "state.pt")
    assert open_run(tmp_path / "r").step == 1  # falls back to the previous checkpoint, and says so
    assert "using the previous one, step 1" in capsys.readouterr().err
    torch.save(torch.zeros(3), tmp_path / "r" / "state.prev.pt")
    with pytest.raises(CheckpointError, match="state.pt is corrupt"):
        open_run(tmp_path / "r")
    assert main(["baseline", "gain", "--limit", "64", "--steps", "2", "--out", str(tmp_path / "g")]) == 0
    (tmp_path / "g" / "best.safetensors").write_bytes(b"not safetensors")
    assert main(["evaluate", str(tmp_path / "g")]) == 2
    assert "best.safetensors is corrupt" in capsys.readouterr().err


def _exit_code(args: list[str]) -> int:
    try:
        return main(args)
    except SystemExit as err:  # argparse's own errors
        return int(err.code)


@pytest.mark.parametrize("args,message", [
    (["train", "--tau", "nan"], "tau must be a finite number"),
    (["train", "--threads", "0"], "must be at least 1"),
    (["train", "--limit", "-1"], "limit must be a positive"),
    (["train", "--fid-every", "-1"], "must be 0 or more"),
    (["train", "--checkpoint-minutes", "nan"], "checkpoint_minutes"),
    (["baseline", "gain", "--set", "colour=3"], "has no option 'colour'"),
    (["train", "--dataset", "missing.npz"], "does not exist"),
])
def test_bad_options_are_one_line_errors_and_leave_nothing(tmp_path, capsys, args, message) -> None:
    assert _exit_code([*args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out" / "config.json").exists()


def test_resume_with_negative_steps_is_refused(good_run, capsys) -> None:
    assert _exit_code(["resume", str(good_run), "--steps", "-5"]) == 2
    assert "must be at least 1" in capsys.readouterr().err


def test_nan_losses_stop_training_and_write_nothing_of_the_diverged_steps(tmp_path) -> None:
    from misgan_core.training import Cadence, TrainingDiverged, drive

    class Diverging:
        step, train_time, history, grids, can_save, run = 0, 0.0, [], {}, True, RunDir(tmp_path)
        saves: list[int] = []

        def begin_training(self) -> None: ...

        def train_step(self) -> dict:
            self.step += 1
            return {"loss": float("nan") if self.step >= 15 else 1.0}

        def log(self, records: list[dict]) -> dict:
            return {"step": self.step, **records[-1]}

        def evaluate_point(self) -> None: ...

        def make_grids(self, n: int = 64, save: bool = True) -> dict:
            return {}

        def save(self) -> None:
            self.saves.append(self.step)

    trainer = Diverging()
    with pytest.raises(TrainingDiverged, match="diverged by step 20"):
        drive(trainer, 100, Cadence(log_every=10, checkpoint_every=10))
    assert trainer.saves == [1, 10]  # never a checkpoint of a NaN step


def test_training_time_leaves_out_evaluation_points_and_grids(tmp_path) -> None:
    """Curves and the time-to-reach table charge a method for its training, not for how often it is evaluated:
    a trainer whose steps take 20 ms and whose evaluations and grids take 150 ms logs about 20 ms a step."""
    from misgan_core.training import Cadence, drive

    class SlowToEvaluate:
        step, train_time, history, grids, can_save, run = 0, 0.0, [], {}, False, RunDir(tmp_path)
        evaluated_at: list[tuple[int, float]] = []

        def begin_training(self) -> None: ...

        def train_step(self) -> dict:
            time.sleep(0.02)
            self.step += 1
            return {"loss": 1.0}

        def log(self, records: list[dict]) -> dict:
            return {"step": self.step, "time": self.train_time}

        def evaluate_point(self) -> None:
            self.evaluated_at.append((self.step, self.train_time))
            time.sleep(0.15)

        def make_grids(self, n: int = 64, save: bool = True) -> dict:
            time.sleep(0.15)
            return {}

        def save(self) -> None: ...

    trainer = SlowToEvaluate()
    drive(trainer, 6, Cadence(log_every=0, eval_every=1, sample_every=2, checkpoint_every=0, checkpoint_minutes=0))
    assert [s for s, _ in trainer.evaluated_at] == [1, 2, 3, 4, 5, 6]
    times = [t for _, t in trainer.evaluated_at]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(0.02 <= gap < 0.1 for gap in gaps)  # one step each, no 150 ms pause
    assert 0.12 <= trainer.train_time < 0.5  # six steps; the 1.5 s of evaluations and grids left out


def test_a_curve_gets_a_point_at_its_last_step_however_training_ends(tmp_path) -> None:
    """Points every eval_every steps, and one where training ends: at the last step, or where a job or a time
    budget stopped it between two points (no second one where a point itself stopped it)."""
    from misgan_core.training import Cadence, StopTraining, drive

    class Counting:
        step, train_time, history, grids, can_save, run = 0, 0.0, [], {}, False, RunDir(tmp_path)

        def __init__(self, stop_at_point: int | None = None) -> None:
            self.points: list[int] = []
            self.stop_at_point = stop_at_point

        def begin_training(self) -> None: ...

        def train_step(self) -> dict:
            self.step += 1
            return {"loss": 1.0}

        def log(self, records: list[dict]) -> dict:
            return {"step": self.step}

        def evaluate_point(self) -> None:
            self.points.append(self.step)
            if self.step == self.stop_at_point:
                time.sleep(0.3)
                raise StopTraining  # patience: the point that stops training is the last

        def make_grids(self, n: int = 64, save: bool = True) -> dict:
            return {}

        def save(self) -> None: ...

    cadence = Cadence(log_every=0, eval_every=4, sample_every=0, checkpoint_every=0, checkpoint_minutes=0)
    trainer = Counting()
    drive(trainer, 10, cadence)
    assert trainer.points == [4, 8, 10]

    def stop_at_6(t: Counting) -> None:
        if t.step == 6:
            raise StopTraining
    trainer = Counting()
    drive(trainer, 10, cadence, callback=stop_at_6)
    assert trainer.points == [4, 6]

    trainer = Counting(stop_at_point=8)
    drive(trainer, 20, cadence)
    assert trainer.points == [4, 8] and trainer.train_time < 0.25  # the stopping point's 0.3 s is not training


# -- readers never write ------------------------------------------------------------------------------


def test_readers_change_nothing_in_a_run_folder(tmp_path) -> None:
    run = tmp_path / "r"
    _tiny_run(run)
    with open(run / "metrics.jsonl", "a") as f:  # lines a training still running wrote after its checkpoint
        f.write(json.dumps({"step": 3, "time": 9.0, "loss_dx": 1.0}) + "\n")
    before = _snapshot(run)
    assert main(["evaluate", str(run), "--samples", "20"]) == 0
    assert main(["sample", str(run), "-n", "4", "--out", str(tmp_path / "s.png")]) == 0
    assert main(["impute", str(run), "-n", "2", "--out", str(tmp_path / "i")]) == 0
    assert open_run(run).step == 2 and run_info(run).step == 3
    assert _snapshot(run) == before


# -- one writer per run -------------------------------------------------------------------------------


def _resume_cmd(run: Path, steps: int) -> list[str]:
    return [sys.executable, "-m", "misgan_core", "resume", str(run), "--steps", str(steps), "--threads", "1"]


@pytest.mark.slow
def test_two_resumes_at_once_one_trains_and_the_other_is_told_who(tmp_path) -> None:
    run = tmp_path / "r"
    _tiny_run(run)
    first = subprocess.Popen(_resume_cmd(run, 300), cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and (run / ".lock").read_text().strip() != str(first.pid):
        time.sleep(0.05)
    second = subprocess.run(_resume_cmd(run, 5), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2
    assert f"is being trained by process {first.pid}" in second.stderr
    # readers at the same time work: evaluate from the CLI, and the app's loader (open_run, run_info)
    assert subprocess.run([sys.executable, "-m", "misgan_core", "evaluate", str(run), "--samples", "20"], cwd=ROOT,
                          env=ENV, capture_output=True, timeout=300).returncode == 0
    opened = open_run(run)
    assert opened.imputer is not None and opened.step >= 2 and run_info(run).usable
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    steps = [r["step"] for r in read_jsonl(run / "metrics.jsonl") if "loss_dx" in r]
    assert steps == sorted(set(steps)) and steps[-1] == 302  # no duplicate steps
    # the lock died with its holder: the next resume goes ahead
    assert subprocess.run(_resume_cmd(run, 2), cwd=ROOT, env=ENV, capture_output=True, timeout=300).returncode == 0


def test_a_copy_loaded_before_another_process_trained_on_does_not_overwrite_that_work(tmp_path, capsys) -> None:
    """A trainer (MisGAN or a baseline) loaded at step s, while another process trains the run to s + k, is
    refused when it starts training; the run keeps s + k. `resume --until N` is a no-op once the run has N."""
    from misgan_core.baselines.runs import BaselineRun

    run = tmp_path / "r"
    _tiny_run(run)
    stale = MisGAN.load(run)
    MisGAN.load(run).train(3)  # "the other process"
    with pytest.raises(CheckpointError, match="trained on to step 5 by another process"):
        stale.train(1)
    assert MisGAN.load(run).step == 5
    assert main(["baseline", "gain", "--limit", "64", "--steps", "2", "--out", str(tmp_path / "g")]) == 0
    stale_gain = BaselineRun.load(tmp_path / "g")
    BaselineRun.load(tmp_path / "g").train(2)
    with pytest.raises(CheckpointError, match="by another process"):
        stale_gain.train(1)
    capsys.readouterr()
    assert main(["resume", str(run), "--until", "5"]) == 0 and "nothing to do" in capsys.readouterr().err
    assert main(["resume", str(run), "--until", "7"]) == 0 and MisGAN.load(run).step == 7
    with pytest.raises(SystemExit) as exit_info:  # one or the other: argparse's one-line usage error
        main(["resume", str(run), "--until", "8", "--steps", "1"])
    assert exit_info.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_racing_creates_give_the_folder_to_exactly_one(tmp_path) -> None:
    import threading

    results: list[str] = []

    def create(i: int) -> None:
        try:
            RunDir.create(tmp_path / "same", {"kind": "misgan", "who": i})
            results.append("made")
        except CheckpointError:
            results.append("refused")

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["made"] + ["refused"] * 7
    assert json.loads((tmp_path / "same" / "config.json").read_text())["kind"] == "misgan"


# -- crashes ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_kill_9_at_random_moments_never_leaves_a_mismatched_checkpoint(tmp_path) -> None:
    """Checkpoint after every step, kill -9 at random times (often inside a checkpoint write): the folder
    always resumes from a checkpoint whose weights and state agree, losing at most one checkpoint interval."""
    rng = random.Random(0)
    run = tmp_path / "r"
    cmd = [sys.executable, "-m", "misgan_core", "train", "--limit", "64", "--batch-size", "16", "--steps", "100000",
           "--checkpoint-every", "1", "--fid-every", "0", "--threads", "1", "--imputer", "--out", str(run)]
    subprocess.run([*cmd[:-2], "--steps", "1", "--out", str(run)], cwd=ROOT, env=ENV, check=True, timeout=300)
    trials = 10
    for trial in range(trials):
        proc = subprocess.Popen(_resume_cmd(run, 100000), cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(4.0 + rng.random() * 3.0)  # start-up, then a random moment of training
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        weights, state, _ = RunDir(run).checkpoint_files()
        stamped = json.loads(weights.read_bytes()[8:8 + int.from_bytes(weights.read_bytes()[:8], "little")])
        saved = torch.load(state, weights_only=True)
        assert int(stamped["__metadata__"]["step"]) == int(saved["step"]), trial
        logged = max(r["step"] for r in read_jsonl(run / "metrics.jsonl"))
        assert logged - int(saved["step"]) <= 10, trial  # at most the steps since the last checkpoint
    final = subprocess.run(_resume_cmd(run, 3), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr


def test_paths_that_are_files_or_under_files_are_one_line_errors(tmp_path, capsys) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    for out, message in ((afile, "is a file, not a folder"), (afile / "sub", "cannot make the run folder")):
        assert _exit_code(["train", "--limit", "64", "--steps", "1", "--fid-every", "0", "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
    assert _exit_code(["impute", str(afile), "--out", str(tmp_path / "o")]) == 2
    assert "is a file, not a run folder" in capsys.readouterr().err
    assert afile.read_text() == "not a folder"


# -- deleting a run another process trains ------------------------------------------------------------


@pytest.mark.slow
def test_deleting_a_run_that_a_train_process_holds_is_refused_naming_it(tmp_path) -> None:
    from misgan_core import RunBusy
    from misgan_core.catalog import delete_run

    run = tmp_path / "r"
    train = subprocess.Popen([sys.executable, "-m", "misgan_core", "train", "--steps", "100000", "--limit", "256",
                              "--batch-size", "32", "--fid-every", "0", "--threads", "1", "--out", str(run)],
                             cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (run / "metrics.jsonl").exists():
            time.sleep(0.05)
        assert (run / ".lock").read_text().strip() == str(train.pid)
        with pytest.raises(RunBusy, match=f"is being trained by process {train.pid}"):
            delete_run(run)
        cli = subprocess.run([sys.executable, "-m", "misgan_core", "delete", str(run)], cwd=ROOT, env=ENV,
                             capture_output=True, text=True, timeout=120)
        assert cli.returncode == 2 and f"process {train.pid}" in cli.stderr
        assert (run / "config.json").exists() and train.poll() is None  # the training goes on, its folder intact
    finally:
        train.send_signal(signal.SIGINT)
        _, err = train.communicate(timeout=120)
    assert train.returncode == 130 and "checkpoint was written" in err
    assert main(["delete", str(run)]) == 0 and not run.exists()  # once the training has stopped


def test_temporary_files_of_a_killed_writer_go_when_the_lock_is_next_taken(tmp_path) -> None:
    run = tmp_path / "r"
    _tiny_run(run)
    stale = [run / ".state.pt.k1ll3d.tmp", run / ".model.safetensors.k1ll3d.tmp",
             run / "samples" / ".gx_latest.png.k1ll3d.tmp"]
    for path in stale:
        path.write_bytes(b"\0" * 1000)
    MisGAN.load(run).train(1)
    assert not any(p.exists() for p in stale)
    assert MisGAN.load(run).step == 3


# -- hostile uploads ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_uploads_past_the_memory_budget_are_refused_before_decoding(tmp_path) -> None:
    from bench.hostile_uploads import big_png_zip, measure, zeros_npz

    bomb = measure("bomb.zip", big_png_zip(25, 6000), tmp_path)  # 7.9 KB uploaded, 25 x 36 Mpixels declared
    assert bomb["outcome"].startswith("refused: bomb.zip (25 images) would take 6.7 GiB of memory once decoded")
    assert "MISGAN_DATA_MEMORY" in bomb["outcome"]
    zeros = measure("zeros.npz", zeros_npz(0.25), tmp_path, {"MISGAN_DATA_MEMORY": "64M"})
    assert zeros["outcome"].startswith("refused: zeros.npz would take 256 MiB") and "64 MiB allowed" in zeros["outcome"]
    for result in (bomb, zeros):  # refused from the headers: the process's peak memory did not move
        assert result["peak_mib"] - result["peak_before_mib"] < 50, result
    assert not [p.name for p in (tmp_path / "data" / "uploads").iterdir()]  # nothing kept, nothing staged


def test_own_data_folders_are_held_to_the_same_budget(tmp_path, monkeypatch) -> None:
    from PIL import Image

    for i in range(3):
        Image.new("LA", (100, 100), (200, 255)).save(tmp_path / f"{i}.png")
    assert load_user_data(tmp_path).x.shape == (3, 1, 100, 100)
    monkeypatch.setenv("MISGAN_DATA_MEMORY", "200K")  # 3 x 100 x 100 x (1 + 1) x 4 bytes = 234 KiB
    with pytest.raises(DatasetError, match=r"\(3 images\) would take 234 KiB .* more than the 200 KiB allowed"):
        load_user_data(tmp_path)
    monkeypatch.setenv("MISGAN_DATA_MEMORY", "lots")
    assert main(["train", "--dataset", str(tmp_path), "--out", str(tmp_path / "r")]) == 2


@pytest.mark.parametrize("upload,message", [
    ("encrypted.zip", "encrypted.zip: 0.png is encrypted; save it again without a password"),
    ("aes.zip", "aes.zip: 0.png uses compression method 99, which cannot be read here"),
    ("aes.npz", "aes.npz: x.npy uses compression method 99, which cannot be read here"),
])
def test_encrypted_and_unsupported_archives_are_one_line(tmp_path, monkeypatch, upload, message) -> None:
    from misgan_core.catalog import save_upload

    monkeypatch.setenv("MISGAN_DATA_DIR", str(tmp_path))
    with pytest.raises(DatasetError) as caught:
        save_upload(upload, hostile_files()[upload])
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
    assert not list((tmp_path / "uploads").iterdir())


def hostile_files() -> dict[str, bytes]:
    from bench.hostile_uploads import aes, encrypted, png_bytes, small_npz, zip_bytes

    small = zip_bytes({f"{i}.png": png_bytes(12, 12, "LA", (200, 255)) for i in range(3)})
    return {"encrypted.zip": encrypted(small), "aes.zip": aes(small), "aes.npz": aes(small_npz())}


def test_a_zip_member_with_a_long_name_is_kept(tmp_path, monkeypatch) -> None:
    from bench.hostile_uploads import png_bytes, zip_bytes
    from misgan_core.catalog import save_upload

    monkeypatch.setenv("MISGAN_DATA_DIR", str(tmp_path))
    path = save_upload("long.zip", zip_bytes({"d" * 300 + ".png": png_bytes(12, 12, "LA", (200, 255)),
                                              "e" * 300 + ".png": png_bytes(12, 12, "LA", (100, 255))}))
    assert load_user_data(path).x.shape == (2, 1, 12, 12)


def test_concurrent_uploads_of_the_same_file_neither_collide_nor_leak(tmp_path, monkeypatch) -> None:
    import shutil
    from concurrent.futures import ThreadPoolExecutor

    from bench.hostile_uploads import png_bytes, small_npz, zip_bytes
    from misgan_core.catalog import save_upload

    monkeypatch.setenv("MISGAN_DATA_DIR", str(tmp_path))
    archive = zip_bytes({f"{i}.png": png_bytes(28, 28, "LA", (i * 20, 255)) for i in range(50)})
    for name, data, count in (("same.zip", archive, 50), ("same.npz", small_npz(), 40)):
        for _ in range(3):  # eight sessions upload the same file at once, three times over
            with ThreadPoolExecutor(8) as pool:
                paths = list(pool.map(save_upload, [name] * 8, [data] * 8))
            assert len(set(paths)) == 1 and load_user_data(paths[0]).x.shape[0] == count
            assert [p.name for p in (tmp_path / "uploads").iterdir()] == [paths[0].name]  # no staging left
            shutil.rmtree(paths[0]) if paths[0].is_dir() else paths[0].unlink()


def test_a_16_bit_grey_png_is_scaled_not_clipped() -> None:
    from bench.hostile_uploads import sixteen_bit_png

    x = image_to_tensor(sixteen_bit_png(0.46), (1, 12, 12))
    assert abs(float(x.mean()) - 0.46) < 0.01


# -- the app is private whatever folder it starts in ----------------------------------------------------


def _listening(port: int) -> list[str]:
    """Hex local addresses of the sockets listening on `port` (/proc/net/tcp and tcp6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                address, hex_port = fields[1].split(":")
                if fields[3] == "0A" and int(hex_port, 16) == port:
                    found.append(address)
    return found


def test_the_app_listens_on_loopback_only_from_another_folder_with_its_own_config(tmp_path) -> None:
    import socket
    import urllib.request

    elsewhere = tmp_path / "elsewhere"
    (elsewhere / ".streamlit").mkdir(parents=True)
    (elsewhere / ".streamlit" / "config.toml").write_text(
        '[server]\naddress = "0.0.0.0"\n[client]\nshowErrorDetails = "full"\n')  # a careless folder's config
    env = {k: v for k, v in ENV.items() if not k.startswith("STREAMLIT_")}
    # the settings Streamlit resolves for the app's script, started from that folder
    resolved = subprocess.run(
        [sys.executable, "-c", "from streamlit import config; config._main_script_path = " + repr(
            str(ROOT / "workbench" / "Home.py")) + "; config.get_config_options(force_reparse=True); "
         "print(config.get_option('server.address'), config.get_option('client.showErrorDetails'))"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert resolved.stdout.split() == ["127.0.0.1", "none"], resolved.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "workbench" / "Home.py"),
                               "--server.headless", "true", "--server.port", str(port),
                               "--server.fileWatcherType", "none"],
                              cwd=elsewhere, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and not _listening(port):
            assert server.poll() is None, "streamlit exited"
            time.sleep(0.25)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=10) as answer:
            assert answer.status == 200
        assert _listening(port) and all(a in ("0100007F", "00000000000000000000000001000000")
                                        for a in _listening(port)), _listening(port)
    finally:
        server.terminate()
        server.wait(60)


def test_the_app_refuses_to_serve_on_a_network_address_nobody_asked_for(monkeypatch) -> None:
    from streamlit import config

    from workbench import state

    monkeypatch.setattr(config, "_main_script_path", str(ROOT / "workbench" / "Home.py"), raising=False)
    monkeypatch.delenv("MISGAN_ALLOW_NETWORK", raising=False)
    options = {"server.address": ("0.0.0.0", "/tmp/elsewhere/.streamlit/config.toml")}
    monkeypatch.setattr(config, "get_option", lambda key: options[key][0])
    monkeypatch.setattr(config, "get_where_defined", lambda key: options[key][1])
    assert "you did not ask for that" in state.public_address_refusal()
    options["server.address"] = (None, "<default>")
    assert "every interface" in state.public_address_refusal()
    options["server.address"] = ("0.0.0.0", "command-line argument or environment variable")
    assert state.public_address_refusal() is None  # the user's own flag
    options["server.address"] = ("0.0.0.0", "/tmp/elsewhere/.streamlit/config.toml")
    monkeypatch.setenv("MISGAN_ALLOW_NETWORK", "1")
    assert state.public_address_refusal() is None


def test_an_unknown_key_inside_the_data_entry_is_refused_like_a_top_level_one(tmp_path, capsys) -> None:
    _tiny_run(tmp_path / "misgan")
    assert main(["baseline", "mean", "--limit", "64", "--out", str(tmp_path / "mean")]) == 0
    for run, where in ((tmp_path / "misgan", "top"), (tmp_path / "misgan", "data"), (tmp_path / "mean", "data")):
        good = (run / "config.json").read_text()
        config = json.loads(good)
        (config if where == "top" else config["data"])["colour"] = "blue"
        (run / "config.json").write_text(json.dumps(config))
        with pytest.raises(CheckpointError, match=r"unknown fields \['colour'\]"):
            open_run(run)
        capsys.readouterr()
        assert main(["evaluate", str(run)]) == 2
        assert "unknown fields ['colour']" in capsys.readouterr().err
        (run / "config.json").write_text(good)
