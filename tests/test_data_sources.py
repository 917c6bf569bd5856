"""Real data sources end to end: HCP subjects from a real S3 server (moto, 127.0.0.1) and local folders.

The workflow runs through the real ``snakemake`` CLI on a tiny config; each test carries the subjects
through download (or the local files), autocrop and TFRecord writing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from s3_server import HCP_FILE_NAMES, S3Server, start_moto_server, stop_server, upload_folder, write_hcp_subject
from workflow_utils import SNAKEFILE, snakemake_executable, tiny_config, write_config

BUCKET = "hcp-mirror"
PREFIX = "HCP_1200/{subject}/T1w/Diffusion"
SUBJECTS = {"train": ["100206"], "validation": ["100307"], "test": ["100408"]}
CREDENTIAL_VARIABLES = ("SNAKEMAKE_STORAGE_S3_", "AWS_")

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory) -> S3Server:
    """moto_server on a free port of 127.0.0.1 holding three small HCP-layout subjects; stopped by PID."""
    root = tmp_path_factory.mktemp("s3")
    server = start_moto_server(root)
    try:
        for seed, subject in enumerate(s for group in SUBJECTS.values() for s in group):
            folder = root / "subjects" / subject
            write_hcp_subject(folder, seed=seed)
            upload_folder(server, BUCKET, folder, PREFIX.format(subject=subject))
        yield server
    finally:
        stop_server(server)


def without_credentials() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(CREDENTIAL_VARIABLES)}


def s3_config(server: S3Server) -> dict:
    config = tiny_config()
    config["subjects"].update(source="hcp_s3", **SUBJECTS)
    config["hcp_s3"] = {"bucket": BUCKET, "prefix": PREFIX, "endpoint_url": server.endpoint_url, "region": "us-east-1"}
    return config


def tfrecord_targets(subjects) -> list[str]:
    return [f"results/tfrecords/{subject}" for subject in subjects]


def run(workdir: Path, env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``snakemake --cores 2 ARGS`` in ``workdir`` with exactly the environment ``env`` (credentials)."""
    command = [snakemake_executable(), "--snakefile", str(SNAKEFILE), "--directory", str(workdir), "--cores", "2", *args]
    env = {**env, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=300, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-5000:]}\n{result.stderr[-5000:]}")
    return result


def test_hcp_subjects_download_from_s3_through_autocrop_and_tfrecords(s3_server, tmp_path):
    write_config(tmp_path, s3_config(s3_server))
    env = {**without_credentials(), **s3_server.credentials_env()}
    env.pop("SNAKEMAKE_STORAGE_S3_ENDPOINT_URL")  # the endpoint comes from the config key
    subjects = SUBJECTS["train"] + SUBJECTS["test"]
    first = run(tmp_path, env, *tfrecord_targets(subjects))
    assert first.stdout.count("rule download_hcp_subject") + first.stderr.count("rule download_hcp_subject") == 2
    for subject in subjects:
        folder = tmp_path / "resources" / "hcp" / subject / "T1w" / "Diffusion"
        for name in HCP_FILE_NAMES:
            body = s3_server.client().get_object(Bucket=BUCKET, Key=f"{PREFIX.format(subject=subject)}/{name}")
            assert (folder / name).read_bytes() == body["Body"].read(), f"{subject}/{name} differs from S3"
        assert (tmp_path / "results" / "preprocessed" / subject / "data.nii.gz").exists()
        assert list((tmp_path / "results" / "tfrecords" / subject).rglob("*.tfrecord*")), subject

    # Nothing is fetched again: the downloads under resources/ are up to date.
    again = run(tmp_path, env, *tfrecord_targets(subjects))
    assert "Nothing to be done" in again.stdout + again.stderr


