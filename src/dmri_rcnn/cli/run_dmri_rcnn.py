"""``run_dmri_rcnn.py``: infer new dMRI volumes with the dMRI-RCNN (the original package's command).

Example (as in the original README)::

    run_dmri_rcnn.py -dmri_in context_dmri.nii.gz -bvec_in context_bvecs -bvec_out target_bvecs \
        -mask brain_mask.nii.gz -dmri_out inferred_dmri.nii.gz -s 1000 -m 3
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

from dmri_rcnn.cli._command import check_output, import_tensorflow_quietly, quiet_tensorflow, run_command
from dmri_rcnn.core.inference import infer
from dmri_rcnn.core.io import (
    affine_mismatch,
    load_bval,
    load_bvec,
    load_mask,
    load_nifti,
    load_nifti_image,
    save_bval,
    save_bvec,
    save_nifti,
)
from dmri_rcnn.core.model_spec import (
    check_target_bvals,
    check_weights,
    published_model_spec,
    read_model_spec,
    sidecar_path,
)
from dmri_rcnn.core.precision import PRECISION_REQUESTS, choose_precision, configure_devices
from dmri_rcnn.core.processing.scaling import SHELL_SCALE, intensity_scale, shell_scale, signal_scale_problem
from dmri_rcnn.core.processing.shells import shell_indices
from dmri_rcnn.core.super_resolution import sidecar_table_paths, super_resolve, target_directions
from dmri_rcnn.core.weights import PUBLISHED_Q_IN, get_weights, load_model_weights, weights_key
from dmri_rcnn.errors import InputError

PROG = "run_dmri_rcnn.py"
SHELLS = tuple(SHELL_SCALE)
SHELL_TOLERANCE = 30


def shell_value(text: str) -> int:
    """Parse ``-s``: a b-value within ±30 s/mm² of 1000, 2000 or 3000 gives that shell."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid shell {text!r}; expected one of 1000, 2000, 3000") from None
    for shell in SHELLS:
        if abs(value - shell) <= SHELL_TOLERANCE:
            return shell
    raise argparse.ArgumentTypeError(
        f"unknown shell {text}; expected one of 1000, 2000, 3000 (within ±{SHELL_TOLERANCE} s/mm²)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser (also read by the documentation's command reference)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="dMRI RCNN Angular Super-resolution: infer dMRI volumes for new b-vectors from a few "
        "context volumes.",
        epilog="Weights are downloaded to ~/.dmri_rcnn unless DMRI_RCNN_DIR is set.",
    )
    parser.add_argument("-dmri_in", dest="dmri_in", required=True,
                        help="Context dMRI NIfTI volume. Must be single-shell and contain q_in 3D volumes")
    parser.add_argument("-bvec_in", dest="bvec_in", required=True,
                        help="Context b-vector text file. Whitespace delimited with 3 rows and q_in columns")
    # Required unless --target-directions names the targets (checked in main, with argparse's message).
    parser.add_argument("-bvec_out", dest="bvec_out", default=None,
                        help="Target b-vector text file. Whitespace delimited with 3 rows and q_out columns")
    parser.add_argument("-bval_out", dest="bval_out", default=None,
                        help="Target b-value text file: one b-value per target direction. Default: every target "
                        "on shell -s. Targets of other shells need --weights of a cross-shell model, whose "
                        "description lists the shells it predicts (e.g. 3D_b1000_q6_to2000_3000_bscaled: "
                        "b=2000 and 3000 from b=1000 context).")
    parser.add_argument("-mask", dest="mask", required=True,
                        help="Brain mask NIfTI volume. Must have same spatial dimensions as dmri_in.")
    parser.add_argument("-dmri_out", dest="dmri_out", required=True,
                        help="Inferred dMRI NIfTI volume. This will contain q_out inferred volumes.")
    parser.add_argument("-s", "--shell", dest="shell", type=shell_value, required=True,
                        metavar="{1000,2000,3000}",
                        help="Shell to perform inference with. Must be same shell as context/target dMRI and "
                        "b-vectors, unless -bval_out gives other target shells (b-values within ±30 are "
                        "accepted)")
    parser.add_argument("-m", "--model-dim", dest="model_dim", type=int, choices=[1, 3], default=None,
                        help="Model dimensionality, choose either 1 or 3. Default: 3 (or what the --weights "
                        "file's description says).")
    parser.add_argument("-c", "--combined", dest="combined", action="store_true",
                        help="Use combined shell model. Currently only applicable with 3D model and 10 q_in.")
    parser.add_argument("-n", "--norm", dest="norm", action="store_true",
                        help="Perform normalisation using 99 percentile of data. Only implemented with "
                        "--combined flag, and only for q_in = 10")
    parser.add_argument("-b", "--batch-size", dest="batch_size", type=int, default=4,
                        help="Batch size to run model inference with. Default: 4.")
    parser.add_argument("--weights", dest="weights", default=None, metavar="PATH",
                        help="Use these weights instead of the published ones: an original TensorFlow "
                        "checkpoint prefix (…/weights) or a .weights.h5 file of this package. A file trained by "
                        "this package carries its description (…/best.weights.json: dimension, width, q_in, "
                        "shells, scaling), which then decides the model; -m is not needed.")
    parser.add_argument("--overlap", dest="overlap", action="store_true",
                        help="Predict overlapping patches (stride 5) and blend them smoothly, avoiding the "
                        "seams of the original's non-overlapping tiling (about 8x as many patches to predict).")
    parser.add_argument("--q-out-chunk", dest="q_out_chunk", type=int, default=None, metavar="N",
                        help="Decode at most N target directions at once to bound memory (same result up to "
                        "float rounding). Default: 48 // batch size.")
    parser.add_argument("--precision", dest="precision", choices=PRECISION_REQUESTS, default="fp32",
                        help="Arithmetic precision of the model: fp32 (default, matches the original), bf16 "
                        "(bfloat16 compute with the same weights: faster where it is native, CPUs with "
                        "AVX512-BF16/AMX and GPUs of compute capability >= 8.0, emulated and slow elsewhere; "
                        "about 1e-2 relative error), fp16 (the fast path of GPUs of compute capability 7.x) or "
                        "auto (the fastest of these that the devices found run natively; the choice is printed).")
    parser.add_argument("--super-resolve", dest="super_resolve", default=None, metavar="BVALS",
                        help="Super-resolve a whole scan: -dmri_in and -bvec_in hold every acquired volume and BVALS "
                        "their b-values; the volumes of shell -s are the context. -dmri_out then holds the "
                        "acquired b0 and context volumes (unchanged) followed by the predicted ones, with "
                        "matching .bval/.bvec files beside it.")
    parser.add_argument("--target-directions", dest="target_directions", default=None, metavar="{N,hcp}",
                        help="Instead of -bvec_out: N evenly spread directions, or 'hcp' for the 90 directions of "
                        "the shell in the package's HCP-like scheme.")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="Do not show the progress bar.")
    return parser


