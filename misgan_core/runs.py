"""Run folders: one folder per run with its config, weights, optimizer state, metrics log and grids.

Layout of a run folder:
  config.json          the run's config (a dataclass as JSON) plus {"kind": "misgan" | "gain" | ...}
  model.safetensors    network weights (safe to load: no pickle)
  state.pt             optimizer and RNG state, step counters; loaded with torch.load(weights_only=True)
  metrics.jsonl        one JSON object a line: {"step", "time", ...losses and metrics}
  samples/             PNG grids, NAME_latest.png and NAME_STEP.png

Writes are atomic (a uniquely named temporary file, then a rename), so a crash while saving never destroys
the last good checkpoint, and two processes never share a temporary file. Checkpoints are pairs of weights
and state stamped with their step; the previous pair is kept (model.prev.safetensors, state.prev.pt), and
loading takes the newest pair whose two steps agree, saying so when it has to fall back. One process at a
time may train a run: `RunDir.lock()` holds an exclusive lock on `.lock` (released by the kernel when the
process dies, so a crashed training never leaves a stale lock); deleting a run takes the same lock, and
taking it removes the temporary files of a writer that was killed. Readers (evaluate, sample, impute, the
app) never write to a run folder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .errors import CheckpointError, DiskFull, RunBusy

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
STATE = "state.pt"
PREV_WEIGHTS = "model.prev.safetensors"
PREV_STATE = "state.prev.pt"
LOCK = ".lock"
METRICS = "metrics.jsonl"
SAMPLES = "samples"


def _atomic(path: Path, write: Callable[[Path], Any]) -> None:
    """write(tmp) to a temporary file unique to this call beside `path`, then rename it over `path`; the
    temporary file is removed when anything fails (a full disk leaves nothing behind)."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _disk_is_full(err: BaseException, folder: Path, needed: int) -> bool:
    """Whether a failed write failed for lack of space: ENOSPC / EDQUOT, or less room left than it needed."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    try:
        return shutil.disk_usage(folder).free < needed
    except OSError:
        return False


def _weights_step(path: Path) -> int | None:
    """The step stamped into a weights file's metadata; None when it is unreadable or unstamped."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return int((f.metadata() or {})["step"])
    except (SafetensorError, OSError, ValueError, KeyError, TypeError):
        return None


