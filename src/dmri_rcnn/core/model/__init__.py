"""dMRI-RCNN models on Keras 3: :func:`get_3d_autoencoder` and :func:`get_1d_autoencoder`."""

from dmri_rcnn.core.model.autoencoder import (
    ARCHITECTURES,
    PATCH_SHAPE,
    Architecture,
    adam_optimizer,
    build_decoder,
    build_encoder,
    get_1d_autoencoder,
    get_3d_autoencoder,
    get_autoencoder,
)
from dmri_rcnn.core.model.layers import RepeatLatent, SampleWiseConv3D, TileBVectors, keras2_hard_sigmoid
from dmri_rcnn.core.model.trained import build_model_from_spec, load_trained_model, save_trained_model

__all__ = [
    "ARCHITECTURES",
    "PATCH_SHAPE",
    "Architecture",
    "RepeatLatent",
    "SampleWiseConv3D",
    "TileBVectors",
    "adam_optimizer",
    "build_decoder",
    "build_encoder",
    "build_model_from_spec",
    "get_1d_autoencoder",
    "get_3d_autoencoder",
    "get_autoencoder",
    "keras2_hard_sigmoid",
    "load_trained_model",
    "save_trained_model",
]
