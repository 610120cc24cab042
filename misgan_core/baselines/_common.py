"""Small helpers shared by the baseline imputers (not part of the public API)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..errors import OptionError, UnknownOption


def rand(shape: tuple[int, ...], generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """U(0, 1) of `like`'s dtype and device, drawn from `generator` wherever that generator lives.

    A CPU generator cannot draw CUDA tensors directly, so draw on the generator's device and move.
    """
    if generator is None:
        return torch.rand(shape, dtype=like.dtype, device=like.device)
    out = torch.rand(shape, generator=generator, dtype=like.dtype, device=generator.device)
    return out.to(like.device)


def randn(shape: tuple[int, ...], generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """N(0, 1) counterpart of `rand`."""
    if generator is None:
        return torch.randn(shape, dtype=like.dtype, device=like.device)
    out = torch.randn(shape, generator=generator, dtype=like.dtype, device=generator.device)
    return out.to(like.device)


def observed_zero(x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x with missing entries set to exactly 0, boolean mask expanded over channels).

    torch.where rather than x * m: missing entries may hold NaN, and NaN * 0 is NaN.
    """
    mb = m.bool().expand_as(x)
    return torch.where(mb, x, torch.zeros((), dtype=x.dtype, device=x.device)), mb


def config_from_options(config_cls: type, options: dict[str, Any]) -> Any:
    """Build a config dataclass, naming the accepted options when one is unknown."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise UnknownOption(f"{config_cls.__name__} has no option {unknown[0]!r}; options are "
                            f"{', '.join(sorted(names))}")
    return config_cls(**options)


def check_shape(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    if len(shape) != 3 or any(int(s) < 1 for s in shape):
        raise OptionError(f"shape must be (C, H, W) with positive sizes; got {tuple(shape)}")
    c, h, w = (int(s) for s in shape)
    return c, h, w


def check_matches(x: torch.Tensor, shape: tuple[int, int, int], name: str) -> None:
    if tuple(x.shape[1:]) != tuple(shape):
        raise OptionError(f"{name} was built for images of shape {tuple(shape)}; got {tuple(x.shape[1:])}")
