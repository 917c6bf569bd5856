"""NIfTI images: reading (streamed, with the gzip CRC checked), writing (atomically) and the brain mask rule.

dMRI images are ``(i, j, k, q)``: three spatial axes (voxels) then the q-space (volume) axis. Masks are
``(i, j, k)``; a voxel is inside the brain when its value is > 0 (one rule, applied by :func:`load_mask`
everywhere: 0.4 is inside, 0 and negative values are outside).
"""

from __future__ import annotations

import contextlib
import gzip
from pathlib import Path
from typing import Sequence

import nibabel as nib
import numpy as np

from dmri_rcnn.core.io.checks import check_finite, require_file
from dmri_rcnn.errors import InputError
from dmri_rcnn.types import PathLike
from dmri_rcnn.utils import atomic_path

__all__ = [
    "load_mask",
    "load_nifti",
    "load_nifti_image",
    "load_nifti_volume",
    "load_nifti_volumes",
    "save_nifti",
]


def load_nifti_image(path: PathLike) -> nib.Nifti1Image | nib.Nifti2Image:
    """Open a NIfTI-1 or NIfTI-2 image (``.nii`` or ``.nii.gz``) without reading its voxels.

    Parameters
    ----------
    path : path to the image.

    Returns
    -------
    nibabel.Nifti1Image or nibabel.Nifti2Image
        The image; ``.affine`` is the (4, 4) voxel-to-world transform (mm) and ``.header`` its header.

    Raises
    ------
    InputError
        If the file is missing, not a NIfTI image, or its header is unreadable.
    """
    path = require_file(path, "NIfTI")
    try:
        img = nib.load(str(path))
    except Exception as err:  # nibabel raises several types for unreadable files
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"{path}: expected a NIfTI image (.nii/.nii.gz), could not read it ({reason})") from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"{path}: expected a NIfTI image (.nii/.nii.gz), found {type(img).__name__}")
    return img


#: Volumes read at a time from a compressed 4D image (see :func:`_read_voxels`).
_VOLUMES_PER_READ = 16


def load_nifti(
    path: PathLike,
    dtype: np.typing.DTypeLike = np.float32,
    return_affine: bool = False,
    ndim: int | None = None,
):
    """Load a NIfTI image's voxel array (as the original README uses it: ``dmri = io.load_nifti(path)``).

    Parameters
    ----------
    path : path to a ``.nii`` or ``.nii.gz`` file.
    dtype : NumPy dtype of the returned array (default float32; use ``np.int8`` for masks).
    return_affine : if True, return ``(array, affine)`` like the original package's code did.
    ndim : if given, the number of dimensions the image must have (3 for masks, 4 for dMRI).

    Returns
    -------
    array : (i, j, k[, q]) ``dtype``, scaled by the header's slope/intercept.
    affine : (4, 4) float64, only with ``return_affine=True``.

    Raises
    ------
    InputError
        Missing, non-NIfTI or truncated file, or a dimensionality other than ``ndim``.
    """
    img = load_nifti_image(path)
    if ndim is not None and len(img.shape) != ndim:
        kind = {3: "a 3D image (i, j, k)", 4: "a 4D image (i, j, k, q)"}.get(ndim, f"a {ndim}D image")
        raise InputError(f"{path}: expected {kind}, found shape {tuple(img.shape)}")
    try:
        data = _read_voxels(path, img, dtype)
    except Exception as err:  # truncated gzip/raw data surfaces as EOFError, OSError or ValueError
        raise _unreadable_voxels(path, img, err) from None
    if return_affine:
        return data, np.array(img.affine, dtype=np.float64)
    return data


