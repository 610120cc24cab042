"""Data-parallel MisGAN (torchrun, gloo on the CPU): the same step as one process, one run folder, and a run
that resumes in one process after torchrun made it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from misgan_core import DataSpec, MisGAN, MisGANConfig

ROOT = Path(__file__).resolve().parents[1]


def _config(**kw) -> MisGANConfig:
    # The paper's recipe with beta1 0.5: at beta1 0 (the paper's) Adam moves every entry by about lr * sign(g)
    # at each step, so the entries whose gradient is within rounding of 0 move either way on every step and the
    # comparison below would measure rounding, not the algorithm.
    base = dict(data=DataSpec(dataset="mnist-5k", limit=128), batch_size=32, steps=2, imputer=True, recipe="paper",
                betas=[0.5, 0.9],
                sample_every=1000, checkpoint_every=1000, log_every=1, fid_every=0, seed=11)
    base.update(kw)
    return MisGANConfig(**base)


def _weights(gan: MisGAN) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v.detach().clone() for n, mod in gan.nets.modules().items()
            for k, v in mod.state_dict().items()}


def _recording_first_gradients(gan: MisGAN) -> dict[str, torch.Tensor]:
    """The gradients the first critic update and the first generator update step with (after averaging)."""
    seen: dict[str, torch.Tensor] = {}
    step = gan._step

    def record(names: list[str]) -> None:
        for k in names:
            for i, p in enumerate(gan.nets.modules()[k].parameters()):
                if p.grad is not None:
                    seen.setdefault(f"{k}.{i}", p.grad.detach().clone())
        step(names)

    gan._step = record  # type: ignore[method-assign]
    return seen


def _rank_main(rank: int, world: int, init: str, out: str, mask_model: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        gan = MisGAN(_config(mask_model=mask_model))
        assert (gan.rank, gan.world, gan._b) == (rank, world, 32 // world)
        grads = _recording_first_gradients(gan)
        gan.train()
        torch.save({"weights": _weights(gan), "history": gan.history, "grads": grads}, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("mask_model", ["independent", "self-masking"])
def test_two_gloo_ranks_take_the_same_steps_as_one_process(tmp_path, mask_model) -> None:
    torch.set_num_threads(1)
    single = MisGAN(_config(mask_model=mask_model))
    grads = _recording_first_gradients(single)
    single.train()
    init = f"file://{tmp_path / 'rendezvous'}"
    mp.start_processes(_rank_main, args=(2, init, str(tmp_path), mask_model), nprocs=2, start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    # The first update of every network: the ranks' averaged gradients are the one-process gradients of the
    # same global batch and noise (only the order of float additions differs).
    assert grads.keys() == ranks[0]["grads"].keys() and len(grads) > 20
    for name, g in grads.items():
        assert torch.allclose(ranks[0]["grads"][name], g, rtol=1e-4, atol=1e-6), name
    # After 2 steps (10 critic updates) the weights agree to a fraction of one Adam step (lr 1e-4): Adam's
    # first updates are about lr * sign(g), so a gradient within rounding of zero may move its entry either way.
    expected = _weights(single)
    for name, value in expected.items():
        assert torch.equal(ranks[0]["weights"][name], ranks[1]["weights"][name]), name  # ranks agree exactly
        assert torch.allclose(ranks[0]["weights"][name], value, rtol=0, atol=5e-5), name
    moved = float((single.nets.gx.net[0].weight - MisGAN(_config()).nets.gx.net[0].weight).detach().abs().max())
    assert moved > 1e-4  # the comparison is of trained weights, not of two initialisations
    # The log lines are the global batch's losses: averaged over the ranks, as one process computes them.
    for key in ("loss_dx", "loss_gx", "loss_di"):
        assert ranks[0]["history"][-1][key] == pytest.approx(single.history[-1][key], rel=1e-3, abs=1e-5), key


@pytest.mark.slow
def test_torchrun_writes_one_run_folder_that_resumes_in_one_process(tmp_path) -> None:
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "misgan_core",
           "train", "--dataset", "mnist-5k", "--limit", "128", "--batch-size", "32", "--steps", "3", "--imputer",
           "--fid-every", "0", "--out", str(run)]
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "2 processes x 16 rows" in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp"]  # one folder, written by rank 0
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "loss_dx" in r] == [3]  # the final log line, once: not once per rank
    gan = MisGAN.load(run)
    assert gan.step == 3 and gan.world == 1
    resumed = subprocess.run([sys.executable, "-m", "misgan_core", "resume", str(run), "--steps", "2"], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert MisGAN.load(run).step == 5
    # and back: a torchrun resume of the single-process run
    again = subprocess.run(cmd[:7] + ["resume", str(run), "--steps", "1"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert MisGAN.load(run).step == 6
    steps = [r["step"] for r in (json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines())
             if "loss_dx" in r]
    assert steps == [3, 5, 6]


def test_a_batch_that_does_not_split_over_the_ranks_is_refused(tmp_path) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rv'}", rank=0, world_size=1)
    try:
        import misgan_core.misgan as misgan_module

        original = misgan_module.rank_and_world
        misgan_module.rank_and_world = lambda: (0, 3)  # as if 3 ranks
        try:
            with pytest.raises(ValueError, match="divide evenly over the 3 processes"):
                MisGAN(_config())
        finally:
            misgan_module.rank_and_world = original
    finally:
        dist.destroy_process_group()
