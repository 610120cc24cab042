"""Which device trains and how many CPU threads it gets."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch

from .errors import OptionError

TRAINING_DEVICES = ("cpu", "cuda")


def pick_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise OptionError(f"unknown device {name!r}; use auto, cpu or cuda") from err
    if device.type not in TRAINING_DEVICES:
        raise OptionError(f"device {name!r} cannot hold a model's weights for training or imputing; use --device "
                          f"auto, cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise OptionError(f"device {name!r} asked for but no CUDA GPU is available here; use --device auto or cpu")
    return device


def native_bf16(device: torch.device) -> bool:
    """Whether bfloat16 products run natively: a CUDA GPU that supports them, or a CPU with AVX512-BF16 or
    AMX instructions (elsewhere oneDNN emulates bfloat16, slower than float32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return _cpu_has_bf16()


@functools.cache
def _cpu_has_bf16() -> bool:
    """The CPU's flags, read once per process (the Train page asks on every rerun)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:  # not Linux: ask oneDNN's view through torch's CPU capability string
        return "AVX512" in torch.backends.cpu.get_cpu_capability()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def configure_threads(threads: int | None = None) -> int:
    """Use the given number of torch CPU threads, or a sensible default for a UI process.

    torch's thread count is process-wide. On a small machine the UI server needs a core of its own, so
    training takes all but one core (at least one).
    """
    if threads is None:
        threads = max(1, (os.cpu_count() or 2) - 1)
    torch.set_num_threads(threads)
    return threads


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
