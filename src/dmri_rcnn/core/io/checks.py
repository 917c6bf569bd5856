"""Checks shared by the readers: a file that exists, values that are finite."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dmri_rcnn.errors import InputError
from dmri_rcnn.types import PathLike

__all__ = ["check_finite", "require_file"]


def require_file(path: PathLike, what: str) -> Path:
    """``path`` as a Path, if it names an existing regular file; otherwise an InputError naming it."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: {what} file not found")
    if not path.is_file():
        raise InputError(f"{path}: expected a {what} file, found a directory or special file")
    return path


def check_finite(array: np.ndarray, name: str) -> None:
    """Raise InputError naming ``name`` if ``array`` holds NaN or Inf values."""
    array = np.asarray(array)
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise InputError(f"{name}: expected finite values, found {bad} NaN/Inf value(s)")
