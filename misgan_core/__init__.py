"""MisGAN Workbench engine: learn generative models and imputers from incomplete data.

The public API, used by the CLI, the pages and Python users alike.
"""

from .data import (
    CompleteData,
    DatasetError,
    IncompleteDataset,
    dataset_status,
    list_datasets,
    load_complete,
    load_user_data,
)
from .imputers import Imputer, paste_observed
from .masks import (
    IndependentDropout,
    MaskProcess,
    QuadrantObservation,
    RectangleObservation,
    SquareObservation,
    make_incomplete,
    make_mask_process,
)
from .misgan import MisGAN, MisGANConfig, StopTraining, f_tau, gradient_penalty, load_training_data, pick_device
from .runs import CheckpointError, RunDir, list_runs

__all__ = [
    "CheckpointError", "CompleteData", "DatasetError", "Imputer", "IncompleteDataset", "IndependentDropout",
    "MaskProcess", "MisGAN", "MisGANConfig", "QuadrantObservation", "RectangleObservation", "RunDir",
    "SquareObservation", "StopTraining", "dataset_status", "f_tau", "gradient_penalty", "list_datasets",
    "list_runs", "load_complete", "load_training_data", "load_user_data", "make_incomplete",
    "make_mask_process", "paste_observed", "pick_device",
]
