"""Evaluation of angular super-resolution: the SH baseline, signal metrics, DTI metrics and summaries.

Typical use::

    from dmri_rcnn.evaluation import sh_interpolate, evaluate_prediction
    predicted = sh_interpolate(context, context_bvecs, target_bvecs, sh_order=4, smooth=0.006)
    metrics = evaluate_prediction(predicted, acquired, mask, b0, context=context,
                                  context_bvecs=context_bvecs, target_bvecs=target_bvecs, bval=1000)
"""

from dmri_rcnn.evaluation.dti import FA_THRESHOLD, DTIMaps, axis_angle_deg, dti_errors, fit_dti, fit_dti_in_blocks
from dmri_rcnn.evaluation.evaluate import (
    DTIInputs,
    dominant_fibre_direction,
    evaluate_prediction,
    fit_dti_with_targets,
    stack_for_dti,
)
from dmri_rcnn.evaluation.metrics import (
    data_range,
    mean_absolute_error,
    mean_b0,
    normalise_by_b0,
    peak_signal_to_noise_ratio,
    root_mean_squared_error,
    signal_metrics,
    ssim_per_volume,
)
from dmri_rcnn.evaluation.sh_baseline import (
    DEFAULT_SH_ORDERS,
    DEFAULT_SH_SMOOTHS,
    ORIGINAL_SH_BASIS,
    ORIGINAL_SH_ORDER,
    ORIGINAL_SH_SMOOTH,
    SH_BASES,
    SHSelection,
    n_sh_coefficients,
    select_sh_on_held_out,
    select_sh_parameters,
    sh_fit_matrix,
    sh_interpolate,
    sh_interpolation_matrix,
)
from dmri_rcnn.evaluation.summary import METHOD_ORDER, read_metric_tables, summarise_metrics, write_tsv

__all__ = [
    "DEFAULT_SH_ORDERS",
    "DEFAULT_SH_SMOOTHS",
    "DTIInputs",
    "DTIMaps",
    "FA_THRESHOLD",
    "METHOD_ORDER",
    "ORIGINAL_SH_BASIS",
    "ORIGINAL_SH_ORDER",
    "ORIGINAL_SH_SMOOTH",
    "SHSelection",
    "SH_BASES",
    "axis_angle_deg",
    "data_range",
    "dominant_fibre_direction",
    "dti_errors",
    "evaluate_prediction",
    "fit_dti",
    "fit_dti_in_blocks",
    "fit_dti_with_targets",
    "mean_absolute_error",
    "mean_b0",
    "n_sh_coefficients",
    "normalise_by_b0",
    "peak_signal_to_noise_ratio",
    "read_metric_tables",
    "root_mean_squared_error",
    "select_sh_on_held_out",
    "select_sh_parameters",
    "sh_fit_matrix",
    "sh_interpolate",
    "sh_interpolation_matrix",
    "signal_metrics",
    "ssim_per_volume",
    "stack_for_dti",
    "summarise_metrics",
    "write_tsv",
]
