"""The dMRI-RCNN autoencoder (Lyon, Armitage & Álvarez, MIDL 2022) on Keras 3.

The encoder reads ``q_in`` context volumes of a 10x10x10 patch with their b-vectors, extracts features
from every q-sample with 3D convolutions, and a ConvLSTM3D folds the q-samples into one latent volume
``(10, 10, 10, 48)``. The decoder repeats that latent for every target b-vector and predicts each target
volume independently. Widths, kernel sizes, concatenation order and normalisations are those of the
original package, so its published TensorFlow checkpoints load into these models
(:func:`dmri_rcnn.core.weights.load_original_checkpoint`).

Every convolution block is conv -> activation -> normalisation (in that order). "layer" normalisation is
``LayerNormalization`` over the three spatial axes, i.e. per sample, per q and per channel, with a
per-voxel gamma/beta of shape ``patch_shape``; "batch" is ``BatchNormalization`` over channels.
"""

from __future__ import annotations

import os

import keras
from keras import layers

from dmri_rcnn.core.architecture import (
    ARCHITECTURES,
    LSTM_UNITS,
    OUTPUT_ACTIVATIONS,
    PATCH_SHAPE,
    Architecture,
    Block,
    scaled_filters,
)
from dmri_rcnn.core.model.layers import (
    RepeatLatent,
    SampleWiseConv3D,
    TileBVectors,
    keras2_hard_sigmoid,
)
from dmri_rcnn.core.precision import KERAS_POLICIES, check_precision
from dmri_rcnn.core.weights import load_model_weights


def conv_block(
    tensor, block: Block, width: float, norm: str | None, activation: str = "swish", min_filters: int = 1
):
    """Conv3D on every q-sample -> activation -> optional normalisation.

    Parameters
    ----------
    tensor : KerasTensor, (batch, q, x, y, z, c_in)
    block : (name, filters, kernel_size); layers are named ``{name}_conv``, ``{name}_{activation}``,
        ``{name}_norm``.
    width : multiplier on ``filters``.
    norm : ``"layer"`` (spatial LayerNormalization), ``"batch"`` or ``None``.
    min_filters : floor of the scaled filter count (see :func:`dmri_rcnn.core.architecture.scaled_filters`).
    """
    name, filters, kernel_size = block
    tensor = SampleWiseConv3D(
        scaled_filters(filters, width, min_filters),
        kernel_size,
        padding="same",
        kernel_initializer="he_uniform",
        name=f"{name}_conv",
    )(tensor)
    tensor = layers.Activation(activation, name=f"{name}_{activation}")(tensor)
    if norm == "layer":
        tensor = layers.LayerNormalization(axis=(2, 3, 4), epsilon=1e-3, name=f"{name}_norm")(tensor)
    elif norm == "batch":
        tensor = layers.BatchNormalization(axis=-1, momentum=0.99, epsilon=1e-3, name=f"{name}_norm")(tensor)
    elif norm is not None:
        raise ValueError(f"unknown normalisation {norm!r}; expected 'layer', 'batch' or None")
    return tensor


def _branches(tensor, blocks, width, norm, skip, min_filters=1):
    outputs = [conv_block(tensor, block, width, norm, min_filters=min_filters) for block in blocks]
    return layers.Concatenate(axis=-1, name=f"{blocks[0][0][:-1]}_concat")([*outputs, skip])


def build_encoder(
    arch: Architecture,
    q_in: int | None = None,
    patch_shape=PATCH_SHAPE,
    lstm_units: int = LSTM_UNITS,
    width: float = 1.0,
    min_filters: int = 1,
    q_channels: int = 3,
) -> keras.Model:
    """Encoder: ``[image (batch, q_in, x, y, z), bvec (batch, q_in, q_channels)]`` -> latent
    ``(batch, x, y, z, units)``."""
    patch_shape = tuple(patch_shape)
    image = keras.Input(shape=(q_in, *patch_shape), name="image")
    bvec = keras.Input(shape=(q_in, q_channels), name="bvec")

    image_channel = layers.Reshape((-1, *patch_shape, 1), name="add_channel")(image)
    bvec_field = TileBVectors(patch_shape, name="tile_bvec")(bvec)
    # The q-space input (signal + b-vector channels) is re-attached after each branch block, like a skip connection.
    qspace = layers.Concatenate(axis=-1, name="qspace")([image_channel, bvec_field])

    init = conv_block(qspace, arch.encoder_init, width, "layer", min_filters=min_filters)
    tensor = _branches(init, arch.encoder_branch1, width, "layer", qspace, min_filters)
    tensor = _branches(tensor, arch.encoder_branch2, width, "batch", qspace, min_filters)
    for block in arch.encoder_latent:
        tensor = conv_block(tensor, block, width, "batch", min_filters=min_filters)
    latent = layers.ConvLSTM3D(
        scaled_filters(lstm_units, width, min_filters),
        1,
        activation="tanh",
        recurrent_activation=keras2_hard_sigmoid,
        return_sequences=False,
        name="conv_lstm",
    )(tensor)
    return keras.Model(inputs=[image, bvec], outputs=latent, name="encoder")


