"""The run catalogue: the run folders on disk, and the jobs training them.

- `METHODS` (from misgan_core.methods, the registry): one entry per method (MisGAN and each baseline) with
  its title, whether it trains in steps or fits in closed form, whether it generates, and its one default
  budget. The CLI and the pages read it.
- `list_runs` / `run_info`: every run folder under a root, of every kind; a folder that cannot be read is
  listed with the reason instead of breaking the listing.
- `open_run`: any run folder (MisGAN, a baseline, the shipped demo) as a `Run`: its data spec, its
  imputer, its sampler where it generates, and its budget (steps, epochs, seconds).
- `run_name` / `new_run_dir`: readable, deterministic folder names; `start_job` / `resume_job` /
  `job_for_run`: background jobs (jobs.py), one per run folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import MisGANConfig
from .data import DATASETS, IncompleteDataset, check_data_memory, check_zip_members, load_user_data, png_decoded_bytes
from .errors import DatasetError, OptionError, RunBusy
from .jobs import Job, JobRegistry, registry
from .methods import METHODS, MISGAN, Method, Run, SampleFn, kind_of, method, method_of
from .runs import CheckpointError, RunDir
from .runs import list_runs as list_run_dirs
from .spec import DataSpec

RUNS_ENV = "MISGAN_RUNS_DIR"
DATA_ENV = "MISGAN_DATA_DIR"
SWEEPS_ENV = "MISGAN_SWEEPS_DIR"

log = logging.getLogger(__name__)

OpenedRun = Run  # the name earlier versions gave a run folder opened for use


# ---------------------------------------------------------------------------------------------
# Where runs and data live


def runs_root() -> Path:
    """Where run folders live: $MISGAN_RUNS_DIR, else `runs/` in the working directory."""
    return Path(os.environ.get(RUNS_ENV) or "runs").resolve()


def sweeps_root() -> Path:
    """Where sweep folders live: $MISGAN_SWEEPS_DIR, else `sweeps/` in the working directory."""
    return Path(os.environ.get(SWEEPS_ENV) or "sweeps").resolve()


def data_dir() -> str | None:
    """Root of torchvision-layout datasets: $MISGAN_DATA_DIR, else `data/` when it exists."""
    env = os.environ.get(DATA_ENV)
    if env:
        return env
    return "data" if Path("data").is_dir() else None


def user_data_roots() -> list[Path]:
    """The folders the app may read the user's own data from: the data folder and the runs folder."""
    return [Path(data_dir() or "data").resolve(), runs_root()]


def confined_path(text: str) -> Path | None:
    """`text` as a path inside one of user_data_roots(), or None when it points anywhere else (the app's
    visitors must not probe the server's folders). Relative paths are taken inside the data folder."""
    roots = user_data_roots()
    raw = Path(text).expanduser()
    path = (raw if raw.is_absolute() else roots[0] / raw).resolve()
    return path if any(path == r or path.is_relative_to(r) for r in roots) else None


MAX_UPLOAD_BYTES = 2 << 30    # what an uploaded archive may unpack to
MAX_UPLOAD_FILES = 200_000


def uploads_root() -> Path:
    """Where the app keeps uploaded data: DATA_DIR/uploads."""
    return user_data_roots()[0] / "uploads"


