#!/usr/bin/env python
"""Cost of the HCP-size rehearsal per rule, measured, and extrapolated to config/paper.yaml on one GPU.

    python bench/hcp_rehearsal_costs.py --dir RUN_DIR [--du RUN_DIR/du.log] [--tflops 6.3]

RUN_DIR is the folder ``snakemake --configfile config/hcp-rehearsal.yaml --directory RUN_DIR`` ran in. It
reads what the run left; it runs nothing.

Measured (first table), per rule: jobs, wall seconds per job (mean and largest), CPU seconds per job,
largest peak RSS (Snakemake's ``benchmark:`` files, ``max_rss``), and the largest disk use of one
output folder (``--du``: a log of ``du`` samples taken during the run, because ``temp()`` outputs are
deleted; lines ``<epoch> <KiB> <path>``).

Extrapolated (second table) to config/paper.yaml's 25 subjects (16 train, 4 validation, 5 test) and 11
models:

- CPU rules: jobs in the paper's DAG × the measured seconds per job of a *whole-brain* job (the test
  subject of the rehearsal is a slab, so the validation subject's jobs are used where a rule ran on both;
  the example-subject figures read the test subject and count as slab jobs). ``--seconds cpu`` (the
  default) takes the jobs' CPU seconds: core-hours, what a job costs on cores of its own, since wall
  seconds on a shared machine include the time spent waiting for a core. ``--seconds wall`` takes wall
  seconds. Serial: one job after another.
- ``train_model`` and ``infer`` on one GPU: FLOPs from ``flops.py`` at ``--tflops`` sustained TFLOP/s.
  Training: 100 epochs × (16 subjects × patches × direction sets per patch) examples × 3 × the forward
  FLOPs of one example (backward ≈ 2 × forward), plus the validation forward passes (4 subjects);
  inference: 5 test subjects × 13 predictions × patches × forward FLOPs with q_out = 90 − q_in. The
  default 6.3 TFLOP/s is what the original README's "~2 minutes to infer 80 volumes on an NVIDIA RTX 3080"
  implies for a brain of ``--patches`` patches (10 → 80 directions at b = 1000, 3D).
"""

from __future__ import annotations

import argparse
import csv
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import flops  # noqa: E402

#: The paper's study (config/paper.yaml).
PAPER = {"train": 16, "validation": 4, "test": 5, "epochs": 100, "batch": 4, "q_out": 10, "directions": 90}
PAPER_SETTINGS = [(1000, 6), (1000, 10), (1000, 30), (2000, 10), (3000, 10)]
COMBINED_SHELLS, COMBINED_Q_IN = (1000, 2000, 3000), 10
#: Output folders written by each rule (for the disk column).
DISK_FOLDERS = {
    "simulate_subject": "resources/synthetic/",
    "autocrop": "results/preprocessed/",
    "split_octants": "results/octants/",
    "make_tfrecords": "results/tfrecords/",
    "subsample_context": "results/context/",
    "infer": "results/predictions/",
    "train_model": "results/models/",
}


def paper_jobs() -> dict[str, int]:
    """Jobs of each rule in config/paper.yaml's DAG (SH and SH_original; 3D_combined at the three q_in 10 settings)."""
    subjects = PAPER["train"] + PAPER["validation"] + PAPER["test"]
    settings = len(PAPER_SETTINGS)
    rcnn_predictions = 2 * settings + len(COMBINED_SHELLS)
    methods = rcnn_predictions + 2 * settings
    return {
        "download_hcp_subject": subjects,
        "autocrop": subjects,
        "split_octants": PAPER["train"] + PAPER["validation"],
        "make_tfrecords": PAPER["train"] + PAPER["validation"],
        "subsample_context": (PAPER["test"] + PAPER["validation"]) * settings,
        "select_sh_baseline": settings,
        "predict_sh_baseline": PAPER["test"] * 2 * settings,
        "infer": PAPER["test"] * rcnn_predictions,
        "evaluate": PAPER["test"] * methods,
        "train_model": 2 * settings + 1,
        "summarise": 1,
        "plot_metric_vs_q_in": 6,
        "plot_example_slices": 1,
        "plot_fa_maps": 1,
        "plot_loss_curves": 1,
    }


