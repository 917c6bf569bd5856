"""TensorFlow's environment settings that must be made before TensorFlow is imported.

Kept apart from :mod:`dmri_rcnn.core.precision` so that the package's ``__init__`` can apply them
without reaching any module that imports TensorFlow.
"""

from __future__ import annotations

import os
import platform

#: Environment variable that switches TensorFlow's oneDNN CPU kernels on (1) or off (0).
ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"


def enable_onednn_by_default() -> None:
    """Ask TensorFlow for its oneDNN CPU kernels on x86-64, unless the user set ``TF_ENABLE_ONEDNN_OPTS``.

    TensorFlow switches them on by itself only on CPUs with AVX-512 VNNI/BF16 or AMX; on the others it runs
    convolutions through Eigen as many small matrix products, 1.6-2.5x slower for these models' training
    steps (``bench/bench_training_config.py``) with the same results up to float rounding. Must run before
    TensorFlow is imported (the package's ``__init__`` calls it); an explicit setting always wins.
    """
    if platform.machine().lower() in ("x86_64", "amd64"):
        os.environ.setdefault(ONEDNN_VARIABLE, "1")


def onednn_enabled() -> bool:
    """Whether TensorFlow's oneDNN CPU kernels are asked for (``TF_ENABLE_ONEDNN_OPTS`` not 0/false)."""
    return os.environ.get(ONEDNN_VARIABLE, "1").strip().lower() not in ("0", "false", "off", "no")
