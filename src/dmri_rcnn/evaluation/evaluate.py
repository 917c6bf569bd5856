"""One call that scores a prediction of held-out diffusion volumes: signal, b0-normalised and DTI metrics."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from dmri_rcnn.core.io import make_gradient_table
from dmri_rcnn.errors import InputError
from dmri_rcnn.evaluation.dti import (
    DTI_BLOCK_VOXELS,
    FA_THRESHOLD,
    DTIMaps,
    axis_angle_deg,
    dti_errors,
    fit_dti_in_blocks,
)
from dmri_rcnn.evaluation.metrics import as_volumes, check_volumes, mean_b0, region_errors, signal_metrics
from dmri_rcnn.evaluation.sh_baseline import as_bvec_rows


def _b0_volumes(b0) -> np.ndarray:
    """b0 as (i, j, k, n_b0), keeping a float dtype (no float64 copy of a float32 image)."""
    arr = as_volumes(b0)
    if arr.ndim != 4:
        raise InputError(f"b0 must be a 3D or 4D image; found shape {arr.shape}")
    return arr


def _dti_images(b0, context, targets, context_bvecs, target_bvecs, bval, context_bvals, target_bvals):
    """Check the b0, context and target images against their b-vectors; the fit's volumes and table.

    Returns
    -------
    images : [b0 (i, j, k, n_b0), context (i, j, k, q_in), targets (i, j, k, q_out)], dtypes kept
    gtab : GradientTable of the n = n_b0 + q_in + q_out volumes (:func:`dmri_rcnn.core.io.make_gradient_table`)
    """
    b0_vols = _b0_volumes(b0)
    context_arr = np.asarray(context)
    targets_arr = np.asarray(targets)
    ctx_rows = as_bvec_rows(context_bvecs, "context bvecs")
    tgt_rows = as_bvec_rows(target_bvecs, "target bvecs")
    if context_arr.ndim != 4 or targets_arr.ndim != 4:
        raise InputError(
            f"context and targets must be 4D images (i, j, k, q); found shapes {context_arr.shape} and {targets_arr.shape}"
        )
    if context_arr.shape[-1] != ctx_rows.shape[1] or targets_arr.shape[-1] != tgt_rows.shape[1]:
        raise InputError(
            f"volumes and b-vectors disagree: context {context_arr.shape[-1]} vs {ctx_rows.shape[1]} directions, "
            f"targets {targets_arr.shape[-1]} vs {tgt_rows.shape[1]} directions"
        )
    if not b0_vols.shape[:3] == context_arr.shape[:3] == targets_arr.shape[:3]:
        raise InputError(
            f"b0, context and targets must share a spatial shape; found {b0_vols.shape[:3]}, "
            f"{context_arr.shape[:3]} and {targets_arr.shape[:3]}"
        )
    n_b0 = b0_vols.shape[-1]
    per_volume = []
    for given, count, name in ((context_bvals, ctx_rows.shape[1], "context"), (target_bvals, tgt_rows.shape[1], "target")):
        values = np.full(count, float(bval)) if given is None else np.asarray(given, dtype=np.float64).ravel()
        if values.shape != (count,):
            raise InputError(f"{name} b-values: expected {count} (one per {name} volume), found {values.size}")
        per_volume.append(values)
    bvals = np.concatenate([np.zeros(n_b0), *per_volume])
    bvecs = np.concatenate([np.zeros((3, n_b0)), ctx_rows, tgt_rows], axis=1)
    return [b0_vols, context_arr, targets_arr], make_gradient_table(bvals, bvecs, "b0 + context + target b-vectors")


def stack_for_dti(b0, context, targets, context_bvecs, target_bvecs, bval, context_bvals=None, target_bvals=None):
    """Assemble b0 + context + target volumes with their acquisition for a tensor fit.

    The stacked image is a float64 copy of everything; :func:`fit_dti_with_targets` fits the same
    volumes without building it.

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
    dmri : (i, j, k, n) float64 ndarray, n = n_b0 + q_in + q_out
    gtab : dipy.core.gradients.GradientTable of the n volumes (b0 volumes at b = 0), for
        :func:`dmri_rcnn.evaluation.dti.fit_dti`
    """
    images, gtab = _dti_images(b0, context, targets, context_bvecs, target_bvecs, bval, context_bvals, target_bvals)
    dmri = np.concatenate([np.asarray(image, dtype=np.float64) for image in images], axis=-1)
    return dmri, gtab


def fit_dti_with_targets(
    b0,
    context,
    targets,
    context_bvecs,
    target_bvecs,
    bval: float,
    mask,
    context_bvals=None,
    target_bvals=None,
    **fit_options,
) -> DTIMaps:
    """DTI maps from b0 + context + ``targets`` (acquired for the reference, predicted for a method).

    The volumes are the ones :func:`stack_for_dti` stacks, fitted block by block of masked voxels
    without stacking them (:func:`dmri_rcnn.evaluation.dti.fit_dti_in_blocks`): memory is the inputs
    as given (float32 stays float32), the maps and one block.

    ``context_bvals`` / ``target_bvals``: per-volume b-values, see :func:`stack_for_dti`.
    ``fit_options``: ``block_voxels`` and ``progress`` of :func:`dmri_rcnn.evaluation.dti.fit_dti_in_blocks`.
    """
    unknown = sorted(set(fit_options) - {"block_voxels", "progress"})
    if unknown:
        raise TypeError(f"fit_dti_with_targets() got unexpected keyword argument(s) {', '.join(unknown)}")
    images, gtab = _dti_images(b0, context, targets, context_bvecs, target_bvecs, bval, context_bvals, target_bvals)
    return fit_dti_in_blocks(images, gtab, mask, **fit_options)


@dataclass(frozen=True)
class DTIInputs:
    """What :func:`evaluate_prediction`'s tensor fits need beside the b0 and the target volumes.

    Attributes
    ----------
    context : (i, j, k, q_in) array_like
        Acquired context volumes: tensors are fitted on b0 + context + predicted vs b0 + context +
        acquired targets. The DTI metrics need ``context``, ``context_bvecs``, ``target_bvecs`` and
        ``bval`` together.
    context_bvecs, target_bvecs : (3, q) array_like
        Unit b-vectors of the context and of the target volumes (FSL layout).
    bval : float
        Shell b-value (s/mm^2).
    context_bvals, target_bvals : (q_in,), (q_out,) array_like, optional
        Acquired b-values of the context and target volumes; the DTI fit uses them instead of ``bval``.
    reference_dti : DTIMaps, optional
        Precomputed reference maps (b0 + context + acquired targets) to avoid refitting for each method.
    dti_block_voxels : int
        Masked voxels per block of the tensor fits (:func:`dmri_rcnn.evaluation.dti.fit_dti_in_blocks`).
    progress : bool
        Progress bars for the tensor fits.
    """

    context: object = None
    context_bvecs: object = None
    target_bvecs: object = None
    bval: float | None = None
    context_bvals: object = None
    target_bvals: object = None
    reference_dti: DTIMaps | None = None
    dti_block_voxels: int = DTI_BLOCK_VOXELS
    progress: bool = False

    @classmethod
    def with_fields(cls, dti, fields: dict) -> DTIInputs:
        """``dti`` (or no DTI inputs) with the ``fields`` :func:`evaluate_prediction` was given by name."""
        unknown = sorted(set(fields) - {field.name for field in dataclasses.fields(cls)})
        if unknown:
            raise TypeError(f"evaluate_prediction() got unexpected keyword argument(s) {', '.join(unknown)}")
        return dataclasses.replace(dti if dti is not None else cls(), **fields)

    @property
    def given(self) -> bool:
        """True when the DTI metrics are asked for; an error when only some of the four inputs are given."""
        required = (self.context, self.context_bvecs, self.target_bvecs, self.bval)
        with_dti = all(item is not None for item in required)
        if not with_dti and any(item is not None for item in required):
            raise InputError("DTI metrics need all of context, context_bvecs, target_bvecs and bval")
        return with_dti

    def fit(self, b0, targets, mask) -> DTIMaps:
        """Tensor maps of b0 + context + ``targets`` (:func:`fit_dti_with_targets`)."""
        return fit_dti_with_targets(
            b0, self.context, targets, self.context_bvecs, self.target_bvecs, self.bval, mask,
            self.context_bvals, self.target_bvals, block_voxels=self.dti_block_voxels, progress=self.progress,
        )


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
    dirs = np.asarray(fibre_dirs)  # only picked from, never computed with: its dtype can stay float32
    fractions = np.asarray(fibre_fractions, dtype=np.float64)
    if dirs.ndim != 5 or dirs.shape[-1] != 3 or dirs.shape[:-1] != fractions.shape:
        raise InputError(
            f"fibre directions (i, j, k, n, 3) and fractions (i, j, k, n) disagree: {dirs.shape} vs {fractions.shape}"
        )
    total = fractions.sum(axis=-1)
    largest = fractions.argmax(axis=-1)
    share = np.take_along_axis(fractions, largest[..., None], axis=-1)[..., 0] / np.where(total > 0, total, 1.0)
    direction = np.take_along_axis(dirs, largest[..., None, None], axis=-2)[..., 0, :].astype(np.float64)
    return np.where(((total > 0) & (share >= min_fraction))[..., None], direction, 0.0)


def _check_regions(shape, with_dti: bool, true_pdd, tissue_map):
    """``true_pdd`` as float64 (i, j, k, 3) and ``tissue_map`` as (i, j, k) labels, each None if not given."""
    truth = labels = None
    if true_pdd is not None:
        if not with_dti:
            raise InputError("true_pdd needs the DTI inputs (context, context_bvecs, target_bvecs, bval)")
        truth = np.asarray(true_pdd, dtype=np.float64)
        if truth.shape != (*shape, 3):
            raise InputError(f"true_pdd must have shape {(*shape, 3)}; found {truth.shape}")
    if tissue_map is not None:
        labels = np.asarray(tissue_map)
        if labels.shape != shape:
            raise InputError(f"tissue map has shape {labels.shape}; expected {shape}")
    return truth, labels


def _angle_to_truth(predicted_dti, reference_dti, truth, mask_arr, fa_threshold) -> float:
    """Mean angle (degrees) between the predicted-data PDD and the known direction, where it is known,
    the reference FA exceeds ``fa_threshold`` and the fit succeeded; NaN where there is no such voxel."""
    region = mask_arr & (reference_dti.fa > fa_threshold) & (np.linalg.norm(truth, axis=-1) > 0)
    if predicted_dti.failed is not None:
        region &= ~predicted_dti.failed
    angles = axis_angle_deg(predicted_dti.pdd[region], truth[region])
    return float(np.mean(angles)) if angles.size else float("nan")


def _tissue_metrics(pred, ref, mask_arr, valid, b0_mean, labels, tissue_names, dti_maps, fa_threshold):
    """``{metric}_{name}`` entries per tissue; ``dti_maps`` is (predicted, reference) or None."""
    metrics = {}
    names = tissue_names or {int(v): f"tissue{int(v)}" for v in np.unique(labels[mask_arr])}
    regions = {label: mask_arr & (labels == label) for label in names}
    errors = region_errors(pred, ref, regions)
    errors_norm = region_errors(pred, ref, {label: region & valid for label, region in regions.items()}, divide_by=b0_mean)
    for label, name in names.items():
        region = regions[label]
        if not region.any():
            tissue_metrics = dict.fromkeys(["mae", "rmse", "mae_norm"], float("nan"))
            if dti_maps is not None:
                tissue_metrics.update(dict.fromkeys(["fa_mae", "md_mae", "pdd_angle_deg"], float("nan")))
                tissue_metrics["dti_failed"] = 0
        else:
            tissue_metrics = {"mae": errors[label].mae, "rmse": errors[label].rmse, "mae_norm": errors_norm[label].mae}
            if dti_maps is not None:
                tissue_metrics.update(dti_errors(*dti_maps, region, fa_threshold))
        metrics.update({f"{key}_{name}": value for key, value in tissue_metrics.items()})
    return metrics


def evaluate_prediction(
    predicted,
    acquired,
    mask,
    b0,
    *,
    dti: DTIInputs | None = None,
    tissue_map=None,
    tissue_names: Mapping[int, str] | None = None,
    true_pdd=None,
    fa_threshold: float = FA_THRESHOLD,
    **dti_inputs,
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
    dti : DTIInputs, optional
        Context volumes, b-vectors and b-value that enable the DTI metrics; or give its fields by name
        (``dti_inputs``: ``context=``, ``context_bvecs=``, ``target_bvecs=``, ``bval=``, ``context_bvals=``,
        ``target_bvals=``, ``reference_dti=``, ``dti_block_voxels=``, ``progress=``), overriding ``dti``.
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

    Notes
    -----
    Memory: the inputs as given (pass float32 images, as ``io.load_nifti`` returns them, to keep them
    float32), a few float64 volumes of work space and the DTI maps. The signal metrics go one volume at
    a time and the tensor fits one block of masked voxels at a time; no float64 copy of a 4D input, no
    b0-normalised copy and no stacked b0 + context + targets image is made.
    """
    dti = DTIInputs.with_fields(dti, dti_inputs)
    pred, ref, mask_arr = check_volumes(predicted, acquired, mask, dtype=None)
    b0_mean = mean_b0(b0)
    if b0_mean.shape != mask_arr.shape:
        raise InputError(f"b0 has spatial shape {b0_mean.shape}; expected {mask_arr.shape}")
    valid = mask_arr & (b0_mean > 0)
    if not valid.any():
        raise InputError("no voxel in the mask has a positive mean b0; cannot normalise by b0")
    with_dti = dti.given
    truth, labels = _check_regions(mask_arr.shape, with_dti, true_pdd, tissue_map)

    metrics = signal_metrics(pred, ref, mask_arr)
    normalised = signal_metrics(pred, ref, valid, divide_by=b0_mean)
    metrics.update({f"{name}_norm": value for name, value in normalised.items()})

    dti_maps = None
    if with_dti:
        reference_dti = dti.reference_dti if dti.reference_dti is not None else dti.fit(b0, ref, mask_arr)
        dti_maps = (dti.fit(b0, pred, mask_arr), reference_dti)
        metrics.update(dti_errors(*dti_maps, mask_arr, fa_threshold))

    if truth is not None:
        metrics["pdd_angle_truth_deg"] = _angle_to_truth(*dti_maps, truth, mask_arr, fa_threshold)

    if labels is not None:
        metrics.update(_tissue_metrics(pred, ref, mask_arr, valid, b0_mean, labels, tissue_names, dti_maps, fa_threshold))
    return metrics
