"""Training-data processing: TFRecord files and the training input pipeline.

``from dmri_rcnn.core.processing import save_tfrecord_data, TrainingProcessor`` as in the original README.
The TensorFlow-backed names are imported on first use, so the NumPy-only submodules (``directions``,
``shells``, ``patching``, ``scaling``) can be used without loading TensorFlow.
"""

from __future__ import annotations

import importlib

__all__ = ["TrainingProcessor", "load_tfrecord_data", "save_tfrecord_data"]

_LAZY = {
    "TrainingProcessor": "dmri_rcnn.core.processing.processor",
    "load_tfrecord_data": "dmri_rcnn.core.processing.tfrecord",
    "save_tfrecord_data": "dmri_rcnn.core.processing.tfrecord",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
