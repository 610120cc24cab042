"""Evaluation: FID as the paper measures it (LeNet features for MNIST-like data, Inception for RGB data),
imputation FID, RMSE on missing entries, and a cheap live FID for training curves.

Every FID value goes with its extractor's `label` ("FID (LeNet features)" or
"FID (Inception-v3 features)"); the two are different metrics and are never compared.
"""

from .features import (
    INCEPTION_LABEL,
    LENET_LABEL,
    ExtractorUnavailable,
    FeatureExtractor,
    InceptionExtractor,
    LeNetExtractor,
    feature_extractor,
    reference_statistics,
)
from .fid import (
    CURVE_EXAMPLES,
    LIVE_FID_EVERY,
    LIVE_FID_SAMPLES,
    LIVE_FID_SEED,
    HeldOutFID,
    LiveFID,
    default_fid_every,
    evaluate,
    generate,
    generation_fid,
    imputation_fid,
    impute_dataset,
    rmse_missing,
)
from .frechet import feature_statistics, frechet_distance
from .lenet import LeNet, classifier_accuracy, classifier_splits, load_classifier, train_classifier

__all__ = [
    "CURVE_EXAMPLES",
    "INCEPTION_LABEL",
    "LENET_LABEL",
    "LIVE_FID_EVERY",
    "LIVE_FID_SAMPLES",
    "LIVE_FID_SEED",
    "ExtractorUnavailable",
    "FeatureExtractor",
    "HeldOutFID",
    "InceptionExtractor",
    "LeNet",
    "LeNetExtractor",
    "LiveFID",
    "classifier_accuracy",
    "classifier_splits",
    "default_fid_every",
    "evaluate",
    "feature_extractor",
    "feature_statistics",
    "frechet_distance",
    "generate",
    "generation_fid",
    "imputation_fid",
    "impute_dataset",
    "load_classifier",
    "reference_statistics",
    "rmse_missing",
    "train_classifier",
]