def save_upload(name: str, data: bytes) -> Path:
    """Keep an uploaded .npz, or a .zip of PNGs (alpha 0 = missing), under uploads_root() and check it with the
    engine's loaders; returns the path to train on. The same content uploaded again gives the same path.

    Nothing is decoded before the data's declared size passes the memory budget (data.check_data_memory): a
    zip's PNG headers and an npz's array headers are read first. Each upload is staged under its own name and
    checked there before it is published, so sessions uploading the same file at once never collide, and a
    refused upload leaves nothing behind."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).stem)[:60] or "upload"
    digest = hashlib.sha1(data).hexdigest()[:8]
    root = uploads_root()
    root.mkdir(parents=True, exist_ok=True)
    suffix = Path(name).suffix.lower()
    if suffix == ".npz":
        path = root / f"{stem}-{digest}.npz"
        if not path.exists():
            _publish_npz(name, data, path)
    elif suffix == ".zip":
        path = root / f"{stem}-{digest}"
        if not path.exists():
            _publish_png_zip(name, data, path)
    else:
        raise DatasetError(f"{name}: upload an .npz with arrays x and m, or a .zip of PNG images with alpha")
    return path


def how_to_get_by_hand(name: str) -> str:
    """Where a built-in dataset's files go, without the command line's flags (for the app's messages)."""
    from .data import DATASETS

    how = DATASETS[name].how_to_get if name in DATASETS else "it is not a built-in dataset"
    kept = [part.strip() for part in how.split(";") if "--download" not in part]
    return "; ".join(p for p in kept if p) or how


def _publish_npz(name: str, data: bytes, path: Path) -> None:
    import tempfile

    fd, staged = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        _check_staged(staged, name)
        os.replace(staged, path)  # another session may have published the same bytes: same content, no harm
    finally:
        with contextlib.suppress(OSError):
            os.unlink(staged)


def _check_staged(staged: str | Path, name: str) -> None:
    """load_user_data on the staged copy, its messages naming the upload rather than the staging path."""
    try:
        load_user_data(staged)
    except DatasetError as err:
        raise DatasetError(str(err).replace(str(staged), name)) from None


ZIP_NAME_CHARS = 100  # kept of each member's name in the unpacked folder (after its index, which keeps the order)


def _publish_png_zip(name: str, data: bytes, path: Path) -> None:
    import io
    import shutil
    import tempfile
    import zipfile
    import zlib

    staging = Path(tempfile.mkdtemp(prefix=".unzip-", dir=path.parent))
    try:
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
        except (zipfile.BadZipFile, ValueError, OSError) as err:
            raise DatasetError(f"{name} is not a readable .zip archive ({err}); upload a .zip of PNG images") \
                from err
        try:
            with archive:
                members = [i for i in archive.infolist() if not i.is_dir() and i.filename.lower().endswith(".png")]
                if not members:
                    raise DatasetError(f"{name} holds no .png files; zip PNG images whose alpha is 0 where pixels "
                                       f"are missing")
                if len(members) > MAX_UPLOAD_FILES or sum(i.file_size for i in members) > MAX_UPLOAD_BYTES:
                    raise DatasetError(f"{name} unpacks to more than {MAX_UPLOAD_FILES:,} files or "
                                       f"{MAX_UPLOAD_BYTES >> 30} GiB; upload a smaller archive")
                check_zip_members(name, members)
                decoded = 0
                for info in members:  # the headers only: a few bytes of each member are inflated
                    with archive.open(info) as src:
                        size = png_decoded_bytes(src.read(26))
                    if size is None:
                        raise DatasetError(f"{name}: {info.filename} is not a PNG image; zip PNG images only")
                    decoded += size
                check_data_memory(f"{name} ({len(members):,} images)", decoded)
                for i, info in enumerate(members):
                    # flat, sanitised, shortened names: nothing in an archive may write outside its folder
                    flat = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(info.filename).stem)[:ZIP_NAME_CHARS]
                    with archive.open(info) as src, open(staging / f"{i:07d}-{flat}.png", "wb") as dst:
                        shutil.copyfileobj(src, dst)
        except DatasetError:
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError) as err:
            raise DatasetError(f"{name} is damaged or cannot be read ({' '.join(str(err).split())}); upload the "
                               f"archive again") from err
        _check_staged(staging, name)
        try:
            os.rename(staging, path)
        except OSError:
            if not path.is_dir():  # not "another session published the same upload first"
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download_dataset(name: str) -> str:
    """Download a built-in dataset into the data folder with torchvision; a readable error without network."""
    from .data import DATASETS, DatasetError, dataset_status, load_complete

    if name not in DATASETS or not DATASETS[name].downloadable:
        how = DATASETS[name].how_to_get if name in DATASETS else "it is not a built-in dataset"
        raise DatasetError(f"{name} cannot be downloaded by the app; {how}")
    root = data_dir() or "data"
    Path(root).mkdir(parents=True, exist_ok=True)
    try:
        load_complete(name, root, download=True, limit=1)
    except DatasetError:
        raise
    except Exception as err:  # urllib, http and torchvision raise many kinds when there is no network
        log.warning("downloading %s failed", name, exc_info=True)  # the details go to the server's log
        raise DatasetError(f"could not download {name} into {Path(root).resolve()}: this machine may have no "
                           f"network; copy its files there by hand ({how_to_get_by_hand(name)})") from err
    if dataset_status(name, root).status != "present":
        raise DatasetError(f"{name} was downloaded but is not where the workbench looks; {DATASETS[name].how_to_get}")
    return str(Path(root).resolve())


# ---------------------------------------------------------------------------------------------
# Describing runs


def describe(kind: str, spec: DataSpec | None, config: Mapping[str, Any] | None = None,
             steps: int | None = None) -> str:
    """What a run or job is, in one line: method (as its config makes it), data and missingness, budget."""
    if kind not in METHODS:
        return " · ".join([kind] + ([spec.label()] if spec is not None else []))
    return METHODS[kind].describe(spec, config, steps)


