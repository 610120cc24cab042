"""MisGAN Workbench engine: learn generative models and imputers from incomplete data.

The public API, used by the CLI, the pages and Python users alike:

    from misgan_core import DataSpec, MisGAN, MisGANConfig, open_run
    gan = MisGAN(MisGANConfig(data=DataSpec(mask="dropout", missing_rate=0.8), imputer=True), run_dir="runs/a")
    gan.train(300)
    run = open_run("runs/a")            # any run folder: MisGAN, GAIN, ConvAC, MF, MIWAE, ...
    draws = run.imputer.impute(x, m, draws=8)

Layers, lowest first (a module imports only from its own layer or lower ones; tests/test_layers.py checks):
  storage and helpers  errors, runs, grids, imputers, device, export, theory
  data                 data, masks, spec
  metrics              metrics/ (features, Fréchet distance, FID)
  networks             models, critic_gradients
  config               options (each option declared once), config (MisGANConfig: what defines a run)
  training             training (the one driver), jobs (background threads over training.Trainer)
  methods              methods/ (the registry: one module per method), misgan, baselines/, demo
  catalogue            catalog (methods, run folders, jobs), evaluation
  interface            cli, __main__, this package's API
"""

from .catalog import OpenedRun, RunInfo, list_runs, open_run
from .config import PRECISIONS, MisGANConfig
from .critic_gradients import gradient_penalty
from .data import (
    CompleteData,
    DatasetError,
    IncompleteDataset,
    dataset_status,
    list_datasets,
    load_complete,
    load_user_data,
)
from .device import native_bf16, pick_device
from .errors import CheckpointError, DiskFull, MisGANError, OptionError, RunBusy
from .evaluation import evaluate_run
from .imputers import Imputer, paste_observed
from .mask_models import MASK_MODELS
from .masks import (
    IndependentDropout,
    MaskProcess,
    QuadrantObservation,
    RectangleObservation,
    SquareObservation,
    make_incomplete,
    make_mask_process,
)
from .methods import METHODS, Method, Run, method
from .misgan import MisGAN, f_tau
from .models import TemperatureSigmoid
from .runs import RunDir
from .spec import DataSpec
from .training import StopTraining

MASK_ACTIVATIONS = TemperatureSigmoid.KINDS

__all__ = [
    "MASK_ACTIVATIONS", "MASK_MODELS", "METHODS", "PRECISIONS",
    "CheckpointError", "CompleteData", "DataSpec", "DatasetError", "DiskFull", "Imputer", "IncompleteDataset",
    "IndependentDropout", "MaskProcess", "Method", "MisGAN", "MisGANConfig", "MisGANError", "OpenedRun",
    "OptionError", "QuadrantObservation", "RectangleObservation", "Run", "RunBusy", "RunDir", "RunInfo",
    "SquareObservation", "StopTraining", "dataset_status",
    "evaluate_run", "f_tau", "gradient_penalty", "list_datasets", "list_runs", "load_complete",
    "load_user_data", "make_incomplete", "make_mask_process", "method", "native_bf16", "open_run", "paste_observed",
    "pick_device",
]
