#!/usr/bin/env python
"""The machine's ceiling: GFLOP/s of a square matmul in TensorFlow, fp32 and bf16.

    python bench/bench_matmul_ceiling.py [--size 4096] [--repeats 5]

A matmul of two n×n matrices costs 2·n³ floating-point operations. Each precision runs in a fresh
process; the median of ``--repeats`` runs after one warm-up is reported.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


def child(precision: str, size: int, repeats: int) -> None:
    import tensorflow as tf

    dtype = {"fp32": tf.float32, "bf16": tf.bfloat16}[precision]
    rng = tf.random.Generator.from_seed(0)
    a = tf.cast(rng.normal((size, size)), dtype)
    b = tf.cast(rng.normal((size, size)), dtype)

    def once():
        # Reading one element forces the (synchronous on CPU) product without copying 64 MB out.
        return float(tf.linalg.matmul(a, b)[0, 0])

    median, times = common.median_time(once, repeats=repeats, warmup=1)
    common.emit(seconds=median, times=times, gflops=2 * size**3 / median / 1e9)


def measure(size: int = 4096, repeats: int = 5) -> dict[str, float]:
    """{precision: GFLOP/s} measured in fresh processes."""
    results = {}
    for precision in ("fp32", "bf16"):
        result = common.run_python(
            common.our_python(),
            f"import sys; sys.path.insert(0, {str(common.BENCH_DIR)!r}); import bench_matmul_ceiling as b; "
            f"b.child({precision!r}, {size}, {repeats})",
            env=common.our_env(),
        ).check(f"matmul {precision}")
        results[precision] = result.report["gflops"]
        results[precision + "_seconds"] = result.report["seconds"]
    return results


def main(argv=None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    common.print_machine_facts()
    results = measure(args.size, args.repeats)
    table = common.Table("matmul_ceiling", f"Matmul ceiling ({args.size}² × {args.size}², TensorFlow, "
                         f"median of {args.repeats})", ["precision", "seconds", "GFLOP/s"])
    for precision in ("fp32", "bf16"):
        table.add(precision, results[precision + "_seconds"], results[precision])
    table.note(f"bf16 / fp32 = {results['bf16'] / results['fp32']:.2f}×")
    table.show()
    return results


if __name__ == "__main__":
    main()
