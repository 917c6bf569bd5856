"""Signal-level error metrics between predicted and acquired diffusion volumes, inside a mask.

All functions take 4D arrays ``(i, j, k, q)`` (q target volumes) and a 3D boolean mask ``(i, j, k)``;
errors are pooled over every masked voxel of every volume unless the name says "per volume".

The inputs may be float32 (as ``io.load_nifti`` returns them): every metric converts one volume at a time
to float64 and keeps float64 sums, so a whole-brain HCP image (145×174×145, 84 volumes) costs a few
float64 volumes of work memory beyond the inputs, never a float64 copy of them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
from scipy import ndimage

from dmri_rcnn.errors import InputError

#: SSIM stabilising constants (Wang et al., 2004).
SSIM_K1 = 0.01
SSIM_K2 = 0.03

#: The Gaussian SSIM window is cut at this many standard deviations (scipy's ``truncate``).
SSIM_TRUNCATE = 3.5


def as_volumes(array, dtype=None) -> np.ndarray:
    """``array`` with a volume axis: a 3D ``(i, j, k)`` one becomes ``(i, j, k, 1)``, others are returned as they are
    (callers check the dimensionality). ``dtype`` None keeps a float dtype (no copy of a float32 image) and
    converts anything else to float64."""
    if dtype is None:
        arr = np.asarray(array)
        if not np.issubdtype(arr.dtype, np.floating):
            arr = arr.astype(np.float64)
    else:
        arr = np.asarray(array, dtype=dtype)
    return arr[..., None] if arr.ndim == 3 else arr


def check_volumes(predicted, acquired, mask, dtype=np.float64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate and convert a prediction, its reference and the mask.

    Parameters
    ----------
    predicted, acquired : (i, j, k, q) or (i, j, k) array_like
    mask : (i, j, k) array_like, non-zero inside
    dtype : NumPy dtype or None
        Dtype of the returned volumes; None keeps a floating dtype as given (no copy of a float32 image)
        and converts anything else to float64.

    Returns
    -------
    predicted, acquired : (i, j, k, q) ``dtype`` ndarray
    mask : (i, j, k) bool ndarray
    """
    pred = as_volumes(predicted, dtype)
    ref = as_volumes(acquired, dtype)
    if pred.shape != ref.shape or pred.ndim != 4:
        raise InputError(f"prediction has shape {pred.shape} but the reference has shape {ref.shape}; expected equal 4D shapes")
    mask_arr = np.asarray(mask).astype(bool)
    if mask_arr.shape != ref.shape[:3]:
        raise InputError(f"mask has shape {mask_arr.shape}; expected the volumes' spatial shape {ref.shape[:3]}")
    if not mask_arr.any():
        raise InputError("mask is empty; metrics need at least one voxel inside it")
    return pred, ref, mask_arr


