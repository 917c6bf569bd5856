"""Training of dMRI-RCNN models with per-epoch checkpoints, resume after interruption, and history.

- :mod:`dmri_rcnn.training.config`: :class:`TrainingConfig`, every setting of one training (TF-free);
- :mod:`dmri_rcnn.training.dataset`: the training and validation ``tf.data`` pipelines;
- :mod:`dmri_rcnn.training.checkpoint`: per-epoch checkpoints, resume state, the history TSV;
- :mod:`dmri_rcnn.training.devices`: the devices of one training (several through ``MirroredStrategy``);
- :mod:`dmri_rcnn.training.train`: the compiled model, the masked loss and :func:`train_model` with its
  :class:`TrainingOutputs`.

TensorFlow and Keras are imported only when a model is built or trained.
"""

from dmri_rcnn.training.checkpoint import HISTORY_COLUMNS, read_checkpoint_state, settings_fingerprint, write_history
from dmri_rcnn.training.config import LOSSES, LR_SCHEDULES, TrainingConfig, record_identity
from dmri_rcnn.training.train import (
    COSINE_FINAL_FRACTION,
    TrainingOutputs,
    build_model,
    configure_threads,
    list_tfrecords,
    masked_mean_absolute_error,
    train_model,
)

__all__ = [
    "COSINE_FINAL_FRACTION",
    "HISTORY_COLUMNS",
    "LOSSES",
    "LR_SCHEDULES",
    "TrainingConfig",
    "TrainingOutputs",
    "build_model",
    "configure_threads",
    "list_tfrecords",
    "masked_mean_absolute_error",
    "read_checkpoint_state",
    "record_identity",
    "settings_fingerprint",
    "train_model",
    "write_history",
]
