"""Run folders: one folder per run with its config, weights, optimizer state, metrics log and grids.

Layout of a run folder:
  config.json          the run's config (a dataclass as JSON) plus {"kind": "misgan" | "gain" | ...}
  model.safetensors    network weights (safe to load: no pickle)
  state.pt             optimizer and RNG state, step counters; loaded with torch.load(weights_only=True)
  metrics.jsonl        one JSON object a line: {"step", "time", ...losses and metrics}
  samples/             PNG grids, NAME_latest.png and NAME_STEP.png

Writes are atomic (temporary file then rename), so a crash while saving never destroys the last
good checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
STATE = "state.pt"
METRICS = "metrics.jsonl"
SAMPLES = "samples"


class CheckpointError(RuntimeError):
    """A run folder that cannot be used; the message says what is wrong and what to do."""


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


class RunDir:
    """A run folder on disk."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    # -- creation and config -----------------------------------------------------------------

    @classmethod
    def create(cls, path: str | Path, config: dict[str, Any]) -> RunDir:
        """Make a new run folder. Refuses to touch a folder that already holds a run."""
        run = cls(path)
        if (run.path / CONFIG).exists():
            raise CheckpointError(f"{run.path} already holds a run; continue it with "
                                  f"`python -m misgan_core resume {run.path}` or choose another --out")
        if run.path.exists() and any(run.path.iterdir()):
            raise CheckpointError(f"{run.path} exists and is not empty; choose another --out")
        (run.path / SAMPLES).mkdir(parents=True, exist_ok=True)
        run.write_config(config)
        return run

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        run = cls(path)
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

    @property
    def has_checkpoint(self) -> bool:
        return (self.path / WEIGHTS).exists() and (self.path / STATE).exists()

    # -- checkpoints -------------------------------------------------------------------------

    def save_checkpoint(self, modules: dict[str, torch.nn.Module], state: dict[str, Any]) -> None:
        """Save module weights (safetensors) and the rest of the training state (tensors and plain data)."""
        tensors: dict[str, torch.Tensor] = {}
        for prefix, module in modules.items():
            for key, value in module.state_dict().items():
                tensors[f"{prefix}.{key}"] = value.detach().to("cpu").contiguous()
        # Write the state first: a crash between the two leaves the old weights with a newer state,
        # which load_checkpoint catches by comparing the step stamped into both.
        step = int(state.get("step", 0))
        _atomic(self.path / STATE, lambda p: torch.save(state, p))
        _atomic(self.path / WEIGHTS, lambda p: save_file(tensors, str(p), metadata={"step": str(step)}))

    def load_checkpoint(self, modules: dict[str, torch.nn.Module],
                        map_location: str | torch.device = "cpu") -> dict[str, Any]:
        """Load weights into `modules` (strictly: names and shapes must match) and return the state."""
        if not self.has_checkpoint:
            raise CheckpointError(f"{self.path} has no checkpoint yet ({WEIGHTS} and {STATE}); the run may have "
                                  f"stopped before its first save")
        try:
            tensors = load_file(str(self.path / WEIGHTS), device=str(map_location))
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"{self.path / WEIGHTS} is corrupt ({err}); restore it from a backup or "
                                  f"start a new run") from err
        try:
            state = torch.load(self.path / STATE, map_location=map_location, weights_only=True)
        except Exception as err:  # torch raises several types for truncated or foreign files
            raise CheckpointError(f"{self.path / STATE} is corrupt or not a misgan_core state file ({err}); "
                                  f"restore it from a backup or start a new run") from err
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
        return read_jsonl(self.path / METRICS)

    def truncate_metrics(self, after_step: int) -> None:
        """Drop log lines past `after_step` (written after the checkpoint a resume starts from)."""
        records = [r for r in self.read_metrics() if r.get("step", 0) <= after_step]
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
        if not (self.path / CONFIG).exists():
            raise CheckpointError(f"refusing to delete {self.path}: it is not a run folder")
        shutil.rmtree(self.path)


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one JSON object as a line."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Every JSON object of a JSON-lines file ([] if it does not exist), skipping a line cut short by a crash."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def list_runs(root: str | Path = "runs") -> list[RunDir]:
    """Run folders directly under `root`, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [RunDir(p) for p in root.iterdir() if (p / CONFIG).exists()]
    return sorted(runs, key=lambda r: (r.path / CONFIG).stat().st_mtime, reverse=True)


def now() -> float:
    return time.time()
