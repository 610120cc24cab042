"""What defines a MisGAN run: the config dataclass, its validation and its resolution rules."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import CheckpointError, OptionError
from .mask_models import MASK_MODELS
from .masks import DATA_DEPENDENT
from .metrics import default_fid_every
from .migrate import BOOKKEEPING_KEYS, FORMAT, migrate
from .models import TemperatureSigmoid
from .options import CLI, NOWHERE, json_problems, option
from .options import problems as problems_of
from .spec import DataSpec

IMPUTER_MODES = ("joint", "standalone", "target")
# 'bf16' runs the training step under torch.autocast(bfloat16): the products take bfloat16 inputs and
# accumulate in float32; the weights, the optimizer and every evaluation stay float32. It pays only where the
# CPU has bfloat16 instructions (device.native_bf16; docs/performance.md).
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class RecipeRule:
    """A recipe's value that depends on the data: `rule(data_spec)`, and the rule in words for the docs."""

    rule: Callable[[DataSpec], Any]
    words: str


# The values a recipe gives the options left unset (None). 'paper' is appendix D: WGAN-GP's defaults (Adam betas
# (0, 0.9), Gulrajani et al. 2017), no weight average, and eq. 12's imputer and critic, which see images only.
# 'recommended' is the best the measurements support for each missingness (docs/reproduction.md, Recipes): a
# value may be a rule of the data spec, as the imputer's mask input, which paid for block masks and not under
# independent dropout.
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {"betas": [0.0, 0.9], "ema": 0.0, "imputer_sees_mask": False, "imputer_critic_sees_mask": False},
    "recommended": {"betas": [0.5, 0.9], "ema": 0.999, "imputer_critic_sees_mask": True,
                    "imputer_sees_mask": RecipeRule(lambda data: data.mask != "dropout",
                                                    "true, except under independent dropout")},
}


def _by_recipe(name: str) -> str:
    """A default each recipe sets, in words: "by recipe: recommended 0.999, paper 0"."""
    def shown(value: Any) -> str:
        if isinstance(value, RecipeRule):
            return value.words
        if isinstance(value, bool):
            return str(value).lower()
        return " ".join(map(str, value)) if isinstance(value, list) else f"{value:g}"
    return "by recipe: " + ", ".join(f"{recipe} {shown(values[name])}" for recipe, values in
                                     sorted(RECIPES.items(), reverse=True))


def _by_mask_model(attribute: str) -> str:
    """A default each mask model sets, in words: "by mask model: independent 0.66, self-masking 3, ..."."""
    return "by mask model: " + ", ".join(f"{m.name} {getattr(m, attribute):g}" for m in MASK_MODELS.values())