def volume_pairs(predicted, acquired, mask, divide_by=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The prediction and the reference one target volume at a time, as float64.

    Parameters
    ----------
    predicted, acquired : (i, j, k, q) ndarray
        Already checked (:func:`check_volumes`); any float dtype.
    mask : (i, j, k) bool ndarray
    divide_by : (i, j, k) ndarray, optional
        Divide both volumes by it inside ``mask`` and set them to 0 elsewhere (the rule of
        :func:`normalise_by_b0`; ``mask`` must then hold only voxels where it is positive).

    Yields
    ------
    predicted, acquired : (i, j, k) float64 ndarray
        Volume v of each, for v = 0 .. q - 1.
    """
    safe = None if divide_by is None else np.where(mask, divide_by, 1.0)
    for volume in range(acquired.shape[-1]):
        pred = np.asarray(predicted[..., volume], dtype=np.float64)
        ref = np.asarray(acquired[..., volume], dtype=np.float64)
        if safe is not None:
            pred = np.where(mask, pred / safe, 0.0)
            ref = np.where(mask, ref / safe, 0.0)
        yield pred, ref


class ErrorSums:
    """Running float64 sums of ``|error|`` and ``error²`` over a region and any number of volumes.

    Attributes
    ----------
    absolute, squared : float
        Sum of ``|predicted - acquired|`` and of its square (signal units, squared signal units).
    count : int
        Number of (voxel, volume) values added.
    """

    def __init__(self) -> None:
        self.absolute = 0.0
        self.squared = 0.0
        self.count = 0

    def add(self, difference: np.ndarray) -> None:
        """Add the errors ``difference`` (float64, any shape) of one volume."""
        self.absolute += float(np.sum(np.abs(difference)))
        self.squared += float(np.sum(difference * difference))
        self.count += difference.size

    @property
    def mae(self) -> float:
        """Mean absolute error; NaN when nothing was added."""
        return self.absolute / self.count if self.count else float("nan")

    @property
    def rmse(self) -> float:
        """Root mean squared error; NaN when nothing was added."""
        return float(np.sqrt(self.squared / self.count)) if self.count else float("nan")


def _pooled_errors(predicted, acquired, mask) -> ErrorSums:
    pred, ref, mask_arr = check_volumes(predicted, acquired, mask, dtype=None)
    sums = ErrorSums()
    for pred_vol, ref_vol in volume_pairs(pred, ref, mask_arr):
        sums.add(pred_vol[mask_arr] - ref_vol[mask_arr])
    return sums


def mean_absolute_error(predicted, acquired, mask) -> float:
    """Mean of ``|predicted - acquired|`` over masked voxels and all volumes (signal units)."""
    return _pooled_errors(predicted, acquired, mask).mae


def root_mean_squared_error(predicted, acquired, mask) -> float:
    """Square root of the mean of (predicted - acquired)^2 over masked voxels and all volumes."""
    return _pooled_errors(predicted, acquired, mask).rmse


def data_range(acquired, mask, divide_by=None) -> float:
    """Dynamic range of the reference: max - min over masked voxels of all volumes.

    ``divide_by`` : (i, j, k) array, optional: the range of the reference divided by it (see
    :func:`volume_pairs`).
    """
    ref = as_volumes(acquired, None)
    mask_arr = np.asarray(mask).astype(bool)
    scale = None if divide_by is None else np.asarray(divide_by, dtype=np.float64)[mask_arr]
    low, high = np.inf, -np.inf
    for volume in range(ref.shape[-1]):
        values = np.asarray(ref[..., volume][mask_arr], dtype=np.float64)
        if scale is not None:
            values = values / scale
        # np.minimum/maximum, not min/max: a NaN must reach the result as it would over the whole array
        low, high = np.minimum(low, values.min()), np.maximum(high, values.max())
    return float(high - low)


def psnr_from_rmse(rmse: float, value_range: float) -> float:
    """``20 log10(R / RMSE)`` in dB; ``inf`` for RMSE = 0."""
    if rmse == 0.0:
        return float("inf")
    return float(20.0 * np.log10(value_range / rmse))


def peak_signal_to_noise_ratio(predicted, acquired, mask, data_range_value: float | None = None) -> float:
    """PSNR in dB: ``20 log10(R / RMSE)`` with R the reference's data range in the mask.

    Parameters
    ----------
    data_range_value : float, optional
        R; by default ``max - min`` of ``acquired`` over masked voxels of all volumes
        (:func:`data_range`).

    Returns
    -------
    float
        ``inf`` for a perfect prediction (RMSE = 0).
    """
    rmse = root_mean_squared_error(predicted, acquired, mask)
    value_range = data_range(acquired, mask) if data_range_value is None else float(data_range_value)
    return psnr_from_rmse(rmse, value_range)


class _SSIMWindow:
    """Local means of the SSIM window, and the box around a mask outside which no masked voxel looks.

    A masked voxel's SSIM depends only on voxels within the window's reach of it, so the filters run on
    the mask's bounding box grown by that reach (clipped at the image edge, where the ``reflect`` border
    is the same as on the whole image): the same numbers as filtering the whole volume, in less time.
    """

    def __init__(self, window: str, sigma: float, size: int):
        if window == "gaussian":
            self.reach = int(SSIM_TRUNCATE * float(sigma) + 0.5)
            self.local_mean = lambda image: ndimage.gaussian_filter(
                image, sigma=sigma, truncate=SSIM_TRUNCATE, mode="reflect"
            )
        elif window == "uniform":
            self.reach = int(size) // 2
            self.local_mean = lambda image: ndimage.uniform_filter(image, size=size, mode="reflect")
        else:
            raise InputError(f"SSIM window must be 'gaussian' or 'uniform'; found {window!r}")

    def box(self, mask: np.ndarray) -> tuple[slice, ...]:
        slices = []
        for axis in range(mask.ndim):
            occupied = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
            margin = self.reach + 1
            slices.append(slice(max(int(occupied[0]) - margin, 0), int(occupied[-1]) + 1 + margin))
        return tuple(slices)

    def ssim(self, predicted: np.ndarray, acquired: np.ndarray, mask: np.ndarray, value_range: float) -> float:
        """SSIM of one (i, j, k) float64 volume pair, already cut to :meth:`box`, averaged over ``mask``."""
        x = np.where(mask, acquired, 0.0)
        y = np.where(mask, predicted, 0.0)
        mu_x, mu_y = self.local_mean(x), self.local_mean(y)
        var_x = self.local_mean(x * x) - mu_x**2
        var_y = self.local_mean(y * y) - mu_y**2
        cov_xy = self.local_mean(x * y) - mu_x * mu_y
        c1 = (SSIM_K1 * value_range) ** 2
        c2 = (SSIM_K2 * value_range) ** 2
        ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
        return float(ssim_map[mask].mean())


def ssim_per_volume(
    predicted,
    acquired,
    mask,
    data_range_value: float | None = None,
    *,
    window: str = "gaussian",
    sigma: float = 1.5,
    size: int = 7,
) -> np.ndarray:
    """Structural similarity of each volume, computed in 3D and averaged over the mask.

    Both images are set to zero outside the mask (so background noise and unmasked model output do not
    count), local means, variances and covariance are taken with a 3D window (population statistics),
    and the SSIM map ``((2 mu_x mu_y + C1)(2 s_xy + C2)) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))``
    with ``C1 = (0.01 R)^2``, ``C2 = (0.03 R)^2`` is averaged over masked voxels. Borders use
    ``scipy.ndimage``'s ``reflect`` mode. Volumes are filtered one at a time.

    Parameters
    ----------
    predicted, acquired : (i, j, k, q) array_like
    mask : (i, j, k) array_like of bool
    data_range_value : float, optional
        R; by default :func:`data_range` of ``acquired``.
    window : {'gaussian', 'uniform'}
        Gaussian window of standard deviation ``sigma`` voxels (truncated at 3.5 sigma), or a uniform
        cube of ``size`` voxels a side.

    Returns
    -------
    (q,) ndarray
        SSIM of each volume (1 for identical images).
    """
    pred, ref, mask_arr = check_volumes(predicted, acquired, mask, dtype=None)
    value_range = data_range(ref, mask_arr) if data_range_value is None else float(data_range_value)
    ssim_window = _SSIMWindow(window, sigma, size)
    box = ssim_window.box(mask_arr)
    return np.array(
        [ssim_window.ssim(p[box], r[box], mask_arr[box], value_range) for p, r in volume_pairs(pred, ref, mask_arr)]
    )


def mean_b0(b0, mask=None) -> np.ndarray:
    """Average the b0 volumes: ``(i, j, k)`` or ``(i, j, k, n_b0)`` -> ``(i, j, k)`` float64.

    Summed one volume at a time in float64 (a float32 input is never copied whole to float64).
    """
    arr = np.asarray(b0)
    if arr.ndim == 4:
        total = np.zeros(arr.shape[:3])
        for volume in range(arr.shape[-1]):
            total += arr[..., volume]
        return total / arr.shape[-1]
    if arr.ndim != 3:
        raise InputError(f"b0 must be a 3D or 4D image; found shape {arr.shape}")
    return np.asarray(arr, dtype=np.float64)


def normalise_by_b0(dmri, b0_mean, mask) -> tuple[np.ndarray, np.ndarray]:
    """Divide a signal by the mean b0, voxel-wise.

    Parameters
    ----------
    dmri : (i, j, k, q) array_like
    b0_mean : (i, j, k) array_like
        Mean b0 signal.
    mask : (i, j, k) array_like of bool

    Returns
    -------
    normalised : (i, j, k, q) ndarray
        ``dmri / b0_mean`` where the mean b0 is positive, 0 elsewhere (dimensionless).
    valid_mask : (i, j, k) bool ndarray
        ``mask`` restricted to voxels with a positive mean b0: the voxels where the ratio is defined.
    """
    b0_arr = np.asarray(b0_mean, dtype=np.float64)
    valid = np.asarray(mask).astype(bool) & (b0_arr > 0)
    safe = np.where(valid, b0_arr, 1.0)
    normalised = np.where(valid[..., None], np.asarray(dmri, dtype=np.float64) / safe[..., None], 0.0)
    return normalised, valid


def signal_metrics(
    predicted, acquired, mask, data_range_value: float | None = None, *, divide_by=None
) -> dict[str, float]:
    """MAE, RMSE, PSNR (dB) and mean SSIM over volumes, as ``{'mae', 'rmse', 'psnr', 'ssim'}``.

    One volume at a time (see the module docstring).

    Parameters
    ----------
    predicted, acquired : (i, j, k, q) array_like
    mask : (i, j, k) array_like of bool
    data_range_value : float, optional
        R of PSNR and SSIM; by default :func:`data_range` of the (divided) reference.
    divide_by : (i, j, k) array_like, optional
        Score ``predicted / divide_by`` against ``acquired / divide_by`` (e.g. the mean b0: the
        b0-normalised metrics); it must be positive everywhere in ``mask``.
    """
    pred, ref, mask_arr = check_volumes(predicted, acquired, mask, dtype=None)
    if divide_by is not None:
        divide_by = np.asarray(divide_by, dtype=np.float64)
        if divide_by.shape != mask_arr.shape or not np.all(divide_by[mask_arr] > 0):
            raise InputError(f"divide_by must be an image of shape {mask_arr.shape}, positive inside the mask")
    value_range = data_range(ref, mask_arr, divide_by) if data_range_value is None else float(data_range_value)
    ssim_window = _SSIMWindow("gaussian", 1.5, 7)
    box = ssim_window.box(mask_arr)
    sums = ErrorSums()
    ssims = []
    for pred_vol, ref_vol in volume_pairs(pred, ref, mask_arr, divide_by):
        sums.add(pred_vol[mask_arr] - ref_vol[mask_arr])
        ssims.append(ssim_window.ssim(pred_vol[box], ref_vol[box], mask_arr[box], value_range))
    return {
        "mae": sums.mae,
        "rmse": sums.rmse,
        "psnr": psnr_from_rmse(sums.rmse, value_range),
        "ssim": float(np.mean(ssims)),
    }


def region_errors(
    predicted, acquired, regions: Mapping[str, np.ndarray], divide_by=None
) -> dict[str, ErrorSums]:
    """MAE and RMSE sums of several regions in one pass over the volumes.

    Parameters
    ----------
    predicted, acquired : (i, j, k, q) ndarray
        Already checked (:func:`check_volumes`).
    regions : mapping of name to (i, j, k) bool ndarray
        Each region's voxels (may be empty: its sums stay empty and its means NaN).
    divide_by : (i, j, k) ndarray, optional
        As in :func:`signal_metrics`; positive in every region.

    Returns
    -------
    dict of name to :class:`ErrorSums`
    """
    sums = {name: ErrorSums() for name in regions}
    occupied = {name: np.asarray(region, bool) for name, region in regions.items() if np.any(region)}
    if not occupied:
        return sums
    union = np.logical_or.reduce(list(occupied.values()))
    for pred_vol, ref_vol in volume_pairs(predicted, acquired, union, divide_by):
        for name, region in occupied.items():
            sums[name].add(pred_vol[region] - ref_vol[region])
    return sums
