"""A subject's dMRI image with its b-vectors, b-values and mask, checked to fit together."""

from __future__ import annotations

from typing import NamedTuple

import nibabel as nib
import numpy as np

from dmri_rcnn.core.io.checks import check_finite
from dmri_rcnn.core.io.gradients import _count_columns, check_bvecs, load_bval, load_bvec
from dmri_rcnn.core.io.nifti import load_mask, load_nifti, load_nifti_image
from dmri_rcnn.errors import InputError
from dmri_rcnn.types import PathLike

__all__ = ["DMRISet", "affine_mismatch", "load_dmri_set", "validate_dmri_set"]


def validate_dmri_set(
    dmri: np.ndarray,
    bvecs: np.ndarray | None = None,
    bvals: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    names: dict[str, str] | None = None,
) -> None:
    """Check that a dMRI image and its companions fit together; raise InputError otherwise.

    Parameters
    ----------
    dmri : (i, j, k, q) signal.
    bvecs : (3, q) b-vectors, optional: unit vectors (see :func:`check_bvecs`), b0 volumes excepted.
    bvals : (q,) b-values, optional.
    mask : (i, j, k) brain mask, optional.
    names : how to name each item in messages (usually its file path), keys ``dmri``, ``bvec``,
        ``bval``, ``mask``.
    """
    names = {"dmri": "dmri", "bvec": "bvec", "bval": "bval", "mask": "mask", **(names or {})}
    dmri = np.asarray(dmri)
    if dmri.ndim != 4:
        raise InputError(f"{names['dmri']}: expected a 4D dMRI image (i, j, k, q), found shape {dmri.shape}")
    check_finite(dmri, names["dmri"])
    n_volumes = dmri.shape[3]
    if bvecs is not None:
        bvecs = np.asarray(bvecs)
        if bvecs.ndim != 2 or bvecs.shape[0] != 3:
            raise InputError(f"{names['bvec']}: expected b-vectors of shape (3, q), found shape {bvecs.shape}")
        check_finite(bvecs, names["bvec"])
        if bvecs.shape[1] != n_volumes:
            raise InputError(
                f"{names['bvec']}: has {bvecs.shape[1]} directions but {names['dmri']} has {n_volumes} volumes"
            )
    if bvals is not None:
        bvals = np.asarray(bvals)
        if bvals.ndim != 1:
            raise InputError(f"{names['bval']}: expected b-values of shape (q,), found shape {bvals.shape}")
        check_finite(bvals, names["bval"])
        if bvecs is not None and bvals.shape[0] != bvecs.shape[1]:
            raise InputError(
                f"{names['bval']}: has {bvals.shape[0]} b-values but {names['bvec']} has " f"{bvecs.shape[1]} b-vectors"
            )
        if bvals.shape[0] != n_volumes:
            raise InputError(
                f"{names['bval']}: has {bvals.shape[0]} b-values but {names['dmri']} has {n_volumes} volumes"
            )
    if bvecs is not None:
        check_bvecs(bvecs, names["bvec"], bvals=bvals)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != dmri.shape[:3]:
            raise InputError(
                f"{names['mask']}: expected a mask with the dMRI spatial shape {dmri.shape[:3]}, "
                f"found shape {mask.shape}"
            )
        check_finite(mask, names["mask"])


class DMRISet(NamedTuple):
    """A validated subject: signal, gradients, mask and geometry."""

    dmri: np.ndarray  #: (i, j, k, q) float32 signal
    bvecs: np.ndarray  #: (3, q) float32 unit directions
    bvals: np.ndarray | None  #: (q,) float32 b-values (s/mm²), if a b-value file was given
    mask: np.ndarray | None  #: (i, j, k) int8 brain mask, if a mask file was given
    affine: np.ndarray  #: (4, 4) voxel-to-world transform of the dMRI image
    header: nib.Nifti1Header | nib.Nifti2Header  #: header of the dMRI image


def load_dmri_set(
    dmri_path: PathLike,
    bvec_path: PathLike,
    bval_path: PathLike | None = None,
    mask_path: PathLike | None = None,
) -> DMRISet:
    """Load a dMRI image with its b-vectors (and optionally b-values and mask) and check they agree.

    Returns
    -------
    DMRISet
        ``dmri`` (i, j, k, q) float32, ``bvecs`` (3, q) float32, ``bvals`` (q,) float32 or None,
        ``mask`` (i, j, k) int8 (0/1) or None, ``affine`` (4, 4), ``header``.

    Raises
    ------
    InputError
        One line naming the offending file for any of: missing/truncated/non-NIfTI file, 3D where 4D
        is expected, bvec not 3×N or N×3, direction count ≠ volume count, b-value count ≠ b-vector
        count, mask spatial shape ≠ dMRI spatial shape, NaN/Inf values.
    """
    img = load_nifti_image(dmri_path)
    dmri, affine = load_nifti(dmri_path, np.float32, return_affine=True, ndim=4)
    bvals = load_bval(bval_path) if bval_path is not None else None
    names = {"dmri": str(dmri_path), "bvec": str(bvec_path), "bval": str(bval_path), "mask": str(mask_path)}
    bvecs = load_bvec(bvec_path, bvals=bvals if bvals is not None and bvals.size == _count_columns(bvec_path) else None)
    mask = load_mask(mask_path) if mask_path is not None else None
    validate_dmri_set(dmri, bvecs, bvals, mask, names)
    if mask is not None:
        mask = mask.astype(np.int8)
    return DMRISet(dmri, bvecs, bvals, mask, affine, img.header)


def affine_mismatch(affine: np.ndarray, reference: np.ndarray, tolerance: float = 1e-3) -> str | None:
    """Describe how a (4, 4) affine differs from ``reference`` (e.g. a mask's from its dMRI's), or None.

    Same voxel grid but a different voxel-to-world transform usually means the mask was made for another
    scan or resampled; the voxels are still matched by index, so the result may be meaningless.
    """
    affine = np.asarray(affine, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    difference = float(np.max(np.abs(affine - reference)))
    if difference <= tolerance:
        return None
    return (
        f"its affine differs from the dMRI's by up to {difference:.3g} mm; voxels are matched by index, so "
        "check that the mask belongs to this scan"
    )
