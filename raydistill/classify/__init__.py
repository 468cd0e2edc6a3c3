"""Evaluation core: action classifiers, clip augmentation, training loop, test metrics.

Pure torch / scikit-learn; the Ray Train shell of the evaluate stage lives in ``pipeline/``.
"""

from raydistill.classify.augment import (NO_AUGMENTATION, Augmentation, augment_clips,
                                         to_model_input)
from raydistill.classify.metrics import METRIC_NAMES, classification_metrics, summarize_seeds
from raydistill.classify.models import (C3D, CLASSIFIERS, PAPER_CLASSIFIERS, TOY_CLASSIFIERS,
                                        ClassifierPreset, ConvNet3D, VideoTransformer,
                                        build_classifier)
from raydistill.classify.training import (PAPER_TRAINING, TOY_TRAINING, SavedState,
                                          TrainSettings, evaluate, fit_classifier,
                                          iterate_batches, load_state, make_optimizer,
                                          make_scheduler, predict, save_state, train_one_epoch,
                                          unwrap)

__all__ = [
    "C3D", "CLASSIFIERS", "METRIC_NAMES", "NO_AUGMENTATION", "PAPER_CLASSIFIERS",
    "PAPER_TRAINING", "TOY_CLASSIFIERS", "TOY_TRAINING", "Augmentation", "ClassifierPreset",
    "ConvNet3D", "SavedState", "TrainSettings", "VideoTransformer", "augment_clips",
    "build_classifier", "classification_metrics", "evaluate", "fit_classifier",
    "iterate_batches", "load_state", "make_optimizer", "make_scheduler", "predict", "save_state",
    "summarize_seeds", "to_model_input", "train_one_epoch", "unwrap",
]
