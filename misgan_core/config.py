"""What defines a MisGAN run: the config dataclass, its validation and its resolution rules."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .mask_models import MASK_MODELS
from .masks import DATA_DEPENDENT
from .metrics import default_fid_every
from .migrate import BOOKKEEPING_KEYS, FORMAT, migrate
from .models import TemperatureSigmoid
from .runs import CheckpointError
from .spec import DataSpec

IMPUTER_MODES = ("joint", "standalone", "target")
# 'bf16' runs the training step under torch.autocast(bfloat16): the products take bfloat16 inputs and
# accumulate in float32; the weights, the optimizer and every evaluation stay float32. It pays only where the
# CPU has bfloat16 instructions (device.native_bf16; docs/performance.md).
PRECISIONS = ("fp32", "bf16")


@dataclass
class MisGANConfig:
    """Everything that defines a run. Defaults are the paper's (section 2, 4 and appendix D)."""

    data: DataSpec = field(default_factory=DataSpec)  # dataset and missingness
    # model
    arch: str = "fc"                   # fc | conv (conv: 28x28 WGAN-GP layout, 32/64 DCGAN layout)
    latent: int = 128
    tau: float = 0.0                   # f_tau's fill value for missing entries (eq. 3)
    mask_model: str = "independent"    # independent Gm(eps) | self-masking | conditional Gm(eps, x): MNAR
    temperature: float | None = None   # lambda of Gm's relaxed masks; None: the mask model's own
    mask_activation: str = "sigmoid"   # sigmoid | stretched | hard-sigmoid | straight-through
    mask_critic: bool = True           # False: the AmbientGAN ablation (no Dm)
    # optimisation
    steps: int = 300                   # generator updates
    batch_size: int = 64
    n_critic: int = 5
    alpha: float | None = None         # None: 0.2 (the paper) for the independent mask model, 1 otherwise
    gp_weight: float = 10.0
    lr: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.9])
    # imputer
    imputer: bool = False
    imputer_mode: str = "joint"        # joint (eq. 9-10) | standalone (eq. 9, pre-trained Gx) | target (eq. 11)
    pretrained: str | None = None      # run folder holding the pre-trained Gx for standalone / target
    beta: float = 0.1
    imputer_lr: float = 2e-4
    imputer_sees_mask: bool = False    # True: Ĝi also gets m (the released code's MaskImputer; not eq. 12)
    imputer_critic_sees_mask: bool = False  # True: Di judges (image, mask) pairs (see _imputer_critic_input)
    imputer_width: int = 500           # the FC imputer's hidden layers: width and number (paper: 2 of 500;
    imputer_depth: int = 2             # the released code: 3 of 784); the U-Net ignores them
    ema: float = 0.0                   # > 0: sample and impute with weight averages of Gx, Gm, Gi (this decay)
    imputer_start: int = 0             # generator steps of MisGAN alone before Gi and Di join (joint mode):
                                       # appendix D trains MisGAN 300 epochs, then its imputer 1000
    # bookkeeping
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    precision: str = "fp32"            # fp32 | bf16: the training step's matrix products in bfloat16 (autocast;
                                       # weights, Adam and every evaluation stay float32). See PRECISIONS.
    log_every: int = 10
    sample_every: int = 100
    checkpoint_every: int = 500
    checkpoint_minutes: float = 5.0    # also checkpoint whenever this much training time has passed
    fid_every: int | None = None       # live FID every N generator steps; 0 off; None: on where a FID
    fid_samples: int = 1000            # classifier exists for the data (resolved once, when the run is made)

    def validate(self) -> None:
        problems = []
        try:
            self.data.validate()
        except ValueError as err:
            problems.append(str(err))
        if self.arch not in ("fc", "conv"):
            problems.append(f"arch must be 'fc' or 'conv'; got {self.arch!r}")
        if self.imputer_mode not in IMPUTER_MODES:
            problems.append(f"imputer mode must be one of {', '.join(IMPUTER_MODES)}; got {self.imputer_mode!r}")
        if self.imputer and self.imputer_mode == "target" and self.data.mask in DATA_DEPENDENT:
            problems.append(f"imputer mode 'target' draws masks without data; {self.data.mask} masks depend on "
                            f"the images: use --imputer-mode joint")
        if not (isinstance(self.ema, (int, float)) and 0 <= self.ema < 1):
            problems.append(f"ema must be a decay in [0, 1) (0: off; e.g. 0.999); got {self.ema}")
        if self.imputer_start < 0:
            problems.append(f"imputer_start must be 0 or more generator steps; got {self.imputer_start}")
        elif self.imputer_start and not (self.imputer and self.imputer_mode == "joint"):
            problems.append("imputer_start (MisGAN alone first) needs the imputer in joint mode")
        if self.imputer and self.imputer_mode != "joint" and not self.pretrained:
            problems.append(f"imputer mode {self.imputer_mode!r} needs --pretrained RUN with a trained Gx")
        for name in ("steps", "batch_size", "n_critic", "latent", "log_every", "fid_samples", "imputer_width",
                     "imputer_depth"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1; got {getattr(self, name)}")
        for name in ("sample_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be 0 (only at the end) or more; got {getattr(self, name)}")
        if not (self.checkpoint_minutes >= 0):
            problems.append(f"checkpoint_minutes must be 0 (off) or more; got {self.checkpoint_minutes}")
        if self.fid_every is not None and self.fid_every < 0:
            problems.append(f"fid_every must be 0 (off) or more; got {self.fid_every}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}")
        if self.threads is not None and self.threads < 1:
            problems.append(f"threads must be at least 1; got {self.threads}")
        for name in ("alpha", "beta", "gp_weight", "lr", "imputer_lr", "temperature"):
            value = getattr(self, name)
            if value is None and name in ("alpha", "temperature"):
                continue
            if not math.isfinite(value) or value < 0 or (name == "temperature" and value == 0):
                kind = "positive" if name == "temperature" else "non-negative"
                problems.append(f"{name} must be a finite {kind} number; got {value}")
        if not (isinstance(self.betas, (list, tuple)) and len(self.betas) == 2 and all(
                isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in self.betas)):
            problems.append(f"betas must be two numbers in [0, 1) (Adam's); got {self.betas!r}")
        if not math.isfinite(self.tau):
            problems.append(f"tau must be a finite number (the fill value of f_tau); got {self.tau}")
        if self.mask_activation not in TemperatureSigmoid.KINDS:
            problems.append(f"mask activation must be one of {', '.join(TemperatureSigmoid.KINDS)}; "
                            f"got {self.mask_activation!r}")
        if self.mask_model not in MASK_MODELS:
            problems.append(f"mask model must be one of {', '.join(MASK_MODELS)}; got {self.mask_model!r}")
        if problems:
            raise ValueError("; ".join(problems))

    def resolved(self) -> MisGANConfig:
        """This config with every None that means "decided when the run is made" filled in, as the run's
        config.json stores it (the sweep compares cells by these values)."""
        config = self
        if config.fid_every is None:  # "auto", resolved here once and stored in the run's config.json
            config = dataclasses.replace(config, fid_every=default_fid_every(config.data.dataset))
        model = MASK_MODELS[config.mask_model]
        if config.alpha is None:  # Gm's share of L_x (eq. 7): the paper's 0.2, or the mask model's own
            config = dataclasses.replace(config, alpha=model.alpha)
        if config.temperature is None:
            config = dataclasses.replace(config, temperature=model.temperature)
        return config

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "data"}
        return {"format": FORMAT, "data": self.data.to_dict(), **d, "betas": list(self.betas)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MisGANConfig:
        """A config from config.json, of this version's layout or any earlier one (migrate.py)."""
        d = migrate(d)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known - BOOKKEEPING_KEYS)
        if unknown:
            raise CheckpointError(f"config has unknown fields {unknown}; it was written by a newer misgan_core")
        raw_data = d["data"]
        if not isinstance(raw_data, dict):
            raise CheckpointError(f"config's data entry is not an object: {raw_data!r}")
        defaults = cls()
        for name in known - {"data"}:
            like = _OPTIONAL_FIELD_TYPES.get(name, getattr(defaults, name))
            if name in d and not (d[name] is None and name in _OPTIONAL_FIELD_TYPES) and not _same_type(d[name], like):
                wanted = type(like).__name__
                raise CheckpointError(f"config field {name!r} holds {d[name]!r}, not a {wanted}; fix config.json "
                                      f"or start a new run")
        try:
            data = DataSpec.from_dict(raw_data)
            config = cls(data=data, **{k: v for k, v in d.items() if k in known and k != "data"})
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"config does not describe a MisGAN run: {err}") from err
        return config


# Fields whose default is None ("resolved when the run is made" or "not set"), with a value of their type.
_OPTIONAL_FIELD_TYPES: dict[str, Any] = {"alpha": 0.0, "fid_every": 0, "threads": 0, "pretrained": "",
                                         "temperature": 0.0}


def _same_type(value: Any, default: Any) -> bool:
    """Whether a config.json value fits a field whose default is `default` (None fields take anything)."""
    if default is None:
        return True
    if value is None:
        return False
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, type(default))
