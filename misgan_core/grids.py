"""Image grids for the run folder and the pages (uint8 arrays, PNG files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

MISSING_GREY = 0.5


def show_missing(x: torch.Tensor, m: torch.Tensor, grey: float = MISSING_GREY) -> torch.Tensor:
    """x with missing pixels drawn grey, the way the pages show incomplete data."""
    return torch.where(m.bool(), x, torch.full_like(x, grey))


MISSING_COLOUR = (1.0, 0.25, 0.25)  # a colour no grey image has, for pages that show one image large


def show_missing_colour(x: torch.Tensor, m: torch.Tensor, colour: tuple[float, float, float] = MISSING_COLOUR
                        ) -> torch.Tensor:
    """x as RGB with missing pixels in `colour`, so that they cannot be mistaken for grey image pixels."""
    rgb = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    fill = torch.tensor(colour, dtype=x.dtype).view(1, 3, 1, 1).expand_as(rgb)
    return torch.where(m.bool(), rgb, fill)


def grid_array(images: torch.Tensor, nrow: int = 8, pad: int = 1, pad_value: float = 1.0) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> one (rows*H, cols*W, C) uint8 array with thin separators."""
    images = images.detach().to("cpu", torch.float32).clamp(0, 1)
    n, c, h, w = images.shape
    ncol = max(1, min(nrow, n))
    nrows = max(1, -(-n // ncol))
    out = torch.full((c, nrows * (h + pad) + pad, ncol * (w + pad) + pad), pad_value)
    for i in range(n):
        r, k = divmod(i, ncol)
        out[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + k * (w + pad): pad + k * (w + pad) + w] = images[i]
    arr = (out * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
    return arr


def to_pil(images: torch.Tensor, nrow: int = 8, scale: int = 1, pad: int = 1):
    """A PIL image of the grid, each image pixel drawn as a scale x scale block. With one image and pad=0,
    image pixel (i, j) covers exactly canvas pixels [i*scale, (i+1)*scale) x [j*scale, (j+1)*scale)."""
    from PIL import Image

    arr = grid_array(images, nrow=nrow, pad=pad)
    img = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return img


def save_png(images: torch.Tensor, path: str | Path, nrow: int = 8) -> None:
    to_pil(images, nrow=nrow).save(path, format="PNG")
