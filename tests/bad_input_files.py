"""Small input files shared by the bad-input tests: a context scan, its directions and a mask."""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def command(name: str) -> list[str]:
    """The installed console script beside this Python (the way a user runs it)."""
    script = Path(sys.executable).parent / name
    assert script.exists(), f"console script {name} is not installed beside {sys.executable}"
    return [str(script)]


def unit_vectors(n: int, seed: int) -> np.ndarray:
    """(3, n) random unit vectors."""
    v = np.random.default_rng(seed).normal(size=(3, n))
    return v / np.linalg.norm(v, axis=0)


def write_context_scan(folder: Path) -> Path:
    """``dmri.nii.gz`` (10³ voxels, 6 volumes), ``mask.nii.gz``, ``bvec_in`` (6) and ``bvec_out`` (4)."""
    rng = np.random.default_rng(0)
    shape = (10, 10, 10)
    nib.save(nib.Nifti1Image(rng.uniform(500, 2000, shape + (6,)).astype(np.float32), AFFINE), folder / "dmri.nii.gz")
    mask = np.zeros(shape, np.uint8)
    mask[2:8, 2:8, 2:8] = 1
    nib.save(nib.Nifti1Image(mask, AFFINE), folder / "mask.nii.gz")
    np.savetxt(folder / "bvec_in", unit_vectors(6, 1), fmt="%.6f")
    np.savetxt(folder / "bvec_out", unit_vectors(4, 2), fmt="%.6f")
    return folder
