"""``dmri_rcnn_download_all_weights.py``: fetch every published dMRI-RCNN checkpoint into ``$DMRI_RCNN_DIR``."""

from __future__ import annotations

import argparse
import sys

from dmri_rcnn.cli._command import run_command
from dmri_rcnn.core.weights import PUBLISHED_WEIGHTS, get_weights
from dmri_rcnn.errors import InputError

PROG = "dmri_rcnn_download_all_weights.py"


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser (also read by the documentation's command reference)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Download all published dMRI-RCNN weights (1D and 3D, every shell and q_in) into "
        "$DMRI_RCNN_DIR (default ~/.dmri_rcnn). Files already present are kept.",
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="Hide progress bars.")
    return parser


def download_all(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and download every published checkpoint; returns 0 (a failure raises InputError)."""
    args = build_parser().parse_args(argv)
    for model_dim, shell, q_in in PUBLISHED_WEIGHTS:
        label = f"{model_dim}D {shell if isinstance(shell, str) else f'b{shell}'} q_in={q_in}"
        try:
            prefix = get_weights(model_dim, shell, q_in, progress=args.progress)
        except InputError as err:
            raise InputError(f"{label}: {err}") from None
        print(f"{label}: {prefix}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit status (0 success, 2 failed download, 130 interrupted)."""
    return run_command(download_all, argv, PROG)


if __name__ == "__main__":
    sys.exit(main())
