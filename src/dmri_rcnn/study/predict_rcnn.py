"""Study step: predict the held-out target directions with a model trained (or imported) by the workflow."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from dmri_rcnn.core import io
from dmri_rcnn.core.inference import infer
from dmri_rcnn.core.model_spec import ModelSpec, check_target_bvals, check_weights
from dmri_rcnn.core.processing.scaling import intensity_scale
from dmri_rcnn.types import PathLike


@dataclass(frozen=True)
class PredictionSettings:
    """How :func:`predict_with_trained_model` runs, and the targets' shells.

    Attributes
    ----------
    batch_size : int
        Patches per model call.
    progress : bool
        Show a progress bar over patches.
    target_bvals : str, os.PathLike or None
        FSL b-value file of the targets, (q_out,) in s/mm²: a cross-shell model predicts these shells
        from the context's. None: every target is of the context's shell.
    """

    batch_size: int = 4
    progress: bool = False
    target_bvals: PathLike | None = None


def predict_with_trained_model(
    context: PathLike,
    context_bvecs: PathLike,
    target_bvecs: PathLike,
    mask: PathLike,
    weights: PathLike,
    spec: ModelSpec,
    shell: int,
    out_path: PathLike,
    batch_size: int | None = None,
    settings: PredictionSettings | None = None,
) -> np.ndarray:
    """Rebuild the model from ``weights`` and its description, and predict every target direction.

    Parameters
    ----------
    context : (i, j, k, q_in) NIfTI of the context volumes.
    context_bvecs, target_bvecs : FSL bvec files (3, q_in) and (3, q_out).
    mask : brain mask NIfTI (i, j, k).
    weights : a described ``.weights.h5`` written by :func:`dmri_rcnn.training.train_model` (or imported
        from the published checkpoints).
    spec : the model the study expects (:func:`dmri_rcnn.study.design.model_spec`); the description must
        build its network (:func:`dmri_rcnn.core.model_spec.check_weights`), and its scaling decides how
        the context is scaled (:func:`dmri_rcnn.core.processing.scaling.intensity_scale`).
    shell : b-value (s/mm²) of the context, and of the targets unless ``settings.target_bvals`` gives
        theirs (the model must predict the targets' shells,
        :func:`dmri_rcnn.core.model_spec.check_target_bvals`; a b-scaled model is given them with the
        b-vectors).
    out_path : output NIfTI (i, j, k, q_out), raw signal units, written atomically.
    batch_size : patches per model call (overrides ``settings.batch_size``).
    settings : :class:`PredictionSettings` (batch size, progress, the targets' b-values).

    Returns
    -------
    (i, j, k, q_out) float32 prediction.
    """
    # lazy: TensorFlow loads only when the step runs
    from dmri_rcnn.core.model import load_trained_model

    settings = settings or PredictionSettings()
    if batch_size is not None:
        settings = replace(settings, batch_size=batch_size)
    found = check_weights(weights, spec, f"the study's model {spec.name}")
    bvec_in, bvec_out = io.load_bvec(context_bvecs), io.load_bvec(target_bvecs)
    bval_out = np.full(bvec_out.shape[1], float(shell))
    if settings.target_bvals is not None:
        bval_out = io.load_bval(settings.target_bvals, dtype=np.float64)
    check_target_bvals(found, shell, bval_out, label=str(settings.target_bvals or target_bvecs))
    model = load_trained_model(weights, found)
    dmri, affine = io.load_nifti(context, return_affine=True)
    brain = io.load_mask(mask)
    prediction = infer(
        dmri,
        bvec_in,
        bvec_out,
        brain,
        model,
        scale=intensity_scale(found.scaling, int(shell), dmri, brain),
        q_encoding=found.q_encoding,
        bvals=(np.full(bvec_in.shape[1], float(shell)), bval_out),
        batch_size=settings.batch_size,
        progress=settings.progress,
    )
    io.save_nifti(prediction.astype(np.float32), affine, out_path)
    return prediction
