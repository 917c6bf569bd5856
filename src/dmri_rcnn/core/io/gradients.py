"""FSL gradient tables: b-vector and b-value files, and the unit-vector check of the directions.

b-vectors are ``(3, q)`` (FSL layout: rows x, y, z); b-values are ``(q,)`` in s/mm². Every
diffusion-weighted direction must be a unit vector: lengths within ``1 ± BVEC_UNIT_TOLERANCE`` are
renormalised, anything else is refused naming the file and column. b0 volumes (b-value below
``B0_THRESHOLD`` where b-values are at hand, otherwise a zero vector) carry no direction and are
stored as zero vectors.

An acquisition (b-values, b-vectors and the b0 threshold together) travels as one DIPY
:class:`~dipy.core.gradients.GradientTable`, built by :func:`make_gradient_table` from arrays or
:func:`load_gradient_table` from FSL files, always with ``B0_THRESHOLD``.
"""

from __future__ import annotations

import warnings

import numpy as np

from dmri_rcnn.core.io.checks import check_finite, require_file
from dmri_rcnn.errors import InputError
from dmri_rcnn.types import PathLike
from dmri_rcnn.utils import atomic_path

__all__ = [
    "B0_THRESHOLD",
    "BVEC_UNIT_TOLERANCE",
    "check_bvecs",
    "load_bval",
    "load_bvec",
    "load_gradient_table",
    "make_gradient_table",
    "save_bval",
    "save_bvec",
]

#: A diffusion-weighted b-vector may differ from unit length by this much (relative); it is then
#: renormalised. Scanner text files round to ~6 digits, so genuine unit vectors are far inside it.
BVEC_UNIT_TOLERANCE = 0.01

#: Volumes with a b-value below this (s/mm²) are b0 volumes.
B0_THRESHOLD = 50.0


def _load_table(path: PathLike, what: str) -> np.ndarray:
    path = require_file(path, what)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # empty file: reported below as an InputError
            table = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as err:
        reason = str(err).splitlines()[0]
        raise InputError(f"{path}: expected a whitespace-delimited numeric {what} file ({reason})") from None
    if table.size == 0:
        raise InputError(f"{path}: {what} file is empty")
    if not np.all(np.isfinite(table)):
        raise InputError(f"{path}: {what} file contains NaN or Inf values")
    return table


def _count_columns(path: PathLike) -> int:
    """Number of volumes an FSL b-vector file describes (columns of 3 rows, or rows of 3 columns)."""
    table = _load_table(path, "b-vector")
    return table.shape[1] if table.shape[0] == 3 else table.shape[0]


def _unit_or_b0(table: np.ndarray, bvals: np.ndarray | None) -> bool:
    """Whether every column of a (3, q) table is a unit vector (within tolerance) or a b0 column."""
    lengths = np.linalg.norm(table, axis=0)
    ok = np.abs(lengths - 1.0) <= BVEC_UNIT_TOLERANCE
    known_b0 = bvals is not None and bvals.shape[0] == table.shape[1]
    ok |= (bvals < B0_THRESHOLD) if known_b0 else (lengths == 0)
    return bool(ok.all())


