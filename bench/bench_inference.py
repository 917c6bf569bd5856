#!/usr/bin/env python
"""Inference, whole command: our ``run_dmri_rcnn.py`` vs the original's, same input, same random weights.

    python bench/bench_inference.py [--cases cube20 brain60] [--dims 3 1] [--repeats 3] [--full]

Cases (6 context → 84 target directions at b = 1000, batch size 4):

- ``cube20``: a 20×20×20 volume, fully masked (8 patches);
- ``brain60``: 60×60×60 with an ellipsoidal brain-shaped mask;
- ``hcp_probe``: an HCP-size 145×174×145 volume whose mask is a central 20³ cube: full-size input and
  output arrays with few patches, so peak memory is measured in minutes (3D, fp32, once each);
- ``hcp`` (only with ``--full``): the HCP-size volume with an ellipsoidal brain mask, our implementation
  only, run once: the bounded-memory case at full size (goal <= 4 GiB peak RSS; hours on 2 CPU cores).

The checkpoint is a random-weight model built and saved by the original package under legacy Keras
(normalisation statistics randomised so that every layer matters). The original's unmodified
``run_dmri_rcnn.py`` finds it through ``$DMRI_RCNN_DIR``; ours gets ``--weights <prefix>``.

Each run is a fresh process: seconds = the whole command (interpreter start, imports, model build,
weight loading, NIfTI I/O, inference), peak RSS = that process's ``ru_maxrss``. The model part is the
time spent in the model calls (ours: the batched predictor; original: ``Model.predict``), measured in
the same process, and its GFLOP/s uses the convolution FLOP count of ``flops.py``. Runs of the two
implementations alternate so that load changes on a shared machine hit both alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import flops  # noqa: E402

SHELL, SCALE, Q_IN, Q_OUT, BATCH = 1000, 4000.0, 6, 84, 4
CASES = {
    "cube20": ((20, 20, 20), "full"),
    "brain60": ((60, 60, 60), "ellipsoid"),
    "hcp": ((145, 174, 145), "ellipsoid"),
    "hcp_probe": ((145, 174, 145), "small"),
}

# ------------------------------------------------------------------------------------------ inputs


def brain_mask(shape, kind: str):
    import numpy as np

    if kind == "full":
        return np.ones(shape, np.uint8)
    if kind == "small":
        # A 20³ cube in the middle: an HCP-size volume (output arrays of full size) with few patches.
        mask = np.zeros(shape, np.uint8)
        centre = [s // 2 for s in shape]
        mask[tuple(slice(c - 10, c + 10) for c in centre)] = 1
        return mask
    # An ellipsoid filling ~85 % of each axis, like a skull-stripped brain in its field of view.
    grid = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    return (sum(g**2 for g in grid) <= 0.85**2).astype(np.uint8)


def write_case(folder: Path, name: str) -> dict[str, str]:
    """Write the case's NIfTI and b-vector files (same seed every time); return their paths."""
    import nibabel as nib
    import numpy as np

    shape, kind = CASES[name]
    folder.mkdir(parents=True, exist_ok=True)
    paths = {key: str(folder / f"{name}_{key}") for key in ("dmri.nii.gz", "mask.nii.gz", "bvec_in", "bvec_out")}
    if all(Path(p).exists() for p in paths.values()):
        return paths
    rng = np.random.default_rng(7)
    mask = brain_mask(shape, kind)
    # Smooth positive signal around b=1000 levels (a few hundred to ~2000), zero outside the brain.
    base = rng.uniform(600, 1800, size=(*shape, 1)).astype(np.float32)
    dmri = (base * rng.uniform(0.7, 1.3, size=(*shape, Q_IN)).astype(np.float32)) * mask[..., None]
    affine = np.diag([1.25, 1.25, 1.25, 1.0])
    nib.save(nib.Nifti1Image(dmri, affine), paths["dmri.nii.gz"])
    nib.save(nib.Nifti1Image(mask, affine), paths["mask.nii.gz"])
    for key, count in (("bvec_in", Q_IN), ("bvec_out", Q_OUT)):
        vectors = rng.normal(size=(3, count))
        vectors /= np.linalg.norm(vectors, axis=0)
        np.savetxt(paths[key], vectors, fmt="%1.6f")
    return paths


