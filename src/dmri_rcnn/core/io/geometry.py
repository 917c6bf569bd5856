"""Crop geometry and octants: the bounding box of a subject's signal, and the 8-way split of an image."""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from dmri_rcnn.errors import InputError

__all__ = ["CropBox", "autocrop_dmri", "merge_octants", "split_image_to_octants", "uncrop"]


# ------------------------------------------------------------------------------------------- cropping


class CropBox(NamedTuple):
    """Spatial bounding box of a crop: voxels ``start[d] <= x < stop[d]`` along axes i, j, k."""

    start: tuple[int, int, int]
    stop: tuple[int, int, int]

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        """Index with ``image[box.slices]`` to crop an (i, j, k, ...) array."""
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop))

    @property
    def shape(self) -> tuple[int, int, int]:
        """Spatial shape of the cropped image."""
        return tuple(b - a for a, b in zip(self.start, self.stop))

    def shift_affine(self, affine: np.ndarray) -> np.ndarray:
        """Return the (4, 4) affine of the cropped image given the uncropped image's ``affine``."""
        shifted = np.array(affine, dtype=np.float64)
        shifted[:3, 3] = affine[:3, :3] @ np.asarray(self.start, dtype=np.float64) + affine[:3, 3]
        return shifted


def autocrop_dmri(dmri: np.ndarray, mask: np.ndarray, return_box: bool = False):
    """Crop ``dmri`` and ``mask`` to the bounding box of the voxels that hold signal or mask.

    A voxel counts as occupied when any of its volumes is non-zero or its mask value is > 0
    (the original summed raw values, so negative and positive signal could cancel; here any non-zero
    value counts). Only empty slices at the borders are dropped, so the result is a contiguous box
    that :func:`uncrop` puts back.

    Parameters
    ----------
    dmri : (i, j, k, q) signal.
    mask : (i, j, k) brain mask.
    return_box : also return the :class:`CropBox`.

    Returns
    -------
    dmri : (i', j', k', q), a view into the input.
    mask : (i', j', k'), a view into the input.
    box : CropBox, only with ``return_box=True``.
    """
    dmri = np.asarray(dmri)
    mask = np.asarray(mask)
    if dmri.ndim != 4:
        raise InputError(f"dmri: expected a 4D dMRI image (i, j, k, q), found shape {dmri.shape}")
    if mask.shape != dmri.shape[:3]:
        raise InputError(
            f"mask: expected a mask with the dMRI spatial shape {dmri.shape[:3]}, found shape {mask.shape}"
        )
    # a few volumes at a time: a whole-volume boolean copy is 1 GB at HCP size
    occupied = mask > 0
    for first in range(0, dmri.shape[3], 16):
        occupied |= np.any(dmri[..., first : first + 16] != 0, axis=3)
    if not occupied.any():
        raise InputError("dmri and mask: nothing to crop to, every voxel of both is zero")
    start, stop = [], []
    for axis in range(3):
        other_axes = tuple(a for a in range(3) if a != axis)
        present = np.flatnonzero(occupied.any(axis=other_axes))
        start.append(int(present[0]))
        stop.append(int(present[-1]) + 1)
    box = CropBox(tuple(start), tuple(stop))
    cropped = dmri[box.slices], mask[box.slices]
    return (*cropped, box) if return_box else cropped


def uncrop(cropped: np.ndarray, box: CropBox, full_shape: Sequence[int], fill_value=0) -> np.ndarray:
    """Put a cropped image back into the uncropped space, filling outside the box with ``fill_value``.

    Parameters
    ----------
    cropped : (i', j', k', ...) array, e.g. a model output computed on ``autocrop_dmri``'s result.
    box : the CropBox returned by ``autocrop_dmri(..., return_box=True)``.
    full_shape : spatial shape (i, j, k) of the uncropped image (extra entries are ignored).

    Returns
    -------
    (i, j, k, ...) array of ``cropped``'s dtype.
    """
    cropped = np.asarray(cropped)
    spatial = tuple(int(s) for s in full_shape[:3])
    if tuple(cropped.shape[:3]) != box.shape:
        raise InputError(f"uncrop: expected an array of spatial shape {box.shape}, found {cropped.shape[:3]}")
    if any(b > s for b, s in zip(box.stop, spatial)):
        raise InputError(f"uncrop: crop box {box} does not fit in full shape {spatial}")
    full = np.full(spatial + cropped.shape[3:], fill_value, dtype=cropped.dtype)
    full[box.slices] = cropped
    return full


# -------------------------------------------------------------------------------------------- octants


def split_image_to_octants(data: np.ndarray) -> list[np.ndarray]:
    """Split an image into 8 octants by halving each spatial axis at ``size // 2``.

    Used to keep each TFRecord under its 2 GiB limit. The order is the original's: the i-half varies
    slowest, then the j-half, then the k-half (``[i0j0k0, i0j0k1, i0j1k0, ..., i1j1k1]``); odd sizes put
    the extra slice in the second half.

    Parameters
    ----------
    data : (i, j, k, ...) array.

    Returns
    -------
    list of 8 arrays (views), each (i/2, j/2, k/2, ...) up to rounding.
    """
    data = np.asarray(data)
    if data.ndim < 3:
        raise InputError(f"split_image_to_octants: expected an (i, j, k, ...) image, found shape {data.shape}")
    halves = [(slice(0, n // 2), slice(n // 2, n)) for n in data.shape[:3]]
    return [data[si, sj, sk] for si in halves[0] for sj in halves[1] for sk in halves[2]]


def merge_octants(octants: Sequence[np.ndarray]) -> np.ndarray:
    """Exact inverse of :func:`split_image_to_octants`: reassemble the 8 octants into one image.

    Parameters
    ----------
    octants : 8 arrays in ``split_image_to_octants`` order.

    Returns
    -------
    (i, j, k, ...) array, bit-identical to the image that was split.
    """
    if len(octants) != 8:
        raise InputError(f"merge_octants: expected 8 octants, found {len(octants)}")
    parts = [np.asarray(o) for o in octants]
    try:
        pairs_k = [np.concatenate(parts[n : n + 2], axis=2) for n in range(0, 8, 2)]
        pairs_j = [np.concatenate(pairs_k[n : n + 2], axis=1) for n in range(0, 4, 2)]
        return np.concatenate(pairs_j, axis=0)
    except ValueError as err:
        raise InputError(f"merge_octants: octant shapes do not fit together ({err})") from None
