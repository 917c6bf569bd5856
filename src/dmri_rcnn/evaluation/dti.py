"""Downstream evaluation: diffusion tensor (DTI) maps fitted with DIPY and their errors.

The acquisition of the fitted volumes travels as one DIPY ``GradientTable`` (b-values in s/mm², b-vectors,
the b0 threshold), built by :func:`dmri_rcnn.core.io.make_gradient_table` or
:func:`dmri_rcnn.core.io.load_gradient_table`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from dipy.reconst.dti import TensorModel
from tqdm import tqdm

from dmri_rcnn.errors import InputError
from dmri_rcnn.evaluation.metrics import as_volumes

#: Principal-direction errors are measured only where the reference FA exceeds this (clear single fibre).
FA_THRESHOLD = 0.2

#: A tensor whose mean diffusivity exceeds this (mm^2/s; free water at body temperature is 0.003) fits
#: signal that no tissue gives, e.g. predictions clipped from <= 0 to DIPY's minimum signal.
MAX_PLAUSIBLE_MD = 0.01


@dataclass
class DTIMaps:
    """Scalar and directional DTI maps of one image.

    Attributes
    ----------
    fa : (i, j, k) ndarray
        Fractional anisotropy (0..1); 0 outside the fitted mask.
    md : (i, j, k) ndarray
        Mean diffusivity in mm^2/s when b-values are in s/mm^2.
    pdd : (i, j, k, 3) ndarray
        Unit principal eigenvector (sign arbitrary).
    failed : (i, j, k) bool ndarray
        Masked voxels whose fit failed (see :func:`fit_dti`); their FA, MD and PDD are 0 and every
        error metric leaves them out.
    """

    fa: np.ndarray
    md: np.ndarray
    pdd: np.ndarray
    failed: np.ndarray | None = None


#: Masked voxels fitted at a time. A multiple of DIPY's own chunk (10,000 voxels in ``iter_fit_tensor``),
#: so a blocked fit hands DIPY the same chunks as one whole-mask fit and gives the same numbers. With 108
#: volumes a block costs ~0.3 GB above the maps at HCP size (peak RSS of the whole evaluation 3.58 GB
#: here, against 3.63 GB with 50,000 and 3.73 GB with 100,000 voxels per block; the same time).
DTI_BLOCK_VOXELS = 20_000


def fit_dti(dmri, gtab, mask, fit_method: str = "WLS", block_voxels: int = DTI_BLOCK_VOXELS) -> DTIMaps:
    """Fit a diffusion tensor in every masked voxel.

    Parameters
    ----------
    dmri : (i, j, k, n) array_like
        Signal including at least one b0 volume; any float dtype (float32 is not copied to float64 whole).
    gtab : dipy.core.gradients.GradientTable
        The n volumes' b-values in s/mm^2 (the acquired values, not the nominal shell) and directions
        (:func:`dmri_rcnn.core.io.make_gradient_table`).
    mask : (i, j, k) array_like of bool
    fit_method : str
        DIPY ``TensorModel`` fit method (weighted least squares by default).
    block_voxels : int
        Masked voxels fitted at a time (see :func:`fit_dti_in_blocks`).

    Returns
    -------
    DTIMaps
        With ``failed`` marking masked voxels where the fit failed: non-finite values, an eigenvalue
        clipped to DIPY's minimum diffusivity (the signal does not decay with b), or a mean
        diffusivity above ``MAX_PLAUSIBLE_MD``.
    """
    data = np.asarray(dmri)
    n_volumes = len(gtab.bvals)
    if data.ndim != 4 or data.shape[-1] != n_volumes:
        raise InputError(f"DTI fit needs a 4D image with {n_volumes} volumes; found shape {data.shape}")
    return fit_dti_in_blocks([data], gtab, mask, fit_method=fit_method, block_voxels=block_voxels)


def _as_image_part(image, spatial_shape) -> np.ndarray:
    arr = as_volumes(image)
    if arr.ndim != 4 or arr.shape[:3] != tuple(spatial_shape):
        raise InputError(f"DTI fit needs images of spatial shape {tuple(spatial_shape)}; found shape {arr.shape}")
    return arr


def _checked_fit_inputs(images, gtab, mask, block_voxels):
    """The mask as bool and the images as (i, j, k, n_part) parts, after checking that they agree with
    the table and that every voxel is finite."""
    n_table = len(gtab.bvals)
    if int(block_voxels) < 1:
        raise InputError(f"DTI block_voxels must be >= 1; found {block_voxels}")
    mask_arr = np.asarray(mask) > 0
    if mask_arr.ndim != 3:
        raise InputError(f"DTI fit needs a 3D mask; found shape {mask_arr.shape}")
    parts = [_as_image_part(image, mask_arr.shape) for image in images]
    n_volumes = sum(part.shape[-1] for part in parts)
    if n_volumes != n_table:
        shapes = ", ".join(str(part.shape) for part in parts)
        raise InputError(f"DTI fit needs {n_table} volumes (one per b-value); found {n_volumes} in shape(s) {shapes}")
    # Every voxel must be finite, inside the mask or not (a NaN anywhere means a broken image).
    not_finite = sum(
        int(np.count_nonzero(~np.isfinite(part[..., volume]))) for part in parts for volume in range(part.shape[-1])
    )
    if not_finite:
        raise InputError(f"DTI fit needs finite signal; found {not_finite} NaN/Inf values")
    return mask_arr, parts


def _fit_block(model, signal, min_diffusivity):
    """FA, MD, PDD and failure flag of a block of voxels' ``signal`` (n, n_volumes); failed voxels get 0."""
    # Predictions can be <= 0 in places (relu output, SH overshoot); DIPY clips them to its minimum signal.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        fit = model.fit(signal)
        fa_raw = np.asarray(fit.fa, dtype=np.float64)
        md_raw = np.asarray(fit.md, dtype=np.float64)
        evals = np.asarray(fit.evals, dtype=np.float64)
        pdd_raw = np.asarray(fit.evecs[..., :, 0], dtype=np.float64)
    finite = np.isfinite(fa_raw) & np.isfinite(md_raw) & np.all(np.isfinite(evals), axis=-1)
    finite &= np.all(np.isfinite(pdd_raw), axis=-1)
    with np.errstate(invalid="ignore"):
        degenerate = (np.min(evals, axis=-1) <= 2 * min_diffusivity) | (md_raw > MAX_PLAUSIBLE_MD)
    block_failed = ~finite | degenerate
    keep = ~block_failed
    fa = np.where(keep, np.nan_to_num(fa_raw), 0.0)
    md = np.where(keep, np.nan_to_num(md_raw), 0.0)
    pdd = np.where(keep[:, None], np.nan_to_num(pdd_raw), 0.0)
    return fa, md, pdd, block_failed


