"""Downstream evaluation: diffusion tensor (DTI) maps fitted with DIPY and their errors."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from dipy.core.gradients import gradient_table
from dipy.reconst.dti import TensorModel

from dmri_rcnn.errors import InputError

#: Principal-direction errors are measured only where the reference FA exceeds this (clear single fibre).
FA_THRESHOLD = 0.2


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
    """

    fa: np.ndarray
    md: np.ndarray
    pdd: np.ndarray


def fit_dti(dmri, bvals, bvecs, mask, fit_method: str = "WLS") -> DTIMaps:
    """Fit a diffusion tensor in every masked voxel.

    Parameters
    ----------
    dmri : (i, j, k, n) array_like
        Signal including at least one b0 volume.
    bvals : (n,) array_like
        b-values in s/mm^2.
    bvecs : (3, n) array_like
        Gradient directions (zero vectors allowed for b0).
    mask : (i, j, k) array_like of bool
    fit_method : str
        DIPY ``TensorModel`` fit method (weighted least squares by default).

    Returns
    -------
    DTIMaps
    """
    data = np.asarray(dmri, dtype=np.float64)
    bvals_arr = np.asarray(bvals, dtype=np.float64).ravel()
    bvecs_arr = np.asarray(bvecs, dtype=np.float64)
    if bvecs_arr.shape != (3, bvals_arr.size):
        raise InputError(f"DTI fit needs bvecs of shape (3, {bvals_arr.size}); found {bvecs_arr.shape}")
    if data.ndim != 4 or data.shape[-1] != bvals_arr.size:
        raise InputError(f"DTI fit needs a 4D image with {bvals_arr.size} volumes; found shape {data.shape}")
    gtab = gradient_table(bvals_arr, bvecs=bvecs_arr.T, b0_threshold=50)
    # Predictions can be <= 0 in places (relu output, SH overshoot); DIPY clips them to its minimum signal.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        fit = TensorModel(gtab, fit_method=fit_method).fit(data, mask=np.asarray(mask).astype(bool))
        fa = np.nan_to_num(np.asarray(fit.fa, dtype=np.float64))
        md = np.nan_to_num(np.asarray(fit.md, dtype=np.float64))
        pdd = np.nan_to_num(np.asarray(fit.evecs[..., :, 0], dtype=np.float64))
    return DTIMaps(fa=fa, md=md, pdd=pdd)


def axis_angle_deg(first, second) -> np.ndarray:
    """Angle in degrees (0..90) between two fields of axes ``(..., 3)``; v and -v are the same axis."""
    a = np.asarray(first, dtype=np.float64)
    b = np.asarray(second, dtype=np.float64)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    cosine = np.abs(np.sum(a * b, axis=-1)) / np.where(norms > 0, norms, 1.0)
    return np.degrees(np.arccos(np.clip(cosine, 0.0, 1.0)))


def dti_errors(predicted: DTIMaps, reference: DTIMaps, mask, fa_threshold: float = FA_THRESHOLD) -> dict[str, float]:
    """Errors of DTI maps against reference maps inside a mask.

    Returns
    -------
    dict
        ``fa_mae`` (mean |FA difference|), ``md_mae`` (mean |MD difference|, mm^2/s) over the mask, and
        ``pdd_angle_deg``: mean angle between principal eigenvectors over masked voxels whose reference FA
        exceeds ``fa_threshold`` (NaN when there are none).
    """
    mask_arr = np.asarray(mask).astype(bool)
    anisotropic = mask_arr & (reference.fa > fa_threshold)
    angles = axis_angle_deg(predicted.pdd[anisotropic], reference.pdd[anisotropic])
    return {
        "fa_mae": float(np.mean(np.abs(predicted.fa[mask_arr] - reference.fa[mask_arr]))),
        "md_mae": float(np.mean(np.abs(predicted.md[mask_arr] - reference.md[mask_arr]))),
        "pdd_angle_deg": float(np.mean(angles)) if angles.size else float("nan"),
    }