def build_decoder(
    arch: Architecture,
    q_out: int | None = None,
    patch_shape=PATCH_SHAPE,
    lstm_units: int = LSTM_UNITS,
    width: float = 1.0,
    min_filters: int = 1,
    q_channels: int = 3,
    output_activation: str = "relu",
) -> keras.Model:
    """Decoder: ``[state (batch, x, y, z, units), bvec (batch, q_out, q_channels)]`` -> ``(batch, q_out, x, y, z)``.

    Each target direction is decoded from the same latent, independently of the others. The last 1x1x1
    convolution (``dc4``) ends in ``output_activation`` (:data:`~dmri_rcnn.core.architecture.OUTPUT_ACTIVATIONS`).
    """
    patch_shape = tuple(patch_shape)
    state = keras.Input(shape=(*patch_shape, scaled_filters(lstm_units, width, min_filters)), name="state")
    bvec = keras.Input(shape=(q_out, q_channels), name="bvec")

    repeated = RepeatLatent(name="repeat_state")([state, bvec])
    bvec_field = TileBVectors(patch_shape, name="tile_bvec")(bvec)
    tensor = layers.Concatenate(axis=-1, name="state_bvec")([repeated, bvec_field])
    for block in arch.decoder_latent:
        tensor = conv_block(tensor, block, width, "batch", min_filters=min_filters)
    tensor = layers.Concatenate(axis=-1, name="dcvl_concat")([tensor, bvec_field])
    tensor = _branches(tensor, arch.decoder_branch1, width, "batch", bvec_field, min_filters)
    tensor = _branches(tensor, arch.decoder_branch2, width, "batch", bvec_field, min_filters)
    tensor = conv_block(tensor, arch.decoder_head, width, None, min_filters=min_filters)
    tensor = conv_block(tensor, ("dc4", 1, 1), 1.0, None, activation=output_activation)
    volumes = layers.Reshape((-1, *patch_shape), name="drop_channel")(tensor)
    return keras.Model(inputs=[state, bvec], outputs=volumes, name="decoder")


def adam_optimizer() -> keras.optimizers.Optimizer:
    """The original's optimiser: Adam, learning rate 1e-3, betas (0.9, 0.999), epsilon 1e-7."""
    return keras.optimizers.Adam(learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7)


def loss_scaled(optimizer, precision: str):
    """``optimizer`` wrapped in dynamic loss scaling for fp16 (small float16 gradients would underflow)."""
    if precision == "fp16":
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def _build_autoencoder(
    model_dim: int,
    weights: str | os.PathLike | None = None,
    width: float = 1.0,
    q_in: int | None = None,
    q_out: int | None = None,
    in_vox_shape=PATCH_SHAPE,
    lstm_size: int = LSTM_UNITS,
    loss="mae",
    precision: str = "fp32",
    min_filters: int = 1,
    q_channels: int = 3,
    output_activation: str = "relu",
) -> keras.Model:
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    if min_filters < 1:
        raise ValueError(f"min_filters must be >= 1, got {min_filters}")
    if output_activation not in OUTPUT_ACTIVATIONS:
        raise ValueError(f"output_activation must be one of {', '.join(OUTPUT_ACTIVATIONS)}, got {output_activation!r}")
    check_precision(precision)
    arch = ARCHITECTURES[model_dim]
    patch_shape = tuple(int(s) for s in in_vox_shape)
    # The dtype policy is read when each layer is created: bf16 layers keep float32 variables (so the same
    # weights load) and compute in bfloat16; normalisation statistics are still computed in float32.
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(KERAS_POLICIES[precision])
    try:
        encoder = build_encoder(arch, q_in, patch_shape, lstm_size, width, min_filters, q_channels)
        decoder = build_decoder(arch, q_out, patch_shape, lstm_size, width, min_filters, q_channels,
                                output_activation)
    finally:
        keras.config.set_dtype_policy(previous_policy)

    enc_images = keras.Input(shape=(q_in, *patch_shape), name="enc_images")
    enc_bvecs = keras.Input(shape=(q_in, q_channels), name="enc_bvecs")
    dec_bvecs = keras.Input(shape=(q_out, q_channels), name="dec_bvecs")
    outputs = decoder([encoder([enc_images, enc_bvecs]), dec_bvecs])
    if precision != "fp32":
        # Predictions and the loss see float32 whatever the compute precision (a weightless layer).
        outputs = layers.Activation("linear", dtype="float32", name="output_float32")(outputs)
    model = keras.Model(
        inputs=[enc_images, enc_bvecs, dec_bvecs], outputs=outputs, name=f"rcnn_{model_dim}d"
    )
    model.compile(loss=loss, optimizer=loss_scaled(adam_optimizer(), precision))

    if weights is not None:
        load_model_weights(model, weights, model_dim=model_dim)
    return model


