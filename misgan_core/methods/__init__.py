"""The method registry: every method the workbench trains, fits, samples from or imputes with.

    from misgan_core.methods import method
    run = method("gain").create("runs/g", DataSpec(mask="square", mask_size=14))
    run.train(500)
    run = open_run("runs/g")            # any run folder, as the same Run type
    draws = run.require_imputer().impute(x, m, draws=4)

Each entry is a `Method` (base.py) in a module of its own; the rest of the engine, the CLI and the pages ask
the entry what it can do (trainable, generates, imputes, label, budget, defaults) and never test which method
it is (tests/test_registry.py reads the source to check). Adding a method is one module defining its Method
plus one line in `_REGISTERED` below.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..data import IncompleteDataset
from ..errors import OptionError
from ..runs import CheckpointError, RunDir
from .base import CellContext, Method, Run, SampleFn
from .convac import CONVAC
from .gain import GAIN
from .mf import MF
from .misgan import MISGAN
from .miwae import MIWAE
from .notmiwae import NOTMIWAE
from .simple import MEAN, ZERO

_REGISTERED: tuple[Method, ...] = (
    MISGAN,
    GAIN,
    CONVAC,
    MF,
    MIWAE,
    NOTMIWAE,
    MEAN,
    ZERO,
)
METHODS: dict[str, Method] = {m.name: m for m in _REGISTERED}

# Run folders written before config.json named their method are MisGAN's, the only method there was.
UNNAMED_KIND = MISGAN.name


class UnknownMethod(OptionError):
    """A method name that is not in the registry; the message lists the choices."""


def method(name: str) -> Method:
    """The registry's entry for `name`."""
    if name not in METHODS:
        raise UnknownMethod(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[name]


def kind_of(config: Mapping[str, Any]) -> str:
    """The method name a run folder's config.json stores."""
    return str(config.get("kind", UNNAMED_KIND))


def method_of(config: Mapping[str, Any], path: str | Path = "") -> Method:
    """The registry's entry for a run folder's config.json; a CheckpointError names an unknown one."""
    kind = kind_of(config)
    if kind not in METHODS:
        where = f"{path} holds" if path else "the config names"
        raise CheckpointError(f"{where} a {kind!r} run, which this version cannot open; runs are one of "
                              f"{', '.join(METHODS)}")
    return METHODS[kind]


def load_run(path: str | Path, *, device: str | None = None, data: IncompleteDataset | None = None,
             for_training: bool = False) -> Run:
    """Any run folder, through its method (see Method.load)."""
    config = RunDir.open(path).read_config()
    return method_of(config, path).load(path, device=device, data=data, for_training=for_training)


def baselines() -> list[Method]:
    """The methods fitted with `baseline KIND` and from the Compare page, in registry order."""
    return [m for m in METHODS.values() if m.baseline]


__all__ = [
    "CellContext", "METHODS", "MISGAN", "Method", "Run", "SampleFn", "UNNAMED_KIND", "UnknownMethod", "baselines",
    "kind_of", "load_run", "method", "method_of",
]
