"""Send a workflow step's output to its Snakemake log file."""

from __future__ import annotations

import logging
import os
import sys

from dmri_rcnn.types import PathLike


def log_to_file(path: PathLike) -> logging.Logger:
    """Route this process's logging, stdout and stderr (including TensorFlow's C++ messages) to ``path``.

    Snakemake shows the log of a failed job (``--show-failed-logs``), so tracebacks end up there too.
    Returns the root logger, configured at INFO level with timestamps.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    handle = open(path, "a", buffering=1)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(handle.fileno(), 1)
    os.dup2(handle.fileno(), 2)
    sys.stdout = sys.stderr = handle
    logging.basicConfig(stream=handle, level=logging.INFO, format="%(asctime)s %(name)s %(message)s", force=True)
    return logging.getLogger()
