"""The SLURM profile against a real one-node cluster on 127.0.0.1 (tests/slurm_cluster.py)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import slurm_cluster
from slurm_cluster import LocalSlurm, SlurmUnavailable, slurm_fixture, submitted_job_ids

REPO_ROOT = Path(__file__).resolve().parents[1]
SLURM_PROFILE = REPO_ROOT / "workflow" / "profiles" / "slurm"
TEST_PROFILE = REPO_ROOT / "tests" / "profiles" / "slurm-local"
STANDARD_RESOURCES = {"mem_mb", "runtime", "cpus_per_task", "gpu", "gpu_model", "tmpdir", "disk_mb"}

local_slurm = pytest.fixture(scope="session")(slurm_fixture)


def snakemake_exe() -> str:
    return str(Path(sys.executable).with_name("snakemake"))


def test_slurm_profile_uses_standard_resources_and_gpus_for_training_and_inference():
    profile = yaml.safe_load((SLURM_PROFILE / "profile.yaml").read_text())
    assert profile["executor"] == "slurm"
    for rule, resources in profile["set-resources"].items():
        unknown = set(resources) - STANDARD_RESOURCES
        assert not unknown, f"{rule} uses non-standard resource names {unknown}"
    for rule in ("train_model", "infer"):
        assert profile["set-resources"][rule]["gpu"] == 1
    # Site keys stay commented placeholders: nothing site-specific is committed.
    text = (SLURM_PROFILE / "profile.yaml").read_text()
    assert "# slurm_account:" in text and "# slurm_partition:" in text
    assert "slurm_account" not in str(profile) and "slurm_partition" not in str(profile)


def test_missing_slurm_without_root_says_why(monkeypatch):
    monkeypatch.setattr(slurm_cluster.shutil, "which", lambda name: None)
    monkeypatch.setattr(slurm_cluster.os, "geteuid", lambda: 1000)
    with pytest.raises(SlurmUnavailable, match=r"installing slurm-wlm munge with apt-get needs root .*uid 1000"):
        slurm_cluster.ensure_slurm_installed()


def test_a_daemon_that_fails_is_reported_with_its_own_error_and_nothing_is_left_running(
    local_slurm: LocalSlurm, tmp_path, monkeypatch
):
    # (Uses the session cluster only to know SLURM is installed and startable here.)
    write_config = slurm_cluster._write_config

    def write_broken_config(cluster, *args):
        write_config(cluster, *args)
        (cluster.conf_dir / "cgroup.conf").write_text("CgroupPlugin=no_such_plugin\n")

    started = []
    spawn = slurm_cluster._spawn

    def spawn_and_record(cluster, name, cmd):
        spawn(cluster, name, cmd)
        started.append(cluster.pids[name])

    monkeypatch.setattr(slurm_cluster, "_write_config", write_broken_config)
    monkeypatch.setattr(slurm_cluster, "_spawn", spawn_and_record)
    with pytest.raises(SlurmUnavailable) as failure:
        slurm_cluster.start(tmp_path / "broken", timeout_s=20)
    message = str(failure.value)
    assert "slurmd (pid" in message and "exited while waiting for sinfo" in message
    assert "slurmd initialization failed" in message
    assert len(started) == 3
    for pid in started:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.workflow
def test_two_rule_workflow_runs_as_slurm_jobs_through_the_profile(local_slurm: LocalSlurm, tmp_path):
    shutil.copy(REPO_ROOT / "tests" / "data" / "slurm_two_rules" / "Snakefile", tmp_path / "Snakefile")
    proc = subprocess.run(
        [
            snakemake_exe(),
            "--profile",
            str(SLURM_PROFILE),
            "--workflow-profile",
            str(TEST_PROFILE),
            "--directory",
            str(tmp_path),
            "--snakefile",
            str(tmp_path / "Snakefile"),
        ],
        capture_output=True,
        text=True,
        env=local_slurm.client_env(),
        timeout=240,
        cwd=tmp_path,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    job_ids = submitted_job_ids(log)
    assert len(job_ids) == 3, log[-3000:]

    # Each job wrote the SLURM job id it ran under: the work happened on the cluster, not locally.
    records = {
        path.name: path.read_text().split()
        for path in sorted((tmp_path / "results").glob("job_*.txt"))
    }
    ran_under = {fields[1].removeprefix("job=") for fields in records.values()}
    assert ran_under <= set(job_ids) and len(ran_under) == 2, records
    summary = (tmp_path / "results" / "summary.txt").read_text()
    assert summary.count("n=") == 2 and "summary job=" in summary
    assert summary.strip().splitlines()[-1].removeprefix("summary job=") in job_ids

    # SLURM itself reports the jobs completed, with one GPU granted to each record_job job.
    for job_id in job_ids:
        info = local_slurm.run_client("scontrol", "show", "job", job_id).stdout
        assert "JobState=COMPLETED" in info, info
        if "rule_record_job" in info:
            assert "gres:gpu:1" in info or "gres/gpu:1" in info, info


# ----- the tiny study on the cluster ----------------------------------------------------------------


@pytest.mark.workflow
@pytest.mark.slow
def test_tiny_study_runs_on_slurm_through_the_profile(local_slurm: LocalSlurm, tmp_path):
    from workflow_utils import SNAKEFILE, tiny_config, write_config

    write_config(tmp_path, tiny_config())
    env = local_slurm.client_env()
    env.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [
            snakemake_exe(),
            "--snakefile",
            str(SNAKEFILE),
            "--directory",
            str(tmp_path),
            "--profile",
            str(SLURM_PROFILE),
            "--workflow-profile",
            str(TEST_PROFILE),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=480,
        cwd=tmp_path,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    assert (tmp_path / "results" / "summary.tsv").stat().st_size > 0
    assert (tmp_path / "results" / "figures" / "error_vs_q_in.png").stat().st_size > 0

    # SLURM reports every submitted job completed; the comment names the rule (or group and rules).
    jobs = {}
    for job_id in submitted_job_ids(log):
        info = local_slurm.run_client("scontrol", "show", "job", job_id).stdout
        assert "JobState=COMPLETED" in info, info
        jobs[job_id] = (re.search(r"Comment=(\S+)", info).group(1), info)
    comments = [comment for comment, _ in jobs.values()]
    for rule in ("simulate_subject", "autocrop", "make_tfrecords", "train_model", "infer", "predict_sh_baseline", "evaluate"):
        assert any(rule in comment for comment in comments), f"{rule} never ran on SLURM: {comments}"
    # Preparation steps ran as one job per subject (the profile's groups).
    assert sum(comment.startswith("rule_prepare_subject_") for comment in comments) == 3, comments
    # Cheap rules stayed on the submit host.
    for rule in ("summarise", "plot_metric_vs_q_in", "plot_loss_curves"):
        assert not any(rule in comment for comment in comments) and f"localrule {rule}:" in log
    # Training and inference asked SLURM for a GPU, with the profile's CPUs and memory for training.
    gpu_jobs = [(c, info) for c, info in jobs.values() if c.startswith(("rule_train_model_", "rule_infer_"))]
    assert len(gpu_jobs) == 4, comments
    for comment, info in gpu_jobs:
        assert "gres:gpu:1" in info or "gres/gpu:1" in info, info
        if comment.startswith("rule_train_model_"):
            assert "MinMemoryNode=32000M" in info and "NumCPUs=8" in info, info
