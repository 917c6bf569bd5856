"""Selecting the volumes of one b-value shell."""

from __future__ import annotations

import numpy as np

from dmri_rcnn.errors import InputError

__all__ = ["SHELL_TOLERANCE", "require_shell_indices", "select_shell", "shell_indices"]

#: A volume belongs to shell ``s`` when ``|b - s| <= SHELL_TOLERANCE`` (s/mm²), as in the original.
SHELL_TOLERANCE = 30.0


def shell_indices(bvals: np.ndarray, shell: float, tolerance: float = SHELL_TOLERANCE) -> np.ndarray:
    """Indices (ascending, int64) of the volumes with ``|bvals - shell| <= tolerance``.

    Parameters
    ----------
    bvals : (q,) b-values, s/mm².
    shell : nominal b-value of the shell, s/mm².
    tolerance : half-width of the accepted band, s/mm².
    """
    bvals = np.asarray(bvals, dtype=np.float64)
    if bvals.ndim != 1:
        raise InputError(f"bvals: expected shape (q,), found {bvals.shape}")
    return np.flatnonzero(np.abs(bvals - float(shell)) <= tolerance)


def require_shell_indices(
    bvals: np.ndarray, shell: float, tolerance: float = SHELL_TOLERANCE, name: str = "bvals"
) -> np.ndarray:
    """:func:`shell_indices`, refusing a shell with no volume in one line that lists the b-values found.

    ``name`` (the b-value file's path, for example) starts the message.
    """
    index = shell_indices(bvals, shell, tolerance)
    if index.size == 0:
        found = ", ".join(f"{b:g}" for b in np.unique(np.round(np.asarray(bvals, dtype=np.float64))))
        raise InputError(f"{name}: no volume within {tolerance:g} of shell b={shell:g}; b-values found: {found}")
    return index


def select_shell(
    dmri: np.ndarray,
    bvecs: np.ndarray,
    bvals: np.ndarray,
    shell: float,
    tolerance: float = SHELL_TOLERANCE,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep the volumes of one shell.

    Parameters
    ----------
    dmri : (i, j, k, q) signal.
    bvecs : (3, q) b-vectors.
    bvals : (q,) b-values, s/mm².
    shell : nominal b-value, s/mm².
    tolerance : volumes with ``|b - shell| <= tolerance`` are kept.

    Returns
    -------
    dmri : (i, j, k, q_s), bvecs : (3, q_s), bvals : (q_s,) — in file order.
    """
    index = require_shell_indices(bvals, shell, tolerance)
    return np.take(dmri, index, axis=-1), np.take(bvecs, index, axis=1), np.take(bvals, index)