# ------------------------------------------------------------------------------------------ input checks


def _require_file(path: str, flag: str) -> Path:
    candidate = Path(path)
    if not candidate.is_file():
        raise InputError(f"{flag} {path}: file not found")
    return candidate


def _load_bvecs(path: str, flag: str, allow_b0: bool = False) -> np.ndarray:
    _require_file(path, flag)
    try:  # every context and target volume needs a unit direction (no b0 columns, but in a whole scan)
        table = load_bvec(path, allow_b0=allow_b0)
    except InputError as err:
        raise InputError(f"{flag} {err}") from None
    return np.asarray(table, dtype=np.float32)


def _load_image(path: str, flag: str):
    _require_file(path, flag)
    try:
        return load_nifti_image(path)
    except InputError as err:
        raise InputError(f"{flag} {err}") from None


def _load_voxels(path: str, flag: str) -> np.ndarray:
    try:  # a truncated or damaged file is found here, when its voxels are read
        return load_mask(path) if flag == "-mask" else load_nifti(path, np.float32, ndim=4)
    except InputError as err:
        raise InputError(f"{flag} {err}") from None


def _check_output_path(args) -> Path:
    inputs = {"-dmri_in": args.dmri_in, "-mask": args.mask, "-bvec_in": args.bvec_in, "-bvec_out": args.bvec_out}
    if args.bval_out is not None:
        inputs["-bval_out"] = args.bval_out
    if args.weights is not None:
        inputs["--weights"] = args.weights
    if args.super_resolve:
        inputs["--super-resolve"] = args.super_resolve
        for path, suffix in zip(sidecar_table_paths(args.dmri_out), (".bval", ".bvec")):
            check_output(path, f"-dmri_out's {suffix} file", (suffix,), inputs, prog=PROG)
    return check_output(args.dmri_out, "-dmri_out", (".nii", ".nii.gz"), inputs, prog=PROG)


