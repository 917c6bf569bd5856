#!/usr/bin/env python
"""Whole-brain inference at HCP size, full width, on this machine: measured on a block of patches, extrapolated.

    python bench/bench_hcp_inference.py [--block 3 3 1] [--precisions fp32 bf16] [--mask FILE]

The case is the paper's: the 3D model at width 1.0, b = 1000, 6 context → 84 target directions, our
``run_dmri_rcnn.py`` with a random-weight checkpoint (made as in ``bench_inference.py``), batch 4. The
input is HCP-size (145×174×145, 6 volumes) and the brain is the rehearsal's: the mask of a synthetic
subject with ``brain_scale`` 0.8 (``config/hcp-rehearsal.yaml``), or ``--mask`` (e.g. a real HCP
``nodif_brain_mask.nii.gz``).

A whole brain takes hours per model on 2 CPU cores, so the command runs with the mask cut to a block of
``--block`` patches (aligned to the 10³ patch grid, at the centre of the brain, so every patch is full of
brain). The input and output arrays still have the full HCP size, so the peak memory is that of a
whole-brain run (the output is allocated once and filled batch by batch). The whole-brain time is
extrapolated by patch count::

    whole-brain seconds = (seconds - model seconds) + patches(brain) × model seconds / patches(block)

where ``seconds`` is the whole command (start-up, model build, weights, NIfTI I/O) and ``model seconds``
the time in the model calls. Patch counts are those of ``flops.patches_touching`` (10³ patches holding a
brain voxel, after the central zero padding that the inference uses).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_inference  # noqa: E402
import common  # noqa: E402
import flops  # noqa: E402

HCP_SHAPE = (145, 174, 145)
PATCH = 10
MODEL_DIM = 3


def rehearsal_mask(seed: int = 5):
    """The brain mask of an HCP-size synthetic subject as config/hcp-rehearsal.yaml simulates it."""
    import numpy as np

    from dmri_rcnn.simulation import synthetic_anatomy

    return synthetic_anatomy(HCP_SHAPE, seed, brain_scale=0.8)["mask"].astype(np.uint8)


def central_block(mask, block: tuple[int, int, int]):
    """``mask`` cut to ``block`` patches of the 10³ grid around the brain's centre (every patch full of brain)."""
    import numpy as np

    centre = np.round(np.argwhere(mask > 0).mean(axis=0)).astype(int)
    cut = np.zeros_like(mask)
    slices = []
    for axis, size in enumerate(mask.shape):
        offset = ((-size) % PATCH) // 2  # the inference pads (-size) % 10 voxels, half before
        first_patch = (centre[axis] + offset) // PATCH - block[axis] // 2
        start = first_patch * PATCH - offset
        slices.append(slice(max(start, 0), start + block[axis] * PATCH))
    cut[tuple(slices)] = mask[tuple(slices)]
    return cut


def write_inputs(folder: Path, mask, block_mask) -> dict[str, str]:
    """HCP-size 6-volume input, the block's mask, the whole brain's mask and the b-vector files."""
    import nibabel as nib
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    paths = {key: str(folder / name) for key, name in [("dmri.nii.gz", "hcp_dmri.nii.gz"),
                                                        ("mask.nii.gz", "hcp_block_mask.nii.gz"),
                                                        ("brain", "hcp_brain_mask.nii.gz"),
                                                        ("bvec_in", "bvec_in"), ("bvec_out", "bvec_out")]}
    affine = np.diag([1.25, 1.25, 1.25, 1.0])
    dmri = np.zeros(HCP_SHAPE + (bench_inference.Q_IN,), np.float32)
    inside = mask > 0
    dmri[inside] = rng.uniform(600, 1800, size=(int(inside.sum()), bench_inference.Q_IN)).astype(np.float32)
    nib.save(nib.Nifti1Image(dmri, affine), paths["dmri.nii.gz"])
    nib.save(nib.Nifti1Image(block_mask, affine), paths["mask.nii.gz"])
    nib.save(nib.Nifti1Image(mask, affine), paths["brain"])
    for key, count in (("bvec_in", bench_inference.Q_IN), ("bvec_out", bench_inference.Q_OUT)):
        vectors = rng.normal(size=(3, count))
        vectors /= np.linalg.norm(vectors, axis=0)
        np.savetxt(paths[key], vectors, fmt="%1.6f")
    return paths


def main(argv=None):
    import tempfile

    import nibabel as nib
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--block", nargs=3, type=int, default=[3, 3, 1], metavar=("I", "J", "K"),
                        help="patches measured along i, j, k (default 3 3 1: 9 patches)")
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    parser.add_argument("--mask", default=None, help="brain mask of HCP size (default: the rehearsal's synthetic one)")
    parser.add_argument("--work", default=None, help="folder for inputs, checkpoint and outputs (default: temporary)")
    args = parser.parse_args(argv)
    common.print_machine_facts()
    mask = rehearsal_mask() if args.mask is None else (np.asarray(nib.load(args.mask).dataobj) > 0).astype(np.uint8)
    if mask.shape != HCP_SHAPE:
        raise SystemExit(f"--mask {args.mask}: shape {mask.shape}; expected HCP's {HCP_SHAPE}")
    block_mask = central_block(mask, tuple(args.block))
    brain_patches = flops.patches_touching(mask)
    block_patches = flops.patches_touching(block_mask)
    print(f"brain: {int(mask.sum())} voxels ({mask.mean():.1%} of the volume), {brain_patches} patches; "
          f"measured block: {block_patches} patches", flush=True)

    table = common.Table(
        "hcp_inference",
        "Whole-brain inference at HCP size, 3D width 1.0, 6 → 84 directions at b=1000, batch 4 "
        f"(measured on {block_patches} patches, extrapolated to {brain_patches})",
        ["precision", "patches measured", "seconds", "model s", "patches/s", "model GFLOP/s", "peak RSS GiB",
         "whole-brain patches", "whole-brain seconds (extrapolated)", "whole-brain hours"],
    )
    with tempfile.TemporaryDirectory(prefix="bench_hcp_inference_") as tmp:
        work = Path(args.work or tmp)
        paths = write_inputs(work / "inputs", mask, block_mask)
        prefix = bench_inference.make_checkpoint(work / "dmri_rcnn_home", MODEL_DIM)
        for precision in args.precisions:
            out = str(work / f"hcp_{precision}.nii.gz")
            result = bench_inference.run_command("ours", paths, out, MODEL_DIM, prefix, str(work), precision)
            model_s = result.report.get("model_seconds", float("nan"))
            rate = block_patches / model_s
            whole = (result.seconds - model_s) + brain_patches / rate
            gflops = flops.model_flops(MODEL_DIM, block_patches, bench_inference.Q_IN, bench_inference.Q_OUT) / model_s / 1e9
            print(f"  {precision}: {result.seconds:.1f} s, model {model_s:.1f} s", file=sys.stderr, flush=True)
            table.add(precision, block_patches, result.seconds, model_s, rate, gflops, result.peak_rss_gib,
                      brain_patches, whole, whole / 3600)
    table.note("seconds: whole command; model s: time in the model calls; patches/s = patches measured / model s; "
               "whole-brain seconds = (seconds - model s) + whole-brain patches / patches/s; peak RSS: the measured "
               "run, whose input and output arrays have the full HCP size. GFLOP/s from bench/flops.py.")
    table.show()
    return table


if __name__ == "__main__":
    main()