@dataclass
class RunInfo:
    """What a listing says about a run folder, read from its config and log without loading weights."""

    path: Path
    kind: str
    config: dict[str, Any]
    spec: DataSpec | None
    last: dict[str, Any]
    has_checkpoint: bool
    error: str | None = None
    demo: bool = False

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def step(self) -> int:
        made = self.config.get("made_from")
        value = (made.get("step", 0) if isinstance(made, dict) else 0) if self.demo else self.last.get("step", 0)
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0

    @property
    def seconds(self) -> float | None:
        value = self.last.get("time")
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def shape(self) -> tuple[int, int, int] | None:
        """Image shape (C, H, W) the run models, where the config or the dataset registry says it."""
        if isinstance(self.config.get("shape"), list) and len(self.config["shape"]) == 3:
            return tuple(int(v) for v in self.config["shape"])  # type: ignore[return-value]
        if self.spec is not None and self.spec.dataset in DATASETS:
            return DATASETS[self.spec.dataset].shape
        return None

    @property
    def method(self) -> Method | None:
        """The registry's entry for this run's method (None for an unreadable folder)."""
        return METHODS.get(self.kind)

    @property
    def imputes(self) -> bool:
        """Has an imputer (a MisGAN run trained with one, or any baseline)."""
        return self.method is not None and self.method.imputes(self.config)

    @property
    def generates(self) -> bool:
        return self.method is not None and self.method.generates

    @property
    def usable(self) -> bool:
        """Readable and with weights on disk."""
        return self.error is None and self.has_checkpoint

    @property
    def budget_steps(self) -> int:
        """The steps the run was set to train (a MisGAN config's `steps`), else its method's default budget."""
        steps = self.config.get("steps")
        if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0:
            return steps
        return METHODS[self.kind].default_steps if self.kind in METHODS else 1

    @property
    def trained_enough(self) -> bool:
        """Trained for at least a tenth of its budget (its own, or its method's default when that is larger):
        a 4-step trial is not worth showing beside finished work."""
        return self.step >= max(self.budget_steps, METHODS[self.kind].default_steps if self.kind in METHODS
                                else 1) / 10

    @property
    def quality(self) -> float | None:
        """The last imputation FID its log recorded (the demo's from how it was made); None when none was."""
        made = self.config.get("made_from")
        value = (made.get("imputation_fid") if isinstance(made, dict) else None) if self.demo \
            else self.last.get("imputation_fid")
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None

    @property
    def title(self) -> str:
        if self.error is not None:
            return f"{self.name} (unreadable)"
        what = describe(self.kind, self.spec, self.config, self.step if self.step else None)
        return f"{what} (demo)" if self.demo else what


def run_info(path: str | Path, demo: bool = False) -> RunInfo:
    """Read a run folder's config and log; errors become `RunInfo.error`, never an exception."""
    run = RunDir(path)
    try:
        config = RunDir.open(path).read_config()
        kind = kind_of(config)
        if kind not in METHODS:
            raise CheckpointError(f"unknown run kind {kind!r}")
        spec = METHODS[kind].spec_of(config)
        error = None
    except (CheckpointError, OSError, ValueError, TypeError) as err:
        config, kind, spec, error = {}, "unknown", None, str(err)
    last: dict[str, Any] = {}
    try:
        for record in run.read_metrics():
            if isinstance(record, dict):
                last.update(record)
    except OSError:
        pass
    try:
        weights = (run.path / "model.safetensors").exists()
        has_checkpoint = weights if config.get("inference_only") else run.has_checkpoint
    except OSError as err:
        has_checkpoint, error = False, error or str(err)
    return RunInfo(run.path, kind, config, spec, last, has_checkpoint, error, demo)


def list_runs(root: str | Path | None = None, include_demo: bool = True) -> list[RunInfo]:
    """Every run folder under `root` (default: runs_root()), newest first, then the shipped demo model."""
    out = [run_info(r.path) for r in list_run_dirs(root or runs_root())]
    if include_demo:
        from .demo import demo_dirs

        out.extend(run_info(folder, demo=True) for folder in demo_dirs())
    return out


# ---------------------------------------------------------------------------------------------
# Opening runs


def open_run(path: str | Path, device: str | None = None, data: IncompleteDataset | None = None) -> Run:
    """Load any run folder for imputing, sampling and evaluating; nothing in the folder is changed.

    Baselines use their best-FID weights where they kept them (GAIN, as the paper evaluates it).
    """
    config = RunDir.open(path).read_config()
    return method_of(config, path).load(path, device=device, data=data)


