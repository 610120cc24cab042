"""Process-wide state the pages share: where runs live, the job registry, the device, cached data and models.

Nothing here draws on the page; `widgets.py` does. Jobs live in misgan_core.jobs' process-wide registry (a
module global), so every browser session sees the same jobs and clearing Streamlit's caches never orphans
a training thread.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from misgan_core import (
    IncompleteDataset,
    MisGAN,
    MisGANConfig,
    RunDir,
    list_datasets,
    list_runs,
    load_complete,
    make_incomplete,
    make_mask_process,
    pick_device,
)
from misgan_core.data import DatasetStatus, is_user_data
from misgan_core.jobs import (
    Job,
    JobSnapshot,
    configure_threads,
    registry,
    resume_misgan_job,
    start_misgan_job,
)

RUNS_ENV = "MISGAN_RUNS_DIR"
DATA_ENV = "MISGAN_DATA_DIR"

_START_LOCK = threading.Lock()
_THREADS: int | None = None


def runs_root() -> Path:
    """Where run folders live: $MISGAN_RUNS_DIR, else `runs/` in the working directory."""
    return Path(os.environ.get(RUNS_ENV) or "runs").resolve()


def data_dir() -> str | None:
    """Root of torchvision-layout datasets: $MISGAN_DATA_DIR, else `data/` when it exists."""
    env = os.environ.get(DATA_ENV)
    if env:
        return env
    return "data" if Path("data").is_dir() else None


def init_process() -> int:
    """Once per process: torch threads for training (all cores but one, which serves the UI)."""
    global _THREADS
    if _THREADS is None:
        _THREADS = configure_threads()
    return _THREADS


@dataclass(frozen=True)
class DeviceInfo:
    kind: str  # "cuda" or "cpu"
    name: str  # GPU name, or "CPU"
    threads: int
    cores: int

    def line(self) -> str:
        if self.kind == "cuda":
            return f"GPU: {self.name}"
        return f"CPU: {self.threads} torch thread(s) for training on {self.cores} core(s)"


def device_info() -> DeviceInfo:
    device = pick_device("auto")
    cores = os.cpu_count() or 1
    if device.type == "cuda":
        return DeviceInfo("cuda", torch.cuda.get_device_name(device), torch.get_num_threads(), cores)
    return DeviceInfo("cpu", "CPU", torch.get_num_threads(), cores)


def on_gpu() -> bool:
    return pick_device("auto").type == "cuda"


def datasets() -> list[DatasetStatus]:
    return list_datasets(data_dir())


def dataset_shape(name: str) -> tuple[int, int, int] | None:
    """A built-in dataset's image shape (C, H, W); None for the user's own data."""
    for s in datasets():
        if s.name == name:
            return tuple(s.shape)  # type: ignore[return-value]
    return None


# ---------------------------------------------------------------------------------------------
# Data previews (small, cached by the pages with st.cache_data / st.cache_resource)


def preview_incomplete(
    dataset: str,
    mask: str,
    mask_size: int,
    missing_rate: float,
    missing_rate_range: tuple[float, float] | None,
    seed: int,
    n: int = 32,
) -> IncompleteDataset:
    """The first n examples of a dataset with masks drawn as training would draw them."""
    if is_user_data(dataset):
        from misgan_core import load_user_data

        return load_user_data(dataset).subset(slice(0, n))
    complete = load_complete(dataset, data_dir(), limit=n)
    process = make_mask_process(mask, mask_size, missing_rate, missing_rate_range)
    return make_incomplete(complete, process, seed=seed)


def expected_missing_rate(
    mask: str,
    mask_size: int,
    missing_rate: float,
    missing_rate_range: tuple[float, float] | None,
    shape: tuple[int, int, int],
) -> tuple[float, str]:
    process = make_mask_process(mask, mask_size, missing_rate, missing_rate_range)
    return process.expected_missing_rate(shape[1], shape[2]), process.describe()


# ---------------------------------------------------------------------------------------------
# Training jobs


def live_fid_every(dataset: str) -> int:
    """The engine's default live-FID cadence for a dataset (0 where no FID feature extractor exists)."""
    from misgan_core.metrics import default_fid_every

    return default_fid_every(dataset)


def quickstart_config() -> MisGANConfig:
    """A first run that shows recognisable digits within minutes: the device's fast architecture, the
    imputer on, 50% independent dropout on the embedded mnist-5k."""
    gpu = on_gpu()
    return MisGANConfig(
        dataset="mnist-5k",
        mask="dropout",
        missing_rate=0.5,
        arch="conv" if gpu else "fc",
        imputer=True,
        steps=5000 if gpu else 2000,
        sample_every=100,
        checkpoint_every=250,
        fid_every=live_fid_every("mnist-5k"),
    )


