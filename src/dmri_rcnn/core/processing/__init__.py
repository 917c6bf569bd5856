"""Training-data processing: TFRecord files and the training input pipeline.

``from dmri_rcnn.core.processing import save_tfrecord_data, TrainingProcessor`` as in the original README.
"""

from dmri_rcnn.core.processing.processor import TrainingProcessor
from dmri_rcnn.core.processing.tfrecord import load_tfrecord_data, save_tfrecord_data

__all__ = ["TrainingProcessor", "load_tfrecord_data", "save_tfrecord_data"]
