"""Images in and out of the engine for people: uploads, painted masks, draw summaries and exports.

- `image_to_tensor`: a PNG or JPEG (bytes) converted to a model's channels and size, or ImageInputError
  with a message a person can act on.
- `mask_from_canvas`: an RGBA stroke image from a drawing canvas (any scale) turned into a 0/1 mask
  (1 = observed), the paint meaning either "missing" or "observed".
- `summarise_draws`, `side_by_side`, `std_image`: what a page shows of K imputation draws.
- `impute_dataset_draws`, `npz_bytes`, `png_zip_bytes`, `run_zip_bytes`: exports as in-memory files.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import MisGANError, OptionError
from .grids import show_missing
from .imputers import Imputer, paste_observed

ACCEPTED_FORMATS = ("PNG", "JPEG")
MAX_UPLOAD_PIXELS = 40_000_000  # refuse decompression bombs before decoding


class ImageInputError(MisGANError, ValueError):
    """An image or mask a person supplied that cannot be used; the message says why and what to do."""


SIXTEEN_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")
GREY_MODES = ("1", "L", "LA", "P;L", *SIXTEEN_BIT_MODES)


def eight_bit(image: Any) -> Any:
    """A 16-bit grey PIL image scaled to 8 bits (0-65535 to 0-255); other images unchanged. PIL's own
    convert("L") clips everything above 255 instead."""
    from PIL import Image

    if image.mode not in SIXTEEN_BIT_MODES:
        return image
    wide = np.asarray(image, dtype=np.float64)
    return Image.fromarray(np.round(wide / 65535.0 * 255.0).clip(0, 255).astype(np.uint8), "L")


# ---------------------------------------------------------------------------------------------
# Uploads


def image_to_tensor(data: bytes, shape: tuple[int, int, int], invert: bool | str = "auto",
                    notes: list[str] | None = None) -> torch.Tensor:
    """Decode a PNG or JPEG and convert it to (1, C, H, W) float32 in [0, 1] for a model of `shape`.

    `notes`, when given, receives a sentence for everything done to the image on the way (colour to grey,
    crop, resize, inversion), for the page to tell the person.

    Non-square images are centre-cropped to a square first, then resized (Lanczos) to H x W. Transparent
    pixels are composited on black. For one-channel models, `invert='auto'` inverts images whose border is
    mostly light (a dark digit on white paper), since MNIST-like data are light strokes on black.
    """
    from PIL import Image, UnidentifiedImageError

    c, h, w = shape
    if c not in (1, 3):
        raise ImageInputError(f"models with {c} channels are not supported; expected 1 or 3")
    if not data:
        raise ImageInputError("the uploaded file is empty; choose a PNG or JPEG image")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            fmt = probe.format
            width, height = probe.size
    except Image.DecompressionBombError as err:
        raise ImageInputError(f"this image claims more than {MAX_UPLOAD_PIXELS:,} pixels; upload a smaller one") \
            from err
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise ImageInputError("this file is not a readable image; upload a PNG or JPEG") from err
    if fmt not in ACCEPTED_FORMATS:
        raise ImageInputError(f"this is a {fmt} image; upload a PNG or JPEG instead")
    if width * height > MAX_UPLOAD_PIXELS:
        raise ImageInputError(
            f"the image is {width}x{height} pixels, too large; use one under "
            f"{MAX_UPLOAD_PIXELS // 1_000_000} megapixels"
        )
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            rgba = eight_bit(img).convert("RGBA")
    except (OSError, ValueError) as err:
        raise ImageInputError(
            f"the {fmt} file is damaged or truncated ({err}); save it again and retry"
        ) from err
    said = notes if notes is not None else []
    rgb = np.asarray(rgba.convert("RGB"), dtype=np.int16)
    coloured = bool(np.abs(rgb - rgb.mean(axis=2, keepdims=True)).max() > 8)
    if c == 1 and coloured:
        said.append("this colour image was converted to grey: the model works on grey images")
    if c == 3 and not coloured:
        said.append("this grey image was copied into three colour channels for the colour model")
    background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    flat = Image.alpha_composite(background, rgba).convert("L" if c == 1 else "RGB")
    side = min(flat.size)
    left, top = (flat.width - side) // 2, (flat.height - side) // 2
    if flat.width != flat.height:
        said.append(f"cropped from {flat.width}x{flat.height} to its centre {side}x{side} square")
    square = flat.crop((left, top, left + side, top + side))
    if (side, side) != (w, h):
        said.append(f"resized from {side}x{side} to the model's {w}x{h} pixels")
    resized = square.resize((w, h), Image.LANCZOS)
    arr = np.asarray(resized, dtype=np.float32) / 255.0
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    if c == 1 and _should_invert(arr[0], invert):
        arr = 1.0 - arr
        said.append("inverted (dark on light became light on dark, like the training digits)")
    return torch.from_numpy(np.ascontiguousarray(arr)).unsqueeze(0)


def _should_invert(gray: np.ndarray, invert: bool | str) -> bool:
    if invert in (True, False):
        return bool(invert)
    if invert != "auto":
        raise OptionError(f"invert must be True, False or 'auto'; got {invert!r}")
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return float(border.mean()) > 0.5


# ---------------------------------------------------------------------------------------------
# Painted masks


def mask_from_canvas(
    rgba: np.ndarray | None, size: tuple[int, int], paint_marks: str = "missing", threshold: float = 0.3
) -> torch.Tensor:
    """A (1, 1, H, W) 0/1 mask (1 = observed) from a canvas's RGBA strokes of any size.

    A cell of the H x W grid counts as painted when its share of painted canvas area (alpha, averaged over
    the cell) is at least `threshold`. `paint_marks` is 'missing' (paint removes pixels; nothing painted
    means everything observed) or 'observed' (paint keeps pixels; nothing painted means all missing).
    """
    from PIL import Image

    h, w = size
    if paint_marks not in ("missing", "observed"):
        raise OptionError(f"paint_marks must be 'missing' or 'observed'; got {paint_marks!r}")
    if rgba is None:
        painted = np.zeros((h, w), dtype=bool)
    else:
        arr = np.asarray(rgba)
        if arr.ndim != 3 or arr.shape[2] != 4:
            raise ImageInputError(f"canvas image must be (height, width, 4) RGBA; got shape {arr.shape}")
        alpha = arr[..., 3]
        if alpha.dtype != np.uint8:
            alpha = np.clip(alpha.astype(np.float64) * (255.0 if alpha.max() <= 1.0 else 1.0), 0, 255)
            alpha = alpha.astype(np.uint8)
        cells = np.asarray(Image.fromarray(alpha, mode="L").resize((w, h), Image.BOX), dtype=np.float32)
        painted = cells >= threshold * 255.0
    m = ~painted if paint_marks == "missing" else painted
    return torch.from_numpy(m.astype(np.float32)).view(1, 1, h, w)


# ---------------------------------------------------------------------------------------------
# What pages show of imputation draws


def summarise_draws(draws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(K, N, C, H, W) draws -> per-pixel mean and standard deviation, each (N, C, H, W).

    The standard deviation is the population one (0 with a single draw), so observed pixels show 0.
    """
    if draws.dim() != 5:
        raise OptionError(f"draws must be (K, N, C, H, W); got {tuple(draws.shape)}")
    return draws.mean(0), draws.std(0, unbiased=False)


