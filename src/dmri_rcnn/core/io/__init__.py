"""Reading and writing diffusion MRI data: NIfTI images, FSL b-vectors/b-values, cropping and octants.

Every loader checks what it reads and raises :class:`dmri_rcnn.errors.InputError` with a one-line
message naming the file, what was expected and what was found. Every writer goes through
:func:`dmri_rcnn.utils.atomic_path`, so a failure never leaves a half-written file.

Conventions
-----------
- dMRI images are ``(i, j, k, q)``: three spatial axes (voxels) then the q-space (volume) axis.
- Masks are ``(i, j, k)``; a voxel is inside the brain when its value is > 0 (one rule, applied by
  :func:`load_mask` everywhere: 0.4 is inside, 0 and negative values are outside).
- b-vectors are ``(3, q)`` (FSL layout: rows x, y, z); b-values are ``(q,)`` in s/mm². Every
  diffusion-weighted direction must be a unit vector: lengths within ``1 ± BVEC_UNIT_TOLERANCE`` are
  renormalised, anything else is refused naming the file and column. b0 volumes (b-value below
  ``B0_THRESHOLD`` where b-values are at hand, otherwise a zero vector) carry no direction and are
  stored as zero vectors.
"""

from __future__ import annotations

import contextlib
import gzip
import warnings
from pathlib import Path
from typing import NamedTuple, Sequence

import nibabel as nib
import numpy as np

from dmri_rcnn.errors import InputError
from dmri_rcnn.types import PathLike
from dmri_rcnn.utils import atomic_path

__all__ = [
    "CropBox",
    "DMRISet",
    "B0_THRESHOLD",
    "BVEC_UNIT_TOLERANCE",
    "autocrop_dmri",
    "check_bvecs",
    "check_finite",
    "load_bval",
    "load_bvec",
    "load_dmri_set",
    "load_mask",
    "load_nifti",
    "load_nifti_image",
    "load_nifti_volume",
    "load_nifti_volumes",
    "merge_octants",
    "save_bval",
    "save_bvec",
    "save_nifti",
    "split_image_to_octants",
    "uncrop",
    "validate_dmri_set",
]

#: A diffusion-weighted b-vector may differ from unit length by this much (relative); it is then
#: renormalised. Scanner text files round to ~6 digits, so genuine unit vectors are far inside it.
BVEC_UNIT_TOLERANCE = 0.01

#: Volumes with a b-value below this (s/mm²) are b0 volumes.
B0_THRESHOLD = 50.0


# --------------------------------------------------------------------------------------------- NIfTI


