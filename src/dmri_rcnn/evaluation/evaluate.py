"""One call that scores a prediction of held-out diffusion volumes: signal, b0-normalised and DTI metrics."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from dmri_rcnn.errors import InputError
from dmri_rcnn.evaluation.dti import FA_THRESHOLD, DTIMaps, axis_angle_deg, dti_errors, fit_dti
from dmri_rcnn.evaluation.metrics import check_volumes, mean_b0, normalise_by_b0, signal_metrics
from dmri_rcnn.evaluation.sh_baseline import as_bvec_rows


def _b0_volumes(b0) -> np.ndarray:
    arr = np.asarray(b0, dtype=np.float64)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4:
        raise InputError(f"b0 must be a 3D or 4D image; found shape {arr.shape}")
    return arr


def stack_for_dti(b0, context, targets, context_bvecs, target_bvecs, bval, context_bvals=None, target_bvals=None):
    """Assemble b0 + context + target volumes with their b-values and b-vectors for a tensor fit.

    Parameters
    ----------
    b0 : (i, j, k) or (i, j, k, n_b0) array_like
    context : (i, j, k, q_in) array_like
    targets : (i, j, k, q_out) array_like
        Acquired or predicted target volumes.
    context_bvecs : (3, q_in) array_like
    target_bvecs : (3, q_out) array_like
    bval : float
        Shell b-value in s/mm^2, used for volumes whose own b-value is not given.
    context_bvals, target_bvals : (q_in,) and (q_out,) array_like, optional
        The acquired b-value of each context and target volume (s/mm^2); use them when at hand, the
        nominal shell value differs from the acquired ones by up to the shell tolerance.

    Returns
    -------
    dmri : (i, j, k, n_b0 + q_in + q_out) ndarray
    bvals : (n,) ndarray
    bvecs : (3, n) ndarray
    """
    b0_vols = _b0_volumes(b0)
    context_arr = np.asarray(context, dtype=np.float64)
    targets_arr = np.asarray(targets, dtype=np.float64)
    ctx_rows = as_bvec_rows(context_bvecs, "context bvecs")
    tgt_rows = as_bvec_rows(target_bvecs, "target bvecs")
    if context_arr.shape[-1] != ctx_rows.shape[1] or targets_arr.shape[-1] != tgt_rows.shape[1]:
        raise InputError(
            f"volumes and b-vectors disagree: context {context_arr.shape[-1]} vs {ctx_rows.shape[1]} directions, "
            f"targets {targets_arr.shape[-1]} vs {tgt_rows.shape[1]} directions"
        )
    n_b0 = b0_vols.shape[-1]
    dmri = np.concatenate([b0_vols, context_arr, targets_arr], axis=-1)
    per_volume = []
    for given, count, name in ((context_bvals, ctx_rows.shape[1], "context"), (target_bvals, tgt_rows.shape[1], "target")):
        values = np.full(count, float(bval)) if given is None else np.asarray(given, dtype=np.float64).ravel()
        if values.shape != (count,):
            raise InputError(f"{name} b-values: expected {count} (one per {name} volume), found {values.size}")
        per_volume.append(values)
    bvals = np.concatenate([np.zeros(n_b0), *per_volume])
    bvecs = np.concatenate([np.zeros((3, n_b0)), ctx_rows, tgt_rows], axis=1)
    return dmri, bvals, bvecs


def fit_dti_with_targets(
    b0, context, targets, context_bvecs, target_bvecs, bval: float, mask, context_bvals=None, target_bvals=None
) -> DTIMaps:
    """DTI maps from b0 + context + ``targets`` (acquired for the reference, predicted for a method).

    ``context_bvals`` / ``target_bvals``: per-volume b-values, see :func:`stack_for_dti`.
    """
    dmri, bvals, bvecs = stack_for_dti(b0, context, targets, context_bvecs, target_bvecs, bval, context_bvals, target_bvals)
    return fit_dti(dmri, bvals, bvecs, mask)


def dominant_fibre_direction(fibre_dirs, fibre_fractions, min_fraction: float = 0.6) -> np.ndarray:
    """Known principal direction of voxels dominated by one fibre population (synthetic ground truth).

    Parameters
    ----------
    fibre_dirs : (i, j, k, n_fibres, 3) array_like
        Unit directions of the fibre populations.
    fibre_fractions : (i, j, k, n_fibres) array_like
        Their volume fractions.
    min_fraction : float
        A voxel gets a direction only if its largest population has at least this share of the fibre
        volume; in crossings the tensor's principal axis is not any one fibre's.

    Returns
    -------
    (i, j, k, 3) ndarray
        The dominant population's direction; zero where there is none (no fibres, or no clear majority).
    """
    dirs = np.asarray(fibre_dirs, dtype=np.float64)
    fractions = np.asarray(fibre_fractions, dtype=np.float64)
    if dirs.ndim != 5 or dirs.shape[-1] != 3 or dirs.shape[:-1] != fractions.shape:
        raise InputError(
            f"fibre directions (i, j, k, n, 3) and fractions (i, j, k, n) disagree: {dirs.shape} vs {fractions.shape}"
        )
    total = fractions.sum(axis=-1)
    largest = fractions.argmax(axis=-1)
    share = np.take_along_axis(fractions, largest[..., None], axis=-1)[..., 0] / np.where(total > 0, total, 1.0)
    direction = np.take_along_axis(dirs, largest[..., None, None], axis=-2)[..., 0, :]
    return np.where(((total > 0) & (share >= min_fraction))[..., None], direction, 0.0)


def evaluate_prediction(
    predicted,
    acquired,
    mask,
    b0,
    *,
    context=None,
    context_bvecs=None,
    target_bvecs=None,
    bval: float | None = None,
    context_bvals=None,
    target_bvals=None,
    reference_dti: DTIMaps | None = None,
    tissue_map=None,
    tissue_names: Mapping[int, str] | None = None,
    true_pdd=None,
    fa_threshold: float = FA_THRESHOLD,
) -> dict[str, float]:
    """Score predicted target volumes against the acquired ones inside a mask.

    Parameters
    ----------
    predicted, acquired : (i, j, k, q_out) array_like
        Predicted and acquired target volumes, raw signal units, same direction order.
    mask : (i, j, k) array_like of bool
        Brain mask; every metric is restricted to it.
    b0 : (i, j, k) or (i, j, k, n_b0) array_like
        The subject's b0 volume(s): used to normalise the signal and, for DTI, as the b0 measurements.
    context : (i, j, k, q_in) array_like, optional
        Acquired context volumes. With ``context_bvecs``, ``target_bvecs`` and ``bval`` it enables the DTI
        metrics: tensors fitted on b0 + context + predicted vs b0 + context + acquired targets.
    context_bvecs, target_bvecs : (3, q) array_like, optional
    bval : float, optional
        Shell b-value (s/mm^2).
    context_bvals, target_bvals : (q_in,), (q_out,) array_like, optional
        Acquired b-values of the context and target volumes; the DTI fit uses them instead of ``bval``.
    reference_dti : DTIMaps, optional
        Precomputed reference maps (b0 + context + acquired targets) to avoid refitting for each method.
    tissue_map : (i, j, k) int array_like, optional
        Tissue labels; with ``tissue_names`` ({label: name}) adds ``{metric}_{name}`` entries computed in
        ``mask & (tissue_map == label)`` (NaN where that region is empty).
    true_pdd : (i, j, k, 3) array_like, optional
        Known fibre direction (synthetic subjects); adds ``pdd_angle_truth_deg``, the mean angle between the
        predicted-data PDD and it, where it is non-zero and the reference FA exceeds ``fa_threshold``.
    fa_threshold : float
        Reference FA above which principal-direction angles are measured.

    Returns
    -------
    dict of str to float
        ``mae``, ``rmse`` (signal units), ``psnr`` (dB; data range = max - min of the acquired targets in
        the mask; ``inf`` for a perfect prediction), ``ssim`` (mean over volumes), the same four on the
        signal divided by the mean b0 (``*_norm``), and with DTI inputs ``fa_mae``, ``md_mae`` (mm^2/s),
        ``pdd_angle_deg`` (degrees) over the voxels where both tensor fits succeeded and ``dti_failed``
        (the number of masked voxels left out because a fit failed), plus tissue and ground-truth
        entries as described above.
    """
    pred, ref, mask_arr = check_volumes(predicted, acquired, mask)
    b0_mean = mean_b0(b0)
    if b0_mean.shape != mask_arr.shape:
        raise InputError(f"b0 has spatial shape {b0_mean.shape}; expected {mask_arr.shape}")

    metrics = signal_metrics(pred, ref, mask_arr)
    pred_norm, valid = normalise_by_b0(pred, b0_mean, mask_arr)
    ref_norm, _ = normalise_by_b0(ref, b0_mean, mask_arr)
    if not valid.any():
        raise InputError("no voxel in the mask has a positive mean b0; cannot normalise by b0")
    metrics.update({f"{name}_norm": value for name, value in signal_metrics(pred_norm, ref_norm, valid).items()})

    dti_inputs = (context, context_bvecs, target_bvecs, bval)
    predicted_dti = None
    if all(item is not None for item in dti_inputs):
        per_volume = {"context_bvals": context_bvals, "target_bvals": target_bvals}
        if reference_dti is None:
            reference_dti = fit_dti_with_targets(b0, context, ref, context_bvecs, target_bvecs, bval, mask_arr, **per_volume)
        predicted_dti = fit_dti_with_targets(b0, context, pred, context_bvecs, target_bvecs, bval, mask_arr, **per_volume)
        metrics.update(dti_errors(predicted_dti, reference_dti, mask_arr, fa_threshold))
    elif any(item is not None for item in dti_inputs):
        raise InputError("DTI metrics need all of context, context_bvecs, target_bvecs and bval")

    if true_pdd is not None:
        if predicted_dti is None:
            raise InputError("true_pdd needs the DTI inputs (context, context_bvecs, target_bvecs, bval)")
        truth = np.asarray(true_pdd, dtype=np.float64)
        if truth.shape != (*mask_arr.shape, 3):
            raise InputError(f"true_pdd must have shape {(*mask_arr.shape, 3)}; found {truth.shape}")
        region = mask_arr & (reference_dti.fa > fa_threshold) & (np.linalg.norm(truth, axis=-1) > 0)
        if predicted_dti.failed is not None:
            region &= ~predicted_dti.failed
        angles = axis_angle_deg(predicted_dti.pdd[region], truth[region])
        metrics["pdd_angle_truth_deg"] = float(np.mean(angles)) if angles.size else float("nan")

    if tissue_map is not None:
        labels = np.asarray(tissue_map)
        if labels.shape != mask_arr.shape:
            raise InputError(f"tissue map has shape {labels.shape}; expected {mask_arr.shape}")
        names = tissue_names or {int(v): f"tissue{int(v)}" for v in np.unique(labels[mask_arr])}
        for label, name in names.items():
            region = mask_arr & (labels == label)
            if not region.any():
                tissue_metrics = dict.fromkeys(["mae", "rmse", "mae_norm"], float("nan"))
                if predicted_dti is not None:
                    tissue_metrics.update(dict.fromkeys(["fa_mae", "md_mae", "pdd_angle_deg"], float("nan")))
                    tissue_metrics["dti_failed"] = 0
            else:
                diff = pred[region] - ref[region]
                tissue_metrics = {"mae": float(np.mean(np.abs(diff))), "rmse": float(np.sqrt(np.mean(diff**2)))}
                norm_region = region & valid
                tissue_metrics["mae_norm"] = (
                    float(np.mean(np.abs(pred_norm[norm_region] - ref_norm[norm_region])))
                    if norm_region.any()
                    else float("nan")
                )
                if predicted_dti is not None:
                    tissue_metrics.update(dti_errors(predicted_dti, reference_dti, region, fa_threshold))
            metrics.update({f"{key}_{name}": value for key, value in tissue_metrics.items()})
    return metrics
