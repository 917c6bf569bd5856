"""Where subjects come from: checks for downloaded (HCP S3) and local HCP-layout subjects.

An HCP subject's preprocessed diffusion folder ``{subject}/T1w/Diffusion`` holds four files:
``data.nii.gz`` (i, j, k, N) float32 signal, ``bvals`` (1 row of N b-values, s/mm²), ``bvecs``
(3 rows of N unit vectors) and ``nodif_brain_mask.nii.gz`` (i, j, k) brain mask. A download can stop
half-way or an object can be damaged; :func:`check_hcp_subject` reads every file to the end and
compares their sizes with each other, raising :class:`~dmri_rcnn.errors.InputError` that names the
file's origin (its S3 key) so the user knows which object to fetch again.
"""

from __future__ import annotations

import gzip
import os
import shutil
import warnings
import zlib
from pathlib import Path
from typing import Mapping

import nibabel as nib
import numpy as np

from dmri_rcnn.errors import InputError
from dmri_rcnn.types import PathLike
from dmri_rcnn.utils import atomic_path

#: File names inside an HCP subject's ``T1w/Diffusion`` folder, by role.
HCP_DIFFUSION_FILES = {
    "dmri": "data.nii.gz",
    "bvals": "bvals",
    "bvecs": "bvecs",
    "mask": "nodif_brain_mask.nii.gz",
}

#: Pairs of environment variables that each give S3 credentials (Snakemake's S3 storage plugin, boto3).
S3_CREDENTIAL_VARIABLES = (
    ("SNAKEMAKE_STORAGE_S3_ACCESS_KEY", "SNAKEMAKE_STORAGE_S3_SECRET_KEY"),
    ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
)

_CHUNK_BYTES = 1 << 24


def missing_s3_credentials(environ: Mapping[str, str] | None = None) -> str | None:
    """Say what is missing when no S3 credentials are in the environment; ``None`` when they are.

    Credentials count when both variables of one pair in :data:`S3_CREDENTIAL_VARIABLES` are set and
    non-empty, or when ``AWS_PROFILE`` names a profile of the AWS configuration files.
    """
    env = os.environ if environ is None else environ
    for access, secret in S3_CREDENTIAL_VARIABLES:
        if env.get(access) and env.get(secret):
            return None
    if env.get("AWS_PROFILE"):
        return None
    pairs = " or ".join(f"{a} + {s}" for a, s in S3_CREDENTIAL_VARIABLES)
    return (
        f"subjects.source is hcp_s3 but no S3 credentials are set: export {pairs} "
        "(HCP: your ConnectomeDB AWS key pair), or AWS_PROFILE; credentials are never read from the config"
    )


def _read_gzip_to_end(path: Path, origin: str) -> int:
    """Decompress ``path`` in chunks (constant memory); return the uncompressed size in bytes."""
    size = 0
    try:
        with gzip.open(path, "rb") as stream:
            while chunk := stream.read(_CHUNK_BYTES):
                size += len(chunk)
    except (EOFError, OSError, zlib.error) as err:
        raise InputError(f"{origin}: damaged or truncated gzip stream ({err}); download it again") from None
    return size


def check_nifti_complete(path: PathLike, origin: str, ndim: int) -> tuple[int, ...]:
    """Check that a NIfTI file is whole and has ``ndim`` dimensions; return its shape.

    Parameters
    ----------
    path : path-like
        Local ``.nii`` or ``.nii.gz`` file.
    origin : str
        Where the file came from (an S3 URL or the local path), used in error messages.
    ndim : int
        Expected number of dimensions (4 for diffusion data, 3 for a mask).
    """
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise InputError(f"{origin}: expected a NIfTI file, found {'an empty file' if path.exists() else 'nothing'}")
    try:
        image = nib.load(path)
    except Exception as err:  # nibabel raises many types for a bad header
        raise InputError(f"{origin}: not a readable NIfTI file ({err})") from None
    shape = tuple(int(n) for n in image.shape)
    if len(shape) != ndim:
        raise InputError(f"{origin}: expected a {ndim}D image, found shape {shape}")
    header = image.header
    # The array proxy knows where the voxels start (the header's own offset can read 0 after loading).
    offset = int(getattr(image.dataobj, "offset", header["vox_offset"]))
    expected = offset + int(np.prod(shape)) * header.get_data_dtype().itemsize
    if path.name.endswith(".gz"):
        found = _read_gzip_to_end(path, origin)
    else:
        found = path.stat().st_size
    if found < expected:
        raise InputError(f"{origin}: truncated: the header needs {expected} bytes of image, the file holds {found}")
    return shape


def _load_table(path: Path, origin: str, rows: int) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # an empty file is reported below instead
            table = np.loadtxt(path, ndmin=2, dtype=np.float64)
    except (OSError, ValueError) as err:
        raise InputError(f"{origin}: expected {rows} row(s) of numbers, could not parse it ({err})") from None
    if table.shape[0] != rows and table.shape[1] == rows:
        table = table.T
    if table.shape[0] != rows or table.shape[1] == 0:
        raise InputError(f"{origin}: expected {rows} row(s) of numbers, found shape {table.shape}")
    return table


def check_hcp_subject(files: Mapping[str, PathLike], origins: Mapping[str, str] | None = None) -> None:
    """Check that one subject's four diffusion files are whole and agree with each other.

    Parameters
    ----------
    files : mapping
        Local paths keyed ``dmri``, ``bvals``, ``bvecs``, ``mask`` (see :data:`HCP_DIFFUSION_FILES`).
    origins : mapping, optional
        The same keys mapped to where each file came from (S3 URLs); defaults to the local paths.

    Raises
    ------
    InputError
        Naming the origin of the first file that is missing, truncated or inconsistent.
    """
    origins = {key: str(origins[key]) if origins else str(files[key]) for key in HCP_DIFFUSION_FILES}
    dmri_shape = check_nifti_complete(files["dmri"], origins["dmri"], ndim=4)
    mask_shape = check_nifti_complete(files["mask"], origins["mask"], ndim=3)
    if mask_shape != dmri_shape[:3]:
        raise InputError(f"{origins['mask']}: mask shape {mask_shape} does not match the data's {dmri_shape[:3]}")
    n_volumes = dmri_shape[3]
    bvals = _load_table(Path(files["bvals"]), origins["bvals"], rows=1)
    bvecs = _load_table(Path(files["bvecs"]), origins["bvecs"], rows=3)
    for key, table in (("bvals", bvals), ("bvecs", bvecs)):
        if table.shape[1] != n_volumes:
            raise InputError(
                f"{origins[key]}: {table.shape[1]} entries, but {origins['dmri']} has {n_volumes} volumes"
            )


def copy_checked_hcp_subject(
    sources: Mapping[str, PathLike],
    targets: Mapping[str, PathLike],
    origins: Mapping[str, str] | None = None,
) -> None:
    """Check a subject's downloaded files (:func:`check_hcp_subject`), then copy each to its target.

    Every target is written through a temporary file and renamed, so a failure leaves no target behind.
    """
    check_hcp_subject(sources, origins)
    for key in HCP_DIFFUSION_FILES:
        with atomic_path(targets[key]) as tmp:
            shutil.copyfile(sources[key], tmp)
