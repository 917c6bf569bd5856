"""Checks of the user's own subjects (``subjects.source: local``) before any job of the workflow runs.

Only headers and small files are read: the image's NIfTI header (never its voxels), the b-value and
b-vector text files, and the brain mask (one small 3D volume, read to see that it holds a voxel). A
whole-brain HCP subject is checked in well under a second.

What each subject must have, by the role the config gives it:

- every subject: a 4D image; as many b-values and b-vectors as volumes; unit b-vectors (b0 aside); a
  mask of the image's spatial shape holding at least one voxel (an affine that differs from the
  image's is only warned about);
- a *test* subject (and a *validation* subject, whose context is split the same way for the SH
  baseline's choice): each evaluated shell with at least ``q_in + 1`` directions, and a b0 volume;
- a *training* or *validation* subject of a study that trains: each shell of each model with at least
  ``q_in + q_out`` directions (one training example draws that many);
- a subject of ``super_resolve.subjects``: the super-resolved shell with at least the model's q_in
  directions.

Each problem is one line naming the subject, the file, what was found and what was expected, e.g.
``subject te1: data/te1/T1w/Diffusion/bvals has 91 values but data.nii.gz has 92 volumes``.
Checks that need every voxel (non-finite values) run in the first rule that reads the image anyway
(``autocrop``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from dmri_rcnn.core import io
from dmri_rcnn.core.model_spec import ModelSpec
from dmri_rcnn.errors import InputError
from dmri_rcnn.study import design
from dmri_rcnn.study.super_resolve_config import super_resolve_shell
from dmri_rcnn.types import PathLike

#: How a subject of each group is named in messages.
ROLE_NAMES = {"train": "training", "validation": "validation", "test": "test", "super_resolve": "super-resolved"}


def _beside(path: PathLike, reference: PathLike) -> str:
    """``path`` as named after ``reference`` in a message: its bare name when both share a folder."""
    path, reference = Path(path), Path(reference)
    return path.name if path.parent == reference.parent else str(path)


def _n_bvecs(path: PathLike) -> int | None:
    """Number of directions an FSL b-vector file lists (3 rows, or 3 columns); None if it is unreadable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            table = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError):
        return None
    if table.shape[0] == 3:
        return table.shape[1]
    return table.shape[0] if table.shape[1] == 3 else None


def _shells_found(bvals: np.ndarray) -> str:
    """The b-values of a table rounded to the nearest 100 s/mm², b0 first: ``b0, 2000, 3000``."""
    shells = np.unique(np.round(bvals[bvals >= io.B0_THRESHOLD] / 100.0) * 100.0)
    return ", ".join((["b0"] if np.any(bvals < io.B0_THRESHOLD) else []) + [f"{b:g}" for b in shells])


def subject_roles(cfg: dict) -> list[tuple[str, str]]:
    """(subject, ``train``/``validation``/``test``/``super_resolve``) for every subject the config names."""
    pairs = [(subject, group) for group in design.SUBJECT_GROUPS for subject in cfg["subjects"][group]]
    section = cfg.get("super_resolve") or {}
    pairs += [(subject, "super_resolve") for subject in section.get("subjects") or []]
    return pairs


def shell_requirements(cfg: dict, role: str) -> dict[int, tuple[int, str]]:
    """shell -> (the fewest directions a subject of this role needs there, why), for each shell it needs.

    Parameters
    ----------
    cfg : the workflow's config (schema defaults filled in).
    role : ``train``, ``validation``, ``test`` or ``super_resolve``.
    """
    needs: dict[int, tuple[int, str]] = {}
    if role == "super_resolve":
        section = cfg["super_resolve"]
        spec = ModelSpec.from_name(section["model"])
        return {super_resolve_shell(section, spec): (spec.q_in, f"{section['model']} reads q_in {spec.q_in} context directions")}

    def need(shell: int, count: int, why: str) -> None:
        if shell not in needs or count > needs[shell][0]:
            needs[shell] = (count, why)

    if role in ("test", "validation"):
        for shell, q_in in design.evaluation_settings(cfg):
            need(shell, q_in + 1, f"q_in {q_in} context + 1 held-out target")
    if role in ("train", "validation") and int(cfg["training"]["epochs"]) > 0:
        q_out = int(cfg["training"]["q_out"])
        for model in design.model_catalogue(cfg):
            for shell in model.shells:
                need(shell, model.q_in + q_out, f"q_in {model.q_in} + q_out {q_out} per training example")
    return needs


