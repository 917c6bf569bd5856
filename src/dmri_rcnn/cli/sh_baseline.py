"""``dmri_rcnn_sh_baseline.py``: spherical-harmonic interpolation of held-out diffusion directions.

Fits the context volumes with a real symmetric SH series at the context b-vectors and evaluates it at the
target b-vectors. Flags follow the original ``dmri_sh_baseline.py`` (``-dmri_in -bvec_in -bvec_out
-dmri_out -s``); the defaults reproduce its baseline (order 2, tournier07, no smoothing), and
``-sh_order auto`` picks the order and Laplacian smoothing by leave-one-out cross-validation on the context
volumes alone.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

from dmri_rcnn.cli._evaluation_io import check_output, load_bvecs, load_image, load_mask, run_cli, save_image
from dmri_rcnn.core.io import check_finite
from dmri_rcnn.errors import InputError
from dmri_rcnn.evaluation.sh_baseline import (
    ORIGINAL_SH_BASIS,
    ORIGINAL_SH_ORDER,
    ORIGINAL_SH_SMOOTH,
    SH_BASES,
    n_sh_coefficients,
    select_sh_parameters,
    sh_interpolate,
    underdetermined,
)

PROG = "dmri_rcnn_sh_baseline.py"


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser (also read by the documentation's command reference)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Spherical-harmonic baseline: predict target diffusion directions from context volumes.",
    )
    parser.add_argument("-dmri_in", required=True, help="context dMRI NIfTI (i, j, k, q_in), single shell")
    parser.add_argument("-bvec_in", required=True, help="context b-vectors: text file, 3 rows and q_in columns")
    parser.add_argument("-bvec_out", required=True, help="target b-vectors: text file, 3 rows and q_out columns")
    parser.add_argument("-dmri_out", required=True, help="output NIfTI (.nii or .nii.gz) with q_out volumes")
    parser.add_argument(
        "-s",
        "--shell",
        type=int,
        default=None,
        help="shell b-value (accepted for compatibility with the original; SH interpolation does not need it)",
    )
    parser.add_argument(
        "-sh_order",
        default=str(ORIGINAL_SH_ORDER),
        help=f"even SH order, or 'auto' to choose order and smoothing by cross-validation (default {ORIGINAL_SH_ORDER})",
    )
    parser.add_argument("-basis", default=ORIGINAL_SH_BASIS, choices=SH_BASES, help="SH basis (default %(default)s)")
    parser.add_argument(
        "-smooth",
        type=float,
        default=ORIGINAL_SH_SMOOTH,
        help="Laplacian regularisation weight, >= 0 (default %(default)s; ignored with -sh_order auto)",
    )
    parser.add_argument("-mask", default=None, help="brain mask NIfTI: voxels used by -sh_order auto (optional)")
    parser.add_argument("-seed", type=int, default=0, help="seed of the voxel subsample used by -sh_order auto")
    return parser


def _parse_order(text: str) -> int | None:
    if text == "auto":
        return None
    try:
        order = int(text)
    except ValueError:
        raise InputError(f"-sh_order: expected an even integer >= 0 or 'auto', found {text!r}") from None
    if order < 0 or order % 2:
        raise InputError(f"-sh_order: expected an even integer >= 0 or 'auto', found {order}")
    return order


def main_unchecked(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and write the SH prediction; errors raise (``main`` turns them into exit statuses)."""
    args = build_parser().parse_args(argv)
    order = _parse_order(args.sh_order)
    if args.smooth < 0:
        raise InputError(f"-smooth: expected a value >= 0, found {args.smooth}")
    inputs = {"-dmri_in": args.dmri_in, "-bvec_in": args.bvec_in, "-bvec_out": args.bvec_out, "-mask": args.mask}
    output = check_output(args.dmri_out, "-dmri_out", (".nii", ".nii.gz"), inputs, prog=PROG)
    context_bvecs = load_bvecs(args.bvec_in, "-bvec_in")
    target_bvecs = load_bvecs(args.bvec_out, "-bvec_out")
    q_in = context_bvecs.shape[1]
    if order is not None and underdetermined(order, q_in, args.smooth):
        raise InputError(
            f"-sh_order {order} has {n_sh_coefficients(order)} coefficients but -bvec_in {args.bvec_in} has only "
            f"{q_in} directions; choose a lower order, -smooth > 0 or -sh_order auto"
        )
    context, image = load_image(args.dmri_in, "-dmri_in")
    if context.ndim != 4:
        raise InputError(f"-dmri_in: {args.dmri_in}: expected a 4D image (i, j, k, q_in), found shape {context.shape}")
    if context.shape[-1] != q_in:
        raise InputError(
            f"-dmri_in: {args.dmri_in}: expected one volume per -bvec_in direction ({q_in} in "
            f"{args.bvec_in}), found {context.shape[-1]} volumes"
        )
    check_finite(context, f"-dmri_in {args.dmri_in}")
    mask = None
    if args.mask is not None:
        mask = load_mask(args.mask, "-mask", image, context.shape[:3], PROG)
    smooth = args.smooth
    if order is None:
        selection = select_sh_parameters(context, context_bvecs, mask, basis=args.basis, seed=args.seed)
        order, smooth = selection.sh_order, selection.smooth
        print(
            f"selected SH order {order}, smoothing {smooth:g} (leave-one-out MAE {selection.error:.4g})",
            file=sys.stderr,
        )
    predicted = sh_interpolate(context, context_bvecs, target_bvecs, sh_order=order, basis=args.basis, smooth=smooth)
    save_image(np.asarray(predicted, dtype=np.float32), image, output)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit status (0 success, 2 bad input, 130 interrupted)."""
    return run_cli(main_unchecked, argv, PROG)


if __name__ == "__main__":
    sys.exit(main())