def load_bvec(
    path: PathLike,
    dtype: np.typing.DTypeLike = np.float32,
    bvals: np.ndarray | None = None,
    allow_b0: bool = True,
) -> np.ndarray:
    """Load an FSL b-vector file and check that every direction is a unit vector.

    Parameters
    ----------
    path : text file with 3 rows (x, y, z) and one column per volume; a file with 3 columns and one
        row per volume is transposed. A 3×3 file is read in the orientation whose vectors have unit
        length; if both (or neither) orientations do and they differ, it is refused as ambiguous.
    dtype : dtype of the returned array (float32, as the TFRecord schema stores it).
    bvals : (q,) b-values of the same volumes, if at hand: volumes below ``B0_THRESHOLD`` are b0
        whatever their vector says, and every other volume needs a unit vector.
    allow_b0 : accept zero vectors (b0 volumes). False where every volume must be diffusion-weighted
        (the context and target directions of inference).

    Returns
    -------
    bvecs : (3, q) ``dtype``; unit columns (renormalised within ``BVEC_UNIT_TOLERANCE``), b0 columns zero.

    Raises
    ------
    InputError
        Unreadable file, not 3×N or N×3, an ambiguous 3×3 file, or a column that is neither a unit
        vector nor an allowed b0 (naming the file, column and its length).
    """
    table = _load_table(path, "b-vector")
    bvals_arr = None if bvals is None else np.asarray(bvals, dtype=np.float64).ravel()
    if table.shape == (3, 3):
        as_written, transposed = table, table.T
        fits = [_unit_or_b0(as_written, bvals_arr), _unit_or_b0(transposed, bvals_arr)]
        if fits[1] and not fits[0]:
            table = transposed  # one vector per row
        elif fits[0] and fits[1] and not np.allclose(as_written, transposed, atol=1e-6):
            raise InputError(
                f"{path}: a 3x3 b-vector file is ambiguous: its columns (FSL layout) and its rows are both "
                "unit vectors, and they differ, so which are the directions cannot be told from the file"
            )
    elif table.shape[0] == 1 and table.shape[1] == 3:
        table = table.T  # a single direction written as one row
    elif table.shape[0] != 3:
        if table.shape[1] == 3:
            table = table.T
        else:
            raise InputError(
                f"{path}: expected b-vectors as 3 rows (FSL) or 3 columns, found {table.shape[0]} rows "
                f"and {table.shape[1]} columns"
            )
    checked = check_bvecs(table, str(path), bvals=bvals_arr, allow_b0=allow_b0)
    return np.ascontiguousarray(checked, dtype=dtype)


def check_bvecs(
    bvecs: np.ndarray, name: str, bvals: np.ndarray | None = None, allow_b0: bool = True
) -> np.ndarray:
    """Check that every diffusion-weighted column of ``bvecs`` is a unit vector; return them renormalised.

    Parameters
    ----------
    bvecs : (3, q) directions.
    name : the file (or argument) named in messages.
    bvals : (q,) b-values (s/mm²), optional: columns below ``B0_THRESHOLD`` are b0 (set to zero);
        every other column must have unit length. Without b-values a zero column is a b0.
    allow_b0 : if False, b0 columns are refused (every volume must carry a direction).

    Returns
    -------
    (3, q) float64: unit columns (lengths within ``1 ± BVEC_UNIT_TOLERANCE`` rescaled to 1), b0 columns zero.
    """
    table = np.asarray(bvecs, dtype=np.float64)
    if table.ndim != 2 or table.shape[0] != 3:
        raise InputError(f"{name}: expected b-vectors of shape (3, q), found shape {table.shape}")
    check_finite(table, name)
    q = table.shape[1]
    lengths = np.linalg.norm(table, axis=0)
    if bvals is not None:
        bvals = np.asarray(bvals, dtype=np.float64).ravel()
        if bvals.shape[0] != q:
            raise InputError(f"{name}: has {q} b-vectors but there are {bvals.shape[0]} b-values")
        is_b0 = bvals < B0_THRESHOLD
    else:
        is_b0 = lengths == 0
    if is_b0.any() and not allow_b0:
        column = int(np.flatnonzero(is_b0)[0])
        raise InputError(
            f"{name}: column {column + 1} of {q} is a zero vector (a b0 volume); expected a unit "
            "direction for every volume here"
        )
    bad = ~is_b0 & (np.abs(lengths - 1.0) > BVEC_UNIT_TOLERANCE)
    if bad.any():
        column = int(np.flatnonzero(bad)[0])
        where = f" (b-value {bvals[column]:g})" if bvals is not None else ""
        raise InputError(
            f"{name}: column {column + 1} of {q}{where} has length {lengths[column]:.4g}; expected unit "
            f"b-vectors (lengths within 1 ± {BVEC_UNIT_TOLERANCE:g} are renormalised)"
        )
    return np.where(is_b0, 0.0, table / np.where(is_b0, 1.0, lengths))


