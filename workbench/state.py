"""Process-wide state the pages share: torch threads, the device, the datasets on disk, the app's first run.

Nothing here draws on the page (`widgets.py` does) and nothing here is engine logic: run folders, jobs and
methods come from `misgan_core.catalog`. Jobs live in the engine's process-wide registry (a module global), so
every browser session sees the same jobs and clearing Streamlit's caches never orphans a training thread.
"""

from __future__ import annotations

from pathlib import Path

from misgan_core import DataSpec, MisGANConfig, list_datasets, pick_device
from misgan_core.catalog import data_dir, runs_root
from misgan_core.data import DatasetStatus
from misgan_core.device import DeviceInfo, configure_threads, device_info

__all__ = ["DeviceInfo", "checkpoint_stamp", "data_dir", "dataset_shape", "datasets", "device_info", "init_process",
           "measured_speed", "on_gpu", "public_address_refusal", "quickstart_config", "runs_root"]

_THREADS: int | None = None

LOOPBACK = ("127.0.0.1", "localhost", "::1")
NETWORK_OPT_IN = "MISGAN_ALLOW_NETWORK"


def public_address_refusal() -> str | None:
    """Why the app must not serve, or None. It serves on a loopback address; on any other only when the user
    asked for it: a `--server.address` flag, a STREAMLIT_SERVER_ADDRESS variable, or MISGAN_ALLOW_NETWORK=1
    (not a config file that happens to lie in the folder the server was started from)."""
    import os

    from streamlit import config

    if getattr(config, "_main_script_path", None) is None:  # no server (AppTest runs the pages in-process)
        return None
    address = config.get_option("server.address") or ""
    where = config.get_where_defined("server.address")
    if address in LOOPBACK or os.environ.get(NETWORK_OPT_IN) == "1":
        return None
    if where not in ("<default>",) and not where.endswith(".toml"):  # a command-line flag or an environment variable
        return None
    source = "no address at all: every interface" if not address else f"{address} (set in {where})"
    return (f"This server listens on {source}, where other machines may reach it, and you did not ask for that. "
            f"Start it with `--server.address 127.0.0.1`, or opt in to the network with `--server.address "
            f"{address or '0.0.0.0'}` or {NETWORK_OPT_IN}=1.")


def init_process() -> int:
    """Once per process: torch threads for training (all cores but one, which serves the UI)."""
    global _THREADS
    if _THREADS is None:
        _THREADS = configure_threads()
    return _THREADS


def on_gpu() -> bool:
    return pick_device("auto").type == "cuda"


def datasets() -> list[DatasetStatus]:
    """The datasets a run can train on (uci-digits is for `evaluate --dataset` only)."""
    return [s for s in list_datasets(data_dir()) if not s.evaluation_only]


def dataset_shape(name: str) -> tuple[int, int, int] | None:
    """A built-in dataset's image shape (C, H, W); None for the user's own data."""
    for s in datasets():
        if s.name == name:
            return tuple(s.shape)  # type: ignore[return-value]
    return None


def quickstart_config() -> MisGANConfig:
    """A first run that shows recognisable digits within minutes: the device's fast architecture, the
    imputer on, 50% independent dropout on the embedded mnist-5k."""
    gpu = on_gpu()
    return MisGANConfig(
        data=DataSpec(dataset="mnist-5k", data_dir=data_dir(), mask="dropout", missing_rate=0.5),
        arch="conv" if gpu else "fc",
        imputer=True,
        steps=5000 if gpu else 2000,
        sample_every=100,
        checkpoint_every=250,
    )


def checkpoint_stamp(path: str | Path) -> float:
    """Changes whenever a run's weights are rewritten: part of the cache key of a loaded model."""
    weights = Path(path) / "model.safetensors"
    best = Path(path) / "best.safetensors"
    return sum(p.stat().st_mtime for p in (weights, best) if p.exists())


def measured_speed(config: MisGANConfig) -> float | None:
    """Generator steps per second that this machine measured for runs like `config` (same dataset,
    architecture and imputer): a live job's current speed, else the latest finished run's log; None when it
    has measured none."""
    from misgan_core import catalog
    from misgan_core.jobs import registry
    from misgan_core.methods import METHODS, kind_of

    def alike(cfg: dict) -> bool:
        data = cfg.get("data") if isinstance(cfg.get("data"), dict) else cfg
        entry = METHODS.get(kind_of(cfg))  # the Train page's method (not a baseline), as `config` is
        return (entry is not None and not entry.baseline and cfg.get("arch") == config.arch
                and bool(cfg.get("imputer")) == config.imputer and data.get("dataset") == config.data.dataset)

    for job in reversed(registry().jobs()):
        trainer_config = getattr(job.trainer, "config", None)
        snap = job.snapshot()
        if (job.alive and trainer_config is not None and snap.steps_per_s
                and alike(trainer_config.to_dict())):
            return float(snap.steps_per_s)
    for info in catalog.list_runs(include_demo=False):
        if alike(info.config) and info.seconds and info.step >= 50:
            return info.step / info.seconds
    return None
