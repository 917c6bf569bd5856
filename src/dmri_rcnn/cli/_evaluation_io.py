"""File reading/writing for the evaluation command-line tools: ``dmri_rcnn.core.io`` plus the flag name.

``core.io`` raises ``InputError`` naming the file; these wrappers prefix the command-line flag the file came
from, so the one-line message says which argument to fix.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np

from dmri_rcnn.core import io
from dmri_rcnn.errors import InputError


@contextmanager
def _flag(what: str) -> Iterator[None]:
    try:
        yield
    except InputError as error:
        raise InputError(f"{what}: {error}") from None


def load_image(path: str | os.PathLike, what: str) -> tuple[np.ndarray, nib.spatialimages.SpatialImage]:
    """Load a NIfTI image as float32 data plus the nibabel image (for its affine and header)."""
    with _flag(what):
        image = io.load_nifti_image(path)
        data = io.load_nifti(path)
    return data, image


def save_image(data: np.ndarray, like: nib.spatialimages.SpatialImage, path: str | os.PathLike) -> None:
    """Write float32 ``data`` with the affine and header of ``like`` to ``path`` atomically."""
    io.save_nifti(np.asarray(data, dtype=np.float32), like.affine, path, header=like.header)


def load_bvecs(path: str | os.PathLike, what: str) -> np.ndarray:
    """Read an FSL b-vector file as a ``(3, N)`` float64 array of unit vectors."""
    from dmri_rcnn.evaluation.sh_baseline import as_bvec_rows

    with _flag(what):
        return as_bvec_rows(io.load_bvec(path, dtype=np.float64), str(path))


def check_output(path: str | os.PathLike, what: str, suffixes: Sequence[str]) -> Path:
    """Check an output path's extension and that it is not a directory."""
    file = Path(path)
    if not any(file.name.endswith(suffix) for suffix in suffixes):
        raise InputError(f"{what}: {file}: expected a path ending in {' or '.join(suffixes)}")
    if file.is_dir():
        raise InputError(f"{what}: {file}: expected a file path, found a directory")
    return file


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None, prog: str) -> int:
    """Run ``main``; print an ``InputError`` as one line on stderr and return 1 instead of a traceback."""
    try:
        return main(argv)
    except InputError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