def _read_voxels(path: PathLike, img, dtype) -> np.ndarray:
    """Read the voxels; for ``.gz`` also read to the end of the stream, where gzip checks its CRC.

    nibabel stops decompressing after the last voxel, so damage inside the compressed data could
    otherwise decode to wrong voxel values without any error. A compressed 4D image is read a few
    volumes at a time: read whole, it goes through a bytes copy of the entire array (gzip's ``readinto``
    reads into a temporary), doubling the peak memory (8.4 GB for an HCP subject). The volumes are
    contiguous on disk, so reading them in order costs one pass and a few volumes of extra memory.
    """
    if not str(path).endswith(".gz"):
        return np.asarray(img.dataobj, dtype=dtype)
    with _gzip_voxel_proxy(path, img) as proxy:
        if len(img.shape) != 4 or img.shape[3] <= _VOLUMES_PER_READ:
            return np.asarray(proxy, dtype=dtype)
        first = np.asarray(proxy[..., :_VOLUMES_PER_READ], dtype=dtype)
        data = np.empty(img.shape, dtype=first.dtype, order="F")
        data[..., :_VOLUMES_PER_READ] = first
        for start in range(_VOLUMES_PER_READ, img.shape[3], _VOLUMES_PER_READ):
            data[..., start : start + _VOLUMES_PER_READ] = proxy[..., start : start + _VOLUMES_PER_READ]
        return data


#: Bytes decompressed at a time when reading past the wanted voxels to the gzip CRC.
_DRAIN_BYTES = 16 << 20


@contextlib.contextmanager
def _gzip_voxel_proxy(path: PathLike, img):
    """The voxel proxy of ``img`` over one gzip stream of ``path``, read to its end (CRC check) on exit."""
    with gzip.open(path, "rb") as stream:
        holder = nib.FileHolder(filename=str(path), fileobj=stream)
        yield type(img).from_file_map({"header": holder, "image": holder}).dataobj
        while stream.read(_DRAIN_BYTES):  # the rest of the stream (usually nothing) and the CRC/length check
            pass


def _unreadable_voxels(path: PathLike, img, err: Exception) -> InputError:
    """The one-line error for voxel data that a valid header promises but the file cannot deliver."""
    reason = str(err).splitlines()[0] if str(err) else type(err).__name__
    return InputError(
        f"{path}: NIfTI header promises shape {tuple(img.shape)} but the voxel data cannot be read "
        f"(truncated or corrupt file: {reason})"
    )


def load_nifti_volume(path: PathLike, index: int, dtype: np.typing.DTypeLike = np.float32) -> np.ndarray:
    """Load one volume ``[..., index]`` of a 4D NIfTI image without holding the others in memory.

    A ``.gz`` file is still decompressed to its end (in 16 MB pieces), so its CRC is checked as
    :func:`load_nifti` checks it.

    Parameters
    ----------
    path : path to a 4D ``.nii`` or ``.nii.gz`` file.
    index : the volume, 0 <= index < q.
    dtype : NumPy dtype of the returned array.

    Returns
    -------
    (i, j, k) ``dtype`` array, scaled by the header's slope/intercept.

    Raises
    ------
    InputError
        Missing, non-NIfTI, not 4D or truncated file, or an index outside the image.
    """
    return load_nifti_volumes(path, [index], dtype)[..., 0]


def load_nifti_volumes(path: PathLike, indices: Sequence[int], dtype: np.typing.DTypeLike = np.float32) -> np.ndarray:
    """Load the volumes ``[..., indices]`` of a 4D NIfTI image, in the order given, holding no others.

    The volumes are read one at a time in file order in a single pass, so the peak memory is the
    result plus one volume. A ``.gz`` file is decompressed to its end, so its CRC is checked as
    :func:`load_nifti` checks it.

    Parameters
    ----------
    path : path to a 4D ``.nii`` or ``.nii.gz`` file.
    indices : the volumes, each 0 <= index < q; repeats are allowed.
    dtype : NumPy dtype of the returned array.

    Returns
    -------
    (i, j, k, len(indices)) ``dtype`` array, scaled by the header's slope/intercept.

    Raises
    ------
    InputError
        Missing, non-NIfTI, not 4D or truncated file, or an index outside the image.
    """
    img = load_nifti_image(path)
    if len(img.shape) != 4:
        raise InputError(f"{path}: expected a 4D image (i, j, k, q), found shape {tuple(img.shape)}")
    wanted = np.asarray(indices, dtype=np.int64).reshape(-1)
    n_volumes = img.shape[3]
    outside = wanted[(wanted < 0) | (wanted >= n_volumes)]
    if outside.size:
        raise InputError(
            f"{path}: volume {outside[0]} asked for; the image has {n_volumes} volumes (0 to {n_volumes - 1})"
        )
    data = np.empty(tuple(img.shape[:3]) + (wanted.size,), dtype=dtype, order="F")
    try:
        with contextlib.ExitStack() as stack:
            proxy = img.dataobj
            if str(path).endswith(".gz"):
                proxy = stack.enter_context(_gzip_voxel_proxy(path, img))
            for index in np.unique(wanted):  # ascending: a gzip stream cannot seek back cheaply
                data[..., wanted == index] = np.asarray(proxy[..., int(index)], dtype=dtype)[..., None]
    except Exception as err:  # truncated gzip/raw data surfaces as EOFError, OSError or ValueError
        raise _unreadable_voxels(path, img, err) from None
    return data