def load_run_to_train(path: str | Path, device: str | None = None) -> Run:
    """A run folder ready to train on, of any trainable method."""
    config = RunDir.open(path).read_config()
    if config.get("inference_only"):
        raise CheckpointError(f"{path} is an inference-only model (no training state); it cannot be resumed")
    m = method_of(config, path)
    if not m.trainable:
        raise OptionError(f"{path} is a {m.title} run, fitted in closed form: nothing to resume")
    return m.load(path, device=device, for_training=True)


def load_trainer(path: str | Path, device: str | None = None) -> Any:
    """What trains a run folder (training.drive's Steppable): `load_run_to_train(path).trainer`."""
    return load_run_to_train(path, device).trainer


# ---------------------------------------------------------------------------------------------
# Naming new runs


def _digest(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:6]


def run_name(kind: str, spec: DataSpec, settings: dict[str, Any] | None = None) -> str:
    """A readable folder name; the same method, data and settings give the same name."""
    settings = settings or {}
    prefix = method(kind).name_prefix(settings)
    return f"{prefix}-{spec.slug()}-{_digest({'data': spec.to_dict(), **settings})}"


def job_run_name(kind: str, spec: DataSpec, options: Mapping[str, Any] | None = None, seed: int | None = None) -> str:
    """The folder name a job of `kind` on `spec` with `options` writes (before any -2, -3 suffix)."""
    return run_name(kind, spec, method(kind).name_settings(spec, options, seed))


def misgan_run_name(config: MisGANConfig) -> str:
    return run_name(MISGAN.name, config.data, _settings_of(config))


def _settings_of(config: MisGANConfig) -> dict[str, Any]:
    """What a MisGAN run's folder name digests: its config.json's fields but `data`."""
    return {k: v for k, v in config.to_dict().items() if k != "data"}


def new_run_dir(base: str, root: str | Path | None = None) -> Path:
    """root/base, or root/base-2, -3, ... : the first that does not exist yet."""
    root = Path(root) if root is not None else runs_root()
    path, k = root / base, 2
    while path.exists():
        path, k = root / f"{base}-{k}", k + 1
    return path


def _is_named(key: str, base: str) -> bool:
    return re.fullmatch(re.escape(base) + r"(-\d+)?", Path(key).name) is not None


# ---------------------------------------------------------------------------------------------
# Jobs: training in the background (one per run folder)

_START_LOCK = threading.Lock()


def running_job(base: str, registry_: JobRegistry | None = None) -> Job | None:
    """The live job writing a run folder named `base` (or base-N), if any."""
    for job in reversed((registry_ or registry()).jobs()):
        if job.alive and _is_named(job.key, base):
            return job
    return None


def latest_job(base: str, registry_: JobRegistry | None = None) -> Job | None:
    """The newest job (live or not) that wrote a run folder named `base` (or base-N)."""
    matches = [j for j in (registry_ or registry()).jobs() if _is_named(j.key, base)]
    return matches[-1] if matches else None


def start_job(kind: str, spec: DataSpec, options: Mapping[str, Any] | None = None, steps: int | None = None,
              seed: int | None = None, root: str | Path | None = None, run_dir: str | Path | None = None,
              threads: int | None = None, registry_: JobRegistry | None = None,
              after: Job | None = None) -> tuple[Job, bool]:
    """Train or fit a new run of `kind` with `options` in the background, or return the job already doing it.
    (job, started). With `after`, it waits for that job to end before it starts."""
    m = method(kind)
    spec.validate()
    return _start(m, spec, m.name_settings(spec, options, seed), steps,
                  lambda path: m.create(path, spec, options, seed=seed), root, run_dir, threads, registry_, after)


def _start(m: Method, spec: DataSpec, settings: dict[str, Any], steps: int | None, create: Callable[[Path], Run],
           root: str | Path | None, run_dir: str | Path | None, threads: int | None, registry_: JobRegistry | None,
           after: Job | None) -> tuple[Job, bool]:
    """The check and the start happen under one lock, so two clicks (or two sessions) at once start one job."""
    steps = int(steps or m.default_steps) if m.trainable else 1
    if steps < 1:
        raise OptionError(f"steps must be at least 1; got {steps}")
    reg = registry_ or registry()
    base = run_name(m.name, spec, settings)
    with _START_LOCK:
        job = running_job(base, reg) if run_dir is None else None
        if job is not None:
            return job, False
        path = Path(run_dir) if run_dir is not None else new_run_dir(base, root)
        path.parent.mkdir(parents=True, exist_ok=True)
        label = m.describe(spec, settings, steps if m.trainable else None)
        return reg.start(str(path), lambda: create(path).trainer, steps, label=label, threads=threads, kind=m.name,
                         after=after), True


