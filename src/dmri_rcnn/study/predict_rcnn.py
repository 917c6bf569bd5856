"""Study step: predict the held-out target directions with a model trained by the workflow."""

from __future__ import annotations


import numpy as np

from dmri_rcnn.core import io
from dmri_rcnn.errors import InputError
from dmri_rcnn.types import PathLike


def predict_with_trained_model(
    context: PathLike,
    context_bvecs: PathLike,
    target_bvecs: PathLike,
    mask: PathLike,
    weights: PathLike,
    model_dim: int,
    width: float,
    shell: int,
    out_path: PathLike,
    batch_size: int = 4,
    progress: bool = False,
    min_filters: int = 1,
) -> np.ndarray:
    """Build the model, load its ``.weights.h5`` and predict every target direction from the context.

    Parameters
    ----------
    context : (i, j, k, q_in) NIfTI of the context volumes.
    context_bvecs, target_bvecs : FSL bvec files (3, q_in) and (3, q_out).
    mask : brain mask NIfTI (i, j, k).
    weights : ``.weights.h5`` written by :func:`dmri_rcnn.training.train_model` (or imported from the
        published checkpoints); its description, when present, rebuilds the model and sets the scaling.
    model_dim, width, min_filters : architecture the study expects (checked against the description).
    shell : b-value (s/mm²) whose constant divides the signal (as in training); a model described with
        ``percentile`` scaling (the published all_norm) divides by the context's 99th percentile in the mask.
    out_path : output NIfTI (i, j, k, q_out), raw signal units, written atomically.
    batch_size : patches per model call.

    Returns
    -------
    (i, j, k, q_out) float32 prediction.
    """
    from dmri_rcnn.core.inference import infer
    from dmri_rcnn.core.model import get_autoencoder, load_trained_model
    from dmri_rcnn.core.model_spec import read_model_spec
    from dmri_rcnn.core.processing.scaling import percentile_scale, shell_scale
    from dmri_rcnn.core.weights import load_model_weights

    spec = read_model_spec(weights)
    if spec is not None:
        # The description decides (it must agree with what the workflow expects of this model).
        if (spec.model_dim, spec.width, spec.min_filters) != (int(model_dim), float(width), int(min_filters)):
            raise InputError(
                f"{weights}: described as a {spec.describe()}; the study expects a {model_dim}D model of width "
                f"{width:g}, min_filters {min_filters}"
            )
        model = load_trained_model(weights, spec)
    else:
        model = get_autoencoder(int(model_dim), weights=None, width=width, min_filters=min_filters)
        load_model_weights(model, weights, model_dim=int(model_dim))
    dmri, affine = io.load_nifti(context, return_affine=True)
    brain = io.load_mask(mask)
    percentile = spec is not None and spec.scaling == "percentile"
    prediction = infer(
        dmri,
        io.load_bvec(context_bvecs),
        io.load_bvec(target_bvecs),
        brain,
        model,
        scale=percentile_scale(dmri, brain, 99) if percentile else shell_scale(int(shell)),
        batch_size=batch_size,
        progress=progress,
    )
    io.save_nifti(prediction.astype(np.float32), affine, out_path)
    return prediction