def _require_file(path: PathLike, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: {what} file not found")
    if not path.is_file():
        raise InputError(f"{path}: expected a {what} file, found a directory or special file")
    return path


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
    path = _require_file(path, "NIfTI")
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


# ------------------------------------------------------------------------------------ b-vectors/values


def _load_table(path: PathLike, what: str) -> np.ndarray:
    path = _require_file(path, what)
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


# ----------------------------------------------------------------------------------------- validation


def check_finite(array: np.ndarray, name: str) -> None:
    """Raise InputError naming ``name`` if ``array`` holds NaN or Inf values."""
    array = np.asarray(array)
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise InputError(f"{name}: expected finite values, found {bad} NaN/Inf value(s)")


def validate_dmri_set(
    dmri: np.ndarray,
    bvecs: np.ndarray | None = None,
    bvals: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    names: dict[str, str] | None = None,
) -> None:
    """Check that a dMRI image and its companions fit together; raise InputError otherwise.

    Parameters
    ----------
    dmri : (i, j, k, q) signal.
    bvecs : (3, q) b-vectors, optional: unit vectors (see :func:`check_bvecs`), b0 volumes excepted.
    bvals : (q,) b-values, optional.
    mask : (i, j, k) brain mask, optional.
    names : how to name each item in messages (usually its file path), keys ``dmri``, ``bvec``,
        ``bval``, ``mask``.
    """
    names = {"dmri": "dmri", "bvec": "bvec", "bval": "bval", "mask": "mask", **(names or {})}
    dmri = np.asarray(dmri)
    if dmri.ndim != 4:
        raise InputError(f"{names['dmri']}: expected a 4D dMRI image (i, j, k, q), found shape {dmri.shape}")
    check_finite(dmri, names["dmri"])
    n_volumes = dmri.shape[3]
    if bvecs is not None:
        bvecs = np.asarray(bvecs)
        if bvecs.ndim != 2 or bvecs.shape[0] != 3:
            raise InputError(f"{names['bvec']}: expected b-vectors of shape (3, q), found shape {bvecs.shape}")
        check_finite(bvecs, names["bvec"])
        if bvecs.shape[1] != n_volumes:
            raise InputError(
                f"{names['bvec']}: has {bvecs.shape[1]} directions but {names['dmri']} has {n_volumes} volumes"
            )
    if bvals is not None:
        bvals = np.asarray(bvals)
        if bvals.ndim != 1:
            raise InputError(f"{names['bval']}: expected b-values of shape (q,), found shape {bvals.shape}")
        check_finite(bvals, names["bval"])
        if bvecs is not None and bvals.shape[0] != bvecs.shape[1]:
            raise InputError(
                f"{names['bval']}: has {bvals.shape[0]} b-values but {names['bvec']} has " f"{bvecs.shape[1]} b-vectors"
            )
        if bvals.shape[0] != n_volumes:
            raise InputError(
                f"{names['bval']}: has {bvals.shape[0]} b-values but {names['dmri']} has {n_volumes} volumes"
            )
    if bvecs is not None:
        check_bvecs(bvecs, names["bvec"], bvals=bvals)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != dmri.shape[:3]:
            raise InputError(
                f"{names['mask']}: expected a mask with the dMRI spatial shape {dmri.shape[:3]}, "
                f"found shape {mask.shape}"
            )
        check_finite(mask, names["mask"])


class DMRISet(NamedTuple):
    """A validated subject: signal, gradients, mask and geometry."""

    dmri: np.ndarray  #: (i, j, k, q) float32 signal
    bvecs: np.ndarray  #: (3, q) float32 unit directions
    bvals: np.ndarray | None  #: (q,) float32 b-values (s/mm²), if a b-value file was given
    mask: np.ndarray | None  #: (i, j, k) int8 brain mask, if a mask file was given
    affine: np.ndarray  #: (4, 4) voxel-to-world transform of the dMRI image
    header: nib.Nifti1Header | nib.Nifti2Header  #: header of the dMRI image


def load_dmri_set(
    dmri_path: PathLike,
    bvec_path: PathLike,
    bval_path: PathLike | None = None,
    mask_path: PathLike | None = None,
) -> DMRISet:
    """Load a dMRI image with its b-vectors (and optionally b-values and mask) and check they agree.

    Returns
    -------
    DMRISet
        ``dmri`` (i, j, k, q) float32, ``bvecs`` (3, q) float32, ``bvals`` (q,) float32 or None,
        ``mask`` (i, j, k) int8 (0/1) or None, ``affine`` (4, 4), ``header``.

    Raises
    ------
    InputError
        One line naming the offending file for any of: missing/truncated/non-NIfTI file, 3D where 4D
        is expected, bvec not 3×N or N×3, direction count ≠ volume count, b-value count ≠ b-vector
        count, mask spatial shape ≠ dMRI spatial shape, NaN/Inf values.
    """
    img = load_nifti_image(dmri_path)
    dmri, affine = load_nifti(dmri_path, np.float32, return_affine=True, ndim=4)
    bvals = load_bval(bval_path) if bval_path is not None else None
    names = {"dmri": str(dmri_path), "bvec": str(bvec_path), "bval": str(bval_path), "mask": str(mask_path)}
    bvecs = load_bvec(bvec_path, bvals=bvals if bvals is not None and bvals.size == _count_columns(bvec_path) else None)
    mask = load_mask(mask_path) if mask_path is not None else None
    validate_dmri_set(dmri, bvecs, bvals, mask, names)
    if mask is not None:
        mask = mask.astype(np.int8)
    return DMRISet(dmri, bvecs, bvals, mask, affine, img.header)


# ------------------------------------------------------------------------------------------- cropping


class CropBox(NamedTuple):
    """Spatial bounding box of a crop: voxels ``start[d] <= x < stop[d]`` along axes i, j, k."""

    start: tuple[int, int, int]
    stop: tuple[int, int, int]

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        """Index with ``image[box.slices]`` to crop an (i, j, k, ...) array."""
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop))

    @property
    def shape(self) -> tuple[int, int, int]:
        """Spatial shape of the cropped image."""
        return tuple(b - a for a, b in zip(self.start, self.stop))

    def shift_affine(self, affine: np.ndarray) -> np.ndarray:
        """Return the (4, 4) affine of the cropped image given the uncropped image's ``affine``."""
        shifted = np.array(affine, dtype=np.float64)
        shifted[:3, 3] = affine[:3, :3] @ np.asarray(self.start, dtype=np.float64) + affine[:3, 3]
        return shifted


