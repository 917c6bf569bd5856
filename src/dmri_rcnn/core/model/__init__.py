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
    "get_1d_autoencoder",
    "get_3d_autoencoder",
    "get_autoencoder",
    "keras2_hard_sigmoid",
]
