"""Background jobs and the command line, as the UI and scripts use them."""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from misgan_core import DataSpec, MisGAN, MisGANConfig
from misgan_core.catalog import resume_job, start_misgan_job
from misgan_core.jobs import JobRegistry
from misgan_core.spec import FIELDS as DATA_FIELDS

ROOT = Path(__file__).resolve().parents[1]


def small(**kw) -> MisGANConfig:
    base = dict(limit=256, batch_size=32, steps=100000, sample_every=1000, checkpoint_every=1000, log_every=1,
                fid_every=0)
    base.update(kw)
    data = DataSpec(**{k: base.pop(k) for k in DATA_FIELDS if k in base})
    return MisGANConfig(data=data, **base)


def wait_for(pred, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_job_start_pause_resume_stop_and_snapshot(tmp_path):
    reg = JobRegistry()
    job = start_misgan_job(small(imputer=True), run_dir=tmp_path / "run", registry_=reg)[0]
    assert wait_for(lambda: job.snapshot().step >= 2)
    snap = job.snapshot()
    assert snap.status == "running" and snap.target == 100000 and snap.history
    assert {"data", "gx", "gm", "imputed"} <= set(snap.grids)
    snap.grids["gx"].zero_()  # a snapshot is a copy: scribbling on it leaves the job alone
    assert job.snapshot().grids["gx"].abs().sum() > 0
    job.pause()
    assert wait_for(lambda: job.snapshot().status == "paused")
    time.sleep(0.5)
    paused_at = job.snapshot().step
    time.sleep(1.0)
    assert job.snapshot().step <= paused_at + 1  # at most the step in flight finishes
    job.resume()
    assert wait_for(lambda: job.snapshot().step > paused_at + 2)
    job.stop()
    snap = job.snapshot()
    assert snap.status == "stopped" and not job.alive
    state_step = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])["step"]
    assert state_step == snap.step  # stopping writes a checkpoint and log at the last step
    assert (tmp_path / "run" / "model.safetensors").exists()


def test_registry_returns_the_running_job_instead_of_a_twin(tmp_path):
    reg = JobRegistry()
    a = start_misgan_job(small(), run_dir=tmp_path / "run", registry_=reg)[0]
    b = start_misgan_job(small(), run_dir=str(tmp_path / "run"), registry_=reg)[0]
    assert a is b and len(reg.jobs()) == 1
    reg.stop_all()
    assert not a.alive and a.snapshot().status == "stopped"
    # once stopped, the same folder resumes rather than restarting
    c = resume_job(tmp_path / "run", steps=2, registry_=reg)
    c.join(60)
    assert c.snapshot().status == "finished" and c.snapshot().step == a.snapshot().step + 2


def test_a_failing_job_reports_its_error_and_keeps_the_registry_alive(tmp_path):
    reg = JobRegistry()
    job = start_misgan_job(small(dataset="no-such-data"), run_dir=tmp_path / "bad", registry_=reg)[0]
    job.join(30)
    snap = job.snapshot()
    assert snap.status == "failed" and "unknown dataset 'no-such-data'" in snap.error


def run_cli(*args, cwd=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "misgan_core", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=timeout, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.slow
def test_cli_help_for_each_command():
    for cmd in ("train", "resume", "sample", "impute", "datasets"):
        out = run_cli(cmd, "--help")
        assert out.returncode == 0 and "usage:" in out.stdout, cmd


def test_cli_datasets_lists_one_line_per_dataset():
    out = run_cli("datasets")
    assert out.returncode == 0
    lines = {line.split()[0]: line.split()[1] for line in out.stdout.splitlines()}
    assert lines["mnist-5k"] == "present"
    assert set(lines) == {"mnist-5k", "uci-digits", "mnist", "fashion-mnist", "cifar10", "celeba"}
    assert lines["uci-digits"] == "present" and "evaluation only" in out.stdout
    assert lines["cifar10"] in ("present", "downloadable")


@pytest.mark.parametrize("args,message", [
    (["--dataset", "nope"], "unknown dataset 'nope'"),
    (["--mask", "blocks"], "invalid choice: 'blocks'"),
    (["--mask", "square", "--mask-size", "40"], "square size 40"),
    (["--dataset", "cifar10", "--data-dir", "/nonexistent"], "not on disk"),
    (["--steps", "0"], "steps must be at least 1"),
    (["--precision", "fp16"], "invalid choice: 'fp16'"),
])
def test_cli_bad_options_print_a_message_not_a_traceback(tmp_path, args, message):
    out = run_cli("train", "--out", str(tmp_path / "r"), *args)
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "r" / "model.safetensors").exists()


