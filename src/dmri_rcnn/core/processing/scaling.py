"""Signal scaling used by training and inference.

The original divides the raw signal by a per-shell constant (no b0 normalisation) and multiplies the
model output back. The constants suit HCP intensities; the "norm" variant uses the 99th percentile of
the subject's own signal inside the brain mask instead.
"""

from __future__ import annotations

import numpy as np

from dmri_rcnn.errors import InputError

#: Per-shell divisor of the original package (HCP intensities), keyed by b-value in s/mm².
SHELL_SCALE: dict[int, float] = {1000: 4000.0, 2000: 3000.0, 3000: 2000.0}
#: How a model's input is scaled (:attr:`dmri_rcnn.core.model_spec.ModelSpec.scaling`): the original's
#: constant per shell, or the 99th percentile of the context inside the brain mask.
SCALINGS = ("shell", "percentile")
#: The percentile of the ``percentile`` scaling.
SCALING_PERCENTILE = 99.0


def shell_scale(shell: int) -> float:
    """Return the original's constant divisor for ``shell`` (1000, 2000 or 3000 s/mm²)."""
    try:
        return SHELL_SCALE[int(shell)]
    except (KeyError, TypeError, ValueError):
        raise InputError(
            f"unknown shell {shell!r}; expected one of {', '.join(map(str, SHELL_SCALE))}"
        ) from None


def percentile_scale(dmri: np.ndarray, mask: np.ndarray, percentile: float = 99.0) -> float:
    """Return the ``percentile`` of ``dmri`` (i, j, k, q) inside ``mask`` (i, j, k): the "norm" divisor."""
    inside = np.asarray(dmri)[np.asarray(mask).astype(bool)]
    if inside.size == 0:
        raise InputError("the brain mask is empty; cannot compute the per-subject intensity scale")
    value = float(np.percentile(inside, percentile))
    if not np.isfinite(value) or value <= 0:
        raise InputError(f"the {percentile:g}th percentile of the signal in the mask is {value}; expected > 0")
    return value


def intensity_scale(scaling: str, shell: int, context: np.ndarray, mask: np.ndarray) -> float:
    """The divisor of a model's input: the one decision of how a context is scaled for a model.

    Parameters
    ----------
    scaling : the model's ``scaling`` (:data:`SCALINGS`): ``"shell"`` gives :func:`shell_scale` of ``shell``,
        ``"percentile"`` the 99th percentile of ``context`` inside ``mask`` (:func:`percentile_scale`).
    shell : b-value (s/mm²) of the context.
    context : (i, j, k, q_in) raw signal of the context volumes.
    mask : (i, j, k) brain mask (> 0 is brain).
    """
    if scaling == "shell":
        return shell_scale(shell)
    if scaling == "percentile":
        return percentile_scale(context, np.asarray(mask) > 0, SCALING_PERCENTILE)
    raise InputError(f"scaling is {scaling!r}; expected one of {', '.join(SCALINGS)}")


#: The signal's median inside the mask may differ from the scale divisor by this factor before a warning.
SCALE_WARNING_FACTOR = 10.0


def signal_scale_problem(dmri: np.ndarray, mask: np.ndarray, scale: float, shell: int | None = None) -> str | None:
    """Describe why ``dmri`` looks wrong for a fixed divisor ``scale``, or return None.

    The models were trained on signal divided by a per-shell constant suited to HCP intensities; a
    scan whose median signal inside the mask is more than ``SCALE_WARNING_FACTOR`` times larger or
    smaller (another scanner or unit), or that holds negative values, is likely to give a meaningless
    prediction. The per-subject 99th-percentile scaling (``-c -n``) adapts to it.

    Parameters
    ----------
    dmri : (i, j, k, q) raw signal.
    mask : (i, j, k) bool brain mask.
    scale : the divisor that will be used (e.g. ``shell_scale(shell)``).
    """
    inside = np.asarray(dmri)[np.asarray(mask, dtype=bool)]
    if inside.size == 0:
        return None
    negative = int(np.count_nonzero(inside < 0))
    if negative:
        return (
            f"{negative} negative signal value(s) inside the mask; diffusion signal is >= 0, check the "
            "scan's scaling (the models expect raw magnitude signal)"
        )
    median = float(np.median(inside))
    ratio = median / float(scale)
    if ratio > SCALE_WARNING_FACTOR or ratio < 1.0 / SCALE_WARNING_FACTOR:
        shell_text = f"the b={shell} " if shell is not None else "the "
        return (
            f"median signal inside the mask is {median:.4g}, {ratio:.3g} times {shell_text}scale constant "
            f"{scale:g} the models assume; the prediction will likely be meaningless: use -c -n "
            "(per-subject 99th-percentile scaling; published for the 3D model, q_in 10) or rescale the scan"
        )
    return None