def read_jobs(root: Path) -> dict[str, list[dict]]:
    """{rule: [{"job": wildcards path, "s", "cpu_time", "max_rss"}]} from ``root/benchmarks``."""
    rules: dict[str, list[dict]] = defaultdict(list)
    folder = root / "benchmarks"
    for path in sorted(folder.rglob("*.tsv")):
        parts = path.relative_to(folder).parts
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                rules[parts[0]].append({
                    "job": "/".join(parts[1:])[: -len(".tsv")],
                    "s": _number(row.get("s")),
                    "cpu_time": _number(row.get("cpu_time")),
                    "max_rss": _number(row.get("max_rss")),
                })
    return dict(rules)


def _number(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def read_disk(du_log: Path | None) -> dict[str, float]:
    """Largest size in GB seen for each sampled folder."""
    largest: dict[str, float] = {}
    if du_log is None or not du_log.exists():
        return largest
    for line in du_log.read_text().splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[1].isdigit():
            largest[fields[2]] = max(largest.get(fields[2], 0.0), int(fields[1]) * 1024 / 1e9)
    return largest


def disk_for(rule: str, disk: dict[str, float]) -> float | None:
    prefix = DISK_FOLDERS.get(rule)
    sizes = [size for folder, size in disk.items() if prefix and folder.startswith(prefix)]
    return max(sizes) if sizes else None


#: Rules whose one job draws the report's example subject, a test subject: on the slab in the rehearsal.
EXAMPLE_SUBJECT_RULES = {"plot_fa_maps", "plot_example_slices"}


def whole_brain_jobs(rule: str, jobs: list[dict], slab_subjects: set[str]) -> list[dict]:
    """The rule's jobs on whole brains (not on a slab-cut test subject); empty if none finished."""
    if rule in EXAMPLE_SUBJECT_RULES and slab_subjects:
        return []
    return [job for job in jobs if not any(re.search(rf"(^|/){s}(/|$)", job["job"]) for s in slab_subjects)]


def training_flops(model_dim: int, shells, q_in: int, patches: int) -> float:
    sets = len(shells) * (PAPER["directions"] // (q_in + PAPER["q_out"]))
    forward = flops.model_flops(model_dim, 1, q_in, PAPER["q_out"])
    per_epoch = PAPER["train"] * patches * sets * 3 * forward + PAPER["validation"] * patches * sets * forward
    return PAPER["epochs"] * per_epoch


def inference_flops(patches: int) -> float:
    total = 0.0
    for shell, q_in in PAPER_SETTINGS:
        q_out = PAPER["directions"] - q_in
        dims = [1, 3] + ([3] if q_in == COMBINED_Q_IN else [])
        total += sum(flops.model_flops(dim, patches, q_in, q_out) for dim in dims)
    return PAPER["test"] * total


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--dir", required=True, help="folder the rehearsal ran in (holding benchmarks/)")
    parser.add_argument("--du", default=None, help="du sample log (default: DIR/du.log)")
    parser.add_argument("--slab-subjects", nargs="*", default=["hcp05"],
                        help="test subjects cut to a slab (their jobs are not whole-brain costs)")
    parser.add_argument("--patches", type=int, default=1159,
                        help="10³ patches of one brain (bench_hcp_inference.py: 1159 for the rehearsal's)")
    parser.add_argument("--skip", nargs="*", default=[],
                        help="jobs to leave out, as RULE/WILDCARDS (e.g. autocrop/hcp01: ran with older code)")
    parser.add_argument("--seconds", choices=["cpu", "wall"], default="cpu",
                        help="per-job time of the CPU rules' extrapolation: CPU seconds (core-hours; default) or wall seconds")
    parser.add_argument("--tflops", type=float, default=None,
                        help="sustained GPU TFLOP/s (default: what the original README's RTX 3080 figure implies)")
    args = parser.parse_args(argv)
    root = Path(args.dir)
    jobs = read_jobs(root)
    skipped = set(args.skip)
    jobs = {rule: kept for rule, entries in jobs.items()
            if (kept := [e for e in entries if f"{rule}/{e['job']}" not in skipped])}
    disk = read_disk(Path(args.du) if args.du else root / "du.log")
    implied = flops.model_flops(3, args.patches, 10, 80) / 120.0 / 1e12
    tflops = args.tflops or implied

    measured = common.Table(
        "hcp_rehearsal_rules",
        f"HCP-size rehearsal, per rule (Snakemake benchmarks under {root})",
        ["rule", "jobs", "s/job mean", "s/job max", "CPU s/job", "max RSS GB", "disk GB (largest output folder)"],
    )
    for rule, entries in sorted(jobs.items(), key=lambda item: -sum(e["s"] for e in item[1])):
        seconds = [e["s"] for e in entries]
        rss = [e["max_rss"] for e in entries if e["max_rss"] == e["max_rss"]]  # "-": not measured
        measured.add(rule, len(entries), statistics.mean(seconds), max(seconds),
                     statistics.mean(e["cpu_time"] for e in entries), max(rss) / 1000 if rss else None,
                     disk_for(rule, disk))
    measured.note("s: wall seconds of a job; CPU s: its user + system time; max RSS: Snakemake's max_rss (MB / 1000). "
                  "Measured on a shared 2-core machine at nice 19: wall seconds include waiting for the CPU.")
    measured.show()

    paper = common.Table(
        "hcp_rehearsal_paper",
        "config/paper.yaml extrapolated: 25 subjects, 11 models, one GPU for train_model and infer",
        ["rule", "jobs", "per job", "hours", "how"],
    )
    time_key, time_name = {"cpu": ("cpu_time", "CPU s"), "wall": ("s", "wall s")}[args.seconds]
    total = 0.0
    for rule, count in paper_jobs().items():
        if rule == "train_model":
            models = [(dim, (shell,), q_in) for shell, q_in in PAPER_SETTINGS for dim in (1, 3)]
            models.append((3, COMBINED_SHELLS, COMBINED_Q_IN))
            seconds = sum(training_flops(dim, shells, q_in, args.patches) for dim, shells, q_in in models) / (tflops * 1e12)
            paper.add(rule, count, f"{seconds / count / 3600:.1f} h", seconds / 3600,
                      f"flops.py × 3 (backward) × 100 epochs at {tflops:.1f} TFLOP/s")
        elif rule == "infer":
            seconds = inference_flops(args.patches) / (tflops * 1e12)
            paper.add(rule, count, f"{seconds / count:.0f} s", seconds / 3600, f"flops.py at {tflops:.1f} TFLOP/s")
        elif rule in jobs and whole_brain_jobs(rule, jobs[rule], set(args.slab_subjects)):
            entries = whole_brain_jobs(rule, jobs[rule], set(args.slab_subjects))
            per_job = statistics.mean(e[time_key] for e in entries)
            seconds = per_job * count
            paper.add(rule, count, f"{per_job:.0f} s", seconds / 3600, f"{time_name} measured here × {count} jobs")
        else:
            why = "only on the slab here" if rule in jobs else "not measured here"
            paper.add(rule, count, "—", None, f"{why}: not in the total")
            continue
        total += seconds
    paper.add("total", sum(paper_jobs().values()), "", total / 3600, "serial")
    paper.note(f"GPU throughput: {tflops:.1f} TFLOP/s sustained ({implied:.1f} TFLOP/s is implied by the original "
               f"README's ~2 min for 80 volumes on an RTX 3080 for a brain of {args.patches} patches). Patches per brain: "
               f"{args.patches} (the rehearsal's synthetic brain; the paper's HCP brains may differ). CPU rules: "
               f"mean {time_name} per whole-brain job measured here, run one after another.")
    paper.show()
    return measured, paper


if __name__ == "__main__":
    main()
