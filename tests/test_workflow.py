"""The whole study through the real ``snakemake`` command line, on a tiny synthetic config.

One full run (module fixture) is followed by the checks a user relies on: results and figures exist, a
second run has nothing to do, deleting one inference output reruns only what depends on it, the HTML
report embeds the figures, and a training killed mid-way resumes from its last completed epoch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from workflow_utils import SNAKEFILE, run_snakemake, snakemake_executable, tiny_config, write_config

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

PREDICTION = "results/predictions/te1/b1000_q6/{method}.nii.gz"


def job_counts(output: str) -> dict[str, int]:
    assert "Job stats:" in output, f"no job table in the dry run's output:\n{output[-4000:]}"
    table = output[output.index("Job stats:") :]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A completed tiny study (1 train, 1 validation, 1 test subject; 1D + 3D at b1000, q_in 6)."""
    workdir = tmp_path_factory.mktemp("study")
    write_config(workdir, tiny_config())
    result = run_snakemake(workdir, "--cores", "2", timeout=900)
    return workdir, result


def test_full_run_writes_summary_figures_logs_and_benchmarks(study):
    workdir, result = study
    summary = pd.read_csv(workdir / "results" / "summary.tsv", sep="\t")
    assert set(summary["method"]) == {"SH", "SH_original", "1D", "3D"}
    assert (summary["shell"] == 1000).all() and (summary["q_in"] == 6).all()
    assert (summary["n_subjects"] == 1).all()
    assert summary["mae"].notna().all() and (summary["mae"] > 0).all()
    for column in ("mae_sd", "rmse", "psnr", "ssim", "mae_norm", "fa_mae", "md_mae", "pdd_angle_deg", "mae_white_matter"):
        assert column in summary.columns, column
    assert (summary["fa_mae"] > 0).all() and summary["ssim"].between(-1, 1).all()
    figures = ["error_vs_q_in", "example_slices", "loss_curves", "fa_maps"]
    figures += [f"{metric}_vs_q_in" for metric in ("mae_norm", "ssim", "fa_mae", "md_mae", "pdd_angle_deg")]
    for figure in figures:
        png = workdir / "results" / "figures" / f"{figure}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", figure
    for model in ("1D_b1000_q6", "3D_b1000_q6"):
        folder = workdir / "results" / "models" / model
        history = pd.read_csv(folder / "history.tsv", sep="\t")
        assert list(history["epoch"]) == [1, 2]
        assert (folder / "best.weights.h5").stat().st_size > 0
        assert not (folder / "checkpoint").exists(), "the checkpoint is removed after a successful training"
        assert (workdir / "benchmarks" / "train_model" / f"{model}.tsv").is_file()
        assert (workdir / "logs" / "train_model" / f"{model}.log").is_file()
    for rule in ("simulate_subject", "autocrop", "subsample_context", "infer", "predict_sh_baseline", "evaluate", "summarise"):
        assert any((workdir / "logs" / rule).rglob("*.log")), rule
    # the TFRecords and octant parts are temporary
    assert not (workdir / "results" / "tfrecords").exists() or not any((workdir / "results" / "tfrecords").iterdir())
    selection = json.loads((workdir / "results" / "sh_selection" / "b1000_q6" / "SH.json").read_text())
    assert selection["criterion"] == "held-out" and selection["sh_order"] in (0, 2, 4, 6, 8)
    assert selection["error"] == min(row["error"] for row in selection["table"])
    assert "sh_order': " + str(selection["sh_order"]) in (workdir / "logs" / "predict_sh_baseline" / "te1" / "b1000_q6" / "SH.log").read_text()
    metrics = pd.read_csv(workdir / "results" / "metrics" / "te1" / "b1000_q6" / "3D.tsv", sep="\t")
    assert metrics.loc[0, "subject"] == "te1" and metrics.loc[0, "mae"] > 0