def get_3d_autoencoder(weights=None, width: float = 1.0, **kwargs) -> keras.Model:
    """Compiled 3D dMRI-RCNN (6,833,193 parameters at ``width=1``), MAE loss, Adam(1e-3).

    Parameters
    ----------
    weights : str or path, optional
        A TensorFlow checkpoint prefix of the original package (``.../weights``, as returned by
        :func:`dmri_rcnn.core.weights.get_weights`) or a ``.weights.h5`` file saved by this package.
    width : float
        Multiplier on every filter count and on the ConvLSTM units (1.0 = the paper). Smaller widths are
        for quick CPU experiments; they cannot load the published weights.
    **kwargs
        ``q_in``, ``q_out`` (None = variable, the default), ``in_vox_shape`` (patch shape, (10, 10, 10)),
        ``lstm_size`` (48), ``loss`` ("mae"), ``precision`` ("fp32", the default; "bf16": the layers
        compute in bfloat16 under Keras' ``mixed_bfloat16`` policy while the variables stay float32, so
        the same weights load, faster on CPUs with AVX512-BF16/AMX and on recent GPUs, less exact; "fp16":
        float16 layers with a loss-scaling optimizer, the fast path of older GPUs; see
        :mod:`dmri_rcnn.core.precision`),
        ``min_filters`` (1): no layer is scaled below this many filters (or ConvLSTM units), so a small
        ``width`` can shrink the wide layers while the narrow recurrent bottleneck (ConvLSTM 48 units,
        the 32- and 88-filter layers before it, the 16-filter head) keeps enough channels to carry the
        signal's angular shape; ``q_channels`` (3): numbers per b-vector input, 4 for a model of the
        ``"b_value"`` q-space encoding (:func:`dmri_rcnn.core.processing.qspace.q_channels`);
        ``output_activation`` ("relu", the original's; "softplus": positive but never flat, so a training
        cannot stall at a zero output).

    Returns
    -------
    keras.Model
        Inputs ``enc_images (batch, q_in, 10, 10, 10)``, ``enc_bvecs (batch, q_in, 3)``,
        ``dec_bvecs (batch, q_out, 3)``; output ``(batch, q_out, 10, 10, 10)`` scaled signal.
    """
    return _build_autoencoder(3, weights, width, **kwargs)


def get_1d_autoencoder(weights=None, width: float = 1.0, **kwargs) -> keras.Model:
    """Compiled pointwise (1x1x1 kernels) dMRI-RCNN (846,817 parameters at ``width=1``).

    Same inputs, outputs and arguments as :func:`get_3d_autoencoder`. It still takes 10x10x10 patches
    because the spatial LayerNormalization has per-voxel parameters.
    """
    return _build_autoencoder(1, weights, width, **kwargs)


def get_autoencoder(model_dim: int, weights=None, width: float = 1.0, **kwargs) -> keras.Model:
    """:func:`get_1d_autoencoder` or :func:`get_3d_autoencoder` by ``model_dim`` (1 or 3)."""
    if model_dim not in ARCHITECTURES:
        raise ValueError(f"model_dim must be 1 or 3, got {model_dim!r}")
    return _build_autoencoder(model_dim, weights, width, **kwargs)
