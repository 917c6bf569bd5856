#!/usr/bin/env python
"""Training input throughput: examples/s that ``TrainingProcessor`` delivers with no model attached.

    python bench/bench_training_input.py [--subjects 2] [--shape 60 60 40] [--epochs 3] [--step-seconds S]

Synthetic subjects (``--shape`` voxels, an ellipsoidal brain mask, 90 directions at b = 1000 plus 6 b0
volumes) are written once as TFRecord files with our ``save_tfrecord_data`` (the files are the
original's schema, so both pipelines read the same bytes). Each implementation's
``TrainingProcessor([1000], q_in=6, q_out=10).load_data(files, batch size 4)`` is then iterated to the
end ``--epochs`` times after a warm-up pass (new direction sets and shuffle each pass, as in training);
the median pass gives examples/s. Each implementation runs in a fresh process.

Goal: input >= 10× what one CPU training step consumes (batch 4 / seconds per 3D step), so the input
pipeline never starves training. The step time is measured with ``bench_training_step`` (3D, fp32,
ours when the model is on this checkout, else the original), or taken from ``--step-seconds``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

Q_IN, Q_OUT, BATCH = 6, 10, 4


def write_subjects(folder: str, n_subjects: int, shape) -> list[str]:
    """Write synthetic subjects as TFRecord files (ours); return their paths."""
    import numpy as np

    from dmri_rcnn.core.processing import save_tfrecord_data

    paths = []
    for index in range(n_subjects):
        rng = np.random.default_rng(index)
        q = 96
        bvals = np.concatenate([np.full(6, 5.0), np.full(90, 1000.0)]).astype(np.float32)
        bvecs = rng.normal(size=(3, q))
        bvecs /= np.linalg.norm(bvecs, axis=0)
        grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
        mask = (np.sum(grid**2 / 0.8**2, axis=0) <= 1).astype(np.int8)
        dmri = rng.uniform(200, 3000, size=(*shape, q)).astype(np.float32) * mask[..., None]
        path = str(Path(folder) / f"subject{index}.tfrecord")
        save_tfrecord_data(dmri, bvecs.astype(np.float32), bvals, mask, path)
        paths.append(path)
    return paths


def child(implementation: str, paths: list[str], epochs: int) -> None:
    import time

    from dmri_rcnn.core.processing import TrainingProcessor  # ours or the original's, by environment

    processor = TrainingProcessor([1000], q_in=Q_IN, q_out=Q_OUT)
    dataset = processor.load_data(paths, bsize=BATCH)
    rates, counts = [], []
    for epoch in range(epochs + 1):
        start = time.perf_counter()
        examples = 0
        for (context, _, _), _ in dataset:
            examples += int(context.shape[0])
        if epoch:  # the first pass warms up (graph tracing, file cache)
            rates.append(examples / (time.perf_counter() - start))
            counts.append(examples)
    rates.sort()
    common.emit(examples_per_second=rates[len(rates) // 2], examples_per_epoch=counts[0], rates=rates)


def run_one(implementation: str, paths: list[str], epochs: int) -> common.ChildResult:
    python = common.our_python() if implementation == "ours" else common.original_python()
    env = common.our_env() if implementation == "ours" else common.original_env()
    script = (
        f"import sys; sys.path.insert(0, {str(common.BENCH_DIR)!r}); import bench_training_input as b; "
        f"b.child({implementation!r}, {paths!r}, {epochs})"
    )
    return common.run_python(python, script, env=env).check(f"TrainingProcessor ({implementation})")


def training_step_seconds() -> tuple[float | None, str]:
    """(seconds per 3D fp32 training step at batch 4, which implementation measured it)."""
    import bench_training_step

    for implementation in ("ours", "original"):
        if implementation == "original" and common.original_python() is None:
            break
        result = bench_training_step.run_one(implementation, 3, "fp32", BATCH, 3)
        if result is not None:
            return result.report["seconds"], implementation
    return None, "not measured"


def main(argv=None):
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--subjects", type=int, default=2)
    parser.add_argument("--shape", type=int, nargs=3, default=[60, 60, 40])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--step-seconds", type=float, default=None,
                        help="seconds per 3D training step at batch 4 (skips measuring it)")
    args = parser.parse_args(argv)
    common.print_machine_facts()
    have_original = common.require_original() is not None
    with tempfile.TemporaryDirectory(prefix="bench_input_") as folder:
        writer = (
            f"import sys; sys.path.insert(0, {str(common.BENCH_DIR)!r}); import bench_training_input as b; "
            f"b.write_subjects({folder!r}, {args.subjects}, {tuple(args.shape)!r})"
        )
        common.run_python(common.our_python(), writer, env=common.our_env()).check("writing subjects")
        paths = sorted(str(p) for p in Path(folder).glob("*.tfrecord"))
        results = {impl: run_one(impl, paths, args.epochs)
                   for impl in ["ours"] + (["original"] if have_original else [])}
    if args.step_seconds is not None:
        step, step_source = args.step_seconds, "given"
    else:
        step, step_source = training_step_seconds()
    consumed = None if step is None else BATCH / step
    table = common.Table(
        "training_input",
        f"TrainingProcessor throughput, {args.subjects} subjects {'×'.join(map(str, args.shape))}, "
        f"q_in {Q_IN} → q_out {Q_OUT}, batch {BATCH} (median of {args.epochs} passes)",
        ["implementation", "examples/pass", "examples/s", "× one 3D step's use", "peak RSS GiB"],
    )
    for name, result in results.items():
        rate = result.report["examples_per_second"]
        table.add(name, result.report["examples_per_epoch"], rate, common.ratio(rate, consumed), result.peak_rss_gib)
    if consumed is not None:
        table.note(f"One 3D fp32 training step ({step_source}) takes {step:.2f} s at batch {BATCH}: "
                   f"it consumes {consumed:.2f} examples/s. Goal: input >= 10× that.")
    if "original" in results:
        speed = results["ours"].report["examples_per_second"] / results["original"].report["examples_per_second"]
        table.note(f"ours delivers {speed:.2f}× the original's examples/s.")
    table.show()
    return results


if __name__ == "__main__":
    main()
