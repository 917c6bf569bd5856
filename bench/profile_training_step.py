#!/usr/bin/env python
"""Where a training step of the study's small models spends its time, by kind of TensorFlow op.

    python bench/profile_training_step.py [--dims 1 3] [--precisions fp32 bf16] [--width 0.125]
        [--min-filters 16] [--batch-size 4] [--steps 5]

Each case builds the model exactly as ``bench_training_config.py`` does (the workflow's ``build_model``,
masked MAE, Adam, cosine rate, one TensorFlow thread), runs three warm-up steps, then records ``--steps``
steps with TensorFlow's profiler in a fresh process. The ops the executor ran are summed by kind:
convolutions (forward, and the two backward kernels), the Batch/Layer normalisation layers (their
moments, scaling and gradients are separate element-wise ops in Keras 3), the ConvLSTM's gate
arithmetic, activations, the optimizer and loss, and the rest (concatenations, slices, casts, bias
gradients...). The table shows milliseconds per step and each
kind's share of the op time: it explains why bfloat16 speeds these steps up so little (only the
convolutions use the CPU's bf16 units) and why the pointwise 1D model costs nearly what the 3D one does.
"""

from __future__ import annotations

import argparse
import collections
import glob
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

KINDS = ("convolution", "convolution backward", "normalisation", "normalisation backward", "ConvLSTM gates",
         "activation", "optimizer and loss", "other")


def op_kind(op_name: str, op_type: str) -> str:
    """The kind of one profiled op from its name (layer path) and type."""
    backward = op_name.startswith("gradient_tape")
    if "Conv3D" in op_type:
        return "convolution backward" if backward else "convolution"
    if "_norm" in op_name:
        return "normalisation backward" if backward else "normalisation"
    if "conv_lstm" in op_name:
        return "ConvLSTM gates"
    if op_type in {"Sigmoid", "Tanh", "Relu", "_MklSwish", "SigmoidGrad", "TanhGrad", "ReluGrad"}:
        return "activation"
    if "/" not in op_name:  # ops outside the model's layers: Adam's updates, the loss, the rate schedule
        return "optimizer and loss"
    return "other"


def op_times(trace_dir: str) -> dict[str, float]:
    """Milliseconds of executor op time per kind, summed over a profiler trace (XPlane protobuf)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    [path] = glob.glob(f"{trace_dir}/plugins/profile/*/*.xplane.pb")
    space = xplane_pb2.XSpace()
    space.ParseFromString(Path(path).read_bytes())
    totals: dict[str, float] = collections.Counter()
    for plane in space.planes:
        names = {key: meta.name for key, meta in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = names.get(event.metadata_id, "")
                if ":" not in name or "::" in name:  # executor bookkeeping (ExecutorState::Process), not an op
                    continue
                op_name, op_type = name.rsplit(":", 1)
                totals[op_kind(op_name, op_type)] += event.duration_ps / 1e9
    return dict(totals)


def child(model_dim, width, min_filters, batch_size, steps, precision) -> None:
    import time

    import tensorflow as tf

    from bench_training_config import random_masked_batch
    from dmri_rcnn.training import build_model, configure_threads

    configure_threads(1)
    model = build_model(model_dim, width=width, learning_rate=5e-3, loss="mae_in_mask", lr_schedule="cosine",
                        total_steps=1000, min_filters=min_filters, precision=precision)
    inputs, target = random_masked_batch(batch_size)
    inputs = list(inputs)
    for _ in range(3):
        model.train_on_batch(inputs, target)
    with tempfile.TemporaryDirectory() as trace_dir:
        tf.profiler.experimental.start(trace_dir)
        start = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(inputs, target)
        seconds = (time.perf_counter() - start) / steps
        tf.profiler.experimental.stop()
        totals = op_times(trace_dir)
    common.emit(seconds=seconds, ms_per_step={kind: totals.get(kind, 0.0) / steps for kind in KINDS})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--dims", type=int, nargs="+", choices=[1, 3], default=[1, 3])
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--min-filters", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    common.print_machine_facts()
    table = common.Table(
        "training_step_profile",
        f"Op time per training step by kind: width {args.width}, min_filters {args.min_filters}, batch "
        f"{args.batch_size}, one thread, {args.steps} profiled steps (ms per step, share of the op time)",
        ["model", "precision", "s/step (profiled)", *KINDS],
    )
    for model_dim in args.dims:
        for precision in args.precisions:
            result = common.run_bench_child(
                "profile_training_step",
                f"child({model_dim}, {args.width}, {args.min_filters}, {args.batch_size}, {args.steps}, {precision!r})",
                f"{model_dim}D {precision}",
            )
            if result is None:
                continue
            per_kind = result.report["ms_per_step"]
            total = sum(per_kind.values()) or 1.0
            cells = [f"{per_kind[kind]:.0f} ({100 * per_kind[kind] / total:.0f} %)" for kind in KINDS]
            table.add(f"{model_dim}D", precision, result.report["seconds"], *cells)
    table.note("Op time is the sum of the ops' own durations on TensorFlow's compute threads; with one thread it "
               "is close to the step time. On a shared machine both grow, the shares much less.")
    table.show()
    return table


if __name__ == "__main__":
    main()
