"""File reading/writing for the evaluation command-line tools, with input checks that raise ``InputError``.

Thin wrappers: NIfTI I/O goes through ``dmri_rcnn.core.io`` when it is available, and through nibabel
directly otherwise; what they add is the one-line error naming the file.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from dmri_rcnn.errors import InputError
from dmri_rcnn.utils import atomic_path


def existing_file(path: str | os.PathLike, what: str) -> Path:
    """Return ``path`` as a Path, or raise InputError if it is not an existing file."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{what} {file} does not exist or is not a file")
    return file


def load_image(path: str | os.PathLike, what: str) -> tuple[np.ndarray, nib.spatialimages.SpatialImage]:
    """Load a NIfTI image as float32 data plus the nibabel image (for its affine and header)."""
    file = existing_file(path, what)
    try:
        image = nib.load(file)
        data = np.asarray(image.dataobj, dtype=np.float32)
    except Exception as error:  # nibabel raises several types for unreadable files
        raise InputError(f"{what} {file} cannot be read as NIfTI: {str(error).splitlines()[0]}") from None
    return data, image


def save_image(data: np.ndarray, like: nib.spatialimages.SpatialImage, path: str | os.PathLike) -> None:
    """Write float32 ``data`` with the affine and header of ``like`` to ``path`` atomically."""
    header = like.header.copy()
    header.set_data_dtype(np.float32)
    image = like.__class__(np.asarray(data, dtype=np.float32), like.affine, header)
    with atomic_path(path) as tmp:
        nib.save(image, tmp)


def load_bvecs(path: str | os.PathLike, what: str) -> np.ndarray:
    """Read an FSL b-vector file as a ``(3, N)`` array of unit vectors ((N, 3) files are transposed)."""
    file = existing_file(path, what)
    try:
        bvecs = np.loadtxt(file, ndmin=2, dtype=np.float64)
    except ValueError as error:
        raise InputError(f"{what} {file} is not a whitespace-delimited table of numbers: {error}") from None
    if bvecs.shape[0] != 3 and bvecs.ndim == 2 and bvecs.shape[1] == 3:
        bvecs = bvecs.T
    if bvecs.shape[0] != 3:
        raise InputError(f"{what} {file} must have 3 rows (x, y, z) and one column per direction; found shape {bvecs.shape}")
    norms = np.linalg.norm(bvecs, axis=0)
    if np.any(np.abs(norms - 1.0) > 1e-2):
        bad = int(np.argmax(np.abs(norms - 1.0)))
        raise InputError(f"{what} {file} must hold unit vectors; column {bad} has length {norms[bad]:.4g}")
    return bvecs / norms


def check_output(path: str | os.PathLike, what: str, suffixes: Sequence[str]) -> Path:
    """Check an output path's extension and that its folder exists (or can be created)."""
    file = Path(path)
    if not any(file.name.endswith(suffix) for suffix in suffixes):
        raise InputError(f"{what} {file} must end with {' or '.join(suffixes)}")
    if file.is_dir():
        raise InputError(f"{what} {file} is a directory")
    return file


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None, prog: str) -> int:
    """Run ``main``; print an ``InputError`` as one line on stderr and return 1 instead of a traceback."""
    try:
        return main(argv)
    except InputError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
