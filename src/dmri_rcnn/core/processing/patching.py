"""Cutting volumes into non-overlapping 3D patches (the training patcher of the original).

Each spatial axis is zero-padded up to a multiple of the patch size, with ``floor(pad / 2)`` voxels
before and the rest after, and tiled into non-overlapping patches in raster order (i slowest, k
fastest). Patches without a single mask voxel are dropped; voxels inside a kept patch are NOT masked.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from dmri_rcnn.errors import InputError

__all__ = ["central_padding", "extract_patches", "extract_patches_tf", "patch_grid_shape"]


def central_padding(spatial_shape: Sequence[int], patch_shape: Sequence[int] = (10, 10, 10)) -> np.ndarray:
    """(3, 2) int64 array of (before, after) zero padding making each axis a multiple of the patch size."""
    spatial = np.asarray(spatial_shape[:3], dtype=np.int64)
    patch = np.asarray(patch_shape, dtype=np.int64)
    if patch.shape != (3,) or np.any(patch < 1):
        raise InputError(f"patch_shape: expected 3 positive sizes, found {tuple(patch_shape)}")
    total = (-spatial) % patch
    return np.stack([total // 2, total - total // 2], axis=1)


def patch_grid_shape(spatial_shape: Sequence[int], patch_shape: Sequence[int] = (10, 10, 10)) -> tuple[int, int, int]:
    """Number of patches along i, j, k after central padding."""
    padded = np.asarray(spatial_shape[:3]) + central_padding(spatial_shape, patch_shape).sum(axis=1)
    return tuple(int(n) for n in padded // np.asarray(patch_shape))


def extract_patches(
    volume: np.ndarray, mask: np.ndarray, patch_shape: Sequence[int] = (10, 10, 10)
) -> tuple[np.ndarray, np.ndarray]:
    """Tile ``volume`` into patches that touch ``mask`` (NumPy).

    Parameters
    ----------
    volume : (i, j, k, ...) array.
    mask : (i, j, k) brain mask.
    patch_shape : (m, n, o).

    Returns
    -------
    patches : (P, m, n, o, ...) kept patches in raster order.
    kept : (P,) int64 raster indices of the kept patches in the (I, J, K) grid of
        :func:`patch_grid_shape`.
    """
    volume = np.asarray(volume)
    mask = np.asarray(mask)
    if mask.shape != volume.shape[:3]:
        raise InputError(f"mask: expected spatial shape {volume.shape[:3]}, found {mask.shape}")
    pad = central_padding(volume.shape, patch_shape)
    extra = volume.shape[3:]
    padded = np.pad(volume, np.concatenate([pad, np.zeros((len(extra), 2), np.int64)]))
    padded_mask = np.pad(mask > 0, pad)
    grid = patch_grid_shape(volume.shape, patch_shape)
    m, n, o = (int(s) for s in patch_shape)
    blocks = padded.reshape(grid[0], m, grid[1], n, grid[2], o, *extra)
    blocks = np.moveaxis(blocks, (1, 3), (3, 4)).reshape(-1, m, n, o, *extra)
    mask_blocks = padded_mask.reshape(grid[0], m, grid[1], n, grid[2], o).any(axis=(1, 3, 5)).ravel()
    kept = np.flatnonzero(mask_blocks)
    return blocks[kept], kept


def extract_patches_tf(volume, mask, patch_shape: Sequence[int] = (10, 10, 10)):
    """Graph version of :func:`extract_patches` for ``tf.data`` pipelines.

    Parameters
    ----------
    volume : (i, j, k, c) tensor.
    mask : (i, j, k) tensor.

    Returns
    -------
    (P, m, n, o, c) tensor of the patches that touch the mask, raster order.
    """
    import tensorflow as tf  # here, so the NumPy helpers above do not load TensorFlow

    patch = tf.constant(list(patch_shape), dtype=tf.int32)
    spatial = tf.shape(mask)[:3]
    total = tf.math.floormod(-spatial, patch)
    pad = tf.stack([total // 2, total - total // 2], axis=1)
    volume = tf.pad(volume, tf.concat([pad, tf.zeros([1, 2], tf.int32)], axis=0))
    mask = tf.pad(tf.cast(tf.not_equal(mask, 0), tf.int32), pad)
    grid = (spatial + total) // patch
    m, n, o = (int(s) for s in patch_shape)
    blocks = tf.reshape(volume, [grid[0], m, grid[1], n, grid[2], o, -1])
    blocks = tf.reshape(tf.transpose(blocks, [0, 2, 4, 1, 3, 5, 6]), [-1, m, n, o, tf.shape(volume)[-1]])
    mask_blocks = tf.reshape(mask, [grid[0], m, grid[1], n, grid[2], o])
    touches = tf.reshape(tf.reduce_any(tf.not_equal(mask_blocks, 0), axis=[1, 3, 5]), [-1])
    return tf.boolean_mask(blocks, touches, axis=0)