def test_second_run_has_nothing_to_do(study):
    workdir, _ = study
    result = run_snakemake(workdir, "--cores", "1")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_report_embeds_the_figures(study):
    workdir, _ = study
    run_snakemake(workdir, "--cores", "1", "--report", "results/report.html")
    html = (workdir / "results" / "report.html").read_text(errors="replace")
    for figure in ("result.png", "error_vs_q_in.png", "example_slices.png", "loss_curves.png", "fa_maps.png",
                   "ssim_vs_q_in.png", "summary.tsv"):
        assert figure in html, figure
    # the front page opens with the result: the figure (inlined), then the verdict per test subject, then
    # the description of the study
    front = html[html.index("var workflow_desc"):]
    figure_at = front.index('src=\\"data:image/png;base64,')
    verdict_at = front.index("holds on")
    description_at = front.index("For every test subject")
    assert figure_at < verdict_at < description_at
    assert "System Message" not in front.split("</script>")[0]


def test_deleting_one_inference_output_reruns_only_its_dependents(study):
    workdir, _ = study
    deleted = PREDICTION.format(method="3D")  # a final target of the run
    target = workdir / deleted
    untouched = [workdir / PREDICTION.format(method=m) for m in ("1D", "SH", "SH_original")]
    untouched += [workdir / "results/models/3D_b1000_q6/best.weights.h5", workdir / "results/metrics/te1/b1000_q6/SH.tsv"]
    before = {path: path.stat().st_mtime_ns for path in untouched}
    target.unlink()

    # predictions are final targets: a plain rerun rebuilds the missing one and what depends on it
    plan = job_counts(run_snakemake(workdir, "--dry-run", "--cores", "1").stdout)
    assert plan == {
        "infer": 1,
        "evaluate": 1,
        "summarise": 1,
        "plot_result": 1,
        "plot_example_slices": 1,
        "plot_fa_maps": 1,
        "plot_metric_vs_q_in": 6,
        "all": 1,
        "total": 13,
    }, plan

    run_snakemake(workdir, "--cores", "2")
    assert target.is_file()
    assert {path: path.stat().st_mtime_ns for path in untouched} == before
    after = run_snakemake(workdir, "--cores", "1")
    assert "Nothing to be done" in after.stdout + after.stderr


def test_killed_training_resumes_from_last_checkpoint(study, tmp_path):
    source, _ = study
    workdir = tmp_path / "resume"
    shutil.copytree(source, workdir, symlinks=True)
    config = tiny_config()
    config["training"]["epochs"] = 40  # long enough to be caught mid-way
    write_config(workdir, config)
    model = "1D_b1000_q6"
    target = f"results/models/{model}/best.weights.h5"
    state_file = workdir / "results" / "models" / model / "checkpoint" / "state.json"

    command = [snakemake_executable(), "--snakefile", str(SNAKEFILE), "--directory", str(workdir), "--cores", "2", target]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    process = subprocess.Popen(
        command, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    killed_after = None
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and process.poll() is None:
            if state_file.is_file():
                state = yaml.safe_load(state_file.read_text())  # JSON is YAML
                if state["epoch"] >= 2:
                    os.killpg(process.pid, signal.SIGKILL)  # a crash: no clean-up at all
                    killed_after = state["epoch"]
                    break
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    assert killed_after is not None, "training finished or never checkpointed before it could be killed"
    assert not (workdir / target).exists()
    committed = yaml.safe_load(state_file.read_text())["epoch"]
    assert committed >= killed_after

    # a hard kill leaves Snakemake's lock behind: the user unlocks, then runs the same command again
    locked = run_snakemake(workdir, "--cores", "2", target, check=False)
    assert locked.returncode != 0 and "--unlock" in locked.stdout + locked.stderr
    run_snakemake(workdir, "--unlock")
    result = run_snakemake(workdir, "--cores", "2", target)
    history = pd.read_csv(workdir / "results" / "models" / model / "history.tsv", sep="\t")
    assert list(history["epoch"]) == list(range(1, 41)), "every epoch exactly once, in order"
    first_run = history[history["run"] == 1]
    second_run = history[history["run"] == 2]
    assert list(first_run["epoch"]) == list(range(1, committed + 1))
    assert list(second_run["epoch"]) == list(range(committed + 1, 41))
    log = (workdir / "logs" / "train_model" / f"{model}.log").read_text()
    assert f"resuming {model} from completed epoch {committed}" in log
    assert (workdir / target).is_file()
    assert "train_model" in result.stdout + result.stderr
