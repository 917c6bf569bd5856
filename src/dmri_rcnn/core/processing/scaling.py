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
