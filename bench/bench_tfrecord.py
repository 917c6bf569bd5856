#!/usr/bin/env python
"""TFRecord writing speed: MB/s of ``save_tfrecord_data``, ours vs the original, on the same arrays.

    python bench/bench_tfrecord.py [--shape 72 87 72 60] [--repeats 3]

The default shape is one octant of an HCP-size volume (145×174×145 halved) with 60 volumes, float32 —
what the README's training example writes per file. Arrays are generated from a fixed seed in each
process, so both implementations write identical data; MB/s counts the float32 dMRI bytes (the bulk
of the file). Each implementation runs in a fresh process; median of ``--repeats`` after a warm-up.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


def make_arrays(shape):
    import numpy as np

    rng = np.random.default_rng(0)
    i, j, k, q = shape
    dmri = rng.uniform(0, 4000, size=shape).astype(np.float32)
    bvecs = rng.normal(size=(3, q)).astype(np.float32)
    bvecs /= np.linalg.norm(bvecs, axis=0)
    bvals = np.full(q, 1000, np.float32)
    mask = (rng.uniform(size=(i, j, k)) > 0.3).astype(np.int8)
    return dmri, bvecs, bvals, mask


def child(implementation: str, shape, repeats: int, folder: str) -> None:
    import os

    if implementation == "ours":
        from dmri_rcnn.core.processing import save_tfrecord_data
    else:
        from dmri_rcnn.core.processing import save_tfrecord_data  # the original's, in its own environment
    arrays = make_arrays(shape)
    path = os.path.join(folder, f"{implementation}.tfrecord")
    median, times = common.median_time(lambda: save_tfrecord_data(*arrays, path), repeats=repeats, warmup=1)
    common.emit(seconds=median, times=times, file_bytes=os.path.getsize(path), dmri_bytes=arrays[0].nbytes)


def run_one(implementation: str, shape, repeats: int, folder: str):
    python = common.our_python() if implementation == "ours" else common.original_python()
    env = common.our_env() if implementation == "ours" else common.original_env()
    script = (
        f"import sys; sys.path.insert(0, {str(common.BENCH_DIR)!r}); import bench_tfrecord as b; "
        f"b.child({implementation!r}, {tuple(shape)!r}, {repeats}, {folder!r})"
    )
    return common.run_python(python, script, env=env).check(f"save_tfrecord_data ({implementation})")


def main(argv=None):
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--shape", type=int, nargs=4, default=[72, 87, 72, 60], metavar=("I", "J", "K", "Q"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    common.print_machine_facts()
    have_original = common.require_original() is not None
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_tfrecord_") as folder:
        for implementation in ["ours"] + (["original"] if have_original else []):
            results[implementation] = run_one(implementation, args.shape, args.repeats, folder)
    shape = "×".join(map(str, args.shape))
    table = common.Table(
        "tfrecord", f"save_tfrecord_data, {shape} float32 (median of {args.repeats})",
        ["implementation", "seconds", "dMRI MB/s", "file MB", "peak RSS GiB"],
    )
    for name, result in results.items():
        rep = result.report
        table.add(name, rep["seconds"], rep["dmri_bytes"] / 1e6 / rep["seconds"], rep["file_bytes"] / 1e6,
                  result.peak_rss_gib)
    if "original" in results:
        speed = results["original"].report["seconds"] / results["ours"].report["seconds"]
        table.note(f"ours is {speed:.2f}× the original's speed (time original / time ours).")
    table.show()
    return results


if __name__ == "__main__":
    main()
