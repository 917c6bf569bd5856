"""Cross-shell prediction baselines and their kurtosis evaluation: from a b = 1000 acquisition to b = 2000, 3000.

A cross-shell method predicts volumes of a shell that was not acquired (b = 2000 and 3000 s/mm²) from the
b0 volumes and one acquired shell, the *context* (b = 1000 s/mm²). This module holds

- the baseline a user would reach for first: fit a diffusion tensor to the b0 and context volumes and
  extrapolate it, ``S = S0 exp(-b gᵀ D g)`` (:func:`extrapolate_dti`). A tensor has no kurtosis, so this
  baseline over-attenuates the signal of tissue at high b; a method is worth its cost where it beats it;
- the diffusion kurtosis (DKI) maps that the extra shells are acquired for (:func:`dki_maps`), and their
  errors when the predicted volumes stand in for the acquired ones (:func:`cross_shell_dki_errors`).

Every acquisition travels as one DIPY :class:`~dipy.core.gradients.GradientTable` (b-values in s/mm²,
unit b-vectors, b0 volumes below :data:`dmri_rcnn.core.io.B0_THRESHOLD`). Images are ``(i, j, k, n)``
with one volume per row of their table and masks ``(i, j, k)``, a voxel being inside when its value
is positive. Signal is in the units of the input (raw scanner units); diffusivities in mm²/s; kurtosis
and FA are dimensionless.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from dipy.core.gradients import gradient_table
from dipy.reconst.dki import DiffusionKurtosisModel
from dipy.reconst.dti import TensorModel

from dmri_rcnn.core.processing.shells import SHELL_TOLERANCE, shell_indices
from dmri_rcnn.errors import InputError

#: The context shell of the cross-shell setting (s/mm²).
CONTEXT_SHELL = 1000


def _shell_groups(bvals, tolerance: float = SHELL_TOLERANCE) -> list[np.ndarray]:
    """The b-values (s/mm²) sorted and split where consecutive ones differ by more than ``tolerance``."""
    ordered = np.sort(np.asarray(bvals, dtype=np.float64))
    return np.split(ordered, np.flatnonzero(np.diff(ordered) > tolerance) + 1) if ordered.size else []


def _b_values(gtab) -> str:
    """The shells of ``gtab`` for messages: ``0, 2000, 3000`` (each the rounded median of its b-values)."""
    return ", ".join(f"{np.round(np.median(group)):g}" for group in _shell_groups(gtab.bvals))


def _checked_image(dmri, gtab, mask, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``dmri`` as a finite (i, j, k, n) array with n = the volumes of ``gtab``, and the mask as bool."""
    data = np.asarray(dmri)
    n_volumes = len(gtab.bvals)
    if data.ndim != 4 or data.shape[-1] != n_volumes:
        raise InputError(
            f"{name}: expected a 4D image (i, j, k, {n_volumes}), one volume per b-value; found shape {data.shape}"
        )
    mask_arr = np.asarray(mask) > 0
    if mask_arr.shape != data.shape[:3]:
        raise InputError(f"mask has shape {mask_arr.shape}; expected the spatial shape {data.shape[:3]} of {name}")
    if not mask_arr.any():
        raise InputError("mask is empty; expected at least one voxel inside it")
    if not np.all(np.isfinite(data[mask_arr])):
        raise InputError(f"{name}: found NaN or Inf signal inside the mask")
    return data, mask_arr


def _require_b0(gtab, name: str) -> None:
    if not np.any(gtab.b0s_mask):
        raise InputError(f"{name}: no b0 volume (b < {gtab.b0_threshold:g}); b-values found: {_b_values(gtab)}")


def context_volumes(gtab, context_shell: float = CONTEXT_SHELL, tolerance: float = SHELL_TOLERANCE) -> np.ndarray:
    """Indices (ascending) of the b0 volumes and the context shell's volumes of an acquisition.

    Parameters
    ----------
    gtab : GradientTable
        The acquisition.
    context_shell : float
        Nominal b-value of the context shell, s/mm².
    tolerance : float
        A volume is in the shell when ``|b - context_shell| <= tolerance`` (s/mm²).

    Raises
    ------
    InputError
        When the acquisition has no b0 volume or no volume of the context shell.
    """
    _require_b0(gtab, "acquisition")
    shell = shell_indices(gtab.bvals, context_shell, tolerance)
    if shell.size == 0:
        raise InputError(
            f"acquisition: no volume within {tolerance:g} of the context shell b={context_shell:g}; "
            f"b-values found: {_b_values(gtab)}"
        )
    return np.union1d(np.flatnonzero(gtab.b0s_mask), shell)