def autocrop_dmri(dmri: np.ndarray, mask: np.ndarray, return_box: bool = False):
    """Crop ``dmri`` and ``mask`` to the bounding box of the voxels that hold signal or mask.

    A voxel counts as occupied when any of its volumes is non-zero or its mask value is > 0
    (the original summed raw values, so negative and positive signal could cancel; here any non-zero
    value counts). Only empty slices at the borders are dropped, so the result is a contiguous box
    that :func:`uncrop` puts back.

    Parameters
    ----------
    dmri : (i, j, k, q) signal.
    mask : (i, j, k) brain mask.
    return_box : also return the :class:`CropBox`.

    Returns
    -------
    dmri : (i', j', k', q), a view into the input.
    mask : (i', j', k'), a view into the input.
    box : CropBox, only with ``return_box=True``.
    """
    dmri = np.asarray(dmri)
    mask = np.asarray(mask)
    if dmri.ndim != 4:
        raise InputError(f"dmri: expected a 4D dMRI image (i, j, k, q), found shape {dmri.shape}")
    if mask.shape != dmri.shape[:3]:
        raise InputError(
            f"mask: expected a mask with the dMRI spatial shape {dmri.shape[:3]}, found shape {mask.shape}"
        )
    # a few volumes at a time: a whole-volume boolean copy is 1 GB at HCP size
    occupied = mask > 0
    for first in range(0, dmri.shape[3], 16):
        occupied |= np.any(dmri[..., first : first + 16] != 0, axis=3)
    if not occupied.any():
        raise InputError("dmri and mask: nothing to crop to, every voxel of both is zero")
    start, stop = [], []
    for axis in range(3):
        other_axes = tuple(a for a in range(3) if a != axis)
        present = np.flatnonzero(occupied.any(axis=other_axes))
        start.append(int(present[0]))
        stop.append(int(present[-1]) + 1)
    box = CropBox(tuple(start), tuple(stop))
    cropped = dmri[box.slices], mask[box.slices]
    return (*cropped, box) if return_box else cropped


def uncrop(cropped: np.ndarray, box: CropBox, full_shape: Sequence[int], fill_value=0) -> np.ndarray:
    """Put a cropped image back into the uncropped space, filling outside the box with ``fill_value``.

    Parameters
    ----------
    cropped : (i', j', k', ...) array, e.g. a model output computed on ``autocrop_dmri``'s result.
    box : the CropBox returned by ``autocrop_dmri(..., return_box=True)``.
    full_shape : spatial shape (i, j, k) of the uncropped image (extra entries are ignored).

    Returns
    -------
    (i, j, k, ...) array of ``cropped``'s dtype.
    """
    cropped = np.asarray(cropped)
    spatial = tuple(int(s) for s in full_shape[:3])
    if tuple(cropped.shape[:3]) != box.shape:
        raise InputError(f"uncrop: expected an array of spatial shape {box.shape}, found {cropped.shape[:3]}")
    if any(b > s for b, s in zip(box.stop, spatial)):
        raise InputError(f"uncrop: crop box {box} does not fit in full shape {spatial}")
    full = np.full(spatial + cropped.shape[3:], fill_value, dtype=cropped.dtype)
    full[box.slices] = cropped
    return full


# -------------------------------------------------------------------------------------------- octants


def split_image_to_octants(data: np.ndarray) -> list[np.ndarray]:
    """Split an image into 8 octants by halving each spatial axis at ``size // 2``.

    Used to keep each TFRecord under its 2 GiB limit. The order is the original's: the i-half varies
    slowest, then the j-half, then the k-half (``[i0j0k0, i0j0k1, i0j1k0, ..., i1j1k1]``); odd sizes put
    the extra slice in the second half.

    Parameters
    ----------
    data : (i, j, k, ...) array.

    Returns
    -------
    list of 8 arrays (views), each (i/2, j/2, k/2, ...) up to rounding.
    """
    data = np.asarray(data)
    if data.ndim < 3:
        raise InputError(f"split_image_to_octants: expected an (i, j, k, ...) image, found shape {data.shape}")
    halves = [(slice(0, n // 2), slice(n // 2, n)) for n in data.shape[:3]]
    return [data[si, sj, sk] for si in halves[0] for sj in halves[1] for sk in halves[2]]


def merge_octants(octants: Sequence[np.ndarray]) -> np.ndarray:
    """Exact inverse of :func:`split_image_to_octants`: reassemble the 8 octants into one image.

    Parameters
    ----------
    octants : 8 arrays in ``split_image_to_octants`` order.

    Returns
    -------
    (i, j, k, ...) array, bit-identical to the image that was split.
    """
    if len(octants) != 8:
        raise InputError(f"merge_octants: expected 8 octants, found {len(octants)}")
    parts = [np.asarray(o) for o in octants]
    try:
        pairs_k = [np.concatenate(parts[n : n + 2], axis=2) for n in range(0, 8, 2)]
        pairs_j = [np.concatenate(pairs_k[n : n + 2], axis=1) for n in range(0, 4, 2)]
        return np.concatenate(pairs_j, axis=0)
    except ValueError as err:
        raise InputError(f"merge_octants: octant shapes do not fit together ({err})") from None


# ------------------------------------------------------------------------------------------- warnings


def affine_mismatch(affine: np.ndarray, reference: np.ndarray, tolerance: float = 1e-3) -> str | None:
    """Describe how a (4, 4) affine differs from ``reference`` (e.g. a mask's from its dMRI's), or None.

    Same voxel grid but a different voxel-to-world transform usually means the mask was made for another
    scan or resampled; the voxels are still matched by index, so the result may be meaningless.
    """
    affine = np.asarray(affine, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    difference = float(np.max(np.abs(affine - reference)))
    if difference <= tolerance:
        return None
    return (
        f"its affine differs from the dMRI's by up to {difference:.3g} mm; voxels are matched by index, so "
        "check that the mask belongs to this scan"
    )
