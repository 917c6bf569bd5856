"""Workflow data steps on a real (small) synthetic subject: crop, octant split, TFRecords, context split."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from dmri_rcnn.core import io
from dmri_rcnn.errors import InputError
from dmri_rcnn.simulation import simulate_subject, write_subject
from dmri_rcnn.study.data import autocrop, crop_truth, make_tfrecords, split_octants, subsample_context


@pytest.fixture(scope="module")
def subject_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("subject") / "s1" / "T1w" / "Diffusion"
    write_subject(simulate_subject(seed=5, shape=(14, 16, 10), n_directions=30, n_b0=2), folder)
    return folder


@pytest.fixture(scope="module")
def cropped(subject_dir, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("cropped")
    out = {key: out_dir / name for key, name in [("dmri", "data.nii.gz"), ("bvals", "bvals"), ("bvecs", "bvecs"), ("mask", "mask.nii.gz")]}
    shape = autocrop(
        subject_dir / "data.nii.gz",
        subject_dir / "bvals",
        subject_dir / "bvecs",
        subject_dir / "nodif_brain_mask.nii.gz",
        out,
        out_dir / "box.json",
    )
    return out, out_dir / "box.json", shape


#: Empty border added around the simulated head: (before, after) voxels along i, j, k.
BORDER = ((3, 1), (0, 4), (2, 2))


def test_crop_keeps_every_volume_and_the_world_position(subject_dir, tmp_path):
    """A head inside an empty border on an oblique grid: the crop must drop the border, nothing else."""
    angle = np.radians(20)
    oblique = np.array([[1.5 * np.cos(angle), -1.5 * np.sin(angle), 0, -40.0],
                        [1.5 * np.sin(angle), 1.5 * np.cos(angle), 0, 12.0],
                        [0, 0, 2.0, -7.0], [0, 0, 0, 1]])
    padded = {}
    for name in ("data.nii.gz", "nodif_brain_mask.nii.gz", "tissue.nii.gz"):
        data = np.asarray(nib.load(subject_dir / name).dataobj)
        data = np.pad(data, BORDER + ((0, 0),) * (data.ndim - 3))
        padded[name] = tmp_path / name
        nib.save(nib.Nifti1Image(data, oblique), padded[name])
    original = nib.load(padded["data.nii.gz"])
    out = {key: tmp_path / f"crop_{key}" for key in ("bvals", "bvecs")}
    out.update(dmri=tmp_path / "crop.nii.gz", mask=tmp_path / "crop_mask.nii.gz")
    box_path = tmp_path / "box.json"
    shape = autocrop(padded["data.nii.gz"], subject_dir / "bvals", subject_dir / "bvecs",
                         padded["nodif_brain_mask.nii.gz"], out, box_path)
    box = json.loads(box_path.read_text())
    start = np.array(box["start"])
    # the simulated head fills its own grid, so the crop is exactly that grid: the border is gone
    head_shape = nib.load(subject_dir / "data.nii.gz").shape
    assert tuple(shape) == head_shape[:3]
    np.testing.assert_array_equal(start, [before for before, _ in BORDER])
    image = nib.load(out["dmri"])
    assert image.shape == head_shape
    # every voxel of the crop sits where it sat in the uncropped scan, in world coordinates
    corners = np.array([[0, 0, 0], [shape[0] - 1, 0, 2], [1, shape[1] - 1, shape[2] - 1]])
    for voxel in corners:
        world_crop = image.affine @ np.append(voxel, 1)
        world_original = original.affine @ np.append(voxel + start, 1)
        np.testing.assert_allclose(world_crop, world_original, atol=1e-6)
        np.testing.assert_allclose(image.get_fdata()[tuple(voxel)], original.get_fdata()[tuple(voxel + start)], rtol=1e-6)
    np.testing.assert_allclose(image.get_fdata(), nib.load(subject_dir / "data.nii.gz").get_fdata(), rtol=1e-6)
    # a truth map cropped with the same box lines up with the cropped mask
    tissue_out = tmp_path / "crop_tissue.nii.gz"
    crop_truth(padded["tissue.nii.gz"], box_path, tissue_out)
    tissue = io.load_nifti(tissue_out, dtype=np.uint8)
    mask = io.load_mask(out["mask"])
    assert tissue.shape == mask.shape
    np.testing.assert_array_equal(tissue > 0, mask)


def test_crop_rejects_mismatched_bvals(subject_dir, tmp_path):
    short = tmp_path / "bvals"
    short.write_text(" ".join(["1000"] * 5) + "\n")
    out = {k: tmp_path / f"{k}.nii.gz" for k in ("dmri", "mask")} | {"bvals": tmp_path / "o.bval", "bvecs": tmp_path / "o.bvec"}
    with pytest.raises(InputError, match="b-values"):
        autocrop(subject_dir / "data.nii.gz", short, subject_dir / "bvecs", subject_dir / "nodif_brain_mask.nii.gz", out, tmp_path / "box.json")


def test_split_octants_only_above_the_limit_and_tfrecords_round_trip(cropped, tmp_path):
    from dmri_rcnn.core.processing import load_tfrecord_data

    out, _, _ = cropped
    args = (out["dmri"], out["bvals"], out["bvecs"], out["mask"])
    assert split_octants(*args, tmp_path / "whole", max_values=10**9) == 1
    data = io.load_nifti(out["dmri"])
    assert split_octants(*args, tmp_path / "octants", max_values=data.size - 1) == 8
    parts = sorted((tmp_path / "octants").glob("part-*/data.nii"))
    assert len(parts) == 8
    merged = io.merge_octants([io.load_nifti(p) for p in parts])
    np.testing.assert_array_equal(merged, data)

    records = make_tfrecords(tmp_path / "octants", tmp_path / "records")
    assert [r.name for r in records] == [f"part-{i}.tfrecord" for i in range(8)]
    first = load_tfrecord_data(records[0])
    np.testing.assert_allclose(first.dmri, io.load_nifti(parts[0]), rtol=1e-6)
    assert first.bvecs.shape == (3, data.shape[-1])


def test_context_split_is_farthest_point_seeded_and_covers_the_shell(cropped, tmp_path):
    out, _, _ = cropped
    names = ["context", "context_bvecs", "context_bvals", "targets", "target_bvecs", "target_bvals", "b0"]

    def run(folder, seed):
        paths = {name: folder / name for name in names}
        paths["context"] = folder / "context.nii.gz"
        paths["targets"] = folder / "targets.nii.gz"
        paths["b0"] = folder / "b0.nii.gz"
        subsample_context(out["dmri"], out["bvals"], out["bvecs"], 1000, 6, seed, paths)
        return paths

    first = run(tmp_path / "a", seed=3)
    again = run(tmp_path / "b", seed=3)
    context = io.load_nifti(first["context"])
    targets = io.load_nifti(first["targets"])
    assert context.shape[-1] == 6 and targets.shape[-1] == 24  # 30 directions at b = 1000
    assert io.load_nifti(first["b0"]).shape[-1] == 2
    np.testing.assert_array_equal(io.load_bvec(first["context_bvecs"]), io.load_bvec(again["context_bvecs"]))
    bvals = io.load_bval(first["target_bvals"])
    assert np.all(np.abs(bvals - 1000) <= 30)
    # context and targets are disjoint and together make up the whole shell
    all_bvecs = io.load_bvec(out["bvecs"])
    shell = np.abs(io.load_bval(out["bvals"]) - 1000) <= 30
    union = np.concatenate([io.load_bvec(first["context_bvecs"]), io.load_bvec(first["target_bvecs"])], axis=1)
    assert union.shape[1] == shell.sum()
    np.testing.assert_allclose(np.sort(union.T, axis=0), np.sort(all_bvecs[:, shell].T, axis=0), atol=1e-5)
    # well spread (arc distance as in training, antipodes distinct): no two of the 6 within 45 degrees
    ctx = io.load_bvec(first["context_bvecs"]).T
    cosines = ctx @ ctx.T
    np.fill_diagonal(cosines, -1)
    assert np.degrees(np.arccos(cosines.max())) > 45


def test_context_split_writes_the_source_volumes_of_each_direction(cropped, tmp_path):
    """Each written volume is the source volume of its b-vector, bit for bit (the split reads only the
    shell's and the b0 volumes from the file, in its own order)."""
    out, _, _ = cropped
    paths = {name: tmp_path / name for name in ["context_bvecs", "context_bvals", "target_bvecs", "target_bvals"]}
    paths.update(context=tmp_path / "c.nii.gz", targets=tmp_path / "t.nii.gz", b0=tmp_path / "b0.nii.gz")
    subsample_context(out["dmri"], out["bvals"], out["bvecs"], 1000, 6, 3, paths)
    data = io.load_nifti(out["dmri"])
    bvals = io.load_bval(out["bvals"])
    bvecs = io.load_bvec(out["bvecs"], bvals=bvals)
    for image, vectors, values in (("context", "context_bvecs", "context_bvals"), ("targets", "target_bvecs", "target_bvals")):
        written = io.load_nifti(paths[image])
        for column, (vector, b) in enumerate(zip(io.load_bvec(paths[vectors]).T, io.load_bval(paths[values]))):
            source = np.flatnonzero((np.abs(bvecs.T - vector).max(axis=1) < 1e-5) & (np.abs(bvals - b) < 1))
            assert source.size == 1
            np.testing.assert_array_equal(written[..., column], data[..., source[0]])
    np.testing.assert_array_equal(io.load_nifti(paths["b0"]), data[..., bvals < 50])
    assert io.load_nifti_image(paths["targets"]).affine == pytest.approx(io.load_nifti_image(out["dmri"]).affine)


def test_context_split_refuses_a_missing_shell_and_writes_nothing(cropped, tmp_path):
    out, _, _ = cropped
    paths = {name: tmp_path / name for name in ["context_bvecs", "context_bvals", "target_bvecs", "target_bvals"]}
    paths.update(context=tmp_path / "c.nii.gz", targets=tmp_path / "t.nii.gz", b0=tmp_path / "b0.nii.gz")
    with pytest.raises(InputError, match=r"bvals: no volume within 30 of shell b=5000; b-values found: 5, 985, .*3015$"):
        subsample_context(out["dmri"], out["bvals"], out["bvecs"], 5000, 6, 3, paths)
    assert not any(tmp_path.iterdir())
    # b-values and b-vectors of another acquisition (one volume fewer than the image)
    table = tmp_path / "tables"
    table.mkdir()
    bvals, bvecs = io.load_bval(out["bvals"]), io.load_bvec(out["bvecs"])
    io.save_bval(bvals[:-1], table / "bvals")
    io.save_bvec(bvecs[:, :-1], table / "bvecs")
    with pytest.raises(InputError, match=rf"image shape \(.*, {bvals.size}\) does not match the {bvals.size - 1} b-values"):
        subsample_context(out["dmri"], table / "bvals", table / "bvecs", 1000, 6, 3, paths)
    assert sorted(path.name for path in tmp_path.rglob("*")) == ["bvals", "bvecs", "tables"]


def test_antipodal_context_split_spreads_axes_not_signed_vectors(cropped, tmp_path):
    """With ``antipodal=True`` no two context vectors share (nearly) an axis; the signed sampler, on a
    half-sphere scheme, may pick a vector and its near-opposite."""
    out, _, _ = cropped
    names = ["context", "context_bvecs", "context_bvals", "targets", "target_bvecs", "target_bvals", "b0"]

    def smallest_axis_angle(folder, antipodal):
        paths = {name: folder / name for name in names}
        paths.update(context=folder / "c.nii.gz", targets=folder / "t.nii.gz", b0=folder / "b0.nii.gz")
        subsample_context(out["dmri"], out["bvals"], out["bvecs"], 1000, 6, 3, paths, antipodal=antipodal)
        ctx = io.load_bvec(paths["context_bvecs"]).T
        cosines = np.abs(ctx @ ctx.T)
        np.fill_diagonal(cosines, 0)
        return np.degrees(np.arccos(min(cosines.max(), 1.0)))

    axial = smallest_axis_angle(tmp_path / "axial", antipodal=True)
    signed = smallest_axis_angle(tmp_path / "signed", antipodal=False)
    # 6 axes spread over the sphere of axes: about 63 degrees apart at best (icosahedron's axes)
    assert axial > 40
    assert axial >= signed


def test_crop_to_a_test_slab_keeps_the_slab_and_its_world_position(subject_dir, cropped, tmp_path):
    full_out, full_box_path, full_shape = cropped
    out = {key: tmp_path / name for key, name in [("dmri", "data.nii.gz"), ("bvals", "bvals"), ("bvecs", "bvecs"), ("mask", "mask.nii.gz")]}
    inputs = [subject_dir / name for name in ("data.nii.gz", "bvals", "bvecs", "nodif_brain_mask.nii.gz")]
    shape = autocrop(*inputs, out, tmp_path / "box.json", slab=(2, 5))
    assert tuple(shape) == tuple(full_shape[:2]) + (3,)
    full = nib.load(full_out["dmri"])
    slab = nib.load(out["dmri"])
    # slices are counted from the lowest one holding brain
    bottom = int(np.flatnonzero(io.load_nifti(full_out["mask"]).any(axis=(0, 1)))[0])
    np.testing.assert_array_equal(slab.get_fdata(), full.get_fdata()[:, :, bottom + 2 : bottom + 5])
    np.testing.assert_allclose(slab.affine[:3, 3], (full.affine @ np.array([0, 0, bottom + 2, 1]))[:3])
    assert io.load_nifti(out["mask"]).any()
    # truth maps cut with the slab's box line up with the slab's mask
    crop_truth(subject_dir / "tissue.nii.gz", tmp_path / "box.json", tmp_path / "tissue.nii.gz")
    tissue = io.load_nifti(tmp_path / "tissue.nii.gz", dtype=np.uint8)
    np.testing.assert_array_equal(tissue > 0, io.load_nifti(out["mask"], dtype=np.uint8) > 0)
    with pytest.raises(InputError, match=r"slab \[2, 99\) does not fit the brain's"):
        autocrop(*inputs, out, tmp_path / "box2.json", slab=(2, 99))