CHECKPOINT_SCRIPT = r"""
import os, sys
import numpy as np
import tf_keras
from dmri_rcnn.core.model import get_1d_autoencoder, get_3d_autoencoder

home, dim = sys.argv[1], int(sys.argv[2])
tf_keras.utils.set_random_seed(dim)
model = (get_3d_autoencoder if dim == 3 else get_1d_autoencoder)()
rng = np.random.default_rng(dim)
# Default initialisation leaves every normalisation an identity; give them spread so each one matters.
for var in model.weights:
    name = var.name.split("/")[-1].split(":")[0]
    if name == "gamma":
        var.assign(rng.uniform(0.5, 1.5, var.shape).astype("float32"))
    elif name == "beta":
        var.assign(rng.normal(0.0, 0.2, var.shape).astype("float32"))
    elif name == "moving_mean":
        var.assign(rng.normal(0.0, 0.3, var.shape).astype("float32"))
    elif name == "moving_variance":
        var.assign(rng.uniform(0.5, 2.0, var.shape).astype("float32"))
    elif name == "bias" and tuple(var.shape) == (1,):
        var.assign(np.full((1,), 0.1, "float32"))  # keep the final ReLU mostly active
    elif name == "kernel" and var.shape[-1] == 1:
        var.assign(np.abs(var.numpy()))  # output unit: positive weights, so outputs are not all zero
folder = os.path.join(home, f"{dim}D_RCNN", "b1000_6in")
os.makedirs(folder, exist_ok=True)
model.save_weights(os.path.join(folder, "weights"))
print("saved", folder)
"""


def make_checkpoint(home: Path, model_dim: int) -> str:
    """A random-weight TF checkpoint saved by the original package; return its prefix.

    It is laid out as ``$DMRI_RCNN_DIR/{d}D_RCNN/b1000_6in/weights`` so the original CLI finds it. The
    original checks for the data-file names of the published checkpoint (the 3D one has two shards);
    empty files with the missing names satisfy that check, while TensorFlow reads the real shard that
    the index names.
    """
    folder = home / f"{model_dim}D_RCNN" / "b1000_6in"
    prefix = folder / "weights"
    if not (folder / "weights.index").exists():
        python = common.original_python()
        if python is None:
            raise RuntimeError("the original environment is needed to create the benchmark checkpoint")
        common.run_python(python, CHECKPOINT_SCRIPT, [str(home), str(model_dim)], env=common.original_env()).check(
            f"creating the {model_dim}D checkpoint"
        )
    published_shards = 2 if model_dim == 3 else 1
    for index in range(published_shards):
        name = folder / f"weights.data-{index:05d}-of-{published_shards:05d}"
        if not name.exists():
            name.touch()
    return str(prefix)


# ------------------------------------------------------------------------------------------ children


def child_ours(argv: list[str]) -> None:
    """Run our CLI in this process, timing the model calls."""
    import time

    model_seconds = [0.0]
    try:
        from dmri_rcnn.core import inference

        predictor_call = inference._Predictor.__call__

        def timed(self, *args, **kwargs):
            start = time.perf_counter()
            result = predictor_call(self, *args, **kwargs)  # NumPy out: the computation has finished
            model_seconds[0] += time.perf_counter() - start
            return result

        inference._Predictor.__call__ = timed
    except (ImportError, AttributeError):
        model_seconds[0] = float("nan")
    from dmri_rcnn.cli.run_dmri_rcnn import main

    code = main(argv)
    common.emit(model_seconds=model_seconds[0])
    raise SystemExit(code)


def child_original(argv: list[str]) -> None:
    """Run the original's unmodified ``run_dmri_rcnn.py`` script in this process, timing ``Model.predict``."""
    import os
    import runpy
    import time

    import tf_keras

    import dmri_rcnn

    model_seconds = [0.0]
    predict = tf_keras.Model.predict

    def timed(self, *args, **kwargs):
        start = time.perf_counter()
        result = predict(self, *args, **kwargs)
        model_seconds[0] += time.perf_counter() - start
        return result

    tf_keras.Model.predict = timed
    script = os.path.join(os.path.dirname(dmri_rcnn.__file__), "bin", "run_dmri_rcnn.py")
    sys.argv = [script, *argv]
    runpy.run_path(script, run_name="__main__")
    common.emit(model_seconds=model_seconds[0])


