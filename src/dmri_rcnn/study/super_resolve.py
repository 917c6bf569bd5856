"""Study step: super-resolve one subject's whole scan with a described model (rule super_resolve_subject)."""

from __future__ import annotations

import numpy as np

from dmri_rcnn.core.model_spec import ModelSpec, read_model_spec, sidecar_path
from dmri_rcnn.core.super_resolution import SuperResolved, super_resolve_files, target_directions
from dmri_rcnn.errors import InputError
from dmri_rcnn.types import PathLike


def super_resolve_subject(
    files: dict,
    weights: PathLike,
    shell: int,
    targets: str,
    out: dict,
    seed: int = 0,
    antipodal: bool = True,
    batch_size: int = 4,
) -> SuperResolved:
    """Rebuild the model from ``weights`` and its description, then super-resolve the subject's scan.

    Parameters
    ----------
    files : the subject's ``dmri``, ``bvals``, ``bvecs`` and ``mask`` files.
    weights : a described ``.weights.h5`` (trained here or imported from the published checkpoints).
    shell : b-value (s/mm²) super-resolved; its volumes are the context (the model's q_in of them).
    targets : ``"hcp"``, a number of evenly spread directions, or a b-vector file
        (:func:`dmri_rcnn.core.super_resolution.target_directions`): the directions predicted on ``shell``,
        or, by a cross-shell model, on each of its target shells (the output is then multi-shell: b0, the
        acquired context, then the predictions shell by shell).
    out : output paths ``dmri``, ``bvals``, ``bvecs``.
    seed : seeds the evenly spread targets and the farthest-point choice of context volumes.
    antipodal : compare directions by axis when choosing the context (``sampling.antipodal``).
    batch_size : patches per model call.
    """
    # lazy: TensorFlow loads only when the step runs
    from dmri_rcnn.core.model import load_trained_model

    spec = read_model_spec(weights)
    if spec is None:
        raise InputError(f"{weights}: no model description {sidecar_path(weights)}; cannot rebuild the model")
    target_bvecs, target_bvals = _targets(spec, shell, targets, seed)
    return super_resolve_files(
        files["dmri"], files["bvals"], files["bvecs"], files["mask"],
        load_trained_model(weights, spec),
        shell,
        target_bvecs,
        out_dmri=out["dmri"], out_bvals=out["bvals"], out_bvecs=out["bvecs"],
        scale=spec.scaling, target_bvals=target_bvals, q_encoding=spec.q_encoding,
        batch_size=batch_size, progress=False, context_size=spec.q_in, seed=seed, antipodal=antipodal,
    )


def _targets(spec: ModelSpec, shell: int, targets: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(3, q_out) directions and (q_out,) b-values to predict: ``targets`` on each shell the model predicts."""
    shells = spec.target_shells or (int(shell),)
    directions = [target_directions(targets, target_shell, seed=seed) for target_shell in shells]
    bvals = np.concatenate([np.full(d.shape[1], float(b)) for d, b in zip(directions, shells)])
    return np.concatenate(directions, axis=1), bvals