def load_bval(path: PathLike, dtype: np.typing.DTypeLike = np.float32) -> np.ndarray:
    """Load an FSL b-value file (one row or one column of numbers, s/mm²).

    Returns
    -------
    bvals : (q,) ``dtype``.
    """
    table = _load_table(path, "b-value")
    if min(table.shape) != 1:
        raise InputError(
            f"{path}: expected b-values as a single row or column, found {table.shape[0]} rows "
            f"and {table.shape[1]} columns"
        )
    return np.ascontiguousarray(table.ravel(), dtype=dtype)


def _as_3xn(bvecs: np.ndarray, name: str) -> np.ndarray:
    bvecs = np.asarray(bvecs)
    if bvecs.ndim == 2 and bvecs.shape[0] == 3:
        return bvecs
    if bvecs.ndim == 2 and bvecs.shape[1] == 3:
        return bvecs.T
    raise InputError(f"{name}: expected b-vectors of shape (3, q) or (q, 3), found shape {bvecs.shape}")


def save_bvec(bvecs: np.ndarray, path: PathLike) -> None:
    """Write b-vectors in FSL layout (3 rows x, y, z; one column per volume), atomically.

    Parameters
    ----------
    bvecs : (3, q) or (q, 3) array (a 3×3 array is taken as (3, q)).
    path : output text file.
    """
    table = _as_3xn(bvecs, str(path))
    with atomic_path(path) as tmp:
        np.savetxt(tmp, table, fmt="%.6f")


def save_bval(bvals: np.ndarray, path: PathLike) -> None:
    """Write b-values (s/mm²) as one whitespace-delimited row, atomically.

    Parameters
    ----------
    bvals : (q,) array.
    path : output text file.
    """
    bvals = np.asarray(bvals, dtype=np.float64)
    if bvals.ndim != 1:
        raise InputError(f"{path}: expected b-values of shape (q,), found shape {bvals.shape}")
    fmt = "%d" if np.all(bvals == np.round(bvals)) else "%.6g"
    with atomic_path(path) as tmp:
        np.savetxt(tmp, bvals[None, :], fmt=fmt)


def make_gradient_table(bvals, bvecs, name: str = "gradient table"):
    """One acquisition as a DIPY ``GradientTable``: b-values, unit b-vectors and ``B0_THRESHOLD``.

    Parameters
    ----------
    bvals : (q,) array_like, s/mm².
    bvecs : (3, q) array_like (FSL layout; a (q, 3) array with q != 3 is transposed). Every volume at or
        above ``B0_THRESHOLD`` needs a unit vector (see :func:`check_bvecs`); b0 volumes get zero vectors.
    name : the file or argument named in messages.

    Returns
    -------
    dipy.core.gradients.GradientTable
        ``bvals`` (q,) float64, ``bvecs`` (q, 3) float64 (DIPY's layout), ``b0_threshold`` =
        ``B0_THRESHOLD`` and ``b0s_mask`` (q,) bool. DIPY stores b·g, so a b0 volume's b-value reads
        back as 0 (keep the b-value file for copying b-values through value for value).
    """
    # lazy: keeps DIPY (0.7 s) out of the commands' start-up
    from dipy.core.gradients import gradient_table

    values = np.asarray(bvals, dtype=np.float64).ravel()
    table = np.asarray(bvecs, dtype=np.float64)
    if table.ndim == 2 and table.shape[0] != 3 and table.shape[1] == 3:
        table = table.T
    check_finite(values, name)
    directions = check_bvecs(table, name, bvals=values)
    return gradient_table(values, bvecs=directions.T, b0_threshold=B0_THRESHOLD)


def load_gradient_table(bval_path: PathLike, bvec_path: PathLike):
    """:func:`make_gradient_table` of an FSL b-value file and b-vector file (see :func:`load_bval`,
    :func:`load_bvec`); errors name the files."""
    values = load_bval(bval_path, dtype=np.float64)
    directions = load_bvec(bvec_path, dtype=np.float64, bvals=values)  # one b-vector per b-value, checked
    return make_gradient_table(values, directions, name=str(bvec_path))
