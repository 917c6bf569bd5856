"""Study step: the cross-shell baseline, a diffusion tensor fitted to b0 and the context, extrapolated to
other shells (:func:`dmri_rcnn.evaluation.cross_shell.extrapolate_dti`)."""

from __future__ import annotations

import numpy as np

from dmri_rcnn.core import io
from dmri_rcnn.evaluation import cross_shell
from dmri_rcnn.types import PathLike


def load_context_acquisition(files: dict):
    """The b0 and context volumes of a context split as one acquisition.

    Parameters
    ----------
    files : paths ``b0`` ((i, j, k, n_b0) or (i, j, k)), ``context`` ((i, j, k, q_in)), ``context_bvals``
        and ``context_bvecs`` (written by :func:`dmri_rcnn.study.data.subsample_context`).

    Returns
    -------
    data : (i, j, k, n_b0 + q_in) float32 signal, b0 volumes first.
    gtab : its GradientTable (b = 0 with zero vectors for the b0 volumes).
    affine : (4, 4) of the context.
    """
    b0, affine = io.load_nifti(files["b0"], return_affine=True)
    b0 = b0 if b0.ndim == 4 else b0[..., None]
    context = io.load_nifti(files["context"])
    bvals = np.concatenate([np.zeros(b0.shape[-1]), io.load_bval(files["context_bvals"], dtype=np.float64)])
    bvecs = np.concatenate([np.zeros((3, b0.shape[-1])), io.load_bvec(files["context_bvecs"])], axis=1)
    gtab = io.make_gradient_table(bvals, bvecs, str(files["context_bvecs"]))
    return np.concatenate([b0, context], axis=-1), gtab, affine


def extrapolate_dti(files: dict, context_shell: int, out_path: PathLike) -> np.ndarray:
    """The DTI baseline of a target shell (rule extrapolate_dti).

    Parameters
    ----------
    files : paths ``b0``, ``context``, ``context_bvals``, ``context_bvecs`` (see
        :func:`load_context_acquisition`), ``target_bvals``, ``target_bvecs`` (the volumes to predict)
        and ``mask``.
    context_shell : nominal b-value of the context, s/mm².
    out_path : output NIfTI (i, j, k, n_targets), raw signal units, 0 outside the mask.

    Returns
    -------
    (i, j, k, n_targets) float32 prediction.
    """
    data, gtab, affine = load_context_acquisition(files)
    target_gtab = io.load_gradient_table(files["target_bvals"], files["target_bvecs"])
    predicted = cross_shell.extrapolate_dti(data, gtab, io.load_mask(files["mask"]), target_gtab,
                                            context_shell=context_shell)
    io.save_nifti(predicted, affine, out_path)
    return predicted
