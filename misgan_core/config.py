"""What defines a MisGAN run: the config dataclass, its validation and its resolution rules."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .masks import DATA_DEPENDENT
from .metrics import default_fid_every
from .models import MASK_MODELS, TemperatureSigmoid
from .runs import CheckpointError
from .spec import FIELDS as DATA_FIELDS
from .spec import DataSpec

IMPUTER_MODES = ("joint", "standalone", "target")
# 'bf16' runs the training step under torch.autocast(bfloat16): the products take bfloat16 inputs and
# accumulate in float32, the weights and the optimizer stay float32. Where the CPU has bfloat16 instructions
# (AVX512-BF16, AMX) a 192x784x512 product runs 4.5x faster than in float32 (460 against 103 GFLOP/s, one
# thread); without them bfloat16 is emulated and slower, and device.native_bf16 says so.
PRECISIONS = ("fp32", "bf16")
# Gm's temperature lambda by mask model (a run stores the value it used). The paper's 0.66 for the independent
# Gm, whose network sets the scale of its own logits. The self-masking model draws each pixel's mask as a
# binary-concrete sample, output((a x + b + logistic noise) / lambda), whose slope in x is a m (1 - m) / lambda:
# at 0.66 it vanishes once a stroke is bright enough to be surely missing (x = 0.3 gives m ~ 1e-3 at the
# learnt a = -20), so nothing in L_x or L_m tells Gx how bright missing strokes are, and they stay dim. Measured
# on mnist-5k, self-masking 50% (k 20), 4,000 steps, one draw for both critics (README): sample intensity 0.060
# at 0.66, 0.089 at 1.5 and 0.135 at 3 (data 0.135); generation FID 527, 270 and 140. The conditional
# Gm(eps, x) learnt slower at 3 (live FID 1,375 against 1,118 at step 3,000 there; 180 against 153 at dropout
# 50%), so it keeps 0.66.
MASK_TEMPERATURE = {"independent": 0.66, "self-masking": 3.0, "conditional": 0.66}
# The self-masking model's mask critic judges draws of its own at the paper's 0.66: at 3 the soft masks Dm
# compares with binary ones bias the mechanism (under dropout 80% it learnt an offset observing 3% of pixels
# where the data observe 20%). Measured (4,000 steps, README): the intensity bias cut from 49.7% to 60.4% at
# self-masking 80% (and 61% instead of 99.9% at 50%); dropout 50% 91.5 against 116.6.
MASK_CRITIC_TEMPERATURE = 0.66
# The self-masking model's data critic draws at MASK_TEMPERATURE only where the learnt slope is steep; where it is
# near 0 (masks independent of the values: MCAR) at this lambda (SelfMaskingMaskModel.data_critic_temperature).
MASK_TEMPERATURE_FLOOR = 0.25


@dataclass
class MisGANConfig:
    """Everything that defines a run. Defaults are the paper's (section 2, 4 and appendix D)."""

    data: DataSpec = field(default_factory=DataSpec)  # dataset and missingness
    # model
    arch: str = "fc"                   # fc | conv (conv: 28x28 WGAN-GP layout, 32/64 DCGAN layout)
    latent: int = 128
    tau: float | None = None           # None: 0 (the paper), or -1 where a mask model that sees the image has a
                                       # data critic without the mask (data_critic_sees_mask False)
    mask_model: str = "independent"    # independent Gm(eps) | self-masking | conditional Gm(eps, x): MNAR
    temperature: float | None = None   # lambda of Gm's relaxed masks; None: MASK_TEMPERATURE[mask_model]
    temperature_final: float | None = None  # with temperature_steps: lambda decays geometrically from
    temperature_steps: int = 0         # `temperature` to this over that many generator steps, then stays
    mask_critic_temperature: float | None = None  # self-masking model: lambda of the draws Dm judges (their own
                                       # noise; equal to `temperature`: Dx's draws); None: 0.66 (MASK_TEMPERATURE)
    temperature_floor: float | None = None  # self-masking model: lambda of Dx's draws where the learnt slope is
                                       # 0, rising to `temperature` as |slope| reaches 2
                                       # (models.SelfMaskingMaskModel.data_critic_temperature); None:
                                       # MASK_TEMPERATURE_FLOOR; equal to `temperature`: no floor
    mask_activation: str = "sigmoid"   # sigmoid | stretched | hard-sigmoid | straight-through
    mask_noise: bool = False           # Gm draws each pixel with its own noise (models.NoisyMaskGenerator)
    data_critic_sees_mask: bool | None = None  # Dx judges (f_tau(x, m), m) as two channels, not f_tau(x, m) alone;
                                       # None: True for the mask models that see the image (module docstring)
    mask_channel_gate: bool | None = None  # self-masking model with the pair critic: Dx's mask channel weighed
                                       # by the learnt dependence min(1, (slope / 2) ** 2); None: True there
                                       # (see _data_critic_input)
    mask_critic: bool = True           # False: the AmbientGAN ablation (no Dm)
    ambient_masks: str = "learned"     # without Dm: 'learned' (Gm from alpha * L_x alone) or 'real' masks
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
        if self.ambient_masks not in ("learned", "real"):
            problems.append(f"ambient masks must be 'learned' or 'real'; got {self.ambient_masks!r}")
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
        if self.temperature_final is not None and not (math.isfinite(self.temperature_final)
                                                       and self.temperature_final > 0):
            problems.append(f"temperature_final must be a finite positive number; got {self.temperature_final}")
        if self.temperature_steps < 0 or (self.temperature_final is None) != (self.temperature_steps == 0):
            problems.append("anneal the temperature with both temperature_final and temperature_steps (at least "
                            f"1 generator step); got {self.temperature_final} and {self.temperature_steps}")
        if self.mask_critic_temperature is not None and (
                self.mask_model != "self-masking" or not (math.isfinite(self.mask_critic_temperature)
                                                          and self.mask_critic_temperature > 0)):
            problems.append("mask_critic_temperature is a positive lambda for the self-masking mask model; got "
                            f"{self.mask_critic_temperature} with mask model {self.mask_model!r}")
        elif self.mask_critic_temperature is not None and not self.mask_critic:
            problems.append("mask_critic_temperature sets the lambda of the draws the mask critic judges, and this "
                            "run has none (mask_critic False): drop --mask-critic-temperature or --no-mask-critic")
        if self.temperature_floor is not None:
            top = self.temperature if self.temperature is not None else MASK_TEMPERATURE.get(self.mask_model)
            if self.mask_model != "self-masking" or not (math.isfinite(self.temperature_floor)
                                                         and 0 < self.temperature_floor <= (top or 0)):
                problems.append("temperature_floor is the self-masking mask model's lambda where its slope is 0, "
                                f"above 0 and at most --temperature ({top}); got {self.temperature_floor} with "
                                f"mask model {self.mask_model!r}")
        if self.mask_channel_gate and (self.mask_model != "self-masking" or self.data_critic_sees_mask is False):
            problems.append("mask_channel_gate weighs the pair critic's mask channel by the self-masking model's "
                            "learnt slope: use it with --mask-model self-masking and the pair critic "
                            "(--data-critic-sees-mask)")
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
        if self.tau is not None and not math.isfinite(self.tau):
            problems.append(f"tau must be a finite number (the fill value of f_tau); got {self.tau}")
        if self.mask_activation not in TemperatureSigmoid.KINDS:
            problems.append(f"mask activation must be one of {', '.join(TemperatureSigmoid.KINDS)}; "
                            f"got {self.mask_activation!r}")
        if self.mask_model not in MASK_MODELS:
            problems.append(f"mask model must be one of {', '.join(MASK_MODELS)}; got {self.mask_model!r}")
        elif self.mask_model != "independent":
            if self.tau is not None and 0 <= self.tau <= 1 and self.data_critic_sees_mask is False:
                problems.append(f"mask model {self.mask_model!r} needs tau outside the data range [0, 1] so that "
                                f"the data critic sees which entries are missing without the mask; pass e.g. --tau -1, "
                                f"or give the data critic the mask (--data-critic-sees-mask, the default)")
            if not self.mask_critic and self.ambient_masks == "real":
                problems.append(f"mask model {self.mask_model!r} generates masks from images; it cannot be "
                                f"combined with --ambient-masks real")
            if self.mask_noise:
                problems.append("--mask-noise is for the independent mask model (the self-masking model draws "
                                "per-pixel noise already; the conditional one does not take it)")
        if problems:
            raise ValueError("; ".join(problems))

    def resolved(self) -> MisGANConfig:
        """This config with every None that means "decided when the run is made" filled in, as the run's
        config.json stores it (the sweep compares cells by these values)."""
        config = self
        if config.fid_every is None:  # "auto", resolved here once and stored in the run's config.json
            config = dataclasses.replace(config, fid_every=default_fid_every(config.data.dataset))
        if config.data_critic_sees_mask is None:  # the joint critic for the mask models that see the image
            config = dataclasses.replace(config, data_critic_sees_mask=config.mask_model != "independent")
        if config.tau is None:  # likewise: outside [0, 1] when the mask model sees the image and Dx is not shown
            # the mask itself (module docstring)
            joint_by_tau = config.mask_model != "independent" and not config.data_critic_sees_mask
            config = dataclasses.replace(config, tau=-1.0 if joint_by_tau else 0.0)
        if config.alpha is None:  # and Gm's share of L_x: the paper's 0.2, or 1 for a mask model that sees the
            # image, whose mechanism is learnt from L_x. Measured on mnist-5k, self-masking 50%, 4,000 steps:
            # generation FID 568 with 1 against 791 with 0.2, sample intensity 0.069 against 0.268 (data 0.135).
            config = dataclasses.replace(config, alpha=0.2 if config.mask_model == "independent" else 1.0)
        if config.temperature is None:
            config = dataclasses.replace(config, temperature=MASK_TEMPERATURE[config.mask_model])
        if config.mask_critic_temperature is None and config.mask_model == "self-masking" and config.mask_critic:
            config = dataclasses.replace(config, mask_critic_temperature=MASK_CRITIC_TEMPERATURE)
        if config.mask_channel_gate is None:
            config = dataclasses.replace(config, mask_channel_gate=config.mask_model == "self-masking"
                                         and bool(config.data_critic_sees_mask))
        if config.temperature_floor is None and config.mask_model == "self-masking":
            config = dataclasses.replace(config, temperature_floor=min(MASK_TEMPERATURE_FLOOR, config.temperature))
        return config

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "data"}
        return {"data": self.data.to_dict(), **d, "betas": list(self.betas)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MisGANConfig:
        """A config from config.json; reads the flat data fields of run folders made before DataSpec."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known - set(DATA_FIELDS) - {"kind", "inference_only", "made_from"})
        if unknown:
            raise CheckpointError(f"config has unknown fields {unknown}; it was written by a newer misgan_core")
        if "data_critic_sees_mask" not in d:  # runs made before the option: Dx saw f_tau(x, m) alone
            d = {**d, "data_critic_sees_mask": False}
        if "mask_critic_temperature" not in d and d.get("mask_model") == "self-masking":
            d = {**d, "mask_critic_temperature": d.get("temperature")}  # likewise: Dm judged Dx's draws
        if "mask_channel_gate" not in d:  # likewise: the mask channel at full weight
            d = {**d, "mask_channel_gate": False}
        if "temperature_floor" not in d and d.get("mask_model") == "self-masking":
            d = {**d, "temperature_floor": d.get("temperature")}  # likewise: Dx's draws at `temperature` throughout
        if d.get("mask_critic") is False and d.get("mask_critic_temperature") is not None:
            d = {**d, "mask_critic_temperature": None}  # stored by earlier versions without a Dm, and never used
        raw_data = d.get("data", d)
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
_OPTIONAL_FIELD_TYPES: dict[str, Any] = {"tau": 0.0, "alpha": 0.0, "fid_every": 0, "threads": 0, "pretrained": "",
                                         "data_critic_sees_mask": False, "temperature": 0.0,
                                         "temperature_final": 0.0, "mask_critic_temperature": 0.0,
                                         "temperature_floor": 0.0, "mask_channel_gate": False}


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
