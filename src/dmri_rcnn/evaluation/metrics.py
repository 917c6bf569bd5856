"""Signal-level error metrics between predicted and acquired diffusion volumes, inside a mask.

All functions take 4D arrays ``(i, j, k, q)`` (q target volumes) and a 3D boolean mask ``(i, j, k)``;
errors are pooled over every masked voxel of every volume unless the name says "per volume".
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from dmri_rcnn.errors import InputError

#: SSIM stabilising constants (Wang et al., 2004).
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def check_volumes(predicted, acquired, mask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate and convert a prediction, its reference and the mask.

    Parameters
    ----------
    predicted, acquired : (i, j, k, q) array_like
    mask : (i, j, k) array_like, non-zero inside

    Returns
    -------
    predicted, acquired : (i, j, k, q) float64 ndarray
    mask : (i, j, k) bool ndarray
    """
    pred = np.asarray(predicted, dtype=np.float64)
    ref = np.asarray(acquired, dtype=np.float64)
    if pred.ndim == 3:
        pred = pred[..., None]
    if ref.ndim == 3:
        ref = ref[..., None]
    if pred.shape != ref.shape or pred.ndim != 4:
        raise InputError(f"prediction has shape {pred.shape} but the reference has shape {ref.shape}; expected equal 4D shapes")
    mask_arr = np.asarray(mask).astype(bool)
    if mask_arr.shape != ref.shape[:3]:
        raise InputError(f"mask has shape {mask_arr.shape}; expected the volumes' spatial shape {ref.shape[:3]}")
    if not mask_arr.any():
        raise InputError("mask is empty; metrics need at least one voxel inside it")
    return pred, ref, mask_arr


def mean_absolute_error(predicted, acquired, mask) -> float:
    """Mean of |predicted - acquired| over masked voxels and all volumes (signal units)."""
    pred, ref, mask_arr = check_volumes(predicted, acquired, mask)
    return float(np.mean(np.abs(pred[mask_arr] - ref[mask_arr])))


def root_mean_squared_error(predicted, acquired, mask) -> float:
    """Square root of the mean of (predicted - acquired)^2 over masked voxels and all volumes."""
    pred, ref, mask_arr = check_volumes(predicted, acquired, mask)
    return float(np.sqrt(np.mean((pred[mask_arr] - ref[mask_arr]) ** 2)))


def data_range(acquired, mask) -> float:
    """Dynamic range of the reference: max - min over masked voxels of all volumes."""
    ref = np.asarray(acquired, dtype=np.float64)
    if ref.ndim == 3:
        ref = ref[..., None]
    values = ref[np.asarray(mask).astype(bool)]
    return float(values.max() - values.min())


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
    if rmse == 0.0:
        return float("inf")
    return float(20.0 * np.log10(value_range / rmse))


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
    ``scipy.ndimage``'s ``reflect`` mode.

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
    pred, ref, mask_arr = check_volumes(predicted, acquired, mask)
    value_range = data_range(ref, mask_arr) if data_range_value is None else float(data_range_value)
    if window == "gaussian":

        def local_mean(image):
            return ndimage.gaussian_filter(image, sigma=(sigma, sigma, sigma, 0), truncate=3.5, mode="reflect")

    elif window == "uniform":

        def local_mean(image):
            return ndimage.uniform_filter(image, size=(size, size, size, 1), mode="reflect")

    else:
        raise InputError(f"SSIM window must be 'gaussian' or 'uniform'; found {window!r}")
    x = np.where(mask_arr[..., None], ref, 0.0)
    y = np.where(mask_arr[..., None], pred, 0.0)
    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mu_x**2
    var_y = local_mean(y * y) - mu_y**2
    cov_xy = local_mean(x * y) - mu_x * mu_y
    c1 = (SSIM_K1 * value_range) ** 2
    c2 = (SSIM_K2 * value_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map[mask_arr].mean(axis=0)


def mean_b0(b0, mask=None) -> np.ndarray:
    """Average the b0 volumes: ``(i, j, k)`` or ``(i, j, k, n_b0)`` -> ``(i, j, k)`` float64."""
    arr = np.asarray(b0, dtype=np.float64)
    if arr.ndim == 4:
        arr = arr.mean(axis=-1)
    if arr.ndim != 3:
        raise InputError(f"b0 must be a 3D or 4D image; found shape {arr.shape}")
    return arr


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


def signal_metrics(predicted, acquired, mask, data_range_value: float | None = None) -> dict[str, float]:
    """MAE, RMSE, PSNR (dB) and mean SSIM over volumes, as ``{'mae', 'rmse', 'psnr', 'ssim'}``."""
    pred, ref, mask_arr = check_volumes(predicted, acquired, mask)
    value_range = data_range(ref, mask_arr) if data_range_value is None else data_range_value
    return {
        "mae": mean_absolute_error(pred, ref, mask_arr),
        "rmse": root_mean_squared_error(pred, ref, mask_arr),
        "psnr": peak_signal_to_noise_ratio(pred, ref, mask_arr, value_range),
        "ssim": float(np.mean(ssim_per_volume(pred, ref, mask_arr, value_range))),
    }