class RunDir:
    """A run folder on disk."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    # -- creation and config -----------------------------------------------------------------

    @classmethod
    def create(cls, path: str | Path, config: dict[str, Any]) -> RunDir:
        """Make a new run folder. Refuses a folder that already holds a run or other files; of two processes
        creating one folder at once, exactly one succeeds (config.json is published with an exclusive link)."""
        run = cls(path)
        if (run.path / CONFIG).exists():
            raise CheckpointError(f"{run.path} already holds a run; continue it with "
                                  f"`python -m misgan_core resume {run.path}` or choose another --out")
        if run.path.exists() and not run.path.is_dir():
            raise CheckpointError(f"{run.path} is a file, not a folder; choose another --out")
        if run.path.exists() and any(p.name != SAMPLES for p in run.path.iterdir()):
            raise CheckpointError(f"{run.path} exists and is not empty; choose another --out")
        try:
            (run.path / SAMPLES).mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise CheckpointError(f"cannot make the run folder {run.path} ({err.strerror or err}); choose another "
                                  f"--out") from err
        text = json.dumps(config, indent=2, sort_keys=True)
        fd, name = tempfile.mkstemp(prefix=f".{CONFIG}.", suffix=".tmp", dir=run.path)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.link(name, run.path / CONFIG)  # fails if another process published its config first
        except FileExistsError:
            raise CheckpointError(f"{run.path} was just made by another process; choose another --out") from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(name)
        return run

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        run = cls(path)
        if run.path.exists() and not run.path.is_dir():
            raise CheckpointError(f"{run.path} is a file, not a run folder; give the folder a run was written to")
        if not run.path.is_dir():
            raise CheckpointError(f"{run.path} is not a run folder (it does not exist)")
        if not (run.path / CONFIG).exists():
            raise CheckpointError(f"{run.path} has no {CONFIG}; it is not a run folder made by misgan_core")
        return run

    def write_config(self, config: dict[str, Any]) -> None:
        text = json.dumps(config, indent=2, sort_keys=True)
        _atomic(self.path / CONFIG, lambda p: p.write_text(text))

    def read_config(self) -> dict[str, Any]:
        try:
            config = json.loads((self.path / CONFIG).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise CheckpointError(f"{self.path / CONFIG} is unreadable ({err}); it may have been edited by hand "
                                  f"or truncated") from err
        if not isinstance(config, dict):
            raise CheckpointError(f"{self.path / CONFIG} does not hold a JSON object")
        return config

    @contextlib.contextmanager
    def lock(self, purpose: str = "training") -> Iterator[None]:
        """Hold the run's writer lock, or raise RunBusy naming the process that holds it. `purpose` is what the
        holder does with the run ("training" or "deleting"), shown to whoever is refused. Taking the lock
        removes the temporary files a killed writer left behind (`.NAME.*.tmp`): no one else writes here now."""
        path = self.path / LOCK
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            raise CheckpointError(f"{self.path} no longer exists (was it deleted?); train a new run") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunBusy(self._busy_message(os.pread(fd, 64, 0).decode(errors="replace"))) from None
            if os.fstat(fd).st_nlink == 0:  # the folder was deleted between our open and our lock
                raise CheckpointError(f"{self.path} was deleted; train a new run")
            os.ftruncate(fd, 0)
            os.pwrite(fd, (str(os.getpid()) + ("" if purpose == "training" else f" {purpose}")).encode(), 0)
            self._remove_stale_temporaries()
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _busy_message(self, holder: str) -> str:
        pid, _, purpose = holder.strip().partition(" ")
        doing = {"": "being trained", "deleting": "being deleted"}.get(purpose, f"in use ({purpose})")
        return (f"run {self.path} is {doing} by process {pid or 'another process'}; wait for it to finish or stop "
                f"it first")

    def _remove_stale_temporaries(self) -> None:
        for folder in (self.path, self.path / SAMPLES):
            for tmp in folder.glob(".*.tmp"):
                with contextlib.suppress(OSError):
                    tmp.unlink()

    @property
    def has_checkpoint(self) -> bool:
        return ((self.path / WEIGHTS).exists() or (self.path / PREV_WEIGHTS).exists()) and \
            ((self.path / STATE).exists() or (self.path / PREV_STATE).exists())

    # -- checkpoints -------------------------------------------------------------------------

    def save_checkpoint(self, modules: dict[str, torch.nn.Module], state: dict[str, Any]) -> None:
        """Save module weights (safetensors) and the rest of the training state, both stamped with state's
        step, keeping the previous pair. At every moment of the sequence below some weights file and some
        state file on disk share a step, which is what load_checkpoint looks for."""
        tensors: dict[str, torch.Tensor] = {}
        for prefix, module in modules.items():
            for key, value in module.state_dict().items():
                tensors[f"{prefix}.{key}"] = value.detach().to("cpu").contiguous()
        step = int(state.get("step", 0))
        state = {**state, "step": step}
        fd, name = tempfile.mkstemp(prefix=f".{STATE}.", suffix=".tmp", dir=self.path)
        os.close(fd)
        fd2, name2 = tempfile.mkstemp(prefix=f".{WEIGHTS}.", suffix=".tmp", dir=self.path)
        os.close(fd2)
        new_state, new_weights = Path(name), Path(name2)
        try:
            try:
                torch.save(state, new_state)
                save_file(tensors, str(new_weights), metadata={"step": str(step)})
            except (OSError, RuntimeError, SafetensorError) as err:  # torch reports a full disk as RuntimeError
                needed = sum(v.numel() * v.element_size() for v in tensors.values())
                if not _disk_is_full(err, self.path, needed):
                    raise
                then = (f"continue with `python -m misgan_core resume {self.path}` (the previous checkpoint "
                        f"is kept)" if self.has_checkpoint else "train again")
                raise DiskFull(f"the disk holding {self.path} is full, so the checkpoint at step {step} was not "
                               f"written; free some space, then {then}") from err
            if (self.path / STATE).exists() and (self.path / WEIGHTS).exists() and \
                    self._state_step(self.path / STATE) == _weights_step(self.path / WEIGHTS):
                os.replace(self.path / STATE, self.path / PREV_STATE)
                os.replace(self.path / WEIGHTS, self.path / PREV_WEIGHTS)
            os.replace(new_state, self.path / STATE)
            os.replace(new_weights, self.path / WEIGHTS)
        finally:
            for tmp in (new_state, new_weights):
                with contextlib.suppress(OSError):
                    tmp.unlink()

    @staticmethod
    def _state_step(path: Path) -> int | None:
        """The step a state file holds. Memory-mapped: the optimizer tensors (tens of MB) are not read."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            return int(state["step"]) if isinstance(state, dict) else None
        except Exception:  # torch raises many types for truncated or foreign files
            return None

    def checkpoint_files(self) -> tuple[Path, Path, bool]:
        """(weights, state, fell_back): the newest weights and state files whose steps agree."""
        weights = {p: _weights_step(p) for p in (self.path / WEIGHTS, self.path / PREV_WEIGHTS) if p.exists()}
        states = {p: self._state_step(p) for p in (self.path / STATE, self.path / PREV_STATE) if p.exists()}
        pairs = [(ws, w, s) for w, ws in weights.items() for s, ss in states.items() if ws is not None and ws == ss]
        if not pairs:
            if not weights or not states:
                raise CheckpointError(f"{self.path} has no checkpoint yet ({WEIGHTS} and {STATE}); the run "
                                      f"stopped before its first save: delete the folder and train again")
            problems = [f"{p.name} is corrupt" for p, v in {**weights, **states}.items() if v is None]
            problems += [] if problems else [
                "weights at step " + "/".join(str(v) for v in weights.values()) + " but training state at step "
                + "/".join(str(v) for v in states.values())]
            raise CheckpointError(f"{self.path} holds no usable checkpoint: {'; '.join(problems)}; restore the "
                                  f"folder from a backup or start a new run")
        _, w, s = max(pairs, key=lambda t: t[0])
        return w, s, w.name != WEIGHTS

    def saved_step(self) -> int | None:
        """The step of the checkpoint a load would use now (None before the first save)."""
        try:
            _, state, _ = self.checkpoint_files()
        except CheckpointError:
            return None
        return self._state_step(state)

    def load_checkpoint(self, modules: dict[str, torch.nn.Module],
                        map_location: str | torch.device = "cpu", warn: Callable[[str], None] | None = None,
                        ) -> dict[str, Any]:
        """Load weights into `modules` (strictly: names and shapes must match) and return the state, from the
        newest checkpoint whose weights and state agree on the step."""
        weights_path, state_path, fell_back = self.checkpoint_files()
        try:
            tensors = load_file(str(weights_path), device=str(map_location))
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"{weights_path} is corrupt ({err}); restore it from a backup or "
                                  f"start a new run") from err
        try:
            state = torch.load(state_path, map_location=map_location, weights_only=True)
        except Exception as err:  # torch raises several types for truncated or foreign files
            raise CheckpointError(f"{state_path} is corrupt or not a misgan_core state file ({err}); "
                                  f"restore it from a backup or start a new run") from err
        if not isinstance(state, dict):
            raise CheckpointError(f"{state_path} does not hold a training state (it holds a "
                                  f"{type(state).__name__}); restore it from a backup or start a new run")
        if fell_back:
            (warn or _warn)(f"{self.path}: the newest checkpoint is incomplete or mismatched (a crash while "
                            f"saving); using the previous one, step {state.get('step')}")
        for prefix, module in modules.items():
            own = {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
            expected = module.state_dict()
            missing = sorted(set(expected) - set(own))
            if missing:
                raise CheckpointError(f"checkpoint in {self.path} lacks {prefix}.{missing[0]} (and "
                                      f"{len(missing) - 1} more): it was made by a different model config")
            for key, value in expected.items():
                if own[key].shape != value.shape:
                    raise CheckpointError(f"checkpoint {prefix}.{key} has shape {tuple(own[key].shape)} but the "
                                          f"model expects {tuple(value.shape)}: config.json and the weights "
                                          f"disagree")
            module.load_state_dict(own, strict=True)
        return state

    def load_weights_only(self, modules: dict[str, torch.nn.Module], names: list[str],
                          map_location: str | torch.device = "cpu") -> int:
        """Load the weights of the modules `names` (stored in any float dtype) and return the saved step.
        For shipped inference-only models, which carry no critics and no optimizer state."""
        try:
            with safe_open(str(self.path / WEIGHTS), framework="pt", device=str(map_location)) as f:
                tensors = {k: f.get_tensor(k) for k in f.keys()}
                step = int((f.metadata() or {}).get("step", 0))
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"{self.path / WEIGHTS} is missing or corrupt ({err})") from err
        for name in names:
            module = modules[name]
            own = {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")}
            expected = module.state_dict()
            if set(own) != set(expected) or any(own[k].shape != v.shape for k, v in expected.items()):
                raise CheckpointError(f"{self.path / WEIGHTS} does not hold {name} for this config")
            module.load_state_dict({k: own[k].to(expected[k].dtype) for k in expected})
        return step

    # -- logs and grids ----------------------------------------------------------------------

    def log_metrics(self, record: dict[str, Any]) -> None:
        append_jsonl(self.path / METRICS, record)

    def read_metrics(self) -> list[dict[str, Any]]:
        """The log's records; lines that are not objects with a numeric step are skipped."""
        return [r for r in read_jsonl(self.path / METRICS)
                if isinstance(r.get("step", 0), (int, float)) and not isinstance(r.get("step", 0), bool)]

    def truncate_metrics(self, after_step: int) -> None:
        """Drop log lines past `after_step` (written after the checkpoint a resume starts from)."""
        records = [r for r in self.read_metrics() if _step_of(r) <= after_step]
        text = "".join(json.dumps(r) + "\n" for r in records)
        _atomic(self.path / METRICS, lambda p: p.write_text(text))

    def save_grid(self, name: str, images: torch.Tensor, step: int, nrow: int = 8, keep_history: bool = True) -> Path:
        from .grids import save_png

        folder = self.path / SAMPLES
        folder.mkdir(exist_ok=True)
        latest = folder / f"{name}_latest.png"
        _atomic(latest, lambda p: save_png(images, p, nrow=nrow))
        if keep_history:
            shutil.copyfile(latest, folder / f"{name}_{step:07d}.png")
        return latest

    def delete(self) -> None:
        """Delete the run folder, holding its lock: refused (RunBusy, naming the process) while another process
        trains it, and no training can start on it while it goes."""
        if not (self.path / CONFIG).exists():
            raise CheckpointError(f"refusing to delete {self.path}: it is not a run folder")
        with self.lock("deleting"):
            shutil.rmtree(self.path)


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one JSON object as a line."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Every JSON object of a JSON-lines file ([] if it does not exist), skipping lines that are not objects
    (a line cut short by a crash, or edited by hand)."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def _step_of(record: dict[str, Any]) -> int:
    value = record.get("step", 0)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _warn(message: str) -> None:
    import sys

    print(f"warning: {message}", file=sys.stderr)


def list_runs(root: str | Path = "runs") -> list[RunDir]:
    """Run folders directly under `root`, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    def made(run: RunDir) -> float:
        try:
            return (run.path / CONFIG).stat().st_mtime
        except OSError:  # deleted while we looked
            return 0.0

    runs = [RunDir(p) for p in root.iterdir() if (p / CONFIG).exists()]
    return sorted(runs, key=made, reverse=True)


def now() -> float:
    return time.time()
