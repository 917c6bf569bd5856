#!/usr/bin/env python
"""The GPU check: training speed, whole-brain inference and both studies end to end, in one table.

    python bench/gpu_suite.py [--skip training inference studies] [--minutes 8] [--smoke]

Three parts, each case in a fresh process that sees one GPU (``CUDA_VISIBLE_DEVICES``, default 0):

1. **training**: examples/s of one training step of the full-width (width 1.0) 1D and 3D models, built
   by :func:`dmri_rcnn.training.build_model` as the workflow builds them (``mae_in_mask``, cosine Adam;
   q_in 6 → q_out 10), in fp32, bf16 and fp16 (dynamic loss scaling), with and without XLA, at batch
   8, 16, 32 and 64: the median of ``--steps`` steps after two warm-up steps (the first traces, and with
   XLA compiles, the step). One process per (model, precision); a batch that does not fit is a dash.
2. **inference**: one whole brain at HCP size (145×174×145, the rehearsal's brain mask, 6 context →
   84 target directions) through :func:`dmri_rcnn.core.inference.infer`, full-width 1D and 3D with
   random weights, fp32 and bf16, batch ``--infer-batch`` with all 84 targets decoded at once: seconds
   (after a warm-up on a small block) and the peak GPU memory
   (``tf.config.experimental.get_memory_info``).
3. **studies**: ``config/config.yaml`` (the default) and ``config/cpu-study.yaml`` end to end in a
   scratch folder, ``snakemake --cores <all> --resources gpu=1`` as README "On a GPU workstation" says:
   wall time and the mean MAE per method over the test subjects, lowest first (whether the paper's
   ordering 3D < 1D < SH shows).

The parts share ``--minutes`` (default 8): training 2.5/8 of it, inference 1.5/8, studies 4/8. Each case
gets an equal share of its part's time left (what one leaves over passes on); a case past its share is
stopped (its finished rows stay) and one with no time left is named in a note. A slower GPU needs a
larger ``--minutes`` for the whole table.

``--smoke`` runs the same code on the CPU at tiny sizes (width 0.05): the 1D model trained at batch 2 in
each precision once (fp32 with XLA), a 20×20×20 brain with 12 targets, and a tiny study (3 subjects of
16×16×10, two training steps per model); one process per model for training and one for inference.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

HCP_SHAPE = (145, 174, 145)
Q_IN, Q_OUT_TRAIN, Q_OUT_INFER = 6, 10, 84
PRECISIONS = ("fp32", "bf16", "fp16")
STUDIES = {"default": None, "cpu-study": common.REPO_ROOT / "config" / "cpu-study.yaml"}
#: Share of ``--minutes`` for each part.
PART_SHARES = {"training": 2.5 / 8, "inference": 1.5 / 8, "studies": 4 / 8}
COLUMNS = ["part", "case", "precision", "XLA", "batch", "examples/s", "seconds", "peak GPU GiB", "MAE by method"]


# ------------------------------------------------------------------------------------------ children


def _gpu_peak_gib(reset: bool = False) -> float | None:
    """Peak memory TensorFlow has held on GPU:0 since the last reset, GiB (None without a GPU)."""
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        return None
    if reset:
        tf.config.experimental.reset_memory_stats("GPU:0")
        return None
    return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**30


def training_child(model_dim, width, cases, batches, steps) -> None:
    """Emit ``{"<precision> <jit> <batch>": seconds per step}`` for each (precision, jit) of ``cases`` and batch.

    One line per case, so a child stopped for time keeps the rows it finished.
    """
    from bench_training_config import random_masked_batch
    from dmri_rcnn.core.precision import configure_devices
    from dmri_rcnn.training import build_model

    configure_devices()
    for precision, jit in cases:
        model = build_model(model_dim, width=width, learning_rate=1e-3, loss="mae_in_mask", lr_schedule="cosine",
                            total_steps=1000, min_filters=1, precision=precision, jit_compile=jit)
        for batch in batches:  # each batch size traces (and with XLA compiles) the step anew: the warm-up
            key = f"{precision} {jit} {batch}"
            inputs, target = random_masked_batch(batch, Q_IN, Q_OUT_TRAIN)
            inputs = list(inputs)
            try:
                seconds, _ = common.median_time(lambda: model.train_on_batch(inputs, target), repeats=steps, warmup=2)
            except Exception as err:  # noqa: BLE001 (out of memory, an XLA failure: a dash, and on)
                print(f"{model_dim}D {key}: {type(err).__name__}: {str(err).splitlines()[0][:200]}",
                      file=sys.stderr, flush=True)
                continue
            common.emit(**{key: seconds})


def inference_child(model_dims, width, precisions, mask_path, q_out, batch) -> None:
    """Emit ``{"<dim> <precision>": [seconds, patches, peak GiB]}`` for one whole brain (``mask_path``, .npy) per case."""
    import numpy as np

    import flops
    from dmri_rcnn.core.inference import infer
    from dmri_rcnn.core.model import get_autoencoder
    from dmri_rcnn.core.precision import configure_devices

    configure_devices()
    rng = np.random.default_rng(0)

    def unit(n):
        v = rng.normal(size=(3, n))
        return v / np.linalg.norm(v, axis=0)

    mask = np.load(mask_path)
    dmri = (rng.uniform(500, 1500, size=(*mask.shape, Q_IN)) * (mask > 0)[..., None]).astype(np.float32)
    bvec_in, bvec_out = unit(Q_IN), unit(q_out)
    options = dict(shell=1000, batch_size=batch, q_out_chunk=q_out, progress=False)
    for model_dim in model_dims:
        for precision in precisions:
            model = get_autoencoder(model_dim, None, width, precision=precision)
            infer(dmri[:20, :20, :20], bvec_in, bvec_out, np.ones((20, 20, 20), np.uint8), model, **options)
            _gpu_peak_gib(reset=True)
            start = time.perf_counter()
            infer(dmri, bvec_in, bvec_out, mask, model, **options)
            seconds = time.perf_counter() - start
            common.emit(**{f"{model_dim} {precision}": [seconds, flops.patches_touching(mask), _gpu_peak_gib()]})


# ------------------------------------------------------------------------------------------ parent


class Clock:
    """Time left to each part of the suite."""

    def __init__(self, minutes: float):
        self.minutes = minutes
        self.deadline = None

    def start(self, part: str) -> None:
        self.deadline = time.monotonic() + 60 * self.minutes * PART_SHARES[part]

    def left(self) -> float:
        return self.deadline - time.monotonic()


def child_env(smoke: bool) -> dict[str, str]:
    """Ours; with one GPU visible (the CPU only with ``--smoke``)."""
    return {**common.our_env(), "CUDA_VISIBLE_DEVICES": "" if smoke else os.environ.get("CUDA_VISIBLE_DEVICES", "0")}


def run_stoppable(command: list[str], env: dict, cwd: Path, timeout: float, log: Path) -> tuple[int, float]:
    """Run ``command`` in its own process group, output to ``log``; (exit status, wall seconds).

    Past ``timeout`` the whole group is stopped (SIGTERM, which snakemake answers by cancelling its jobs;
    SIGKILL 30 s later), so nothing it started keeps the GPU busy for the next case.
    """
    start = time.perf_counter()
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=cwd, env={**os.environ, **common.CHILD_ENV, **env}, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            process.wait(timeout=max(timeout, 1))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    return process.returncode, time.perf_counter() - start


def run_case(call: str, label: str, env: dict, clock: Clock, skipped: list[str], cases_left: int = 1) -> dict:
    """Run ``gpu_suite.<call>`` in a fresh process, with its share of the part's time left (``cases_left``
    cases to go); what it reported (``common.emit``), even a stopped one."""
    if clock.left() < 5:
        skipped.append(label)
        return {}
    script = f"import sys; sys.path.insert(0, {str(common.BENCH_DIR)!r}); import gpu_suite; gpu_suite.{call}"
    with tempfile.TemporaryDirectory(prefix="gpu_suite_") as folder:
        log = Path(folder) / "child.log"
        returncode, _ = run_stoppable([common.our_python(), "-c", script], env, Path(folder),
                                      clock.left() / cases_left, log)
        lines = log.read_text(errors="replace").splitlines()
    report = {}
    for line in lines:
        if line.startswith(common.JSON_PREFIX):
            report.update(json.loads(line[len(common.JSON_PREFIX):]))
        elif line[:3] in ("1D ", "3D "):  # a case that failed inside the child
            print(line, file=sys.stderr)
    if returncode != 0:
        print(f"{label} stopped ({returncode}): {(lines or ['no output'])[-1]}", file=sys.stderr)
    return report


def training_cases(smoke: bool) -> list[list]:
    """``[[precision, jit], ...]`` per child: one child per precision; the smoke: one child, each precision once."""
    if smoke:
        return [[["fp32", True], ["bf16", False], ["fp16", False]]]  # XLA compiles bf16 for minutes on a CPU
    return [[[precision, False], [precision, True]] for precision in PRECISIONS]


def training_rows(args, table, env, clock, skipped):
    clock.start("training")
    children = [(dim, cases) for dim in args.training_dims for cases in training_cases(args.smoke)]
    for index, (dim, cases) in enumerate(children):
        label = f"training {dim}D " + ", ".join(f"{p} XLA {'on' if jit else 'off'}" for p, jit in cases)
        report = run_case(f"training_child({dim}, {args.width}, {cases!r}, {args.batches}, {args.steps})",
                          label, env, clock, skipped, cases_left=len(children) - index)
        for precision, jit in cases:
            for batch in args.batches:
                seconds = report.get(f"{precision} {jit} {batch}")
                table.add("training", f"{dim}D width {args.width:g}", precision, "on" if jit else "off", batch,
                          batch / seconds if seconds else None, seconds, None, "")


def inference_rows(args, table, env, clock, skipped):
    import numpy as np

    from dmri_rcnn.simulation import synthetic_anatomy

    clock.start("inference")
    shape, q_out = (args.infer_shape, args.infer_targets)
    groups = [(args.dims, ("fp32", "bf16"))] if args.smoke else [((d,), (p,)) for d in args.dims for p in ("fp32", "bf16")]
    # the brain of bench_hcp_inference (the rehearsal's), made once here rather than in every case
    mask_path = Path(tempfile.mkdtemp(prefix="gpu_suite_")) / "mask.npy"
    np.save(mask_path, synthetic_anatomy(tuple(shape), 5, brain_scale=0.8)["mask"].astype(np.uint8))
    for index, (dims, precisions) in enumerate(groups):
        call = (f"inference_child({list(dims)}, {args.width}, {list(precisions)!r}, {str(mask_path)!r}, {q_out}, "
                f"{args.infer_batch})")
        label = f"inference {'/'.join(map(str, dims))}D {'/'.join(precisions)}"
        report = run_case(call, label, env, clock, skipped, cases_left=len(groups) - index)
        for dim in dims:
            for precision in precisions:
                seconds, patches, peak = report.get(f"{dim} {precision}", [None, None, None])
                table.add("inference", f"{dim}D width {args.width:g}, {'×'.join(map(str, shape))}, {Q_IN} → {q_out}",
                          precision, "off", args.infer_batch, patches / seconds if seconds else None, seconds, peak, "")
    shutil.rmtree(mask_path.parent, ignore_errors=True)


def mae_by_method(summary_path: Path) -> dict[tuple[int, int], str]:
    """``{(shell, q_in): "3D 166.8 < 1D 194.8 < SH 203.5"}`` from a study's results/summary.tsv."""
    import pandas as pd

    summary = pd.read_csv(summary_path, sep="\t")
    ordered = {}
    for (shell, q_in), rows in summary.groupby(["shell", "q_in"]):
        rows = rows.sort_values("mae")
        ordered[(int(shell), int(q_in))] = " < ".join(f"{m} {v:.1f}" for m, v in zip(rows["method"], rows["mae"]))
    return ordered