def fit_dti_in_blocks(
    images,
    gtab,
    mask,
    fit_method: str = "WLS",
    block_voxels: int = DTI_BLOCK_VOXELS,
    progress: bool = False,
) -> DTIMaps:
    """:func:`fit_dti` of the volumes of several images, without stacking them or touching unmasked voxels.

    The masked voxels are fitted ``block_voxels`` at a time, in C order (DIPY's order for a masked fit):
    each block's signal is gathered from ``images`` as float64, fitted, and its FA, MD, PDD and failure
    flag are written into the maps. Memory: the maps plus one block, whatever the image size.

    Parameters
    ----------
    images : sequence of (i, j, k) or (i, j, k, n_part) array_like
        The volumes in order (e.g. ``[b0, context, targets]``); together ``n`` volumes.
    gtab : dipy.core.gradients.GradientTable
        The ``n`` volumes' acquisition, in the same order.
    mask : (i, j, k) array_like of bool
    fit_method : str
        DIPY ``TensorModel`` fit method.
    block_voxels : int
        Voxels per block (>= 1). With a multiple of 10,000 the maps are identical to a single
        whole-mask fit; otherwise they equal it to floating-point rounding.
    progress : bool
        Show a progress bar over the blocks.

    Returns
    -------
    DTIMaps
        As :func:`fit_dti` returns for ``np.concatenate(images, axis=-1)``.
    """
    mask_arr, parts = _checked_fit_inputs(images, gtab, mask, block_voxels)
    n_volumes = len(gtab.bvals)
    model = TensorModel(gtab, fit_method=fit_method)
    # DIPY clips eigenvalues to 1e-6 / max(b) (mm^2/s): a tensor there did not fit decaying signal.
    min_diffusivity = 1e-6 / max(float(np.max(gtab.bvals)), 1.0)

    fa = np.zeros(mask_arr.shape)
    md = np.zeros(mask_arr.shape)
    pdd = np.zeros((*mask_arr.shape, 3))
    failed = np.zeros(mask_arr.shape, dtype=bool)
    voxels = np.nonzero(mask_arr)
    n_voxels = voxels[0].size
    step = int(block_voxels)
    for start in tqdm(range(0, n_voxels, step), desc="DTI fit", unit="block", disable=not progress):
        index = tuple(axis[start : start + step] for axis in voxels)
        signal = np.empty((index[0].size, n_volumes))
        column = 0
        for part in parts:
            for volume in range(part.shape[-1]):
                signal[:, column] = part[..., volume][index]
                column += 1
        block_fa, block_md, block_pdd, block_failed = _fit_block(model, signal, min_diffusivity)
        failed[index], fa[index], md[index], pdd[index] = block_failed, block_fa, block_md, block_pdd
    return DTIMaps(fa=fa, md=md, pdd=pdd, failed=failed)