def start_misgan_job(config: MisGANConfig, root: str | Path | None = None, run_dir: str | Path | None = None,
                     threads: int | None = None, registry_: JobRegistry | None = None) -> tuple[Job, bool]:
    """start_job for MisGAN with a whole MisGANConfig (the Train page's form); trains config.steps steps."""
    config.validate()
    return _start(MISGAN, config.data, _settings_of(config), config.steps,
                  lambda path: MISGAN.create_from_config(path, config), root, run_dir, threads, registry_, None)


def start_baseline_job(kind: str, spec: DataSpec, steps: int | None = None, seed: int = 0,
                       root: str | Path | None = None, registry_: JobRegistry | None = None,
                       threads: int | None = None, after: Job | None = None) -> tuple[Job, bool]:
    """start_job for a baseline with its default options."""
    if not method(kind).baseline:
        raise OptionError(f"{method(kind).title} is not fitted as a baseline; start it with start_job")
    return start_job(kind, spec, None, steps, seed=seed, root=root, registry_=registry_, threads=threads,
                     after=after)


def resume_job(path: str | Path, steps: int, threads: int | None = None,
               registry_: JobRegistry | None = None) -> Job:
    """Continue any trainable run folder in the background for `steps` more steps."""
    if steps < 1:
        raise OptionError(f"steps must be at least 1; got {steps}")
    info = run_info(path)
    if info.error:
        raise CheckpointError(info.error)
    label = f"{describe(info.kind, info.spec, info.config)} · resumed at step {info.step:,} for {steps:,} more"
    with _START_LOCK:
        return (registry_ or registry()).start(str(path), lambda: load_trainer(path), steps, label=label,
                                               threads=threads, kind=info.kind)


def job_for_run(path: str | Path, registry_: JobRegistry | None = None) -> Job | None:
    return (registry_ or registry()).find(str(Path(path).resolve()))


def running_misgan_job(config: MisGANConfig, registry_: JobRegistry | None = None) -> Job | None:
    """The live job training exactly this config, in any browser session."""
    return running_job(misgan_run_name(config), registry_)


def baseline_job(kind: str, spec: DataSpec, seed: int = 0, registry_: JobRegistry | None = None) -> Job | None:
    """The newest job that fitted `kind` with its defaults on `spec`."""
    return latest_job(job_run_name(kind, spec, None, seed), registry_)


def training_now(info: RunInfo, registry_: JobRegistry | None = None) -> Job | None:
    """The live job training this run folder, if one is."""
    job = job_for_run(info.path, registry_)
    return job if job is not None and job.alive else None


def finished_runs(runs: Iterable[RunInfo], registry_: JobRegistry | None = None) -> list[RunInfo]:
    """The usable runs no job is training right now and that trained at least a tenth of their budget."""
    return [r for r in runs if r.usable and r.trained_enough and training_now(r, registry_) is None]


def best_finished_run(runs: Iterable[RunInfo], registry_: JobRegistry | None = None) -> RunInfo | None:
    """Among finished runs (see `finished_runs`): the lowest recorded imputation FID, then the most steps."""
    done = finished_runs(runs, registry_)
    if not done:
        return None
    return min(done, key=lambda r: (r.quality is None, r.quality or 0.0, -r.step))


def delete_run(path: str | Path) -> None:
    """Delete a run folder; refused while a job trains it, and for the shipped demo."""
    from .demo import demo_dirs

    if Path(path).resolve() in {d.resolve() for d in demo_dirs()}:
        raise OptionError("the shipped demo model cannot be deleted")
    job = job_for_run(path)
    if job is not None and job.alive:
        raise RunBusy(f"{Path(path).name} is training right now; stop its job before deleting it")
    RunDir(path).delete()


__all__ = [
    "METHODS", "Method", "OpenedRun", "Run", "RunInfo", "SampleFn", "baseline_job", "data_dir", "delete_run",
    "describe", "job_for_run", "job_run_name", "latest_job", "list_runs", "load_run_to_train", "load_trainer",
    "method", "misgan_run_name", "new_run_dir", "open_run", "resume_job", "run_info", "run_name", "runs_root",
    "running_job", "running_misgan_job", "start_baseline_job", "start_job", "start_misgan_job", "sweeps_root",
    "confined_path", "user_data_roots", "uploads_root", "save_upload", "download_dataset", "best_finished_run",
    "finished_runs", "training_now", "how_to_get_by_hand",
]
