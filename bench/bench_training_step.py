#!/usr/bin/env python
"""Training step time of the dMRI-RCNN, ours vs the original, fp32 and bf16.

    python bench/bench_training_step.py [--model-dim 3] [--batch-size 4] [--steps 5] [--precisions fp32 bf16]

One step = ``model.train_on_batch`` on a batch of random 10³ patches (q_in 6 → q_out 10, the training
set sizes of the published b1000 models), MAE loss, Adam — the compiled models both packages return.
Median of ``--steps`` steps after two warm-up steps (the first traces the graph). Each
(implementation, precision) runs in a fresh process.

bf16 builds the model under the Keras ``mixed_bfloat16`` dtype policy (weights stay float32, the
arithmetic runs in bfloat16). For the original this is tf_keras' global policy set before its
``get_*_autoencoder`` is called; its code is not changed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

Q_IN, Q_OUT = 6, 10


def random_batch(batch_size: int, q_in: int = Q_IN, q_out: int = Q_OUT, seed: int = 0):
    """((context, bvec_in, bvec_out), target) float32 arrays of one training batch."""
    import numpy as np

    rng = np.random.default_rng(seed)

    def unit(n):
        v = rng.normal(size=(batch_size, n, 3)).astype(np.float32)
        return v / np.linalg.norm(v, axis=-1, keepdims=True)

    context = rng.uniform(0, 1, size=(batch_size, q_in, 10, 10, 10)).astype(np.float32)
    target = rng.uniform(0, 1, size=(batch_size, q_out, 10, 10, 10)).astype(np.float32)
    return (context, unit(q_in), unit(q_out)), target


def build_model(implementation: str, model_dim: int, precision: str):
    """The compiled autoencoder of ``implementation`` ("ours" or "original") at ``precision``."""
    if implementation == "ours":
        from dmri_rcnn.core.model import get_autoencoder

        try:
            return get_autoencoder(model_dim, precision=precision)
        except TypeError:  # a checkout without the precision option
            if precision != "fp32":
                raise
            return get_autoencoder(model_dim)
    import tf_keras

    from dmri_rcnn.core.model import get_1d_autoencoder, get_3d_autoencoder  # the original's

    if precision == "bf16":
        tf_keras.mixed_precision.set_global_policy("mixed_bfloat16")
    return (get_3d_autoencoder if model_dim == 3 else get_1d_autoencoder)()


def child(implementation: str, model_dim: int, precision: str, batch_size: int, steps: int) -> None:
    import time

    t0 = time.perf_counter()
    model = build_model(implementation, model_dim, precision)
    build_seconds = time.perf_counter() - t0
    inputs, target = random_batch(batch_size)
    losses = []

    def step():
        losses.append(float(model.train_on_batch(list(inputs), target)))

    median, times = common.median_time(step, repeats=steps, warmup=2)
    common.emit(seconds=median, times=times, build_seconds=build_seconds, loss=losses[-1])


def run_one(implementation, model_dim, precision, batch_size, steps) -> common.ChildResult | None:
    python = common.our_python() if implementation == "ours" else common.original_python()
    env = common.our_env() if implementation == "ours" else common.original_env()
    return common.run_bench_child(
        "bench_training_step",
        f"child({implementation!r}, {model_dim}, {precision!r}, {batch_size}, {steps})",
        f"training step ({implementation}, {precision})",
        python=python,
        env=env,
    )


def measure(model_dim=3, batch_size=4, steps=5, precisions=("fp32", "bf16")):
    """{(implementation, precision): ChildResult or None}, implementations interleaved."""
    implementations = ["ours"] + (["original"] if common.require_original() else [])
    return {
        (impl, precision): run_one(impl, model_dim, precision, batch_size, steps)
        for precision in precisions
        for impl in implementations
    }


def seconds(results, key):
    result = results.get(key)
    return None if result is None else result.report["seconds"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--model-dim", type=int, choices=[1, 3], default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    args = parser.parse_args(argv)
    common.print_machine_facts()
    results = measure(args.model_dim, args.batch_size, args.steps, args.precisions)
    table = common.Table(
        f"training_step_{args.model_dim}d",
        f"{args.model_dim}D training step, batch {args.batch_size}, q_in {Q_IN} → q_out {Q_OUT} "
        f"(median of {args.steps} steps)",
        ["precision", "ours s/step", "original s/step", "ours examples/s", "speed ours/original"],
    )
    for precision in args.precisions:
        ours, original = seconds(results, ("ours", precision)), seconds(results, ("original", precision))
        table.add(precision, ours, original, None if ours is None else args.batch_size / ours,
                  common.ratio(original, ours))
    table.note("speed ours/original = original seconds / our seconds (> 1: ours is faster); "
               "— = not measured (see the messages above).")
    table.show()
    return results


if __name__ == "__main__":
    main()
