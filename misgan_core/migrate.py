"""Old run folders through one door: every earlier layout of config.json brought to the current one.

Every config.json this version writes carries `"format": FORMAT`. A folder without it was written by an
earlier version; `migrate` rewrites its config in memory (the folder on disk is never changed), so the rest of
the engine only ever reads the current layout. The layouts, oldest first:

1. flat: the data fields (dataset, mask, missing_rate, ...) at the top level, before `DataSpec`; and, before
   data splits, no `split` (the run saw every training example, split "all": `DataSpec.from_dict`).
2. MisGAN runs without a recipe (every value stored; `_recipe_of` names the one they match), and with the
   options later removed (docs/experiments.md says what each one measured): a
   temperature anneal (`temperature_final`, `temperature_steps`), per-pixel mask noise (`mask_noise`), real
   masks for the AmbientGAN ablation (`ambient_masks`), and the self-masking model's settings that became its
   fixed rules (`data_critic_sees_mask`, `mask_channel_gate`, `temperature_floor`, `mask_critic_temperature`:
   mask_models.py).
3. The current one (FORMAT).

The shipped demos (misgan_core/assets/) are layout 2.
"""

from __future__ import annotations

from typing import Any

from .runs import CheckpointError
from .spec import FIELDS as DATA_FIELDS
from .spec import DataSpec

FORMAT = 3

# Keys a config.json may hold besides the config's own fields.
BOOKKEEPING_KEYS = frozenset({"kind", "format", "inference_only", "made_from"})


def migrate(config: dict[str, Any], where: str = "config.json") -> dict[str, Any]:
    """`config` (a MisGAN run folder's config.json: MisGANConfig.from_dict calls this) in the current layout.
    Refuses, in one line naming the option, a run whose behaviour depended on an option that is gone; `where`
    names the file in messages. A baseline's config.json numbers its own formats (baselines/runs.py): its flat
    layout comes through `nest_data_fields`, and GAIN's first widths through its entry in misgan_core.methods."""
    version = config.get("format", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{where}: 'format' must be a positive whole number; got {version!r}")
    if version > FORMAT:
        raise CheckpointError(f"{where} was written by a newer misgan_core (format {version}; this one reads up "
                              f"to {FORMAT}): upgrade misgan_core to open it")
    out = nest_data_fields(dict(config))
    if version < FORMAT:
        out = _drop_removed_misgan_options(out, where)
    out["format"] = FORMAT
    out.setdefault("recipe", _recipe_of(out))
    return out


def _recipe_of(config: dict[str, Any]) -> str:
    """The recipe a run made before recipes matches: 'recommended' where its weight averages and imputer
    settings are the recommended ones, else 'paper' (its stored values override the recipe's either way)."""
    recommended = config.get("ema") == 0.999 and config.get("imputer_sees_mask") is True \
        and config.get("imputer_critic_sees_mask") is True
    return "recommended" if recommended else "paper"


def data_spec_of(config: dict[str, Any]) -> DataSpec:
    """The DataSpec of any run folder's config.json, of any layout."""
    raw = nest_data_fields(dict(config))["data"]
    if not isinstance(raw, dict):
        raise CheckpointError(f"the config's data entry is not an object: {raw!r}")
    try:
        return DataSpec.from_dict(raw)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"the config's data fields are unusable: {err}") from err


def nest_data_fields(config: dict[str, Any]) -> dict[str, Any]:
    """Layout 1, any kind of run: the data fields move from the top level into `data`."""
    if "data" in config:
        return config
    data = {k: config.pop(k) for k in DATA_FIELDS if k in config}
    return {**config, "data": data}


def _drop_removed_misgan_options(config: dict[str, Any], where: str) -> dict[str, Any]:
    """Layout 2: the removed options. Each is dropped where the current rule reproduces what the run did when
    it samples and imputes (the training-only details of the self-masking model), and refused where it cannot."""
    sees_image = config.get("mask_model", "independent") != "independent"
    # Runs made before the option judged f_tau(x, m) alone; the current rule pairs (x * m, m) exactly for the
    # mask models that see the image, and the data critic's weights only fit the input they were trained on.
    if bool(config.pop("data_critic_sees_mask", False) or False) != sees_image:
        raise _gone(where, "data_critic_sees_mask", "its data critic judged a different input than this version "
                    "builds for that mask model")
    if config.pop("mask_noise", False):
        raise _gone(where, "mask_noise", "its mask generator had per-pixel noise, which this version does not build")
    if config.pop("ambient_masks", "learned") == "real":
        raise _gone(where, "ambient_masks", "it fed real masks to the data critic instead of Gm's")
    final, steps = config.pop("temperature_final", None), config.pop("temperature_steps", 0)
    if final is not None and steps:
        config["temperature"] = final  # Gm's lambda where its anneal ended, which its samples were drawn at
    for name in ("mask_channel_gate", "temperature_floor", "mask_critic_temperature"):
        config.pop(name, None)
    if config.get("tau") is None:
        config["tau"] = 0.0
    return config


def _gone(where: str, option: str, why: str) -> CheckpointError:
    return CheckpointError(f"{where} was trained with the option {option!r}, which this version no longer has "
                           f"({why}; docs/experiments.md): open it with an earlier misgan_core or train a new run")
