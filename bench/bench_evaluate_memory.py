#!/usr/bin/env python
"""Whole-brain evaluation at HCP size: seconds and peak memory of the study's evaluation steps.

    python bench/bench_evaluate_memory.py [--shape 145 174 145] [--steps evaluate fa_maps slices] [--work DIR]
    python bench/bench_evaluate_memory.py --shape 40 48 40      # a small case, for a quick check

The case is the paper's evaluation of one prediction: 84 predicted and 84 acquired target volumes at
b = 1000, 6 context volumes, 18 b0 volumes, the brain mask, and (synthetic subject) the tissue map, fibre
directions and fractions. The subject is simulated by the package (``dmri_rcnn.simulation``, brain_scale
0.8: ~23 % of the 145×174×145 voxels are brain, b0 3000–4000, Rician noise at SNR 20); the prediction is
the acquired targets plus Gaussian noise of sd 150 inside the brain (0 outside, as inference writes it).
The inputs are written as ``.nii.gz`` files, as the workflow has them.

Each step runs in a fresh process, as its Snakemake rule does, and the table gives its wall seconds,
CPU seconds and peak RSS (GNU ``time``'s ``%M``, see ``common.run_child``):

- ``evaluate``: ``metrics_and_figures.evaluate`` (rule ``evaluate``): signal, b0-normalised, DTI,
  tissue and ground-truth metrics, one TSV row.
- ``fa_maps``: ``metrics_and_figures.plot_fa_maps`` (rule ``plot_fa_maps``) with ``--fa-methods``
  predictions (the study has SH, 1D and 3D): one tensor fit per method plus the acquired one.
- ``slices``: ``metrics_and_figures.plot_example_slices`` (rule ``plot_example_slices``), the same methods.

``DMRI_RCNN_BENCH_SRC`` runs the steps with another checkout's ``src/`` (to compare branches).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

HCP_SHAPE = (145, 174, 145)
SHELL = 1000
Q_IN = 6
Q_OUT = 84
N_B0 = 18
SEED = 5

#: Run inside the child: one study step on the files written by :func:`write_inputs`.
CHILD = r"""
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import common
from dmri_rcnn.study import metrics_and_figures as steps

step, files, out = sys.argv[2], json.loads(Path(sys.argv[3]).read_text()), Path(sys.argv[4])
predictions = {name: files[name] for name in files if name.startswith("prediction")}
start = time.perf_counter()
if step == "evaluate":
    row = steps.evaluate({key: value for key, value in files.items() if not key.startswith("prediction_")},
                                "bench", "noisy", SHELL, Q_IN, out / "metrics.tsv")
    common.emit(seconds_inside=time.perf_counter() - start, row=row)
elif step == "fa_maps":
    steps.plot_fa_maps(files, predictions, SHELL, out / "fa.png")
    common.emit(seconds_inside=time.perf_counter() - start)
elif step == "slices":
    steps.plot_example_slices(files["targets"], files["mask"], predictions, out / "slices.png")
    common.emit(seconds_inside=time.perf_counter() - start)
else:
    raise SystemExit(f"unknown step {step}")