def extrapolate_dti(
    dmri,
    gtab,
    mask,
    target_gtab,
    context_shell: float = CONTEXT_SHELL,
    tolerance: float = SHELL_TOLERANCE,
    fit_method: str = "WLS",
) -> np.ndarray:
    """Predict volumes of any shell from a diffusion tensor fitted to the b0 and context volumes.

    The tensor ``D`` and ``S0`` are fitted with DIPY's ``TensorModel`` on the b0 volumes and the context
    shell's volumes of ``dmri`` (other shells in it are ignored), and every volume of ``target_gtab`` is
    predicted by DIPY's ``TensorFit.predict``: ``S0 exp(-b gᵀ D g)`` with the target's b-value and
    direction.

    ``S0`` is the one DIPY fitted together with ``D`` (``return_S0_hat``), not the mean b0: the fitted
    pair reproduces the context shell as the fit saw it, whereas the arithmetic mean b0 of noisy
    volumes differs from the fitted S0 and would scale every prediction by that ratio.

    Parameters
    ----------
    dmri : (i, j, k, n) array_like
        Acquired signal, one volume per row of ``gtab``; with at least one b0 and the context shell.
    gtab : GradientTable
        The acquisition of ``dmri`` (b-values in s/mm²).
    mask : (i, j, k) array_like
        Brain mask (> 0 inside); the tensor is fitted only there.
    target_gtab : GradientTable
        b-values (s/mm²) and unit directions of the volumes to predict, e.g. a b = 2000 and 3000 scheme.
    context_shell : float
        Nominal b-value of the context shell, s/mm².
    tolerance : float
        Half-width of the context shell's b-value band, s/mm².
    fit_method : str
        DIPY ``TensorModel`` fit method (weighted least squares by default).

    Returns
    -------
    (i, j, k, n_targets) float32 ndarray
        Predicted signal in the units of ``dmri``; 0 outside the mask.

    Raises
    ------
    InputError
        An image that does not match ``gtab`` or the mask, no b0 volume or no context volume.
    """
    data, mask_arr = _checked_image(dmri, gtab, mask, "dmri")
    keep = context_volumes(gtab, context_shell, tolerance)
    fit_gtab = gradient_table(gtab.bvals[keep], bvecs=gtab.bvecs[keep], b0_threshold=gtab.b0_threshold)
    model = TensorModel(fit_gtab, fit_method=fit_method, return_S0_hat=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        fit = model.fit(np.take(data, keep, axis=-1), mask=mask_arr)
        predicted = fit.predict(target_gtab)
    predicted = np.where(mask_arr[..., None] & np.isfinite(predicted), predicted, 0.0)
    return predicted.astype(np.float32)


@dataclass
class DKIMaps:
    """Kurtosis and anisotropy maps of one image.

    Attributes
    ----------
    mk : (i, j, k) float64 ndarray
        Mean kurtosis (dimensionless); 0 outside the mask and where the fit failed.
    fa : (i, j, k) float64 ndarray
        Fractional anisotropy of the kurtosis model's diffusion tensor (0..1); 0 as ``mk``.
    failed : (i, j, k) bool ndarray
        Masked voxels whose fit gave a non-finite MK or FA; every error leaves them out.
    """

    mk: np.ndarray
    fa: np.ndarray
    failed: np.ndarray


def _require_dki_shells(gtab, name: str, tolerance: float) -> None:
    _require_b0(gtab, name)
    if len(_shell_groups(np.asarray(gtab.bvals)[~gtab.b0s_mask], tolerance)) < 2:
        raise InputError(
            f"{name}: a kurtosis fit needs b0 and at least two diffusion-weighted shells; "
            f"b-values found: {_b_values(gtab)}"
        )


def dki_maps(dmri, gtab, mask, fit_method: str = "WLS", tolerance: float = SHELL_TOLERANCE) -> DKIMaps:
    """Mean kurtosis and FA from DIPY's ``DiffusionKurtosisModel`` fitted in every masked voxel.

    Parameters
    ----------
    dmri : (i, j, k, n) array_like
        Signal, one volume per row of ``gtab``: b0 and at least two shells (e.g. b = 1000 and 2000).
    gtab : GradientTable
        Its acquisition (b-values in s/mm²).
    mask : (i, j, k) array_like
        Brain mask (> 0 inside).
    fit_method : str
        DIPY ``DiffusionKurtosisModel`` fit method.
    tolerance : float
        b-values closer than this (s/mm²) count as one shell.

    Returns
    -------
    DKIMaps
        MK with DIPY's default bounds (analytical mean kurtosis, clipped to -3/7 .. 10) and FA.
    """
    data, mask_arr = _checked_image(dmri, gtab, mask, "dmri")
    _require_dki_shells(gtab, "dmri", tolerance)
    model = DiffusionKurtosisModel(gtab, fit_method=fit_method)
    with warnings.catch_warnings():
        # predictions may be <= 0 in places; DIPY clips them to its minimum signal
        warnings.simplefilter("ignore", category=RuntimeWarning)
        fit = model.fit(data, mask=mask_arr)
        mk = np.asarray(fit.mk(), dtype=np.float64)
        fa = np.asarray(fit.fa, dtype=np.float64)
    failed = mask_arr & ~(np.isfinite(mk) & np.isfinite(fa))
    keep = mask_arr & ~failed
    return DKIMaps(mk=np.where(keep, mk, 0.0), fa=np.where(keep, fa, 0.0), failed=failed)


def tissue_regions(mask_arr, tissue_map, tissue_names) -> dict[str, np.ndarray]:
    """``{name: mask & (tissue_map == label)}`` for each tissue; labels without a name are called ``tissue{label}``.

    ``mask_arr`` is an (i, j, k) bool array, ``tissue_map`` (i, j, k) integer labels of the same shape (else an
    ``InputError``), ``tissue_names`` ``{label: name}`` or None for every label found in the mask.
    """
    labels = np.asarray(tissue_map)
    if labels.shape != mask_arr.shape:
        raise InputError(f"tissue map has shape {labels.shape}; expected {mask_arr.shape}")
    names = tissue_names or {int(v): f"tissue{int(v)}" for v in np.unique(labels[mask_arr])}
    return {name: mask_arr & (labels == label) for label, name in names.items()}


def dki_map_errors(
    predicted: DKIMaps,
    reference: DKIMaps,
    mask,
    tissue_map=None,
    tissue_names: Mapping[int, str] | None = None,
) -> dict[str, float]:
    """Mean absolute errors of MK and FA maps against reference maps inside a mask, and per tissue.

    Parameters
    ----------
    predicted, reference : DKIMaps
        Maps from the predicted and from the acquired volumes (same spatial shape).
    mask : (i, j, k) array_like
        Brain mask (> 0 inside).
    tissue_map : (i, j, k) int array_like, optional
        Tissue labels; adds ``{metric}_{name}`` entries in ``mask & (tissue_map == label)``, as
        :func:`dmri_rcnn.evaluation.evaluate_prediction` does.
    tissue_names : mapping of label to name, optional
        Default: every label in the mask, named ``tissue{label}``.

    Returns
    -------
    dict of str to float
        ``mk_mae``, ``fa_mae`` over masked voxels where both fits succeeded (NaN over no voxel),
        ``dki_failed`` (masked voxels left out), and the per-tissue ``mk_mae_{name}``, ``fa_mae_{name}``.
    """
    mask_arr = np.asarray(mask) > 0
    if predicted.mk.shape != mask_arr.shape or reference.mk.shape != mask_arr.shape:
        raise InputError(
            f"kurtosis maps of shapes {predicted.mk.shape} and {reference.mk.shape}; "
            f"expected the mask's {mask_arr.shape}"
        )
    valid = mask_arr & ~predicted.failed & ~reference.failed
    regions = {"": valid}
    if tissue_map is not None:
        tissues = tissue_regions(mask_arr, tissue_map, tissue_names)
        regions.update({f"_{name}": valid & region for name, region in tissues.items()})
    errors: dict[str, float] = {}
    for suffix, region in regions.items():
        for metric in ("mk", "fa"):
            difference = getattr(predicted, metric)[region] - getattr(reference, metric)[region]
            errors[f"{metric}_mae{suffix}"] = float(np.mean(np.abs(difference))) if difference.size else float("nan")
    errors["dki_failed"] = int(np.count_nonzero(mask_arr & (predicted.failed | reference.failed)))
    return errors


def _joined_table(gtab, target_gtab):
    return gradient_table(
        np.concatenate([gtab.bvals, target_gtab.bvals]),
        bvecs=np.concatenate([gtab.bvecs, target_gtab.bvecs]),
        b0_threshold=gtab.b0_threshold,
    )


def cross_shell_dki_errors(
    context,
    gtab,
    predicted,
    acquired,
    target_gtab,
    mask,
    *,
    tissue_map=None,
    tissue_names: Mapping[int, str] | None = None,
) -> dict[str, float]:
    """Kurtosis errors of predicted target volumes: DKI of b0 + context + predicted against b0 + context + acquired.

    Parameters
    ----------
    context : (i, j, k, n_context) array_like
        The acquired b0 and context volumes (e.g. b = 0 and 1000), one per row of ``gtab``.
    gtab : GradientTable
        Their acquisition.
    predicted, acquired : (i, j, k, n_targets) array_like
        Predicted and acquired volumes of the target shell(s) (e.g. b = 2000), one per row of
        ``target_gtab``, in the same order.
    target_gtab : GradientTable
        The targets' b-values (s/mm²) and directions.
    mask : (i, j, k) array_like
        Brain mask (> 0 inside).
    tissue_map, tissue_names
        Per-tissue entries, as :func:`dki_map_errors`.

    Returns
    -------
    dict of str to float
        :func:`dki_map_errors` of the two fits (0 for a prediction equal to the acquired volumes).
    """
    context_data, mask_arr = _checked_image(context, gtab, mask, "context")
    _require_b0(gtab, "context")
    joined = _joined_table(gtab, target_gtab)
    maps = []
    for name, targets in (("predicted", predicted), ("acquired", acquired)):
        target_data, _ = _checked_image(targets, target_gtab, mask_arr, name)
        maps.append(dki_maps(np.concatenate([context_data, target_data], axis=-1), joined, mask_arr))
    return dki_map_errors(*maps, mask_arr, tissue_map, tissue_names)