def run_command(implementation: str, paths: dict, out: str, model_dim: int, prefix: str, home: str,
                precision: str = "fp32", extra=()) -> common.ChildResult:
    argv = ["-dmri_in", paths["dmri.nii.gz"], "-bvec_in", paths["bvec_in"], "-bvec_out", paths["bvec_out"],
            "-mask", paths["mask.nii.gz"], "-dmri_out", out, "-s", str(SHELL), "-m", str(model_dim),
            "-b", str(BATCH)]
    if implementation == "ours":
        argv += ["--weights", prefix, "--no-progress", *extra]
        if precision != "fp32":
            argv += ["--precision", precision]
        python, env = common.our_python(), common.our_env()
    else:
        python, env = common.original_python(), {**common.original_env(), "DMRI_RCNN_DIR": home}
    script = (f"import sys; sys.path.insert(0, {str(common.BENCH_DIR)!r}); import bench_inference as b; "
              f"b.child_{'ours' if implementation == 'ours' else 'original'}({argv!r})")
    return common.run_python(python, script, env=env).check(f"{implementation} {model_dim}D {precision} inference")


def load_output(path: str):
    import nibabel as nib
    import numpy as np

    return np.asarray(nib.load(path).dataobj, dtype=np.float32)


# ------------------------------------------------------------------------------------------ driver


def summarise(results: list[common.ChildResult]) -> dict:
    return {
        "seconds": statistics.median(r.seconds for r in results),
        "model_seconds": statistics.median(r.report.get("model_seconds", float("nan")) for r in results),
        "cpu_seconds": statistics.median(r.cpu_seconds for r in results),
        "peak_rss_gib": max(r.peak_rss_gib for r in results),
        "runs": len(results),
    }


def measure_case(case: str, model_dim: int, work: Path, home: Path, repeats: int, precisions, with_original: bool,
                 extra=()) -> dict:
    """{implementation/precision: summary} plus output differences for one case and model."""
    import numpy as np

    paths = write_case(work / "inputs", case)
    prefix = make_checkpoint(home, model_dim)
    keys = [("ours", p) for p in precisions] + ([("original", "fp32")] if with_original else [])
    runs = {key: [] for key in keys}
    outputs = {}
    for repeat in range(repeats):
        for impl, precision in keys:
            out = str(work / f"{case}_{model_dim}d_{impl}_{precision}.nii.gz")
            runs[(impl, precision)].append(run_command(impl, paths, out, model_dim, prefix, str(home), precision, extra))
            outputs[(impl, precision)] = out
            print(f"  {case} {model_dim}D {impl} {precision} run {repeat + 1}: "
                  f"{runs[(impl, precision)][-1].seconds:.1f} s", file=sys.stderr, flush=True)
    import nibabel as nib

    mask = np.asarray(nib.load(paths["mask.nii.gz"]).dataobj)
    summary = {key: summarise(value) for key, value in runs.items()}
    summary["patches"] = flops.patches_touching(mask)
    summary["flops"] = flops.model_flops(model_dim, summary["patches"], Q_IN, Q_OUT)
    ours_fp32 = load_output(outputs[("ours", "fp32")]) if ("ours", "fp32") in outputs else None
    for key in keys:
        if key == ("ours", "fp32") or ours_fp32 is None:
            continue
        other = load_output(outputs[key])
        # Differences on the scaled signal (the model's own units: signal / 4000 at b = 1000).
        summary[key]["max_abs_diff_scaled"] = float(np.max(np.abs(other - ours_fp32)) / SCALE)
        summary[key]["mean_abs_diff_scaled"] = float(np.mean(np.abs(other - ours_fp32)) / SCALE)
    if ours_fp32 is not None:
        summary["ours_fp32_mean_scaled"] = float(np.mean(np.abs(ours_fp32)) / SCALE)
    return summary


