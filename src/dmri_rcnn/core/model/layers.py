"""Keras 3 building blocks of the dMRI-RCNN.

Tensors are channels-last with the q-space samples on axis 1, which the recurrent layer treats as time:
``(batch, q, x, y, z, channels)``. Every layer here is a registered, serialisable Keras object, so
models that use them save and load as ``.keras`` / ``.weights.h5`` without ``Lambda`` layers.
"""

from __future__ import annotations

import keras
from keras import layers, ops

PACKAGE = "dmri_rcnn"


@keras.saving.register_keras_serializable(package=PACKAGE)
def keras2_hard_sigmoid(x):
    """Piecewise-linear sigmoid of Keras 2: ``clip(0.2 x + 0.5, 0, 1)``.

    The published weights were trained with this as the ConvLSTM gate activation. Keras 3's own
    ``hard_sigmoid`` has slope 1/6 instead of 0.2 and would change every gate value.
    """
    return ops.clip(0.2 * x + 0.5, 0.0, 1.0)


@keras.saving.register_keras_serializable(package=PACKAGE)
class SampleWiseConv3D(layers.Conv3D):
    """3D convolution applied independently to each q-sample.

    Input ``(batch, q, x, y, z, c_in)`` -> output ``(batch, q, x', y', z', filters)``. The batch and q axes
    are merged for the convolution and split again afterwards, which is what ``TimeDistributed(Conv3D)``
    computes, without Keras 3's per-timestep loop when q is not known in advance.
    """

    def build(self, input_shape):
        """Create the kernel for one q-sample of ``input_shape = (batch, q, x, y, z, c_in)``."""
        super().build((None,) + tuple(input_shape[2:]))

    def call(self, inputs):
        """Convolve ``(batch, q, x, y, z, c_in)`` sample by sample into ``(batch, q, x', y', z', filters)``."""
        dynamic_shape = ops.shape(inputs)
        merged = ops.reshape(inputs, (-1,) + tuple(inputs.shape[2:]))
        convolved = super().call(merged)
        return ops.reshape(convolved, (dynamic_shape[0], dynamic_shape[1]) + tuple(convolved.shape[1:]))

    def compute_output_shape(self, input_shape):
        """Shape of :meth:`call`'s result; a 5-axis shape (one q-sample) gets Conv3D's answer."""
        if len(input_shape) == self.rank + 2:  # Conv3D.build asks about a single q-sample
            return super().compute_output_shape(input_shape)
        per_sample = super().compute_output_shape((None,) + tuple(input_shape[2:]))
        return (input_shape[0], input_shape[1]) + tuple(per_sample[1:])


@keras.saving.register_keras_serializable(package=PACKAGE)
class TileBVectors(layers.Layer):
    """Copy each b-vector to every voxel of a patch.

    ``(batch, q, 3)`` -> ``(batch, q, x, y, z, 3)`` for ``spatial_shape = (x, y, z)``.
    """

    def __init__(self, spatial_shape, **kwargs):
        super().__init__(**kwargs)
        self.spatial_shape = tuple(int(s) for s in spatial_shape)

    def call(self, bvecs):
        """Tile ``(batch, q, 3)`` b-vectors to ``(batch, q, x, y, z, 3)``."""
        dynamic_shape = ops.shape(bvecs)
        per_voxel = ops.reshape(bvecs, (dynamic_shape[0], dynamic_shape[1], 1, 1, 1, bvecs.shape[-1]))
        return ops.tile(per_voxel, (1, 1) + self.spatial_shape + (1,))

    def compute_output_shape(self, input_shape):
        """``(batch, q, 3)`` -> ``(batch, q, x, y, z, 3)``."""
        return (input_shape[0], input_shape[1]) + self.spatial_shape + (input_shape[-1],)

    def get_config(self):
        """Keras config: the base layer's plus ``spatial_shape`` (voxels, as a list)."""
        return {**super().get_config(), "spatial_shape": list(self.spatial_shape)}


@keras.saving.register_keras_serializable(package=PACKAGE)
class RepeatLatent(layers.Layer):
    """Repeat the latent volume once per target direction.

    Inputs ``[state (batch, x, y, z, c), bvecs (batch, q_out, 3)]`` -> ``(batch, q_out, x, y, z, c)``.
    """

    def call(self, inputs):
        """Repeat ``state (batch, x, y, z, c)`` along a new axis 1, once per row of ``bvecs (batch, q_out, 3)``."""
        state, bvecs = inputs
        repeats = ops.shape(bvecs)[1]
        return ops.repeat(ops.expand_dims(state, axis=1), repeats, axis=1)

    def compute_output_shape(self, input_shapes):
        """``[(batch, x, y, z, c), (batch, q_out, 3)]`` -> ``(batch, q_out, x, y, z, c)``."""
        state_shape, bvec_shape = input_shapes
        return (state_shape[0], bvec_shape[1]) + tuple(state_shape[1:])