def test_missing_credentials_stop_before_any_job_with_one_message(s3_server, tmp_path):
    write_config(tmp_path, s3_config(s3_server))
    result = run(tmp_path, without_credentials(), *tfrecord_targets(["100206"]), check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "no S3 credentials are set: export SNAKEMAKE_STORAGE_S3_ACCESS_KEY" in output
    assert "NoCredentialsError" not in output and "rule download_hcp_subject" not in output
    assert not (tmp_path / "resources").exists()


def test_missing_object_is_named_before_any_job(s3_server, tmp_path):
    subject = "100206"
    config = s3_config(s3_server)
    key = f"{PREFIX.format(subject=subject)}/bvecs"
    body = s3_server.client().get_object(Bucket=BUCKET, Key=key)["Body"].read()
    s3_server.client().delete_object(Bucket=BUCKET, Key=key)
    try:
        write_config(tmp_path, config)
        env = {**without_credentials(), **s3_server.credentials_env()}
        result = run(tmp_path, env, *tfrecord_targets([subject]), check=False)
    finally:
        s3_server.client().put_object(Bucket=BUCKET, Key=key, Body=body)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"s3://{BUCKET}/{key}" in output and "Missing input files" in output
    assert not (tmp_path / "resources").exists()


def test_truncated_object_fails_its_download_naming_the_key(s3_server, tmp_path):
    subject = "100408"
    key = f"{PREFIX.format(subject=subject)}/data.nii.gz"
    client = s3_server.client()
    body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    client.put_object(Bucket=BUCKET, Key=key, Body=body[: len(body) // 2])
    try:
        write_config(tmp_path, s3_config(s3_server))
        env = {**without_credentials(), **s3_server.credentials_env()}
        result = run(tmp_path, env, *tfrecord_targets([subject]), check=False)
    finally:
        client.put_object(Bucket=BUCKET, Key=key, Body=body)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"s3://{BUCKET}/{key}: damaged or truncated gzip stream" in output
    # The failed download leaves nothing under resources/ that a rerun could mistake for a good copy.
    assert not (tmp_path / "resources" / "hcp" / subject / "T1w" / "Diffusion" / "data.nii.gz").exists()


def test_local_source_reads_hcp_and_bids_like_layouts(tmp_path):
    # 16 directions per shell: a training subject needs q_in 6 + q_out 10 (checked before any job)
    config = tiny_config()
    config["subjects"].update(source="local", **SUBJECTS)
    hcp_root = tmp_path / "HCP_1200"
    bids_root = tmp_path / "bids"
    for seed, subject in enumerate(["100206", "100307"]):
        write_hcp_subject(hcp_root / subject / "T1w" / "Diffusion", seed=seed, n_per_shell=16)
    # One subject in a BIDS-like layout: other file names, mask in a derivatives tree.
    write_hcp_subject(tmp_path / "scratch", seed=7, n_per_shell=16)
    dwi = bids_root / "sub-100408" / "dwi"
    masks = bids_root / "derivatives" / "masks" / "sub-100408" / "dwi"
    dwi.mkdir(parents=True)
    masks.mkdir(parents=True)
    shutil.copy(tmp_path / "scratch" / "data.nii.gz", dwi / "sub-100408_dwi.nii.gz")
    shutil.copy(tmp_path / "scratch" / "bvals", dwi / "sub-100408_dwi.bval")
    shutil.copy(tmp_path / "scratch" / "bvecs", dwi / "sub-100408_dwi.bvec")
    shutil.copy(tmp_path / "scratch" / "nodif_brain_mask.nii.gz", masks / "sub-100408_desc-brain_mask.nii.gz")

    hcp_workdir = tmp_path / "run_hcp"
    config["local"] = {"path": str(hcp_root / "{subject}" / "T1w" / "Diffusion")}
    write_config(hcp_workdir, config)
    run(hcp_workdir, dict(os.environ), *tfrecord_targets(["100206"]))
    assert list((hcp_workdir / "results" / "tfrecords" / "100206").rglob("*.tfrecord*"))

    bids_workdir = tmp_path / "run_bids"
    config["local"] = {
        "path": str(bids_root / "sub-{subject}" / "dwi"),
        "files": {
            "dmri": str(bids_root / "sub-{subject}" / "dwi" / "sub-{subject}_dwi.nii.gz"),
            "bvals": str(bids_root / "sub-{subject}" / "dwi" / "sub-{subject}_dwi.bval"),
            "bvecs": str(bids_root / "sub-{subject}" / "dwi" / "sub-{subject}_dwi.bvec"),
            "mask": str(bids_root / "derivatives" / "masks" / "sub-{subject}" / "dwi" / "sub-{subject}_desc-brain_mask.nii.gz"),
        },
    }
    write_config(bids_workdir, config)
    run(bids_workdir, dict(os.environ), *tfrecord_targets(["100408"]))
    assert list((bids_workdir / "results" / "tfrecords" / "100408").rglob("*.tfrecord*"))
    # A subject whose file is absent is named before any job runs.
    missing = run(bids_workdir, dict(os.environ), *tfrecord_targets(["100206"]), check=False)
    assert missing.returncode != 0 and "sub-100206_dwi.nii.gz" in missing.stdout + missing.stderr
