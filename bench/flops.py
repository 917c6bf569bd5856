"""Convolution FLOPs of the dMRI-RCNN, counted from its layer table (paper / original package layout).

Every convolution of the model is applied to every voxel of a 10³ patch ("same" padding: the zero-padded
border is computed like any other voxel), once per q-sample: encoder layers once per context direction
(q_in), decoder layers once per target direction (q_out). A convolution with kernel k, c_in input and
c_out output channels costs ``2 · k³ · c_in · c_out`` FLOPs per voxel (one multiply and one add per
weight). The ConvLSTM (1×1×1 kernels, 4 gates of 48 units) costs ``2 · (88 + 48) · 192`` per voxel and
context step. Activations, normalisations and concatenations are not counted (well under 1 %).

The same table also gives the parameter count, which is checked against the published totals
(3D 6,833,193; 1D 846,817) so that a wrong row cannot go unnoticed.
"""

from __future__ import annotations

PATCH_VOXELS = 10 * 10 * 10
LSTM_UNITS = 48

# (name, c_in, c_out, kernel, normalisation) — "layer": per-voxel gamma/beta (10³ each), "batch": 4·c_out
ENCODER = {
    3: [
        ("init", 4, 200, 1, "layer"),
        ("ecv11", 200, 104, 1, "layer"), ("ecv12", 200, 200, 2, "layer"), ("ecv13", 200, 72, 3, "layer"),
        ("ecv21", 380, 280, 1, "batch"), ("ecv22", 380, 240, 2, "batch"), ("ecv23", 380, 144, 3, "batch"),
        ("ecvl1", 668, 32, 1, "batch"), ("ecvl2", 32, 88, 1, "batch"),
    ],
    1: [
        ("init", 4, 200, 1, "layer"),
        ("ecv11", 200, 376, 1, "layer"),
        ("ecv21", 380, 664, 1, "batch"),
        ("ecvl1", 668, 32, 1, "batch"), ("ecvl2", 32, 88, 1, "batch"),
    ],
}
DECODER = {
    3: [
        ("dcvl1", 51, 176, 1, "batch"), ("dcvl2", 176, 224, 1, "batch"),
        ("dcv11", 227, 240, 1, "batch"), ("dcv12", 227, 256, 2, "batch"), ("dcv13", 227, 136, 3, "batch"),
        ("dcv21", 635, 176, 1, "batch"), ("dcv22", 635, 136, 2, "batch"), ("dcv23", 635, 88, 3, "batch"),
        ("dcv3", 403, 16, 1, None), ("dc4", 16, 1, 1, None),
    ],
    1: [
        ("dcvl1", 51, 176, 1, "batch"), ("dcvl2", 176, 224, 1, "batch"),
        ("dcv11", 227, 632, 1, "batch"),
        ("dcv21", 635, 400, 1, "batch"),
        ("dcv3", 403, 16, 1, None), ("dc4", 16, 1, 1, None),
    ],
}
LSTM_INPUT = 88


def _macs_per_voxel(layers) -> int:
    return sum(k**3 * c_in * c_out for _, c_in, c_out, k, _ in layers)


def encoder_flops_per_step(model_dim: int) -> int:
    """FLOPs of the encoder for one patch and one context direction (convolutions + ConvLSTM)."""
    lstm = (LSTM_INPUT + LSTM_UNITS) * 4 * LSTM_UNITS
    return 2 * PATCH_VOXELS * (_macs_per_voxel(ENCODER[model_dim]) + lstm)


def decoder_flops_per_step(model_dim: int) -> int:
    """FLOPs of the decoder for one patch and one target direction."""
    return 2 * PATCH_VOXELS * _macs_per_voxel(DECODER[model_dim])


def model_flops(model_dim: int, patches: int, q_in: int, q_out: int) -> int:
    """FLOPs of predicting ``q_out`` directions from ``q_in`` for ``patches`` 10³ patches."""
    return patches * (q_in * encoder_flops_per_step(model_dim) + q_out * decoder_flops_per_step(model_dim))


def parameter_count(model_dim: int) -> int:
    """Trainable + non-trainable parameters implied by the table (for checking it)."""
    total = 0
    for _, c_in, c_out, k, norm in ENCODER[model_dim] + DECODER[model_dim]:
        total += k**3 * c_in * c_out + c_out
        if norm == "layer":
            total += 2 * PATCH_VOXELS
        elif norm == "batch":
            total += 4 * c_out
    gates = 4 * LSTM_UNITS
    total += LSTM_INPUT * gates + LSTM_UNITS * gates + gates
    return total


PUBLISHED_PARAMETERS = {3: 6_833_193, 1: 846_817}


def patches_touching(mask, patch: int = 10) -> int:
    """Number of non-overlapping 10³ patches (after central zero padding) holding at least one mask voxel."""
    import numpy as np

    mask = np.asarray(mask) > 0
    pad = [(-s) % patch for s in mask.shape]
    padded = np.pad(mask, [(p // 2, p - p // 2) for p in pad])
    a, b, c = (s // patch for s in padded.shape)
    blocks = padded.reshape(a, patch, b, patch, c, patch)
    return int(blocks.any(axis=(1, 3, 5)).sum())


if __name__ == "__main__":
    for dim in (3, 1):
        print(f"{dim}D: parameters {parameter_count(dim):,} (published {PUBLISHED_PARAMETERS[dim]:,}); "
              f"encoder {encoder_flops_per_step(dim) / 1e9:.2f} GFLOP per patch and q_in, "
              f"decoder {decoder_flops_per_step(dim) / 1e9:.2f} GFLOP per patch and q_out")