"""


def write_inputs(folder: Path, shape: tuple[int, int, int], n_predictions: int) -> dict[str, str]:
    """Simulate the subject and write every file the evaluation steps read; return {input name: path}.

    Reuses the files of an earlier run with the same shape in ``folder`` (``inputs.json`` lists them).
    """
    import numpy as np

    from dmri_rcnn.core import io
    from dmri_rcnn.simulation import simulate_subject

    listing = folder / "inputs.json"
    if listing.exists():
        saved = json.loads(listing.read_text())
        if saved.get("shape") == list(shape) and saved.get("n_predictions", 0) >= n_predictions and all(
            Path(path).exists() for path in saved["files"].values()
        ):
            return saved["files"]
    folder.mkdir(parents=True, exist_ok=True)
    subject = simulate_subject(SEED, shape=shape, voxel_size=1.25, shells=(SHELL,), n_directions=Q_IN + Q_OUT,
                               n_b0=N_B0, snr=20.0, brain_scale=0.8, keep_noiseless=False, progress=True)
    affine = subject.affine
    is_b0 = subject.bvals < io.B0_THRESHOLD
    weighted = np.flatnonzero(~is_b0)
    context_index, target_index = weighted[:Q_IN], weighted[Q_IN:]
    files = {key: str(folder / name) for key, name in [
        ("targets", "targets.nii.gz"), ("target_bvecs", "targets.bvec"), ("target_bvals", "targets.bval"),
        ("context", "context.nii.gz"), ("context_bvecs", "context.bvec"), ("context_bvals", "context.bval"),
        ("b0", "b0.nii.gz"), ("mask", "nodif_brain_mask.nii.gz"), ("tissue", "tissue.nii.gz"),
        ("fibre_dirs", "fibre_dirs.nii.gz"), ("fibre_fractions", "fibre_fractions.nii.gz"),
    ]}
    mask = subject.mask.astype(bool)
    io.save_nifti(subject.mask, affine, files["mask"])
    io.save_nifti(subject.tissue, affine, files["tissue"])
    io.save_nifti(subject.fibre_dirs.reshape(shape + (-1,)), affine, files["fibre_dirs"])
    io.save_nifti(subject.fibre_fractions, affine, files["fibre_fractions"])
    io.save_nifti(subject.dmri[..., np.flatnonzero(is_b0)], affine, files["b0"])
    io.save_nifti(subject.dmri[..., context_index], affine, files["context"])
    for key, index in (("context", context_index), ("target", target_index)):
        io.save_bvec(subject.bvecs[:, index], files[f"{key}_bvecs"])
        io.save_bval(subject.bvals[index], files[f"{key}_bvals"])
    targets = np.ascontiguousarray(subject.dmri[..., target_index])
    del subject
    io.save_nifti(targets, affine, files["targets"])
    rng = np.random.default_rng(SEED + 1)
    for number in range(n_predictions):
        name = "prediction" if number == 0 else f"prediction_{number}"
        prediction = np.zeros_like(targets)
        prediction[mask] = targets[mask] + rng.normal(0.0, 150.0, size=(int(mask.sum()), targets.shape[-1]))
        files[name] = str(folder / f"{name}.nii.gz")
        io.save_nifti(prediction, affine, files[name])
        del prediction
    listing.write_text(json.dumps({"shape": list(shape), "n_predictions": n_predictions, "files": files}, indent=1))
    return files


def run_step(step: str, files: dict[str, str], n_predictions: int, work: Path) -> common.ChildResult:
    """One evaluation step in a fresh process under GNU time."""
    chosen = {key: path for key, path in files.items()
              if not key.startswith("prediction_") or int(key.split("_")[1]) < n_predictions}
    listing = work / f"{step}_inputs.json"
    listing.write_text(json.dumps(chosen))
    out = work / f"{step}_out"
    out.mkdir(exist_ok=True)
    script = f"SHELL, Q_IN = {SHELL}, {Q_IN}\n" + CHILD
    return common.run_python(common.our_python(), script, [str(common.BENCH_DIR), step, str(listing), str(out)],
                             env=common.our_env(), timeout=7200).check(f"step {step}")


def main(argv=None):
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--shape", nargs=3, type=int, default=list(HCP_SHAPE), metavar=("I", "J", "K"),
                        help="image size in voxels (default HCP's 145 174 145; e.g. 40 48 40 for a quick check)")
    parser.add_argument("--steps", nargs="+", choices=["evaluate", "fa_maps", "slices"],
                        default=["evaluate", "fa_maps", "slices"])
    parser.add_argument("--fa-methods", type=int, default=3,
                        help="predictions given to plot_fa_maps and plot_example_slices (default 3: SH, 1D, 3D)")
    parser.add_argument("--work", default=None,
                        help="folder for the inputs and outputs, kept and reused by later runs (default: temporary)")
    args = parser.parse_args(argv)
    shape = tuple(args.shape)
    common.print_machine_facts()
    table = common.Table(
        "evaluate_memory",
        f"Evaluation steps on a {shape[0]}×{shape[1]}×{shape[2]} subject: {Q_OUT} targets, {Q_IN} context, "
        f"{N_B0} b0 volumes, b={SHELL}",
        ["step", "predictions", "brain voxels", "seconds", "CPU s", "peak RSS GiB", "inputs GiB (float32)"],
    )
    with tempfile.TemporaryDirectory(prefix="bench_evaluate_memory_") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        needed = max(1, args.fa_methods) if {"fa_maps", "slices"} & set(args.steps) else 1
        files = write_inputs(work / "inputs", shape, needed)
        from dmri_rcnn.core import io

        mask = io.load_mask(files["mask"])
        brain = int(mask.sum())
        voxels = int(np.prod(shape))
        print(f"brain: {brain} voxels ({brain / voxels:.1%} of the volume)", flush=True)
        # float32 volumes of the images a step holds at once (see the table's note)
        volumes = {"evaluate": 2 * Q_OUT + Q_IN + N_B0, "fa_maps": Q_OUT + Q_IN + N_B0, "slices": 2}
        for step in args.steps:
            n_predictions = 1 if step == "evaluate" else max(1, args.fa_methods)
            result = run_step(step, files, n_predictions, work)
            print(f"  {step}: {result.seconds:.1f} s, peak RSS {result.peak_rss_gib:.2f} GiB", file=sys.stderr, flush=True)
            if step == "evaluate":
                row = result.report.get("row", {})
                print("  metrics: " + ", ".join(f"{key} {row[key]:.6g}" for key in
                                                ("mae", "psnr", "ssim", "mae_norm", "fa_mae", "md_mae",
                                                 "pdd_angle_deg", "dti_failed") if key in row), flush=True)
            table.add(step, n_predictions, brain, result.seconds, result.cpu_seconds, result.peak_rss_gib,
                      volumes[step] * voxels * 4 / 2**30)
    table.note("Each step in a fresh process (the Snakemake rule's script does the same call). Peak RSS: GNU time's %M "
               "of that process. inputs GiB: the images the step holds at once, as float32 (evaluate: prediction, "
               "targets, context, b0; fa_maps: the targets or one prediction at a time, context, b0; slices: one "
               "volume of two files); the rest of the peak is Python and its libraries, the 3D maps and work space.")
    table.show()
    return table


if __name__ == "__main__":
    main()
