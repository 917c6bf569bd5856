"""File reading/writing for the evaluation command-line tools: ``dmri_rcnn.core.io`` plus the flag name.

``core.io`` raises ``InputError`` naming the file; these wrappers prefix the command-line flag the file came
from, so the one-line message says which argument to fix.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import nibabel as nib
import numpy as np

from dmri_rcnn.cli._command import check_output, note, run_command
from dmri_rcnn.core import io
from dmri_rcnn.errors import InputError
from dmri_rcnn.types import PathLike

__all__ = ["check_output", "load_bvecs", "load_image", "load_mask", "run_cli", "save_image"]


@contextmanager
def _flag(what: str) -> Iterator[None]:
    try:
        yield
    except InputError as error:
        raise InputError(f"{what}: {error}") from None


def load_image(path: PathLike, what: str) -> tuple[np.ndarray, nib.spatialimages.SpatialImage]:
    """Load a NIfTI image as float32 data plus the nibabel image (for its affine and header)."""
    with _flag(what):
        image = io.load_nifti_image(path)
        data = io.load_nifti(path)
    return data, image


def load_mask(
    path: PathLike, what: str, like: nib.spatialimages.SpatialImage, shape, prog: str
) -> np.ndarray:
    """Load a brain mask (value > 0 inside) of spatial ``shape``; warn if its affine differs from ``like``'s."""
    with _flag(what):
        mask = io.load_mask(path, shape)
        affine = io.load_nifti_image(path).affine
    if not mask.any():
        raise InputError(f"{what}: {path}: expected at least one voxel inside, found an empty mask")
    warning = io.affine_mismatch(affine, like.affine)
    if warning:
        note(prog, f"warning: {what} {path}: {warning}")
    return mask


def save_image(data: np.ndarray, like: nib.spatialimages.SpatialImage, path: PathLike) -> None:
    """Write float32 ``data`` with the affine and header of ``like`` to ``path`` atomically."""
    io.save_nifti(np.asarray(data, dtype=np.float32), like.affine, path, header=like.header)


def load_bvecs(path: PathLike, what: str) -> np.ndarray:
    """Read an FSL b-vector file as a ``(3, N)`` float64 array of unit vectors (no b0 columns)."""
    with _flag(what):
        return io.load_bvec(path, dtype=np.float64, allow_b0=False)


def run_cli(main, argv, prog: str) -> int:
    """Run a command's ``main`` under the package's exit-status convention (see :func:`run_command`)."""
    return run_command(main, argv, prog)
