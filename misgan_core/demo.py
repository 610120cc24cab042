"""The shipped demo models: FC MisGAN with its imputer, trained on mnist-5k, so Inpaint works at once.

Each is an inference-only run folder in misgan_core/assets/demo-*: config.json (the training config plus
{"inference_only": [...]} and how it was made: command, budget, figures), model.safetensors (Gx, Gm and Gi in
float16, about 4 MB) and metrics.jsonl (the training log).
  demo-mnist-fc-square14    square 14x14 observed (75% missing), the paper's budget (1000 epochs)
  demo-mnist-fc-dropout80   independent dropout 80%, the paper's budget
  demo-mnist-fc-rect        rectangle observation, 3000 generator steps (the first demo)
The first two are the sweep's cells (docs/reproduction.md, "The demos"); remake one from any run with
    python -c "from misgan_core.demo import export_demo; export_demo('RUN', 'misgan_core/assets/demo-NAME')"
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from .errors import OptionError
from .misgan import MisGAN

ASSETS = Path(__file__).parent / "assets"
DEMO_DIR = ASSETS / "demo-mnist-fc-rect"
# The order Inpaint offers them in: the paper's budget first.
DEMO_NAMES = ("demo-mnist-fc-square14", "demo-mnist-fc-dropout80", "demo-mnist-fc-rect")
SHIPPED = ["gx", "gm", "gi"]  # what a user of the demo needs: samples, masks, imputations


def _complete(folder: Path) -> bool:
    return (folder / "model.safetensors").exists() and (folder / "config.json").exists()


def demo_available() -> bool:
    return bool(demo_dirs())


def demo_dirs() -> list[Path]:
    """The shipped demo folders present, best first."""
    return [ASSETS / n for n in DEMO_NAMES if _complete(ASSETS / n)]


def load_demo(device: str | None = None) -> MisGAN:
    """The demo model, ready to sample and impute (its folder is never written to)."""
    return MisGAN.load(DEMO_DIR, device=device)


def export_demo(run: str | Path, out: str | Path = DEMO_DIR, record: dict[str, Any] | None = None) -> Path:
    """Turn a trained MisGAN run with an imputer into a small inference-only folder."""
    gan = MisGAN.load(run)
    if gan.nets.gi is None:
        raise OptionError(f"{run} has no imputer; train with --imputer")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # The networks that sample and impute: their weight averages where the run keeps them (config.ema).
    tensors = {f"{name}.{k}": v.detach().cpu().to(torch.float16).contiguous()
               for name in SHIPPED for k, v in gan.inference_net(name).state_dict().items()}
    save_file(tensors, str(out / "model.safetensors"), metadata={"step": str(gan.step)})
    config = {"kind": "misgan", **gan.config.to_dict(), "inference_only": SHIPPED,
              "made_from": {"run": str(run), "step": gan.step, **(record or {})}}
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    shutil.copyfile(Path(run) / "metrics.jsonl", out / "metrics.jsonl")
    return out