@dataclass
class MisGANConfig:
    """Everything that defines a run. Defaults are the paper's (section 2, 4 and appendix D). Each field is
    declared once (options.option): its help, the paper's value and where it shows; the command line, the
    Train page's form, config.json's checks and docs/options.md are made from these declarations."""

    data: DataSpec = option(default_factory=DataSpec, help="The dataset and its missingness process: the data "
                            "options of `train` (--dataset, --mask, --missing-rate, ...) and the page's data "
                            "picker (spec.DataSpec).")
    recipe: str = option("recommended", label="Recipe", choices=tuple(RECIPES), section="main",
                         choice_labels={"recommended": "recommended (best measured)", "paper": "paper (appendix D)"},
                         widget={"horizontal": True}, paper="paper",
                         help="The values of the options left unset: 'paper' is appendix D exactly; 'recommended' "
                              "adds weight averages, an imputer and imputer critic that see the mask, and Adam's "
                              "beta1 0.5 (the released code's), which scored better at the paper's budget; "
                              "short runs did as well or better with 'paper' (docs/reproduction.md, Recipes).")
    # model
    arch: str = option("fc", label="Architecture", choices=("fc", "conv"), section="main",
                       choice_labels={"fc": "FC (fast on CPU)", "conv": "Conv (paper's best, GPU)"},
                       widget={"horizontal": True}, paper="both (appendix D)",
                       help="The networks of appendix D: fully connected (FC-MisGAN), or convolutional "
                            "(Conv-MisGAN: WGAN-GP's layout for 28x28 images, DCGAN's for 32x32 and 64x64).")
    latent: int = option(128, low=1, shows=NOWHERE, internal="appendix D's code length; set it from Python",
                         paper="128 (appendix D)", help="Length of the latent codes of Gx and Gm.")
    tau: float = option(0.0, label="tau (fill value of f_tau)", paper="0 (section 5)",
                        widget={"min_value": -1.0, "max_value": 1.0, "step": 0.1},
                        help="The value the masking operator f_tau writes where an entry is missing (eq. 3).")
    mask_model: str = option("independent", label="Mask model", choices=tuple(MASK_MODELS),
                             paper="independent (section 2)",
                             help="Gm: independent Gm(eps) (the paper; right for MCAR missingness), "
                                  "self-masking (each pixel's own value sets its chance to be missing) or "
                                  "conditional Gm(eps, x), for missingness that depends on the data (MNAR).")
    temperature: float | None = option(None, label="Mask temperature lambda", low=0, open_low=True,
                                       auto=_by_mask_model("temperature"), metavar="LAMBDA",
                                       paper="0.66 (section 5)",
                                       widget={"min_value": 0.01, "max_value": 5.0, "step": 0.01},
                                       help="The lambda of Gm's relaxed masks sigma(x / lambda) (section 2): lower "
                                            "is closer to binary. The self-masking model's masks must still "
                                            "pass gradients to bright pixels, hence its higher lambda.")
    mask_activation: str = option("sigmoid", label="Mask activation", choices=tuple(TemperatureSigmoid.KINDS),
                                  paper="sigmoid (section 2)",
                                  help="Gm's output: the paper's sigmoid(x / lambda); stretched (the released "
                                       "code's default: the sigmoid scaled to (-0.1, 1.1) and clipped), "
                                       "hard-sigmoid and straight-through reach exact 0 and 1, which high missing "
                                       "rates need.")
    mask_critic: bool = option(True, shows=(CLI,), paper="yes; without it, the AmbientGAN of figure 7",
                               help="The mask critic Dm; --no-mask-critic is the AmbientGAN ablation (section 5, "
                                    "figure 7).")
    # optimisation
    steps: int = option(300, label="Generator steps", low=1, section="main", paper="300 epochs (appendix D)",
                        widget={"max_value": 1_000_000, "step": 100},
                        help="Generator updates; each follows n_critic critic updates.")
    batch_size: int = option(64, label="Batch size", low=1, widget={"max_value": 4096},
                             help="The global minibatch: under torchrun each of the N processes trains on "
                                  "batch-size / N rows.")
    n_critic: int = option(5, label="Critic steps per generator step", low=1, widget={"max_value": 50},
                           paper="5 (WGAN-GP's default, appendix D)",
                           help="Critic updates, one minibatch each, before every generator update.")
    alpha: float | None = option(None, label="alpha (Gm's share of L_x)", low=0, paper="0.2 (section 2)",
                                 auto=_by_mask_model("alpha"),
                                 widget={"max_value": 10.0, "step": 0.05},
                                 help="Eq. 7: Gm minimises L_m + alpha L_x, so its masks are also judged with "
                                      "the data. A mask model that sees the image learns its mechanism from "
                                      "L_x, hence 1 there.")
    gp_weight: float = option(10.0, low=0, shows=NOWHERE, internal="WGAN-GP's lambda, which appendix D keeps; "
                              "set it from Python", paper="10 (WGAN-GP's default, appendix D)",
                              help="Weight of the critics' gradient penalty.")
    lr: float = option(1e-4, label="Learning rate", low=0, paper="1e-4 (WGAN-GP's default, appendix D)",
                       widget={"min_value": 1e-6, "max_value": 0.1, "format": "%.5f"},
                       help="Adam's step size for Gx, Gm and the critics (the imputer's is imputer_lr).")
    betas: list[float] | None = option(None, shows=NOWHERE, auto=_by_recipe("betas"),
                                internal="Adam's moment decays; set them from Python or by the recipe",
                                paper="0 0.9 (WGAN-GP's defaults, appendix D)",
                                help="Adam's beta1 and beta2 for every network.")
    # imputer
    imputer: bool = option(False, label="Train the imputer Gi too", section="main",
                           help="Also train the imputer Gi (eq. 12); imputing, comparing and exports need it.")
    imputer_mode: str = option("joint", shows=(CLI,), choices=IMPUTER_MODES, paper="joint (eq. 9-10)",
                               help="joint: Gi trained with MisGAN (eq. 9-10); standalone: against a "
                                    "pre-trained Gx (eq. 9, --pretrained); target: eq. 11 (--pretrained).")
    pretrained: str | None = option(None, shows=(CLI,), metavar="RUN",
                                    help="Run folder holding the pre-trained Gx for imputer modes standalone and "
                                         "target.")
    beta: float = option(0.1, label="beta (Gx's share of L_i)", low=0, paper="0.1 (section 3)",
                         widget={"max_value": 10.0, "step": 0.05},
                         help="Eq. 10: with the imputer, Gx also minimises beta L_i, pulling its samples toward "
                              "imputed data.")
    imputer_lr: float = option(2e-4, low=0, shows=NOWHERE, internal="the imputer's step size; set it from Python",
                               help="Adam's step size for Gi and its critic Di.")
    imputer_sees_mask: bool | None = option(None, label="Imputer sees the mask", paper="no (eq. 12)",
                                     auto=_by_recipe("imputer_sees_mask"),
                                     help="Give Gi the mask as a second input (the released code's MaskImputer): "
                                          "under dropout it cannot otherwise tell an observed pixel from noise of "
                                          "the same value.")
    imputer_critic_sees_mask: bool | None = option(None, label="Imputer's critic sees the mask",
                                            paper="no (eq. 12)", auto=_by_recipe("imputer_critic_sees_mask"),
                                            help="Di judges (image, mask) pairs: each imputation against a Gx "
                                                 "sample carrying the same mask (a conditional critic).")
    imputer_width: int = option(500, shows=(CLI,), low=1, paper="500 (section 5)",
                                help="The FC imputer's hidden width (the U-Net ignores it).")
    imputer_depth: int = option(2, shows=(CLI,), low=1, paper="2 (section 5: a three-layer network)",
                                help="The FC imputer's hidden layers (the U-Net ignores it).")
    ema: float | None = option(None, label="Weight average (EMA decay)", low=0, high=1, open_high=True,
                        auto=_by_recipe("ema"), paper="0 (none)",
                        range_words="a decay in [0, 1) (0: off; e.g. 0.999)", metavar="DECAY",
                        widget={"max_value": 0.9999, "step": 0.001, "format": "%.4f"},
                        help="Sample and impute with exponential moving averages of Gx, Gm and Gi's weights "
                             "at this decay (e.g. 0.999; 0: off), which damps the GAN's step-to-step swings.")
    imputer_start: int = option(0, low=0, shows=NOWHERE,
                                internal="the sweep's paper budget sets it from appendix D's epochs",
                                paper="MisGAN 300 epochs, then the imputer (appendix D)",
                                help="Generator steps of MisGAN alone before Gi and Di join (joint mode).")
    # bookkeeping
    seed: int = option(0, label="Seed", low=0, widget={"max_value": 1_000_000},
                       help="Initial weights, noise and batch order: the same seed and settings train the same "
                            "run.")
    device: str = option("auto", shows=(CLI,), help="auto (CUDA when present), cpu or cuda.")
    threads: int | None = option(None, shows=(CLI,), low=1, auto="torch's choice", help="Torch CPU threads.")
    precision: str = option("fp32", label="Precision", choices=PRECISIONS,
                            help="bf16: the training step's matrix products in bfloat16 (autocast); weights, "
                                 "Adam and every evaluation stay float32. Faster only on GPUs and on CPUs with "
                                 "bfloat16 instructions (AVX512-BF16, AMX).")
    log_every: int = option(10, low=1, shows=NOWHERE, internal="the training log's cadence; set it from Python",
                            help="A line of losses in the training log every N generator steps.")
    sample_every: int = option(100, label="Save sample grids every N steps", low=0, widget={"min_value": 1,
                               "max_value": 100_000},
                               help="Grids of Gx and Gm samples (and imputations) in the run folder's samples/ "
                                    "every N generator steps (0: only at the end).")
    checkpoint_every: int = option(500, shows=(CLI,), low=0,
                                   help="Checkpoint every N generator steps (0: only at the end).")
    checkpoint_minutes: float = option(5.0, shows=(CLI,), low=0,
                                       help="Also checkpoint whenever this many minutes of training have passed "
                                            "(0: off).")
    fid_every: int | None = option(None, label="Live FID every N steps (0 = off)", low=0,
                                   auto="on where a FID classifier exists for the data",
                                   widget={"max_value": 100_000},
                                   help="Live FID cadence in generator steps: the FID of fid_samples Gx samples "
                                        "(and the imputer's imputation FID) for the live curves; 0: off.")
    fid_samples: int = option(1000, low=1, shows=NOWHERE, internal="the live FID's sample count; set it from "
                              "Python", help="Gx samples per live FID.")

    def validate(self) -> None:
        """Raise ValueError naming every field that cannot define a run: first each field's own type, choices
        and bounds (its declaration), then the rules between fields."""
        problems = problems_of(self)
        try:
            self.data.validate()
        except OptionError as err:
            problems.append(str(err))
        if problems:  # the rules below compare values of the right types
            raise OptionError("; ".join(problems))
        if self.imputer and self.imputer_mode == "target" and self.data.mask in DATA_DEPENDENT:
            problems.append(f"imputer mode 'target' draws masks without data; {self.data.mask} masks depend on "
                            f"the images: use --imputer-mode joint")
        if self.imputer_start and not (self.imputer and self.imputer_mode == "joint"):
            problems.append("imputer_start (MisGAN alone first) needs the imputer in joint mode")
        if self.imputer and self.imputer_mode != "joint" and not self.pretrained:
            problems.append(f"imputer mode {self.imputer_mode!r} needs --pretrained RUN with a trained Gx")
        if self.betas is not None and not (len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas)):
            problems.append(f"betas must be two numbers in [0, 1) (Adam's); got {self.betas!r}")
        if problems:
            raise OptionError("; ".join(problems))

    def resolved(self) -> MisGANConfig:
        """This config with every None that means "decided when the run is made" filled in, as the run's
        config.json stores it (the sweep compares cells by these values)."""
        config = self
        if config.fid_every is None:  # "auto", resolved here once and stored in the run's config.json
            config = dataclasses.replace(config, fid_every=default_fid_every(config.data.dataset))
        for name, value in RECIPES[config.recipe].items():  # the options left unset take the recipe's values
            if getattr(config, name) is None:
                value = value.rule(config.data) if isinstance(value, RecipeRule) else value
                config = dataclasses.replace(config, **{name: value})
        model = MASK_MODELS[config.mask_model]
        if config.alpha is None:  # Gm's share of L_x (eq. 7): the paper's 0.2, or the mask model's own
            config = dataclasses.replace(config, alpha=model.alpha)
        if config.temperature is None:
            config = dataclasses.replace(config, temperature=model.temperature)
        return config

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "data"}
        return {"format": FORMAT, "data": self.data.to_dict(), **d,
                "betas": None if self.betas is None else list(self.betas)}

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
        wrong = json_problems(cls, d)
        if wrong:
            raise CheckpointError(f"{wrong[0]}; fix config.json or start a new run")
        try:
            data = DataSpec.from_dict(raw_data)
            config = cls(data=data, **{k: v for k, v in d.items() if k in known and k != "data"})
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"config does not describe a MisGAN run: {err}") from err
        return config

