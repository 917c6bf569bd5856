#!/usr/bin/env python
"""Training speed of the study's small models under each training option: precision, XLA, threads.

    python bench/bench_training_config.py [--dims 1 3] [--width 0.125] [--min-filters 16] [--batch-size 8]
        [--steps 20] [--precisions fp32 bf16] [--jit false true] [--threads 1 2]

One step = ``model.fit`` on one batch of random 10³ patches (q_in 6 → q_out 10, with the brain-mask
slot of the ``mae_in_mask`` loss), built and compiled by :func:`dmri_rcnn.training.build_model` exactly
as the workflow's ``train_model`` rule builds it (Adam, cosine rate). Each case runs in a fresh process
limited to ``--threads`` TensorFlow threads (:func:`dmri_rcnn.training.configure_threads`); the median
of ``--steps`` steps after three warm-up steps (the first traces, and with XLA compiles, the graph).

The default study trains the 1D and 3D models side by side with one thread each, so the 1-thread rows
are the speeds that matter there; the 2-thread rows show what a model gains when it has both cores.
The load average is printed with the table: on a shared machine the times are upper bounds.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from bench_training_step import random_batch  # noqa: E402

Q_IN, Q_OUT = 6, 10


def random_masked_batch(batch_size: int, q_in: int = Q_IN, q_out: int = Q_OUT, seed: int = 0):
    """((context, bvec_in, bvec_out), target + mask slot) float32 arrays of one training batch."""
    import numpy as np

    inputs, target = random_batch(batch_size, q_in, q_out, seed)
    mask = (np.random.default_rng(seed + 1).uniform(size=(batch_size, 1, 10, 10, 10)) < 0.6).astype(np.float32)
    return inputs, np.concatenate([target, mask], axis=1)


def child(model_dim, width, min_filters, batch_size, steps, precision, jit, threads) -> None:
    import time

    from dmri_rcnn.training import build_model, configure_threads

    configure_threads(threads)
    t0 = time.perf_counter()
    model = build_model(model_dim, width=width, learning_rate=5e-3, loss="mae_in_mask", lr_schedule="cosine",
                        total_steps=1000, min_filters=min_filters, precision=precision, jit_compile=jit)
    inputs, target = random_masked_batch(batch_size)
    inputs = list(inputs)
    losses = []

    def step():
        losses.append(float(model.train_on_batch(inputs, target)))

    step()  # traces (and with XLA compiles) the training function
    first_seconds = time.perf_counter() - t0
    median, times = common.median_time(step, repeats=steps, warmup=2)
    common.emit(seconds=median, times=times, first_seconds=first_seconds, loss=losses[-1])


def run_one(model_dim, width, min_filters, batch_size, steps, precision, jit, threads):
    return common.run_bench_child(
        "bench_training_config",
        f"child({model_dim}, {width}, {min_filters}, {batch_size}, {steps}, {precision!r}, {jit}, {threads})",
        f"{model_dim}D {precision} jit={jit} threads={threads}",
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--dims", type=int, nargs="+", choices=[1, 3], default=[3, 1])
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--min-filters", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    parser.add_argument("--jit", nargs="+", choices=["false", "true"], default=["false", "true"])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    common.add_imitation_argument(parser)
    args = parser.parse_args(argv)
    if args.imitate_avx2:
        common.imitate_avx2()
    common.print_machine_facts()
    table = common.Table(
        "training_config",
        f"Training step of the study's models: width {args.width}, min_filters {args.min_filters}, "
        f"batch {args.batch_size}, q_in {Q_IN} → q_out {Q_OUT}, mae_in_mask, median of {args.steps} steps",
        ["model", "precision", "XLA", "threads", "s/step", "steps/s", "examples/s", "vs fp32 (same XLA, threads)",
         "first step s", "load avg"],
    )
    for model_dim in args.dims:
        for threads in args.threads:
            for jit in args.jit:
                reference = None
                for precision in args.precisions:
                    result = run_one(model_dim, args.width, args.min_filters, args.batch_size, args.steps,
                                     precision, jit == "true", threads)
                    load = os.getloadavg()[0]
                    if result is None:
                        table.add(f"{model_dim}D", precision, jit, threads, None, None, None, None, None, load)
                        continue
                    seconds = result.report["seconds"]
                    if precision == "fp32":
                        reference = seconds
                    table.add(f"{model_dim}D", precision, jit, threads, seconds, 1 / seconds,
                              args.batch_size / seconds, common.ratio(reference, seconds),
                              result.report["first_seconds"], load)
    table.note("vs fp32 = fp32 seconds / these seconds (> 1: faster); load avg = 1-minute load average "
               "after the case (2 cores: above 2 means other work shared the machine).")
    table.show()
    return table


if __name__ == "__main__":
    main()