def _writable_dtype(data: np.ndarray) -> np.dtype:
    """Pick a NIfTI-storable dtype for ``data`` (NIfTI has no bool, and nibabel refuses int64 by default)."""
    if data.dtype == np.bool_:
        return np.dtype(np.uint8)
    if data.dtype in (np.int64, np.uint64):
        if data.size == 0 or (data.min() >= np.iinfo(np.int32).min and data.max() <= np.iinfo(np.int32).max):
            return np.dtype(np.int32)
        return np.dtype(np.float64)
    return data.dtype


def save_nifti(
    data: np.ndarray,
    affine: np.ndarray,
    path: PathLike,
    header: nib.Nifti1Header | nib.Nifti2Header | None = None,
) -> None:
    """Write ``data`` as a NIfTI image at ``path`` (``.nii`` or ``.nii.gz``), atomically.

    The voxels are stored in ``data``'s own dtype (bool as uint8, int64 as int32 when it fits), never
    rescaled into the header's old dtype, so inferred float32 signal survives a header taken from an
    int16 scan. The file is NIfTI-1 unless ``header`` is a NIfTI-2 header.

    Parameters
    ----------
    data : (i, j, k[, q]) array.
    affine : (4, 4) voxel-to-world transform (mm), e.g. from ``load_nifti(..., return_affine=True)``.
    path : output path ending in ``.nii`` or ``.nii.gz``.
    header : optional header to keep (voxel sizes, units, description, TR ...), e.g.
        ``load_nifti_image(path).header``; its shape and dtype are updated to ``data``'s.
    """
    path = Path(path)
    if not (path.name.endswith(".nii") or path.name.endswith(".nii.gz")):
        raise InputError(f"{path}: expected a NIfTI output path ending in .nii or .nii.gz")
    data = np.asarray(data)
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise InputError(f"{path}: expected a (4, 4) affine, found shape {affine.shape}")
    if data.ndim < 3:
        raise InputError(f"{path}: expected an image with at least 3 dimensions, found shape {data.shape}")
    out_dtype = _writable_dtype(data)
    image_class = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
    if header is not None:
        header = header.copy()
        header.set_data_dtype(out_dtype)
        # Stored values are the values: no slope/intercept left over from the source image.
        header.set_slope_inter(1.0, 0.0)
    img = image_class(data.astype(out_dtype, copy=False), affine, header=header)
    img.set_data_dtype(out_dtype)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))


def load_mask(path: PathLike, shape: Sequence[int] | None = None) -> np.ndarray:
    """Load a brain mask: a 3D NIfTI whose voxels with value > 0 are inside the brain.

    The one mask rule of the package: every command and study step reads masks through here, so a
    mask stored as float (0.4 is inside) or int means the same everywhere.

    Parameters
    ----------
    path : 3D NIfTI image.
    shape : the spatial shape (i, j, k) it must have, if known (usually the dMRI's).

    Returns
    -------
    (i, j, k) bool, True inside the brain.
    """
    data = load_nifti(path, np.float32, ndim=3)
    check_finite(data, str(path))
    if shape is not None and tuple(data.shape) != tuple(shape[:3]):
        raise InputError(
            f"{path}: expected a mask with the dMRI spatial shape {tuple(shape[:3])}, found shape {data.shape}"
        )
    return data > 0
