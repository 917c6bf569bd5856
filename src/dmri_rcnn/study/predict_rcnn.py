"""Study step: predict the held-out target directions with a model trained by the workflow."""

from __future__ import annotations

import os

import numpy as np

from dmri_rcnn.core import io

PathLike = str | os.PathLike


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
    weights : ``.weights.h5`` written by :func:`dmri_rcnn.training.train_model`.
    model_dim, width, min_filters : architecture of the trained model.
    shell : b-value (s/mm²) whose constant divides the signal (as in training).
    out_path : output NIfTI (i, j, k, q_out), raw signal units, written atomically.
    batch_size : patches per model call.

    Returns
    -------
    (i, j, k, q_out) float32 prediction.
    """
    from dmri_rcnn.core.inference import infer
    from dmri_rcnn.core.model import get_autoencoder
    from dmri_rcnn.core.weights import load_model_weights

    model = get_autoencoder(int(model_dim), weights=None, width=width, min_filters=min_filters)
    load_model_weights(model, weights, model_dim=int(model_dim))
    dmri, affine = io.load_nifti(context, return_affine=True)
    prediction = infer(
        dmri,
        io.load_bvec(context_bvecs),
        io.load_bvec(target_bvecs),
        io.load_mask(mask),
        model,
        shell=int(shell),
        batch_size=batch_size,
        progress=progress,
    )
    io.save_nifti(prediction.astype(np.float32), affine, out_path)
    return prediction
