"""``dmri_rcnn_plot.py``: compare inferred diffusion volumes with a reference scan, slice by slice.

Draws one direction (``-volume``) of the reference and of each inferred NIfTI side by side, with the
absolute-error map of each beneath it (MAE inside the mask in its title), and writes a PNG.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dmri_rcnn.cli._evaluation_io import check_output, load_image, load_mask, run_cli
from dmri_rcnn.errors import InputError
from dmri_rcnn.plot import plot_comparison_slices

PROG = "dmri_rcnn_plot.py"


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser (also read by the documentation's command reference)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Plot inferred dMRI volumes against a reference: slices and absolute-error maps.",
    )
    parser.add_argument("-dmri_in", required=True, nargs="+", help="inferred dMRI NIfTI file(s), 3D or 4D")
    parser.add_argument("-reference", required=True, help="reference (acquired) NIfTI with the same shape")
    parser.add_argument("-out", required=True, help="output PNG")
    parser.add_argument("-labels", nargs="+", default=None, help="panel names for the -dmri_in files (default: file names)")
    parser.add_argument("-mask", default=None, help="brain mask NIfTI (optional): errors shown and averaged inside it")
    parser.add_argument("-volume", type=int, default=0, help="index of the direction (4th axis) to show (default 0)")
    parser.add_argument("-axis", type=int, default=2, choices=(0, 1, 2), help="slice axis: 0 i, 1 j, 2 k (default 2)")
    parser.add_argument("-slice", type=int, default=None, help="slice index along -axis (default: middle of the mask)")
    parser.add_argument("-title", default=None, help="figure title")
    return parser


def _select_volume(data: np.ndarray, index: int, flag: str, path: str) -> np.ndarray:
    if data.ndim == 3:
        return data
    if data.ndim != 4:
        raise InputError(f"{flag}: {path}: expected a 3D or 4D image, found shape {data.shape}")
    if not 0 <= index < data.shape[3]:
        raise InputError(f"-volume: expected an index in 0..{data.shape[3] - 1} ({flag} {path} has {data.shape[3]} volumes), found {index}")
    return data[..., index]


def _label(path: str) -> str:
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def main_unchecked(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and write the figure; errors raise (``main`` turns them into exit statuses)."""
    args = build_parser().parse_args(argv)
    inputs = {"-reference": args.reference, "-mask": args.mask, **{f"-dmri_in ({n + 1})": p for n, p in enumerate(args.dmri_in)}}
    output = check_output(args.out, "-out", (".png",), inputs, prog=PROG)
    if args.labels is not None and len(args.labels) != len(args.dmri_in):
        raise InputError(f"-labels: expected one name per -dmri_in file ({len(args.dmri_in)}), found {len(args.labels)}")
    labels = args.labels or [_label(path) for path in args.dmri_in]
    if len(set(labels)) != len(labels):
        raise InputError(f"-labels: expected distinct panel names, found {', '.join(labels)}")
    reference_data, reference_image = load_image(args.reference, "-reference")
    reference = _select_volume(reference_data, args.volume, "-reference", args.reference)
    predictions = {}
    for label, path in zip(labels, args.dmri_in):
        data, _ = load_image(path, "-dmri_in")
        if data.shape != reference_data.shape:
            raise InputError(f"-dmri_in: {path}: expected the -reference's shape {reference_data.shape}, found {data.shape}")
        predictions[label] = _select_volume(data, args.volume, "-dmri_in", path)
    mask = None
    if args.mask is not None:
        mask = load_mask(args.mask, "-mask", reference_image, reference.shape, PROG)
    if args.slice is not None and not 0 <= args.slice < reference.shape[args.axis]:
        raise InputError(f"-slice: expected an index in 0..{reference.shape[args.axis] - 1} along axis {args.axis}, found {args.slice}")
    title = args.title or f"volume {args.volume}"
    plot_comparison_slices(reference, predictions, mask=mask, axis=args.axis, index=args.slice, title=title, path=output)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit status (0 success, 2 bad input, 130 interrupted)."""
    return run_cli(main_unchecked, argv, PROG)


if __name__ == "__main__":
    sys.exit(main())
