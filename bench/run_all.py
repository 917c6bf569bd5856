#!/usr/bin/env python
"""Run every benchmark one after another and print their tables (also written to bench/results/).

    python bench/run_all.py            # the full set (tens of minutes on 2 cores)
    python bench/run_all.py --quick    # smaller cases, one run each (~6 min on a quiet 2-core machine, more when busy)
    python bench/run_all.py --full     # adds the HCP-size 145×174×145 inference (hours on CPU) and evaluation

Needs the project environment (``make install``) and, for the comparison columns, the original
package's environment (``make original-env``; without it those columns stay empty).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_evaluate_memory  # noqa: E402
import bench_inference  # noqa: E402
import bench_matmul_ceiling  # noqa: E402
import bench_tfrecord  # noqa: E402
import bench_training_config  # noqa: E402
import bench_training_input  # noqa: E402
import bench_training_step  # noqa: E402
import bench_workflow  # noqa: E402
import common  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--quick", action="store_true", help="small cases, single runs")
    parser.add_argument("--full", action="store_true", help="also the HCP-size inference case; evaluation at HCP size")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["ceiling", "tfrecord", "training", "training-config", "input", "inference", "evaluation",
                                 "workflow"])
    args = parser.parse_args(argv)
    start = time.perf_counter()
    common.print_machine_facts()
    quick = args.quick
    ceilings = None
    if "ceiling" not in args.skip:
        ceilings = bench_matmul_ceiling.main(["--repeats", "3" if quick else "5"])
    if "tfrecord" not in args.skip:
        bench_tfrecord.main(["--repeats", "2", "--shape", "36", "44", "36", "60"] if quick else [])
    step_seconds = None
    if "training" not in args.skip:
        results = bench_training_step.main(["--steps", "2" if quick else "5"])
        ours = results.get(("ours", "fp32"))
        step_seconds = None if ours is None else ours.report["seconds"]
    if "training-config" not in args.skip:
        # quick: one thread, no XLA (its cases take minutes each on a CPU)
        bench_training_config.main(["--steps", "3", "--threads", "1", "--jit", "false"] if quick else [])
    if "input" not in args.skip:
        input_args = ["--epochs", "1", "--subjects", "1"] if quick else []
        if step_seconds is not None:
            input_args += ["--step-seconds", f"{step_seconds:.4f}"]
        bench_training_input.main(input_args)
    if "inference" not in args.skip:
        inference_args = []
        if quick:
            inference_args += ["--cases", "cube20", "--repeats", "1"]
        if args.full:
            inference_args.append("--full")
        bench_inference.main(inference_args, ceilings=ceilings)
    if "evaluation" not in args.skip:
        # HCP size with --full (~15 min on 2 cores with the input simulation), 1/8 of it by default
        shape = [] if args.full else ["--shape", *(["40", "48", "40"] if quick else ["72", "87", "72"])]
        bench_evaluate_memory.main(shape)
    if "workflow" not in args.skip:
        bench_workflow.main([])
    print(f"All benchmarks done in {time.perf_counter() - start:.0f} s; tables in {common.RESULTS_DIR}.")


if __name__ == "__main__":
    main()
