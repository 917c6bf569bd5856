"""Checks of downloaded and local HCP-layout subjects (dmri_rcnn.sources)."""

from __future__ import annotations

import numpy as np
import pytest

from dmri_rcnn.errors import InputError
from dmri_rcnn.sources import (
    HCP_DIFFUSION_FILES,
    check_hcp_subject,
    copy_checked_hcp_subject,
    missing_s3_credentials,
)
from s3_server import write_hcp_subject


@pytest.fixture
def subject(tmp_path):
    folder = tmp_path / "100307" / "T1w" / "Diffusion"
    write_hcp_subject(folder, seed=3)
    return {key: folder / name for key, name in HCP_DIFFUSION_FILES.items()}


def test_whole_subject_passes_and_is_copied(subject, tmp_path):
    targets = {key: tmp_path / "copy" / name for key, name in HCP_DIFFUSION_FILES.items()}
    copy_checked_hcp_subject(subject, targets)
    for key in HCP_DIFFUSION_FILES:
        assert targets[key].read_bytes() == subject[key].read_bytes()


def test_truncated_data_is_reported_with_its_origin_and_nothing_is_copied(subject, tmp_path):
    raw = subject["dmri"].read_bytes()
    subject["dmri"].write_bytes(raw[: len(raw) // 2])
    key = "s3://hcp-openaccess/HCP_1200/100307/T1w/Diffusion/data.nii.gz"
    origins = {k: f"s3://hcp-openaccess/HCP_1200/100307/T1w/Diffusion/{n}" for k, n in HCP_DIFFUSION_FILES.items()}
    targets = {k: tmp_path / "copy" / n for k, n in HCP_DIFFUSION_FILES.items()}
    with pytest.raises(InputError, match=rf"^{key}: .*truncated"):
        copy_checked_hcp_subject(subject, targets, origins)
    assert not any(path.exists() for path in targets.values())


def test_uncompressed_nifti_cut_short_is_truncated(tmp_path):
    import nibabel as nib

    path = tmp_path / "data.nii"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4, 3), np.float32), np.eye(4)), path)
    path.write_bytes(path.read_bytes()[:-100])
    files = {"dmri": path}
    with pytest.raises(InputError, match="data.nii: truncated: the header needs"):
        check_hcp_subject({**files, "mask": path, "bvals": path, "bvecs": path})


@pytest.mark.parametrize(
    ("key", "content", "message"),
    [
        ("bvals", "0 1000 2000\n", r"bvals: 3 entries, but .*data.nii.gz has 38 volumes"),
        ("bvecs", "1 0\n0 1\n", r"bvecs: expected 3 row\(s\) of numbers, found shape \(2, 2\)"),
        ("bvals", "", r"bvals: expected 1 row\(s\) of numbers"),
    ],
)
def test_tables_that_disagree_with_the_data_name_the_file(subject, key, content, message):
    subject[key].write_text(content)
    with pytest.raises(InputError, match=message):
        check_hcp_subject(subject)


def test_mask_of_another_shape_is_rejected(subject, tmp_path):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.ones((5, 5, 5), np.uint8), np.eye(4)), subject["mask"])
    with pytest.raises(InputError, match=r"nodif_brain_mask.nii.gz: mask shape \(5, 5, 5\) does not match"):
        check_hcp_subject(subject)


def test_missing_file_is_named(subject):
    subject["mask"].unlink()
    with pytest.raises(InputError, match=r"nodif_brain_mask.nii.gz: expected a NIfTI file, found nothing"):
        check_hcp_subject(subject)


def test_s3_credentials_come_from_the_environment_only():
    assert missing_s3_credentials({}) is not None
    assert "SNAKEMAKE_STORAGE_S3_ACCESS_KEY" in missing_s3_credentials({"AWS_ACCESS_KEY_ID": "x"})
    assert missing_s3_credentials({"SNAKEMAKE_STORAGE_S3_ACCESS_KEY": "a", "SNAKEMAKE_STORAGE_S3_SECRET_KEY": "b"}) is None
    assert missing_s3_credentials({"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}) is None
    assert missing_s3_credentials({"SNAKEMAKE_STORAGE_S3_ACCESS_KEY": "a", "SNAKEMAKE_STORAGE_S3_SECRET_KEY": ""})
