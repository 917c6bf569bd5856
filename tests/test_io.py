"""dmri_rcnn.core.io: NIfTI and FSL text I/O, validation errors, autocrop/uncrop, octants."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from dmri_rcnn.core import io
from dmri_rcnn.errors import InputError

AFFINE = np.array([[-1.25, 0, 0, 90.0], [0, 1.25, 0, -126.0], [0, 0, 1.25, -72.0], [0, 0, 0, 1]])


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.fixture
def subject(tmp_path):
    """A small 4D dMRI subject on disk: (6, 5, 4, 7) int16 scan, bvecs, bvals, mask."""
    rng = np.random.default_rng(0)
    dmri = rng.integers(0, 3000, size=(6, 5, 4, 7)).astype(np.int16)
    bvecs = rng.normal(size=(3, 7))
    bvecs /= np.linalg.norm(bvecs, axis=0)
    bvals = np.array([0, 1000, 1005, 995, 2000, 2000, 3000.0])
    mask = np.zeros((6, 5, 4), np.uint8)
    mask[1:5, 1:4, 1:3] = 1
    img = nib.Nifti1Image(dmri, AFFINE)
    img.header.set_zooms((1.25, 1.25, 1.25, 0.8))
    img.header["descrip"] = b"test subject"
    paths = {name: tmp_path / name for name in ("dwi.nii.gz", "dwi.bvec", "dwi.bval", "mask.nii.gz")}
    nib.save(img, paths["dwi.nii.gz"])
    nib.save(nib.Nifti1Image(mask, AFFINE), paths["mask.nii.gz"])
    np.savetxt(paths["dwi.bvec"], bvecs, fmt="%.6f")
    np.savetxt(paths["dwi.bval"], bvals[None], fmt="%d")
    return {"dmri": dmri, "bvecs": bvecs, "bvals": bvals, "mask": mask, **paths}


# ------------------------------------------------------------------------------------------ NIfTI


def test_load_nifti_returns_array_by_default_and_affine_on_request(subject):
    data = io.load_nifti(subject["dwi.nii.gz"])
    assert isinstance(data, np.ndarray) and data.dtype == np.float32 and data.shape == (6, 5, 4, 7)
    np.testing.assert_array_equal(data, subject["dmri"].astype(np.float32))
    data2, affine = io.load_nifti(subject["dwi.nii.gz"], return_affine=True)
    np.testing.assert_array_equal(data2, data)
    np.testing.assert_allclose(affine, AFFINE)
    mask = io.load_nifti(subject["mask.nii.gz"], dtype=np.int8)
    assert mask.dtype == np.int8 and mask.sum() == subject["mask"].sum()


def test_save_nifti_keeps_affine_header_and_float_values(subject, tmp_path):
    img = io.load_nifti_image(subject["dwi.nii.gz"])
    predicted = np.random.default_rng(1).random((6, 5, 4, 3)).astype(np.float32) * 1234.5
    out = tmp_path / "out" / "pred.nii.gz"
    io.save_nifti(predicted, img.affine, out, header=img.header)
    back = nib.load(out)
    assert isinstance(back, nib.Nifti1Image) and not isinstance(back, nib.Nifti2Image)
    np.testing.assert_allclose(back.affine, AFFINE)
    assert back.header.get_zooms() == pytest.approx((1.25, 1.25, 1.25, 0.8))
    assert bytes(back.header["descrip"]).rstrip(b"\0") == b"test subject"
    # stored as float32 even though the header came from an int16 scan: no requantisation
    assert back.get_data_dtype() == np.float32
    np.testing.assert_array_equal(np.asarray(back.dataobj), predicted)
    assert list(tmp_path.joinpath("out").iterdir()) == [out]  # no temporary left behind


def test_save_nifti_nifti2_header_bool_and_plain_nii(tmp_path):
    mask = np.zeros((3, 3, 3), bool)
    mask[1, 1, 1] = True
    io.save_nifti(mask, np.eye(4), tmp_path / "m.nii")
    assert nib.load(tmp_path / "m.nii").get_data_dtype() == np.uint8
    np.testing.assert_array_equal(io.load_nifti(tmp_path / "m.nii", np.int8), mask.astype(np.int8))
    io.save_nifti(np.ones((2, 2, 2), np.int64), np.eye(4), tmp_path / "n2.nii.gz", header=nib.Nifti2Header())
    img = nib.load(tmp_path / "n2.nii.gz")
    assert isinstance(img, nib.Nifti2Image) and img.get_data_dtype() == np.int32
    with pytest.raises(InputError, match="ending in .nii"):
        io.save_nifti(mask, np.eye(4), tmp_path / "m.img")


def test_missing_non_nifti_and_truncated_files_raise_one_line(tmp_path, subject):
    with pytest.raises(InputError, match="not found") as err:
        io.load_nifti(tmp_path / "nope.nii.gz")
    assert "nope.nii.gz" in _one_line(err)
    text = tmp_path / "notes.nii.gz"
    text.write_text("this is not an image\n")
    with pytest.raises(InputError, match="expected a NIfTI image") as err:
        io.load_nifti(text)
    assert "notes.nii.gz" in _one_line(err)
    # truncated gzip: header intact, voxel data cut short
    raw = gzip.decompress(subject["dwi.nii.gz"].read_bytes())
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    with pytest.raises(InputError, match="truncated") as err:
        io.load_nifti(cut)
    assert "cut.nii.gz" in _one_line(err)
    cut_raw = tmp_path / "cut.nii"
    cut_raw.write_bytes(raw[: len(raw) - 100])
    with pytest.raises(InputError, match="truncated"):
        io.load_nifti(cut_raw)


def test_load_nifti_ndim_check(subject):
    with pytest.raises(InputError, match="expected a 4D image") as err:
        io.load_nifti(subject["mask.nii.gz"], ndim=4)
    assert "mask.nii.gz" in _one_line(err)


# -------------------------------------------------------------------------------------- bvec / bval


def test_bvec_round_trip_and_transposed_input(subject, tmp_path):
    bvecs = io.load_bvec(subject["dwi.bvec"])
    assert bvecs.shape == (3, 7) and bvecs.dtype == np.float32
    np.testing.assert_allclose(bvecs, subject["bvecs"], atol=1e-6)
    columns = tmp_path / "bvecs_cols"
    np.savetxt(columns, subject["bvecs"].T)
    np.testing.assert_allclose(io.load_bvec(columns), subject["bvecs"], atol=1e-6)
    io.save_bvec(subject["bvecs"].T, tmp_path / "saved")  # (q, 3) in, FSL 3 rows out
    rows = (tmp_path / "saved").read_text().strip().splitlines()
    assert len(rows) == 3 and all(len(r.split()) == 7 for r in rows)
    np.testing.assert_allclose(io.load_bvec(tmp_path / "saved"), subject["bvecs"], atol=1e-6)


def test_bval_round_trip_row_or_column(subject, tmp_path):
    bvals = io.load_bval(subject["dwi.bval"])
    assert bvals.shape == (7,)
    np.testing.assert_array_equal(bvals, subject["bvals"])
    column = tmp_path / "bvals_col"
    np.savetxt(column, subject["bvals"])
    np.testing.assert_array_equal(io.load_bval(column), subject["bvals"])
    io.save_bval(np.array([0, 1000, 2005.5]), tmp_path / "b")
    assert (tmp_path / "b").read_text().split() == ["0", "1000", "2005.5"]
    np.testing.assert_array_equal(io.load_bval(tmp_path / "b"), [0, 1000, 2005.5])


@pytest.mark.parametrize(
    "content, match",
    [
        ("1 2 3 4\n5 6 7 8\n", "3 rows \\(FSL\\) or 3 columns, found 2 rows and 4 columns"),
        ("", "empty"),
        ("a b c\n", "numeric"),
        ("1 0 0\n0 nan 0\n0 0 1\n", "NaN or Inf"),
    ],
)
def test_bad_bvec_files(tmp_path, content, match):
    path = tmp_path / "bad_bvecs"
    path.write_text(content)
    with pytest.raises(InputError, match=match) as err:
        io.load_bvec(path)
    assert "bad_bvecs" in _one_line(err)


def test_bad_bval_file(tmp_path):
    path = tmp_path / "bad_bvals"
    path.write_text("0 1000\n1000 0\n")
    with pytest.raises(InputError, match="single row or column") as err:
        io.load_bval(path)
    assert "bad_bvals" in _one_line(err)


# ------------------------------------------------------------------------------------- dMRI sets


def test_load_dmri_set_valid(subject):
    loaded = io.load_dmri_set(subject["dwi.nii.gz"], subject["dwi.bvec"], subject["dwi.bval"], subject["mask.nii.gz"])
    assert loaded.dmri.shape == (6, 5, 4, 7) and loaded.bvecs.shape == (3, 7) and loaded.bvals.shape == (7,)
    assert loaded.mask.dtype == np.int8 and set(np.unique(loaded.mask)) == {0, 1}
    np.testing.assert_allclose(loaded.affine, AFFINE)
    assert loaded.header.get_zooms()[:3] == pytest.approx((1.25, 1.25, 1.25))


def _write(tmp_path, name, array):
    path = tmp_path / name
    nib.save(nib.Nifti1Image(array, AFFINE), path)
    return path


def test_dmri_set_errors_name_the_file(subject, tmp_path):
    s = subject
    # bvec count != volume count
    short = tmp_path / "bvecs5"
    np.savetxt(short, s["bvecs"][:, :5])
    with pytest.raises(InputError, match="has 5 directions but .* has 7 volumes") as err:
        io.load_dmri_set(s["dwi.nii.gz"], short)
    assert "bvecs5" in _one_line(err)
    # bval/bvec length mismatch
    bvals6 = tmp_path / "bvals6"
    np.savetxt(bvals6, s["bvals"][None, :6])
    with pytest.raises(InputError, match="has 6 b-values but .* has 7 b-vectors") as err:
        io.load_dmri_set(s["dwi.nii.gz"], s["dwi.bvec"], bvals6)
    assert "bvals6" in _one_line(err)
    # mask shape != dmri spatial shape
    bad_mask = _write(tmp_path, "mask_small.nii.gz", np.ones((6, 5, 3), np.uint8))
    with pytest.raises(InputError, match=r"spatial shape \(6, 5, 4\), found shape \(6, 5, 3\)") as err:
        io.load_dmri_set(s["dwi.nii.gz"], s["dwi.bvec"], mask_path=bad_mask)
    assert "mask_small.nii.gz" in _one_line(err)
    # 3D where 4D is expected
    with pytest.raises(InputError, match="expected a 4D image") as err:
        io.load_dmri_set(s["mask.nii.gz"], s["dwi.bvec"])
    assert "mask.nii.gz" in _one_line(err)
    # NaN / Inf in the signal
    nan_dmri = s["dmri"].astype(np.float32)
    nan_dmri[2, 2, 2, 3] = np.nan
    nan_dmri[1, 1, 1, 1] = np.inf
    nan_path = _write(tmp_path, "nan_dwi.nii.gz", nan_dmri)
    with pytest.raises(InputError, match="found 2 NaN/Inf") as err:
        io.load_dmri_set(nan_path, s["dwi.bvec"])
    assert "nan_dwi.nii.gz" in _one_line(err)
    # a bvec that is neither 3xN nor Nx3
    weird = tmp_path / "bvecs_4x7"
    np.savetxt(weird, np.ones((4, 7)))
    with pytest.raises(InputError, match="3 rows"):
        io.load_dmri_set(s["dwi.nii.gz"], weird)


def test_validate_dmri_set_arrays():
    dmri = np.zeros((2, 2, 2, 3), np.float32)
    io.validate_dmri_set(dmri, np.zeros((3, 3)), np.zeros(3), np.zeros((2, 2, 2)))
    with pytest.raises(InputError, match="4D"):
        io.validate_dmri_set(dmri[..., 0])
    with pytest.raises(InputError, match="NaN"):
        io.validate_dmri_set(dmri, mask=np.full((2, 2, 2), np.nan))


# ------------------------------------------------------------------------------------------ autocrop


def test_autocrop_bounding_box_and_uncrop():
    dmri = np.zeros((8, 9, 10, 3), np.float32)
    mask = np.zeros((8, 9, 10), np.int8)
    dmri[2:5, 3:7, 4:6] = 1.0
    mask[1, 4, 5] = 1  # mask reaches one slice beyond the signal along i
    cropped, cmask, box = io.autocrop_dmri(dmri, mask, return_box=True)
    assert box == io.CropBox((1, 3, 4), (5, 7, 6))
    assert cropped.shape == (4, 4, 2, 3) and cmask.shape == (4, 4, 2)
    np.testing.assert_array_equal(io.uncrop(cropped, box, dmri.shape), dmri)
    np.testing.assert_array_equal(io.uncrop(cmask, box, mask.shape), mask)
    # README form: two return values
    out = io.autocrop_dmri(dmri, mask)
    assert len(out) == 2 and out[0].shape == (4, 4, 2, 3)
    # the affine of the crop maps its voxel (0,0,0) to the same world point as voxel `start`
    shifted = box.shift_affine(AFFINE)
    np.testing.assert_allclose(shifted @ [0, 0, 0, 1], AFFINE @ [1, 3, 4, 1])


def test_autocrop_negative_values_do_not_cancel():
    dmri = np.zeros((4, 4, 4, 2), np.float32)
    dmri[3, 1, 1] = [5.0, -5.0]  # sums to zero: the original dropped this slice
    mask = np.zeros((4, 4, 4), np.int8)
    mask[1, 1, 1] = 1
    cropped, _, box = io.autocrop_dmri(dmri, mask, return_box=True)
    assert box.start[0] == 1 and box.stop[0] == 4
    assert np.array_equal(cropped[-1, 0, 0], [5.0, -5.0])


def test_autocrop_errors():
    with pytest.raises(InputError, match="every voxel"):
        io.autocrop_dmri(np.zeros((2, 2, 2, 1)), np.zeros((2, 2, 2)))
    with pytest.raises(InputError, match="spatial shape"):
        io.autocrop_dmri(np.ones((2, 2, 2, 1)), np.ones((2, 2, 3)))


# ------------------------------------------------------------------------------------------ octants


@pytest.mark.parametrize("shape", [(8, 6, 4), (7, 5, 3), (9, 4, 1), (6, 7, 5, 3), (5, 5, 5, 2), (1, 2, 3, 4)])
def test_split_merge_round_trip_is_bit_identical(shape):
    data = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    octants = io.split_image_to_octants(data)
    assert len(octants) == 8
    assert sum(o[..., 0].size if data.ndim == 4 else o.size for o in octants) == np.prod(shape[:3])
    merged = io.merge_octants(octants)
    assert merged.dtype == data.dtype and merged.shape == data.shape
    assert merged.tobytes() == data.tobytes()


def test_octant_order_is_i_then_j_then_k():
    data = np.arange(4 * 4 * 4).reshape(4, 4, 4)
    octants = io.split_image_to_octants(data)
    corners = [o[0, 0, 0] for o in octants]
    expected = [data[i, j, k] for i in (0, 2) for j in (0, 2) for k in (0, 2)]
    assert corners == expected
    odd = io.split_image_to_octants(np.zeros((5, 3, 7)))
    assert odd[0].shape == (2, 1, 3) and odd[7].shape == (3, 2, 4)


def test_merge_octants_errors():
    with pytest.raises(InputError, match="expected 8 octants"):
        io.merge_octants([np.zeros((2, 2, 2))] * 7)
    parts = io.split_image_to_octants(np.zeros((4, 4, 4)))
    parts[3] = np.zeros((5, 5, 5))
    with pytest.raises(InputError, match="do not fit"):
        io.merge_octants(parts)


def test_atomic_path_result_has_default_file_mode(tmp_path):
    import os

    from dmri_rcnn.utils import atomic_path

    umask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "out.nii.gz") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(umask)
    assert (tmp_path / "out.nii.gz").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["out.nii.gz"]


def test_compressed_4d_image_is_read_volumes_at_a_time_with_the_same_values(tmp_path):
    # more volumes than one read holds, stored as scaled int16: the chunked read applies the scaling alike
    rng = np.random.default_rng(0)
    values = rng.integers(0, 3000, size=(7, 6, 5, 40)).astype(np.int16)
    image = nib.Nifti1Image(values, np.eye(4))
    image.header.set_slope_inter(0.5, 10.0)
    nib.save(image, tmp_path / "scaled.nii.gz")
    expected = np.asarray(nib.load(tmp_path / "scaled.nii.gz").dataobj, dtype=np.float32)
    loaded = io.load_nifti(tmp_path / "scaled.nii.gz")
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, expected)
    np.testing.assert_array_equal(loaded, values * np.float32(0.5) + np.float32(10.0))