def _target_bvecs(args) -> np.ndarray:
    if args.bvec_out is not None:
        return _load_bvecs(args.bvec_out, "-bvec_out")
    text = str(args.target_directions).strip()
    if not (text.lower() == "hcp" or (text.isdigit() and int(text) > 0)):
        raise InputError(f"--target-directions {text}: expected a number of directions (e.g. 60) or 'hcp'")
    return np.asarray(target_directions(text, args.shell), dtype=np.float32)


def target_bvals(args, spec, q_out: int) -> np.ndarray:
    """(q_out,) b-values of the targets: -bval_out's, else shell -s; refused unless the model predicts them
    (:func:`check_target_bvals`: a same-shell model its context's shell, a cross-shell model its target shells)."""
    if args.bval_out is None:
        bvals = np.full(q_out, float(args.shell))
        check_target_bvals(spec, args.shell, bvals, label=f"targets of shell -s {args.shell} (no -bval_out)")
        return bvals
    _require_file(args.bval_out, "-bval_out")
    try:
        bvals = load_bval(args.bval_out, dtype=np.float64)
    except InputError as err:
        raise InputError(f"-bval_out {err}") from None
    if bvals.size != q_out:
        raise InputError(
            f"-bval_out {args.bval_out} has {bvals.size} b-values but there are {q_out} target directions; "
            "give one b-value per target"
        )
    check_target_bvals(spec, args.shell, bvals, label=f"-bval_out {args.bval_out}")
    return bvals


def _super_resolve_bvals(args, bvec_in: np.ndarray) -> np.ndarray:
    _require_file(args.super_resolve, "--super-resolve")
    try:
        bvals = load_bval(args.super_resolve, dtype=np.float64)
    except InputError as err:
        raise InputError(f"--super-resolve {err}") from None
    if bvals.size != bvec_in.shape[1]:
        raise InputError(
            f"--super-resolve {args.super_resolve} has {bvals.size} b-values but -bvec_in {args.bvec_in} has "
            f"{bvec_in.shape[1]} directions; give one b-value per volume"
        )
    return bvals


def context_size(args, bvec_in: np.ndarray) -> int:
    """q_in: every -bvec_in column, or with --super-resolve the volumes of shell -s."""
    if not args.super_resolve:
        return bvec_in.shape[1]
    bvals = _super_resolve_bvals(args, bvec_in)
    count = int(shell_indices(bvals, args.shell, SHELL_TOLERANCE).size)
    if count == 0:
        found = ", ".join(f"{b:g}" for b in np.unique(np.round(bvals)))
        raise InputError(f"--super-resolve {args.super_resolve}: no volume of shell b={args.shell}; b-values found: {found}")
    return count


def load_inputs(args):
    """Read and check every input; return (output, image, dmri, bvec_in, bvec_out, mask)."""
    output = _check_output_path(args)
    bvec_in = _load_bvecs(args.bvec_in, "-bvec_in", allow_b0=bool(args.super_resolve))
    bvec_out = _target_bvecs(args)
    q_in = context_size(args, bvec_in)
    if args.weights is None and q_in not in PUBLISHED_Q_IN:
        raise InputError(
            f"-bvec_in {args.bvec_in} has 3 rows and {q_in} columns; q_in must be one of 6, 10, 30 "
            "(the published models), or give --weights of a model trained for it"
        )
    image = _load_image(args.dmri_in, "-dmri_in")
    if len(image.shape) != 4:
        raise InputError(f"-dmri_in {args.dmri_in}: expected a 4D image (i, j, k, q_in), found shape {image.shape}")
    if image.shape[3] != bvec_in.shape[1]:
        raise InputError(
            f"-dmri_in {args.dmri_in} has {image.shape[3]} volumes but -bvec_in {args.bvec_in} has {bvec_in.shape[1]} "
            "directions; they must match"
        )
    mask_image = _load_image(args.mask, "-mask")
    if tuple(mask_image.shape) != tuple(image.shape[:3]):
        raise InputError(
            f"-mask {args.mask} has shape {tuple(mask_image.shape)}; expected the dMRI's spatial shape "
            f"{tuple(image.shape[:3])}"
        )
    dmri = _load_voxels(args.dmri_in, "-dmri_in")
    bad = int(np.count_nonzero(~np.isfinite(dmri)))
    if bad:
        raise InputError(f"-dmri_in {args.dmri_in}: expected finite values, found {bad} NaN/Inf value(s)")
    mask = _load_voxels(args.mask, "-mask")
    if not mask.any():
        raise InputError(f"-mask {args.mask}: the brain mask has no voxel > 0")
    return output, image, dmri, bvec_in, bvec_out, mask