def check_subject(cfg: dict, subject: str, role: str) -> list[str]:
    """Check one subject's files from their headers; return the warnings (one line each).

    Raises
    ------
    InputError
        One line ``subject {subject}: {file} ...`` for the first problem found.
    """
    files = design.subject_files(cfg, subject)
    dmri, bvals, bvecs, mask = files["dmri"], files["bvals"], files["bvecs"], files["mask"]
    try:
        return _check_files(cfg, role, dmri, bvals, bvecs, mask, subject)
    except InputError as error:
        raise InputError(f"subject {subject}: {error}") from None


def _check_files(cfg, role, dmri, bvals, bvecs, mask, subject) -> list[str]:
    image = io.load_nifti_image(dmri)
    shape = tuple(int(s) for s in image.shape)
    if len(shape) != 4:
        raise InputError(
            f"{dmri} is {len(shape)}D with shape {shape}; expected a 4D image (i, j, k, volumes), one volume per b-value"
        )
    n_volumes = shape[3]
    bval = io.load_bval(bvals, dtype=np.float64)
    if bval.size != n_volumes:
        raise InputError(f"{bvals} has {bval.size} values but {_beside(dmri, bvals)} has {n_volumes} volumes")
    n_bvecs = _n_bvecs(bvecs)
    if n_bvecs is not None and n_bvecs != n_volumes:
        raise InputError(f"{bvecs} has {n_bvecs} directions but {_beside(dmri, bvecs)} has {n_volumes} volumes")
    io.load_bvec(bvecs, bvals=bval)  # unreadable file, or a direction that is not a unit vector

    tolerance = float(cfg["preprocess"]["shell_tolerance"])
    for shell, (count, why) in sorted(shell_requirements(cfg, role).items()):
        found = int(np.count_nonzero(np.abs(bval - shell) <= tolerance))
        if found == 0:
            raise InputError(
                f"{bvals} has no volume at b = {shell} (±{tolerance:g}); a {ROLE_NAMES[role]} subject needs that shell "
                f"({why}); shells found: {_shells_found(bval)}"
            )
        if found < count:
            raise InputError(
                f"{bvals} has {found} directions at b = {shell} (±{tolerance:g}); a {ROLE_NAMES[role]} subject needs at "
                f"least {count} ({why})"
            )
    if role in ("test", "validation") and not np.any(bval < io.B0_THRESHOLD):
        raise InputError(
            f"{bvals} has no b0 volume (b < {io.B0_THRESHOLD:g}); a {ROLE_NAMES[role]} subject needs one to normalise the signal"
        )

    mask_image = io.load_nifti_image(mask)
    mask_shape = tuple(int(s) for s in mask_image.shape)
    if mask_shape != shape[:3]:
        raise InputError(
            f"{mask} has shape {mask_shape}; expected a 3D mask of the spatial shape {shape[:3]} of {_beside(dmri, mask)}"
        )
    voxels = np.asanyarray(mask_image.dataobj)
    if np.issubdtype(voxels.dtype, np.floating) and not np.all(np.isfinite(voxels)):
        raise InputError(f"{mask} holds NaN or Inf values; expected 0 outside the brain and 1 inside")
    if not np.any(voxels > 0):
        raise InputError(f"{mask} is empty; expected at least one brain voxel (value > 0)")
    warnings_found = []
    problem = io.affine_mismatch(mask_image.affine, image.affine)
    if problem:
        warnings_found.append(f"subject {subject}: {mask}: {problem} ({dmri})")
    return warnings_found


def check_local_subjects(cfg: dict) -> tuple[list[str], list[str]]:
    """Check every study subject of ``subjects.source: local`` whose four files exist.

    A subject with a missing file is left to Snakemake, which names the file when a job needs it (a run
    may ask for some subjects only).

    Returns
    -------
    errors, warnings : one line each; at most one error per subject.
    """
    if cfg["subjects"]["source"] != "local":
        return [], []
    errors, found_warnings = [], []
    for subject, role in subject_roles(cfg):
        files = design.subject_files(cfg, subject)
        if not all(Path(path).is_file() for path in files.values()):
            continue
        if any(line.startswith(f"subject {subject}:") for line in errors):
            continue  # one line per subject
        try:
            found_warnings += check_subject(cfg, subject, role)
        except InputError as error:
            errors.append(str(error))
    return errors, list(dict.fromkeys(found_warnings))
