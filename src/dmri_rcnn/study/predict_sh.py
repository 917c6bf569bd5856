"""Study steps: the SH baselines' predictions, with order and smoothing chosen on the validation subjects."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dmri_rcnn.core import io
from dmri_rcnn.errors import InputError
from dmri_rcnn.evaluation import select_sh_on_held_out, select_sh_parameters, sh_interpolate
from dmri_rcnn.types import PathLike
from dmri_rcnn.utils import write_json


def select_sh_baseline(examples: list[dict], settings: dict, out_path: PathLike) -> dict:
    """Choose one SH baseline's order and smoothing on the validation subjects' held-out directions.

    Parameters
    ----------
    examples : one dict of files per validation subject, written by ``subsample_context``: ``context``,
        ``context_bvecs``, ``targets``, ``target_bvecs`` and ``mask``.
    settings : the baseline's config entry (``basis`` is used; the grid is the package default).
    out_path : output JSON: ``sh_order``, ``smooth``, ``basis``, ``error`` (mean absolute error of the
        held-out directions, signal units), ``criterion``, ``subjects`` and the whole ``table``.

    Returns
    -------
    The JSON content as a dict.
    """
    loaded = [
        {
            "context": io.load_nifti(files["context"]),
            "context_bvecs": io.load_bvec(files["context_bvecs"]),
            "targets": io.load_nifti(files["targets"]),
            "target_bvecs": io.load_bvec(files["target_bvecs"]),
            "mask": io.load_mask(files["mask"]),
        }
        for files in examples
    ]
    selection = select_sh_on_held_out(loaded, basis=settings.get("basis", "descoteaux07"))
    chosen = {
        **selection.settings(),
        "subjects": [str(files["context"]) for files in examples],
        "table": [{"sh_order": order, "smooth": smooth, "error": error} for order, smooth, error in selection.table],
    }
    write_json(chosen, out_path)
    return chosen


def predict_sh_baseline(
    context: PathLike,
    context_bvecs: PathLike,
    target_bvecs: PathLike,
    mask: PathLike,
    settings: dict,
    out_path: PathLike,
    seed: int = 0,
    selection: PathLike | None = None,
) -> dict:
    """Spherical-harmonic interpolation of the target directions from the context.

    Parameters
    ----------
    context, context_bvecs, target_bvecs, mask : files written by ``subsample_context`` / ``autocrop``.
    settings : ``{"sh_order": int | "auto", "smooth": float, "basis": str, "select_on": str}``. With
        ``"auto"``, the order and smoothing come from ``selection`` (the JSON written by
        :func:`select_sh_baseline`) when ``select_on`` is ``"validation"`` (the default), or from
        leave-one-out cross-validation on this context inside the mask when it is ``"context"``.
    out_path : output NIfTI (i, j, k, q_out), raw signal units.
    seed : seed of the voxel subsample used by the cross-validation.
    selection : the validation subjects' choice (needed for ``auto`` with ``select_on: validation``).

    Returns
    -------
    The settings used: ``sh_order``, ``smooth``, ``basis`` (and ``error``, ``criterion`` when chosen
    automatically).
    """
    dmri, affine = io.load_nifti(context, return_affine=True)
    bvec_in = io.load_bvec(context_bvecs)
    bvec_out = io.load_bvec(target_bvecs)
    basis = settings.get("basis", "descoteaux07")
    if settings["sh_order"] == "auto" and settings.get("select_on", "validation") == "validation":
        if selection is None:
            raise InputError("sh_order auto with select_on validation needs the validation subjects' selection file")
        saved = json.loads(Path(selection).read_text())
        chosen = {key: saved[key] for key in ("sh_order", "smooth", "basis", "error", "criterion")}
    elif settings["sh_order"] == "auto":
        brain = io.load_mask(mask)
        chosen = select_sh_parameters(dmri, bvec_in, brain, basis=basis, seed=seed).settings()
    else:
        chosen = {"sh_order": int(settings["sh_order"]), "smooth": float(settings.get("smooth", 0.0)), "basis": basis}
    prediction = sh_interpolate(
        dmri, bvec_in, bvec_out, sh_order=chosen["sh_order"], basis=chosen["basis"], smooth=chosen["smooth"]
    )
    io.save_nifti(prediction.astype(np.float32), affine, out_path)
    return chosen
