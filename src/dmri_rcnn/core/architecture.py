"""The dMRI-RCNN architecture as data: blocks, widths, kernel sizes, patch shape and checkpoint keys.

Both the Keras model builder (:mod:`dmri_rcnn.core.model`) and the checkpoint converter
(:mod:`dmri_rcnn.core.weights`) read this one description, so neither needs the other to know what a
model is made of. It imports neither TensorFlow nor Keras.

A block is ``(name, filters at width 1.0, cubic kernel size)``; its layers are ``{name}_conv``,
``{name}_{activation}`` and ``{name}_norm``. Parallel blocks are concatenated in the order listed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: Spatial shape (voxels) of a patch; the layer normalisations have per-voxel parameters of this shape.
PATCH_SHAPE = (10, 10, 10)
#: Units of the encoder's ConvLSTM3D (channels of the latent volume).
LSTM_UNITS = 48

#: The last layer's activation: ``"relu"`` (the original's; every published model) or ``"softplus"``, which
#: is positive like the ReLU but never flat, so a training cannot stall with its output at zero.
OUTPUT_ACTIVATIONS = ("relu", "softplus")

#: A convolution block: (name, filters at width 1.0, cubic kernel size).
Block = tuple[str, int, int]


def scaled_filters(filters: int, width: float, min_filters: int = 1) -> int:
    """``filters * width`` rounded, but never below ``min_filters`` (nor above ``filters`` for that reason)."""
    return max(min(filters, int(min_filters)), 1, int(round(filters * width)))


@dataclass(frozen=True)
class Architecture:
    """Layer widths of one model variant. Parallel blocks are concatenated in the order listed."""

    encoder_init: Block
    encoder_branch1: tuple[Block, ...]
    encoder_branch2: tuple[Block, ...]
    encoder_latent: tuple[Block, ...]
    decoder_latent: tuple[Block, ...]
    decoder_branch1: tuple[Block, ...]
    decoder_branch2: tuple[Block, ...]
    decoder_head: Block

    def encoder_blocks(self) -> list[str]:
        """Weight-bearing encoder layers in creation order (the original checkpoint's numbering)."""
        blocks = [self.encoder_init, *self.encoder_branch1, *self.encoder_branch2, *self.encoder_latent]
        return [name for name, _, _ in blocks] + ["conv_lstm"]

    def decoder_blocks(self) -> list[str]:
        """Weight-bearing decoder layers in creation order; the last two have no normalisation."""
        blocks = [*self.decoder_latent, *self.decoder_branch1, *self.decoder_branch2, self.decoder_head]
        return [name for name, _, _ in blocks] + ["dc4"]

    def layer_filters(self, width: float = 1.0, min_filters: int = 1,
                      lstm_units: int = LSTM_UNITS) -> tuple[tuple[str, int], ...]:
        """``(block, filters)`` of every weight-bearing block as built at ``width`` (encoder, then decoder).

        Two descriptions build the same network exactly when these agree (with the patch shape): e.g.
        width 1.0 gives every block at least 16 filters, so ``min_filters`` 1 and 16 build the same layers.
        """
        blocks = [self.encoder_init, *self.encoder_branch1, *self.encoder_branch2, *self.encoder_latent]
        found = [(name, scaled_filters(filters, width, min_filters)) for name, filters, _ in blocks]
        found.append(("conv_lstm", scaled_filters(lstm_units, width, min_filters)))
        blocks = [*self.decoder_latent, *self.decoder_branch1, *self.decoder_branch2, self.decoder_head]
        found += [(name, scaled_filters(filters, width, min_filters)) for name, filters, _ in blocks]
        return (*found, ("dc4", 1))

    def checkpoint_keys(self) -> list[tuple[str, str, str]]:
        """``(sub-model, block, checkpoint key prefix)`` of every weight-bearing block.

        The prefix is the original TensorFlow checkpoint's object path, e.g.
        ``layer_with_weights-0/layer_with_weights-3`` for the encoder's fourth block; the variables follow
        (``/conv_layer/layer/kernel``, ``/norm_layer/gamma``, ``/cell/kernel`` ...).
        """
        keys = []
        for index, (sub_name, blocks) in enumerate(
            (("encoder", self.encoder_blocks()), ("decoder", self.decoder_blocks()))
        ):
            for position, block in enumerate(blocks):
                keys.append((sub_name, block, f"layer_with_weights-{index}/layer_with_weights-{position}"))
        return keys

    def stored_array_count(self) -> int:
        """Number of arrays the built Keras model stores (its ``len(model.weights)``), at any width.

        Each convolution has a kernel and a bias; a spatial LayerNormalization (``init`` and the first
        encoder branch) adds gamma and beta, a BatchNormalization (the other blocks but ``dcv3``) adds
        gamma, beta and the two moving statistics; the ConvLSTM holds three arrays and ``dc4`` a kernel
        and a bias.
        """
        layer_norm = 1 + len(self.encoder_branch1)
        batch_norm = (
            len(self.encoder_branch2)
            + len(self.encoder_latent)
            + len(self.decoder_latent)
            + len(self.decoder_branch1)
            + len(self.decoder_branch2)
        )
        return layer_norm * (2 + 2) + batch_norm * (2 + 4) + 2 + 3 + 2


#: The two published variants by model dimension: 1 (1D, per-voxel) and 3 (3D, patch) models.
ARCHITECTURES: dict[int, Architecture] = {
    3: Architecture(
        encoder_init=("init", 200, 1),
        encoder_branch1=(("ecv11", 104, 1), ("ecv12", 200, 2), ("ecv13", 72, 3)),
        encoder_branch2=(("ecv21", 280, 1), ("ecv22", 240, 2), ("ecv23", 144, 3)),
        encoder_latent=(("ecvl1", 32, 1), ("ecvl2", 88, 1)),
        decoder_latent=(("dcvl1", 176, 1), ("dcvl2", 224, 1)),
        decoder_branch1=(("dcv11", 240, 1), ("dcv12", 256, 2), ("dcv13", 136, 3)),
        decoder_branch2=(("dcv21", 176, 1), ("dcv22", 136, 2), ("dcv23", 88, 3)),
        decoder_head=("dcv3", 16, 1),
    ),
    # The pointwise variant keeps the 3D model's concatenated widths (380, 668, 227, 635, 403).
    1: Architecture(
        encoder_init=("init", 200, 1),
        encoder_branch1=(("ecv11", 376, 1),),
        encoder_branch2=(("ecv21", 664, 1),),
        encoder_latent=(("ecvl1", 32, 1), ("ecvl2", 88, 1)),
        decoder_latent=(("dcvl1", 176, 1), ("dcvl2", 224, 1)),
        decoder_branch1=(("dcv11", 632, 1),),
        decoder_branch2=(("dcv21", 400, 1),),
        decoder_head=("dcv3", 16, 1),
    ),
}


def model_dim_of_encoder(layer_names: Iterable[str]) -> int:
    """The model dimension (1 or 3) whose encoder has exactly these weight-bearing blocks.

    Parameters
    ----------
    layer_names : names of the layers of a built encoder (``{block}_conv``, ``conv_lstm`` ...).

    Raises
    ------
    ValueError
        If the layers match no architecture in :data:`ARCHITECTURES`.
    """
    names = set(layer_names)
    blocks = {name[: -len("_conv")] for name in names if name.endswith("_conv")}
    if "conv_lstm" in names:
        blocks.add("conv_lstm")
    for dim, arch in ARCHITECTURES.items():
        if blocks == set(arch.encoder_blocks()):
            return dim
    raise ValueError(f"the encoder's blocks {sorted(blocks)} match neither the 1D nor the 3D dMRI-RCNN")