def std_image(std: torch.Tensor) -> torch.Tensor:
    """Per-pixel standard deviation scaled to [0, 1] for display (white = most uncertain), one channel."""
    s = std.mean(1, keepdim=True) if std.dim() == 4 else std
    top = float(s.max())
    return s / top if top > 0 else torch.zeros_like(s)


def draws_strip(x: torch.Tensor, m: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    """One row per example: input with missing pixels grey, then each draw, mean and std (as images).

    x, m: (N, C, H, W), (N, 1, H, W); draws (K, N, C, H, W) -> (N * (K + 3), C, H, W) for a grid whose row
    length is K + 3.
    """
    mean, std = summarise_draws(draws)
    spread = std_image(std).expand_as(mean)
    cols = [show_missing(x, m), *draws, mean, spread]
    return torch.stack(cols, dim=1).reshape(-1, *x.shape[1:])


def side_by_side(
    x: torch.Tensor, m: torch.Tensor, results: Mapping[str, torch.Tensor], truth: bool = True
) -> tuple[torch.Tensor, list[str]]:
    """Columns: ground truth (when `truth`), the input with missing pixels grey, then each method's
    completion (N, C, H, W). Returns the images row by row and the column titles."""
    cols = ([x] if truth else []) + [show_missing(x, m)]
    titles = (["truth"] if truth else []) + ["input"]
    for name, images in results.items():
        if tuple(images.shape) != tuple(x.shape):
            raise OptionError(f"{name} returned shape {tuple(images.shape)}; expected {tuple(x.shape)}")
        cols.append(images.to(x.dtype))
        titles.append(name)
    return torch.stack(cols, dim=1).reshape(-1, *x.shape[1:]), titles


# ---------------------------------------------------------------------------------------------
# Exports


@torch.no_grad()
def impute_dataset_draws(
    imputer: Imputer, x: torch.Tensor, m: torch.Tensor, draws: int = 1, seed: int = 0, batch_size: int = 500
) -> torch.Tensor:
    """K completions of every example: (K, N, C, H, W), observed pixels pasted back exactly.

    The imputer sees only observed entries (missing ones zeroed), so ground truth cannot leak in.
    """
    if draws < 1:
        raise OptionError(f"draws must be at least 1; got {draws}")
    gen = torch.Generator().manual_seed(seed)
    parts = []
    for start in range(0, len(x), batch_size):
        xb, mb = x[start : start + batch_size], m[start : start + batch_size]
        visible = torch.where(mb.bool(), xb, torch.zeros((), dtype=xb.dtype))
        filled = imputer.impute(visible, mb, draws=draws, generator=gen).detach().cpu().to(xb.dtype)
        parts.append(paste_observed(visible.unsqueeze(0), mb.unsqueeze(0), filled))
    return torch.cat(parts, dim=1)


def npz_bytes(
    x_imputed: torch.Tensor,
    m: torch.Tensor,
    x_input: torch.Tensor | None = None,
    meta: dict[str, Any] | None = None,
) -> bytes:
    """An .npz with x_imputed (K, N, C, H, W) float32, m (N, 1, H, W) uint8 and, optionally, x_input with NaN
    at missing entries and a JSON `meta` string."""
    buf = io.BytesIO()
    arrays: dict[str, np.ndarray] = {
        "x_imputed": x_imputed.detach().cpu().float().numpy(),
        "m": m.detach().cpu().to(torch.uint8).numpy(),
    }
    if x_input is not None:
        xi = x_input.detach().cpu().float().clone()
        xi[~m.bool().expand_as(xi)] = float("nan")
        arrays["x_input"] = xi.numpy()
    if meta is not None:
        arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def png_zip_bytes(x_imputed: torch.Tensor) -> bytes:
    """A zip of PNGs, one per example and draw: draw_K/NNNNN.png (grey-scale or RGB, 8 bits)."""
    from PIL import Image

    if x_imputed.dim() != 5:
        raise OptionError(f"expected (K, N, C, H, W); got {tuple(x_imputed.shape)}")
    arr = (x_imputed.detach().cpu().float().clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for k in range(arr.shape[0]):
            for i in range(arr.shape[1]):
                img = arr[k, i]
                pil = Image.fromarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0))
                png = io.BytesIO()
                pil.save(png, format="PNG")
                zf.writestr(f"draw_{k}/{i:05d}.png", png.getvalue())
    return buf.getvalue()