def config_hash(config: MisGANConfig) -> str:
    text = json.dumps(config.to_dict(), sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:6]


def run_base_name(config: MisGANConfig) -> str:
    """A readable, deterministic folder name for a config: the same settings give the same name."""
    data = Path(config.dataset).stem if is_user_data(config.dataset) else config.dataset
    data = re.sub(r"[^A-Za-z0-9_.-]+", "_", data)[:40]
    mask = "given" if is_user_data(config.dataset) else config.mask
    imp = "-imp" if config.imputer else ""
    return f"{data}-{mask}-{config.arch}{imp}-{config_hash(config)}"


def _matches_base(job: Job, base: str) -> bool:
    return re.fullmatch(re.escape(base) + r"(-\d+)?", Path(job.key).name) is not None


def running_job_for(config: MisGANConfig) -> Job | None:
    """The job already training this config (in any browser session), if any."""
    base = run_base_name(config)
    for job in reversed(registry().jobs()):
        if job.alive and _matches_base(job, base):
            return job
    return None


def _free_run_dir(base: str) -> Path:
    root = runs_root()
    path, k = root / base, 2
    while path.exists():
        path = root / f"{base}-{k}"
        k += 1
    return path


def start_training(config: MisGANConfig) -> tuple[Job, bool]:
    """Start a MisGAN job for `config`, or return the one already running it. Returns (job, started).

    The check and the start happen under one process-wide lock, so two clicks (or two sessions) at once
    start one job; the registry also returns the running job for a run folder instead of a twin.
    """
    config.validate()
    init_process()
    with _START_LOCK:
        job = running_job_for(config)
        if job is not None:
            return job, False
        path = _free_run_dir(run_base_name(config))
        path.parent.mkdir(parents=True, exist_ok=True)
        return start_misgan_job(config, path), True


def resume_training(run_path: str | Path, steps: int) -> Job:
    init_process()
    with _START_LOCK:
        return resume_misgan_job(run_path, steps)


def job_for_run(run_path: str | Path) -> Job | None:
    return registry().find(str(Path(run_path).resolve()))


def all_jobs() -> list[Job]:
    return registry().jobs()


def get_job(job_id: str | None) -> Job | None:
    return registry().get(job_id) if job_id else None


def snapshots() -> list[JobSnapshot]:
    return [job.snapshot() for job in registry().jobs()]


# ---------------------------------------------------------------------------------------------
# Runs


@dataclass
class RunInfo:
    """What the pages list about a run folder."""

    path: Path
    name: str
    kind: str
    config: dict[str, Any]
    last: dict[str, Any]
    has_checkpoint: bool
    error: str | None = None

    @property
    def imputer(self) -> bool:
        return self.kind != "misgan" or bool(self.config.get("imputer"))

    @property
    def step(self) -> int:
        return int(self.last.get("step", 0))


def run_infos(root: Path | None = None) -> list[RunInfo]:
    """Every run folder under the runs root, newest first; unreadable ones carry an error message."""
    out = []
    for run in list_runs(root or runs_root()):
        try:
            config = run.read_config()
            error = None
        except Exception as err:  # a broken folder is listed with its problem, never hides the others
            config, error = {}, str(err)
        last: dict[str, Any] = {}
        for record in run.read_metrics():
            last.update(record)
        out.append(
            RunInfo(
                run.path,
                run.path.name,
                str(config.get("kind", "misgan")),
                config,
                last,
                run.has_checkpoint,
                error,
            )
        )
    return out


def imputer_runs(root: Path | None = None) -> list[RunInfo]:
    """MisGAN runs that trained an imputer and have a checkpoint."""
    return [
        r
        for r in run_infos(root)
        if r.kind == "misgan" and r.config.get("imputer") and r.has_checkpoint and r.error is None
    ]


def checkpoint_stamp(path: str | Path) -> float:
    """Changes whenever a run's weights are rewritten: part of the cache key of a loaded model."""
    weights = Path(path) / "model.safetensors"
    return weights.stat().st_mtime if weights.exists() else 0.0


def load_misgan(path: str | Path) -> MisGAN:
    return MisGAN.load(path, device=str(pick_device("auto")))


def delete_run(path: str | Path) -> None:
    job = job_for_run(path)
    if job is not None and job.alive:
        raise RuntimeError(f"{Path(path).name} is training right now; stop its job before deleting it")
    RunDir(path).delete()