def smoke_study_config() -> dict:
    """The default config shrunk to seconds of work: 3 subjects of 16×16×10, 1D + 3D at width 0.05, 2 steps."""
    import yaml

    config = yaml.safe_load((common.REPO_ROOT / "config" / "config.yaml").read_text())
    config["subjects"].update(train=["tr1"], validation=["va1"], test=["te1"])
    config["synthetic"].update(shape=[16, 16, 10], n_directions=30, n_b0=2, write_noiseless=False)
    config["evaluation"] = [{"shell": 1000, "q_in": [6]}]
    config["models"].update(dims=[1, 3], width=0.05, min_filters=1)
    config["models"]["combined"]["enabled"] = False
    config["training"].update(epochs=1, steps_per_epoch=2, validation_steps=1, batch_size=2, shuffle_buffer=64)
    config["inference"]["batch_size"] = 8
    return config


def study_rows(args, table, env, clock, skipped):
    import yaml

    clock.start("studies")
    studies = {"tiny": None} if args.smoke else {name: STUDIES[name] for name in args.studies}
    for index, (name, layered) in enumerate(studies.items()):
        if clock.left() < 30:
            skipped.append(f"study {name}")
            continue
        workdir = Path(tempfile.mkdtemp(prefix=f"gpu_suite_{name}_"))
        try:
            (workdir / "config").mkdir()
            config = smoke_study_config() if args.smoke else yaml.safe_load((common.REPO_ROOT / "config" / "config.yaml").read_text())
            (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
            snakemake = str(Path(common.our_python()).with_name("snakemake"))
            command = [snakemake, "--snakefile", str(common.REPO_ROOT / "workflow" / "Snakefile"), "--directory", str(workdir),
                       "--cores", str(args.cores), "results/summary.tsv"]
            training = dict(config["training"])
            if layered is not None:  # on top of the default, as `snakemake --configfile config/cpu-study.yaml`
                command += ["--configfile", str(layered)]
                training.update(yaml.safe_load(layered.read_text()).get("training") or {})
            command += ["--resources", "gpu=1"]
            returncode, seconds = run_stoppable(command, env, workdir, clock.left() / (len(studies) - index),
                                                workdir / "snakemake.log")
            summary = workdir / "results" / "summary.tsv"
            if returncode != 0 or not summary.is_file():
                print(f"study {name} stopped ({returncode}) after {seconds:.0f} s; its log: {workdir}/snakemake.log"
                      + ("" if args.keep else " (removed: --keep keeps it)"), file=sys.stderr)
                table.add("studies", name, "", "", "", None, seconds, None, "not finished")
                continue
            for (shell, q_in), order in mae_by_method(summary).items():
                table.add("studies", f"{name}: b{shell} q_in {q_in}", training.get("precision", "fp32"), "",
                          training["batch_size"], None, seconds, None, order)
        finally:
            if args.keep:
                print(f"study {name} kept in {workdir}", file=sys.stderr)
            else:
                shutil.rmtree(workdir, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (for the tests)")
    parser.add_argument("--skip", nargs="*", default=[], choices=list(PART_SHARES), help="parts to leave out")
    parser.add_argument("--minutes", type=float, default=None, help="time for all parts (default 8; 6 with --smoke)")
    parser.add_argument("--dims", type=int, nargs="+", choices=[1, 3], default=[1, 3])
    parser.add_argument("--batches", type=int, nargs="+", default=None, help="training batches (default 8 16 32 64)")
    parser.add_argument("--steps", type=int, default=None, help="timed training steps per case (default 10)")
    parser.add_argument("--infer-batch", type=int, default=16, help="patches per inference call")
    parser.add_argument("--studies", nargs="+", choices=list(STUDIES), default=list(STUDIES))
    parser.add_argument("--cores", type=int, default=common.usable_cores(), help="snakemake --cores for the studies")
    parser.add_argument("--keep", action="store_true", help="keep the studies' scratch folders")
    args = parser.parse_args(argv)
    args.width = 0.05 if args.smoke else 1.0
    # the smoke trains the 1D model only: the 3D one runs the same code, slower
    args.training_dims = [1] if args.smoke and args.dims == [1, 3] else args.dims
    args.batches = args.batches or ([2] if args.smoke else [8, 16, 32, 64])
    args.steps = args.steps or (1 if args.smoke else 10)
    args.minutes = args.minutes or (6 if args.smoke else 8)
    args.infer_shape = (20, 20, 20) if args.smoke else HCP_SHAPE
    args.infer_targets = 12 if args.smoke else Q_OUT_INFER
    if args.smoke:
        args.infer_batch = 4

    common.print_machine_facts()
    env = child_env(args.smoke)
    clock = Clock(args.minutes)
    name = "gpu_suite_smoke" if args.smoke else "gpu_suite"
    table = common.Table(name, "GPU check: training speed, whole-brain inference, the studies end to end"
                         + (" (smoke: tiny sizes on the CPU)" if args.smoke else ""), COLUMNS)
    skipped: list[str] = []
    started = time.monotonic()
    for part, rows in (("training", training_rows), ("inference", inference_rows), ("studies", study_rows)):
        if part not in args.skip:
            rows(args, table, env, clock, skipped)
    table.note(f"training: examples/s of one step (median of {args.steps} after 2 warm-up steps), q_in {Q_IN} → "
               f"q_out {Q_OUT_TRAIN}, mae_in_mask; a dash: did not fit or did not finish. inference: examples/s = "
               "patches/s of one whole brain after a warm-up; peak GPU GiB from tf.config.experimental.get_memory_info. "
               "studies: seconds = snakemake wall time with --resources gpu=1; MAE (mean over test subjects) "
               "by method, lowest first.")
    if skipped:
        table.note("Left out for lack of time: " + ", ".join(skipped) + ".")
    table.note(f"Whole suite: {time.monotonic() - started:.0f} s.")
    table.show()
    return table


if __name__ == "__main__":
    main()
