"""The shipped demo model: FC MisGAN with its imputer, trained on mnist-5k, so Inpaint works at once.

It is an inference-only run folder in misgan_core/assets/demo-mnist-fc-rect: config.json (the training
config plus {"inference_only": [...]} and how it was made), model.safetensors (Gx, Gm and Gi in float16,
about 4 MB) and metrics.jsonl (the training log). Remake it with:

    python -m misgan_core train --dataset mnist-5k --mask rect --arch fc --steps 3000 --imputer --seed 0 \\
        --out runs/demo-source
    python -c "from misgan_core.demo import export_demo; export_demo('runs/demo-source')"
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from .misgan import MisGAN

DEMO_DIR = Path(__file__).parent / "assets" / "demo-mnist-fc-rect"
SHIPPED = ["gx", "gm", "gi"]  # what a user of the demo needs: samples, masks, imputations


def demo_available() -> bool:
    return (DEMO_DIR / "model.safetensors").exists() and (DEMO_DIR / "config.json").exists()


def load_demo(device: str | None = None) -> MisGAN:
    """The demo model, ready to sample and impute (its folder is never written to)."""
    return MisGAN.load(DEMO_DIR, device=device)


def export_demo(run: str | Path, out: str | Path = DEMO_DIR, record: dict[str, Any] | None = None) -> Path:
    """Turn a trained MisGAN run with an imputer into a small inference-only folder."""
    gan = MisGAN.load(run)
    if gan.nets.gi is None:
        raise ValueError(f"{run} has no imputer; train with --imputer")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {f"{name}.{k}": v.detach().cpu().to(torch.float16).contiguous()
               for name in SHIPPED for k, v in gan.nets.modules()[name].state_dict().items()}
    save_file(tensors, str(out / "model.safetensors"), metadata={"step": str(gan.step)})
    config = {"kind": "misgan", **gan.config.to_dict(), "inference_only": SHIPPED,
              "made_from": {"run": str(run), "step": gan.step, **(record or {})}}
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    shutil.copyfile(Path(run) / "metrics.jsonl", out / "metrics.jsonl")
    return out