def input_warnings(args, image, dmri: np.ndarray, mask: np.ndarray) -> list[str]:
    """Lines warning of legal input that will likely give a meaningless result (mask affine, signal scale)."""
    lines = []
    mismatch = affine_mismatch(load_nifti_image(args.mask).affine, image.affine)
    if mismatch:
        lines.append(f"-mask {args.mask}: {mismatch}")
    if not args.norm:
        if args.super_resolve:  # judge the shell's volumes, not the b0 or other shells
            bvals = _super_resolve_bvals(args, np.zeros((3, dmri.shape[3])))
            dmri = dmri[..., shell_indices(bvals, args.shell, SHELL_TOLERANCE)]
        problem = signal_scale_problem(dmri, mask, shell_scale(args.shell), args.shell)
        if problem:
            lines.append(f"-dmri_in {args.dmri_in}: {problem}")
    return lines


def select_weights(args, q_in: int):
    """The weights to load: the ``--weights`` path, else the published checkpoint prefix (downloaded if
    missing) for the flags' model and ``q_in``."""
    if args.weights is not None:
        return args.weights
    if args.norm and not args.combined:
        raise InputError("-n/--norm is only available with -c/--combined (the all_norm weights)")
    weights_key(args.model_dim, args.shell, q_in, args.combined, args.norm)  # fail before downloading
    return get_weights(args.model_dim, args.shell, q_in, combined=args.combined, norm=args.norm,
                       progress=args.progress)


def describe_weights(args, q_in: int):
    """The ModelSpec of the weights to use: published, the --weights file's sidecar, or None (flags decide).

    A described file must fit what the flags and the context ask for (:func:`check_weights`): its
    dimension unless -m says otherwise, the context's q_in, shell -s among its shells, percentile
    scaling with -n.
    """
    if args.weights is None:
        return published_model_spec(args.model_dim or 3, args.shell, q_in, args.combined, args.norm)
    found = read_model_spec(args.weights)
    if found is None:
        return None
    wanted = dataclasses.replace(
        found, model_dim=args.model_dim or found.model_dim, q_in=q_in, shells=(args.shell,),
        scaling="percentile" if args.norm else found.scaling,
    )
    return check_weights(args.weights, wanted, "the command (-m, -s, -n and the context)", label="--weights")


def build_model(args, weights, spec):
    """The model with its weights; without a description the flags decide (width 1.0)."""
    # lazy: TensorFlow loads after the input is checked (a bad input fails fast)
    from dmri_rcnn.core.model import get_autoencoder, load_trained_model

    configure_devices()
    choice = choose_precision(getattr(args, "precision", "fp32"))
    print(f"    Precision -> {choice.precision} ({choice.reason}); devices: {choice.devices}")
    precision = choice.precision
    if spec is not None:
        return load_trained_model(weights, spec, precision=precision)
    model = get_autoencoder(args.model_dim, None, precision=precision)
    try:
        load_model_weights(model, weights, model_dim=args.model_dim)
    except InputError as err:
        hint = f"; {sidecar_path(weights)} (the model's description) is missing, so -m {args.model_dim} and width 1.0 were assumed"
        raise InputError(f"{err}{hint if str(weights).endswith('.weights.h5') else ''}") from None
    return model


def write_output(volumes: np.ndarray, image, target: Path) -> None:
    """Save float32 ``volumes`` with the input image's affine and header, atomically."""
    save_nifti(volumes.astype(np.float32, copy=False), image.affine, target, header=image.header)