def table_for(summaries: dict, ceilings: dict | None, repeats: int) -> common.Table:
    table = common.Table(
        "inference",
        f"Inference, whole command, 6 → 84 directions at b=1000, batch {BATCH} (median of {repeats} runs)",
        ["case", "model", "implementation", "patches", "seconds", "CPU s", "patches/s", "model s",
         "model GFLOP/s", "% of ceiling", "peak RSS GiB", "speed vs original", "max |Δ|", "mean |Δ|"],
    )
    for (case, dim), summary in summaries.items():
        original = summary.get(("original", "fp32"))
        for key, value in summary.items():
            if not isinstance(key, tuple):
                continue
            impl, precision = key
            model_rate = summary["flops"] / value["model_seconds"] / 1e9 if value["model_seconds"] == value["model_seconds"] else None
            ceiling = None if ceilings is None else ceilings.get(precision)
            table.add(
                case, f"{dim}D", f"{impl} {precision}", summary["patches"], value["seconds"], value["cpu_seconds"],
                summary["patches"] / value["seconds"], value["model_seconds"], model_rate,
                None if (ceiling is None or model_rate is None) else 100 * model_rate / ceiling,
                value["peak_rss_gib"],
                None if original is None else original["seconds"] / value["seconds"],
                value.get("max_abs_diff_scaled"), value.get("mean_abs_diff_scaled"),
            )
    table.note("seconds: whole command (start-up, model build, weight loading, I/O, inference); model s: time in "
               "the model calls; GFLOP/s from the convolution FLOP count (bench/flops.py); % of ceiling: of the "
               "4096² matmul GFLOP/s at the same precision measured in this run; speed vs original: original "
               "seconds / seconds; CPU s: user + system time of the command (less sensitive to other load on a shared "
               "machine); max/mean |Δ|: against our fp32 output, on the scaled signal (signal / 4000).")
    for (case, dim), summary in summaries.items():
        if "ours_fp32_mean_scaled" in summary:
            table.note(f"{case} {dim}D: mean |our fp32 output| = {summary['ours_fp32_mean_scaled']:.3f} (scaled).")
    return table


def main(argv=None, ceilings: dict | None = None):
    """Run the benchmark; ``ceilings`` ({"fp32": GFLOP/s, "bf16": ...}) skips measuring the matmul ceiling."""
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--cases", nargs="+", choices=["cube20", "brain60", "hcp_probe"],
                        default=["cube20", "brain60", "hcp_probe"])
    parser.add_argument("--dims", nargs="+", type=int, choices=[1, 3], default=[3, 1])
    parser.add_argument("--repeats", type=int, default=3, help="runs per implementation for cube20")
    parser.add_argument("--large-dims", nargs="+", type=int, choices=[1, 3], default=[3, 1],
                        help="models for brain60 (the 3D one takes ~15× the cube20 time)")
    parser.add_argument("--large-repeats", type=int, default=1, help="runs per implementation for brain60")
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"],
                        help="our precisions (the original runs fp32 only)")
    parser.add_argument("--no-original", action="store_true", help="measure ours only")
    parser.add_argument("--full", action="store_true", help="also the HCP-size 145×174×145 memory case (ours, once)")
    parser.add_argument("--no-ceiling", action="store_true", help="do not measure the matmul ceiling")
    parser.add_argument("--work", default=None, help="folder for inputs, checkpoints and outputs (default: temporary)")
    common.add_imitation_argument(parser)
    args = parser.parse_args(argv)
    if args.imitate_avx2:
        common.imitate_avx2()
    common.print_machine_facts()
    with_original = not args.no_original and common.require_original() is not None
    if ceilings is None and not args.no_ceiling:
        import bench_matmul_ceiling

        ceilings = bench_matmul_ceiling.measure(repeats=3)
        print(f"matmul ceiling: fp32 {ceilings['fp32']:.0f} GFLOP/s, bf16 {ceilings['bf16']:.0f} GFLOP/s", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_inference_") as tmp:
        work = Path(args.work or tmp)
        home = work / "dmri_rcnn_home"
        summaries = {}
        for case in args.cases:
            repeats = args.repeats if case == "cube20" else args.large_repeats
            # The HCP-size probe is about memory: the 3D model at fp32, once per implementation.
            dims = [3] if case == "hcp_probe" else (args.large_dims if case == "brain60" else args.dims)
            precisions = ["fp32"] if case == "hcp_probe" else args.precisions
            for dim in dims:
                summaries[(case, dim)] = measure_case(case, dim, work, home, repeats, precisions, with_original)
        if args.full:
            summaries[("hcp", 3)] = measure_case("hcp", 3, work, home, 1, ["fp32"], False)
        table = table_for(summaries, ceilings, args.repeats)
        table.show()
    return summaries


if __name__ == "__main__":
    main()