RUN_FILES = ("config.json", "model.safetensors", "state.pt", "metrics.jsonl")


def run_zip_bytes(run_path: str | Path) -> bytes:
    """A run folder's checkpoint as a zip: config, weights, optimizer state, metrics and latest grids."""
    root = Path(run_path)
    if not (root / "config.json").exists():
        raise FileNotFoundError(f"{root} is not a run folder (no config.json)")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in RUN_FILES:
            if (root / name).exists():
                zf.write(root / name, f"{root.name}/{name}")
        for png in sorted((root / "samples").glob("*_latest.png")):
            zf.write(png, f"{root.name}/samples/{png.name}")
    return buf.getvalue()


@dataclass
class ImputedExport:
    """An imputed dataset ready to download."""

    npz: bytes
    png_zip: bytes
    examples: int
    draws: int


def export_imputed(
    imputer: Imputer,
    x: torch.Tensor,
    m: torch.Tensor,
    draws: int = 1,
    seed: int = 0,
    meta: dict[str, Any] | None = None,
) -> ImputedExport:
    """Impute (x, m) K times and package the result as .npz bytes and a zip of PNGs."""
    imputed = impute_dataset_draws(imputer, x, m, draws=draws, seed=seed)
    return ImputedExport(npz_bytes(imputed, m, x, meta), png_zip_bytes(imputed), len(x), draws)
