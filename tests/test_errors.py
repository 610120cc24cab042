"""The command line tells the user's errors from bugs: one line and exit 2 for what the user can fix (the
project's own error types, an OSError on a path they gave), `internal error` with a saved traceback and exit 1
for anything else."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from misgan_core import CheckpointError, DatasetError, MisGANError, OptionError, RunBusy, cli
from misgan_core.cli import main


def _saved(stderr: str) -> Path:
    found = re.search(r"traceback saved to (\S+); please report it\)", stderr)
    assert found, stderr
    return Path(found.group(1))


@pytest.fixture(autouse=True)
def _errors_here(tmp_path, monkeypatch):
    monkeypatch.setenv("MISGAN_ERROR_DIR", str(tmp_path / "errors"))
    monkeypatch.delenv("MISGAN_DEBUG", raising=False)


def test_the_error_types_keep_the_builtin_bases_callers_catch() -> None:
    assert issubclass(OptionError, ValueError) and issubclass(DatasetError, RuntimeError)
    assert issubclass(RunBusy, CheckpointError) and issubclass(CheckpointError, RuntimeError)
    assert all(issubclass(t, MisGANError) for t in (OptionError, DatasetError, CheckpointError, RunBusy))


def test_a_planted_bug_is_an_internal_error_with_a_saved_traceback(monkeypatch, capsys) -> None:
    def planted(*args, **kwargs):
        raise TypeError("planted bug")

    monkeypatch.setattr(cli, "list_datasets", planted)
    assert main(["datasets"]) == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("internal error: TypeError: planted bug (traceback saved to")
    saved = _saved(err)
    assert "Traceback (most recent call last)" in saved.read_text() and "planted" in saved.read_text()


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_prints_the_traceback(monkeypatch, capsys, how) -> None:
    monkeypatch.setattr(cli, "list_datasets", lambda *a, **k: [][1])
    if how == "env":
        monkeypatch.setenv("MISGAN_DEBUG", "1")
    assert main(["datasets", "--debug"] if how == "flag" else ["datasets"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("internal error: IndexError:") and "Traceback (most recent call last)" in err
    assert _saved(err).exists()


def test_a_bad_option_is_still_one_line_and_exit_2(tmp_path, capsys) -> None:
    assert main(["train", "--mask", "square", "--mask-size", "99", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: square size 99") and "\n" not in err
    assert not (tmp_path / "errors").exists()  # no traceback saved for the user's own mistake


def test_an_oserror_on_a_path_the_user_gave_names_it(tmp_path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    # the output folder of `sample` lies under a file: the OS refuses to make it
    demo = Path(__file__).resolve().parents[1] / "misgan_core" / "assets" / "demo-mnist-fc-dropout80"
    assert main(["sample", str(demo), "-n", "2", "--out", str(blocker / "x" / "s.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(blocker) in err and "internal error" not in err


def test_an_oserror_elsewhere_is_an_internal_error(monkeypatch, capsys) -> None:
    def planted(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/somewhere/the/user/never/named")

    monkeypatch.setattr(cli, "list_datasets", planted)
    assert main(["datasets"]) == 1
    assert capsys.readouterr().err.startswith("internal error: PermissionError:")


# -- torch's messages become the project's, with the fix --------------------------------------------------

TINY = ["--limit", "64", "--steps", "2", "--batch-size", "16", "--fid-every", "0", "--threads", "1"]


@pytest.mark.parametrize("args,said", [
    (["train", *TINY, "--device", "meta"], "device 'meta' cannot hold a model's weights"),
    (["baseline", "mean", "--limit", "64", "--device", "meta"], "use --device auto, cpu or cuda"),
    (["train", *TINY, "--seed", "100000000000000000000000"], "--seed must be a whole number from 0 to 9223"),
    (["baseline", "mean", "--limit", "64", "--mask-seed", "-1"], "mask seed must be a whole number from 0 to 2^63 - 1"),
])
def test_torch_failures_the_user_caused_name_the_option(tmp_path, capsys, args, said) -> None:
    try:
        code = main([*args, "--out", str(tmp_path / "r")])
    except SystemExit as err:  # argparse's own refusal
        code = err.code
    assert code == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_baseline_on_cuda_without_a_gpu_says_so_and_leaves_no_folder(tmp_path, capsys) -> None:
    out = str(tmp_path / "r")
    assert main(["baseline", "mean", "--limit", "64", "--device", "cuda", "--out", out]) == 2
    assert "no CUDA GPU is available here; use --device auto or cpu" in capsys.readouterr().err
    assert not Path(out).exists()
    assert main(["baseline", "mean", "--limit", "64", "--out", out]) == 0  # the same --out works


@pytest.mark.parametrize("failure,code", [(OptionError("planted"), 2), (KeyboardInterrupt(), 130)])
def test_a_command_failing_before_its_first_checkpoint_leaves_no_folder(tmp_path, monkeypatch, capsys, failure,
                                                                         code) -> None:
    from misgan_core import MisGAN

    def fails(self, *args, **kwargs):
        raise failure

    out = str(tmp_path / "r")
    with monkeypatch.context() as patch:
        patch.setattr(MisGAN, "train", fails)
        assert main(["train", *TINY, "--out", out]) == code
    assert not Path(out).exists()
    assert main(["train", *TINY, "--out", out]) == 0  # the same --out works
    assert main(["train", *TINY, "--out", out]) == 2  # and a trained run is never removed by a failing command
    assert (Path(out) / "model.safetensors").exists()


def test_a_full_disk_during_a_checkpoint_says_so(tmp_path, capsys) -> None:
    """On a real full disk: a 300 KB tmpfs (needs root; skipped where mounting is not allowed)."""
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(disk)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        out = disk / "r"
        assert main(["train", *TINY, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"error: the disk holding {out} is full, so the checkpoint at step 1 was not written; free some " \
               f"space, then train again" in err
        assert not out.exists()
    finally:
        subprocess.run(["umount", str(disk)], check=True)