def axis_angle_deg(first, second) -> np.ndarray:
    """Angle in degrees (0..90) between two fields of axes ``(..., 3)``; v and -v are the same axis."""
    a = np.asarray(first, dtype=np.float64)
    b = np.asarray(second, dtype=np.float64)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    cosine = np.abs(np.sum(a * b, axis=-1)) / np.where(norms > 0, norms, 1.0)
    return np.degrees(np.arccos(np.clip(cosine, 0.0, 1.0)))


def dti_errors(predicted: DTIMaps, reference: DTIMaps, mask, fa_threshold: float = FA_THRESHOLD) -> dict[str, float]:
    """Errors of DTI maps against reference maps inside a mask.

    Voxels where either fit failed (``DTIMaps.failed``) are left out of every error and counted.

    Returns
    -------
    dict
        ``fa_mae`` (mean absolute FA difference), ``md_mae`` (mean absolute MD difference, mm^2/s) over the mask, and
        ``pdd_angle_deg``: mean angle between principal eigenvectors over masked voxels whose reference FA
        exceeds ``fa_threshold`` (NaN when there are none); ``dti_failed``: number of masked voxels left
        out because a fit failed. Means over no voxel are NaN.
    """
    mask_arr = np.asarray(mask).astype(bool)
    failed = np.zeros_like(mask_arr)
    for maps in (predicted, reference):
        if maps.failed is not None:
            failed |= maps.failed
    valid = mask_arr & ~failed
    anisotropic = valid & (reference.fa > fa_threshold)
    angles = axis_angle_deg(predicted.pdd[anisotropic], reference.pdd[anisotropic])

    def mean_abs(first, second):
        return float(np.mean(np.abs(first[valid] - second[valid]))) if valid.any() else float("nan")

    return {
        "fa_mae": mean_abs(predicted.fa, reference.fa),
        "md_mae": mean_abs(predicted.md, reference.md),
        "pdd_angle_deg": float(np.mean(angles)) if angles.size else float("nan"),
        "dti_failed": int(np.count_nonzero(mask_arr & failed)),
    }