def test_cli_resume_of_a_broken_run_keeps_the_files(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.json").write_text("{not json")
    out = run_cli("resume", str(run), "--steps", "3")
    assert out.returncode == 2 and "config.json is unreadable" in out.stderr
    assert (run / "config.json").read_text() == "{not json"


@pytest.mark.slow
def test_cli_fc_training_writes_a_run_then_resume_sample_impute(tmp_path):
    out = run_cli("train", "--dataset", "mnist-5k", "--mask", "square", "--mask-size", "14", "--arch", "fc",
                  "--steps", "200", "--out", str(tmp_path / "demo"), "--seed", "0", "--imputer", "--threads", "1",
                  "--fid-every", "0")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.splitlines()[-1])
    assert summary["step"] == 200
    log = [json.loads(line) for line in (tmp_path / "demo" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss_dx"] for r in log if "loss_dx" in r]
    assert len(losses) == 20 and np.isfinite(losses).all()
    assert (tmp_path / "demo" / "samples" / "gx_0000200.png").exists()
    assert (tmp_path / "demo" / "samples" / "imputed_latest.png").exists()
    out = run_cli("resume", str(tmp_path / "demo"), "--steps", "10", "--threads", "1")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1])["step"] == 210
    out = run_cli("sample", str(tmp_path / "demo"), "-n", "16", "--out", str(tmp_path / "s.png"))
    assert out.returncode == 0 and np.load(tmp_path / "s.npy").shape == (16, 1, 28, 28)
    out = run_cli("impute", str(tmp_path / "demo"), "-n", "5", "--draws", "3", "--out", str(tmp_path / "imp"))
    assert out.returncode == 0, out.stderr
    with np.load(tmp_path / "imp.npz") as f:
        assert f["x_imputed"].shape == (3, 5, 1, 28, 28)


@pytest.mark.slow
def test_cli_conv_training_runs_a_few_steps(tmp_path):
    """In bfloat16, which also runs the general (convolutional) critic loss under autocast; a CPU without
    bfloat16 instructions gets a note that it will be slower."""
    import torch

    from misgan_core import native_bf16

    out = run_cli("train", "--arch", "conv", "--mask", "dropout", "--missing-rate", "0.8", "--steps", "3",
                  "--limit", "128", "--batch-size", "16", "--out", str(tmp_path / "conv"), "--fid-every", "0",
                  "--threads", "1", "--precision", "bf16")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1])["step"] == 3
    assert (tmp_path / "conv" / "samples" / "gx_latest.png").exists()
    assert json.loads((tmp_path / "conv" / "config.json").read_text())["precision"] == "bf16"
    assert ("no native bfloat16" in out.stderr) == (not native_bf16(torch.device("cpu")))
    log = [json.loads(line) for line in (tmp_path / "conv" / "metrics.jsonl").read_text().splitlines()]
    assert np.isfinite([r["loss_dx"] for r in log if "loss_dx" in r]).all()


@pytest.mark.slow
@pytest.mark.parametrize("inherited", ["default", "ignored"])
def test_ctrl_c_writes_a_checkpoint_that_resumes(tmp_path, inherited):
    """Also when the command inherits SIGINT ignored (started with `&` from a script, under nohup)."""
    import os
    import signal

    run = tmp_path / "r"
    ignore = signal.SIG_IGN if inherited == "ignored" else signal.SIG_DFL
    proc = subprocess.Popen([sys.executable, "-m", "misgan_core", "train", "--steps", "100000", "--limit", "256",
                             "--batch-size", "32", "--fid-every", "0", "--threads", "1", "--out", str(run)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, ignore))
    assert wait_for(lambda: (run / "metrics.jsonl").exists(), timeout=120)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "checkpoint was written" in err
    assert f"continue with `python -m misgan_core resume {run}`" in err
    out = run_cli("resume", str(run), "--steps", "2", "--threads", "1")
    assert out.returncode == 0, out.stderr
    step = json.loads(out.stdout.splitlines()[-1])["step"]
    assert step >= 12  # at least the first logged steps survived the interrupt


def test_a_job_started_after_another_waits_for_it(tmp_path):
    reg = JobRegistry()
    first = start_misgan_job(small(), run_dir=tmp_path / "a", registry_=reg)[0]
    second = reg.start(str(tmp_path / "b"), lambda: MisGAN(small(steps=2), run_dir=tmp_path / "b"), 2,
                       label="second", after=first)
    assert wait_for(lambda: first.snapshot().status == "running")
    time.sleep(0.5)
    assert second.snapshot().status == "queued" and not (tmp_path / "b").exists()
    first.stop()
    second.join(120)
    assert second.snapshot().status == "finished" and second.snapshot().step == 2