def print_summary(args, q_in: int, q_out: int) -> None:
    """Print the chosen model (type, shell, q_in, q_out) as the original command did."""
    kind = f"{args.model_dim}D" + (" Combined" if args.combined else "")
    print("Model parameters selected:")
    print(f"    Model Type -> {kind}")
    print(f"    Shell -> {args.shell}")
    print(f"    q_in -> {q_in}")
    print(f"    q_out -> {q_out}")
    if args.weights:
        print(f"    Weights -> {args.weights}")


def run(args) -> Path:
    """Run inference for parsed ``args``; return the written path."""
    if args.batch_size < 1:
        raise InputError(f"-b/--batch-size must be >= 1, found {args.batch_size}")
    target, image, dmri, bvec_in, bvec_out, mask = load_inputs(args)
    for line in input_warnings(args, image, dmri, mask):
        print(f"{PROG}: warning: {line}", file=sys.stderr)
    q_in, q_out = context_size(args, bvec_in), bvec_out.shape[1]
    spec = describe_weights(args, q_in)
    bval_out = target_bvals(args, spec, q_out)
    args.model_dim = spec.model_dim if spec is not None else (args.model_dim or 3)
    print_summary(args, q_in, q_out)
    if args.bval_out is not None:
        print(f"    Target b-values -> {', '.join(f'{b:g}' for b in np.unique(np.round(bval_out)))}")
    import_tensorflow_quietly()
    weights = select_weights(args, q_in)

    model = build_model(args, weights, spec)
    if args.super_resolve:
        return write_super_resolved(args, model, image, dmri, bvec_in, mask, target, (bvec_out, bval_out), spec)
    scale = intensity_scale(model_scaling(args, spec), args.shell, dmri, mask)
    volumes = infer(dmri, bvec_in, bvec_out, mask, model, scale=scale, batch_size=args.batch_size,
                    overlap=args.overlap, q_out_chunk=args.q_out_chunk, progress=args.progress,
                    q_encoding=spec.q_encoding if spec is not None else "direction",
                    bvals=(np.full(q_in, float(args.shell)), bval_out))
    write_output(volumes, image, target)
    print(f"Wrote {target} ({volumes.shape[0]}x{volumes.shape[1]}x{volumes.shape[2]}, {q_out} volumes)")
    return target


def model_scaling(args, spec) -> str:
    """How the model's input is scaled: as its description says; without one, as -n says."""
    return spec.scaling if spec is not None else ("percentile" if args.norm else "shell")


def write_super_resolved(args, model, image, dmri, bvec_in, mask, target: Path, targets: tuple, spec) -> Path:
    """--super-resolve: acquired b0 + context volumes, then the predictions (``targets``: (3, q_out)
    b-vectors and (q_out,) b-values), with .bval/.bvec beside."""
    bvec_out, bval_out = targets
    if np.dtype(image.get_data_dtype()).itemsize > 4 and image.get_data_dtype().kind == "f":
        dmri = np.asarray(image.dataobj)  # float64 voxels: copy them at full precision
    bval_path, bvec_path = sidecar_table_paths(target)
    result = super_resolve(
        dmri, _super_resolve_bvals(args, bvec_in), bvec_in, mask, model, args.shell, bvec_out,
        scale=model_scaling(args, spec), target_bvals=bval_out,
        q_encoding=spec.q_encoding if spec is not None else "direction", batch_size=args.batch_size, overlap=args.overlap,
        q_out_chunk=args.q_out_chunk, progress=args.progress,
    )
    save_bval(result.bvals, bval_path)
    save_bvec(result.bvecs, bvec_path)
    save_nifti(result.dmri, image.affine, target, header=image.header)  # the image last
    kept, total = int(result.acquired.sum()), image.shape[3]
    note = f"; {total - kept} volume(s) of other shells left out" if kept < total else ""
    print(f"Wrote {target}, {bval_path.name}, {bvec_path.name} ({kept} acquired + {bvec_out.shape[1]} predicted "
          f"volumes{note})")
    return target


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit status (0 success, 2 bad input, 130 interrupted)."""
    quiet_tensorflow()

    def parse_and_run(argv):
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.bvec_out is None and args.target_directions is None:
            parser.error("the following arguments are required: -bvec_out (or --target-directions)")
        if args.bvec_out is not None and args.target_directions is not None:
            parser.error("-bvec_out and --target-directions name the targets twice; give one of them")
        run(args)
        return 0

    return run_command(parse_and_run, argv, PROG)


if __name__ == "__main__":
    sys.exit(main())
