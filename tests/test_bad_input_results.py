"""Issue 11, cases 1-6: input that used to give a silently wrong result or destroy a file.

Each case drives the real function or console command; bad input must give one line on stderr, exit
status 2 (``EXIT_BAD_INPUT``), no output file and untouched inputs.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bad_input_files import AFFINE, command, write_context_scan
from bad_input_files import unit_vectors as _unit
from dmri_rcnn.core import io
from dmri_rcnn.errors import EXIT_BAD_INPUT, InputError


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def run_bad(argv: list[str], folder: Path, match: str, out: Path | None = None):
    """Run a command that must refuse its input: one line, status 2, nothing written, inputs untouched."""
    before = digest(folder)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    assert len(lines) == 1 and "error: " in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert match in lines[0], lines[0]
    assert digest(folder) == before  # inputs untouched, no output or temporary file added
    if out is not None:
        assert not out.exists()
    return lines[0]


@pytest.fixture
def scan(tmp_path):
    """A 6-direction context scan, 4 target directions and a mask, as files."""
    return write_context_scan(tmp_path)


def rcnn_argv(folder: Path, **change) -> list[str]:
    files = {"-dmri_in": "dmri.nii.gz", "-bvec_in": "bvec_in", "-bvec_out": "bvec_out", "-mask": "mask.nii.gz",
             "-dmri_out": "out.nii.gz", **change}
    argv = command("run_dmri_rcnn.py")
    for flag, name in files.items():
        argv += [flag, str(folder / name)]
    return argv + ["-s", "1000", "-m", "1", "--no-progress"]


def sh_argv(folder: Path, *extra, **change) -> list[str]:
    files = {"-dmri_in": "dmri.nii.gz", "-bvec_in": "bvec_in", "-bvec_out": "bvec_out", "-dmri_out": "out.nii.gz", **change}
    argv = command("dmri_rcnn_sh_baseline.py")
    for flag, name in files.items():
        argv += [flag, str(folder / name)]
    return argv + list(extra)


# ------------------------------------------------------------------ 1. unit b-vectors everywhere


@pytest.mark.parametrize("which", ["-bvec_in", "-bvec_out"])
def test_case1_rcnn_refuses_zero_column(scan, which):
    name = which.lstrip("-")
    table = np.loadtxt(scan / name)
    table[:, 1] = 0.0
    np.savetxt(scan / name, table, fmt="%.6f")
    run_bad(rcnn_argv(scan), scan, f"{which} {scan / name}: column 2 of {table.shape[1]} is a zero vector", scan / "out.nii.gz")


def test_case1_rcnn_and_sh_refuse_scaled_bvecs(scan):
    np.savetxt(scan / "bvec_in", 3 * np.loadtxt(scan / "bvec_in"), fmt="%.6f")
    expected = f"{scan / 'bvec_in'}: column 1 of 6 has length 3; expected unit b-vectors"
    run_bad(rcnn_argv(scan), scan, expected, scan / "out.nii.gz")
    run_bad(sh_argv(scan, "-smooth", "0.01"), scan, expected, scan / "out.nii.gz")


def test_case1_infer_api_refuses_zero_and_scaled_vectors_and_renormalises_near_unit():
    from dmri_rcnn.core.inference import infer
    from dmri_rcnn.core.model import get_1d_autoencoder

    model = get_1d_autoencoder()
    dmri = np.random.default_rng(3).uniform(500, 2000, (10, 10, 10, 6)).astype(np.float32)
    mask = np.ones((10, 10, 10), bool)
    bvec_in, bvec_out = _unit(6, 4), _unit(2, 5)
    zero = bvec_out.copy()
    zero[:, 0] = 0
    with pytest.raises(InputError, match="bvec_out: column 1 of 2 is a zero vector"):
        infer(dmri, bvec_in, zero, mask, model, shell=1000, progress=False)
    with pytest.raises(InputError, match="bvec_in: column 1 of 6 has length 3"):
        infer(dmri, 3 * bvec_in, bvec_out, mask, model, shell=1000, progress=False)
    # within the stated tolerance (1 %) the vectors are renormalised: same result as exact unit vectors
    exact = infer(dmri, bvec_in, bvec_out, mask, model, shell=1000, progress=False)
    near = infer(dmri, 1.005 * bvec_in, bvec_out, mask, model, shell=1000, progress=False)
    np.testing.assert_allclose(near, exact, rtol=1e-4, atol=1e-2)


def test_case1_tfrecord_writer_refuses_non_unit_and_recognises_b0_by_bvalue(tmp_path):
    from dmri_rcnn.core.processing import save_tfrecord_data

    dmri = np.ones((4, 4, 4, 5), np.float32)
    bvals = np.array([5.0, 1000, 1000, 1000, 1000])
    bvecs = np.c_[[1.0, 0.0, 0.0], _unit(4, 6)]  # a b0 written with a direction, as some scanners do
    save_tfrecord_data(dmri, bvecs, bvals, np.ones((4, 4, 4)), tmp_path / "ok.tfrecord")
    assert (tmp_path / "ok.tfrecord").is_file()
    bad = bvecs.copy()
    bad[:, 2] *= 2
    with pytest.raises(InputError, match=r"bad.tfrecord \(bvecs\): column 3 of 5 \(b-value 1000\) has length 2"):
        save_tfrecord_data(dmri, bad, bvals, np.ones((4, 4, 4)), tmp_path / "bad.tfrecord")
    assert not (tmp_path / "bad.tfrecord").exists()


def test_case1_training_processor_refuses_records_with_non_unit_directions(tmp_path):
    """A TFRecord from another writer (e.g. the original package) is checked before training starts."""
    import tensorflow as tf

    from dmri_rcnn.core.processing import TrainingProcessor
    from dmri_rcnn.core.processing import tfrecord as tfrecord_module

    q = 20
    bvals = np.r_[0.0, np.full(q - 1, 1000.0)].astype(np.float32)
    bvecs = np.c_[np.zeros(3), _unit(q - 1, 8)].astype(np.float32)
    bvecs[:, 5] *= 1.5
    feature = {
        "dmri": tfrecord_module._tensor_feature(np.ones((10, 10, 10, q), np.float32)),
        "bvec": tfrecord_module._tensor_feature(bvecs),
        "bval": tfrecord_module._tensor_feature(bvals),
        "mask": tfrecord_module._tensor_feature(np.ones((10, 10, 10), np.int8)),
        **{key: tfrecord_module._int_feature(n) for key, n in zip("ijkb", (10, 10, 10, q))},
    }
    path = tmp_path / "foreign.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    processor = TrainingProcessor(shells=[1000], q_in=6, q_out=10)
    with pytest.raises(InputError, match=r"foreign.tfrecord \(bvecs\): column 6 of 20 \(b-value 1000\) has length 1.5"):
        processor.load_data([path])


def test_case1_evaluation_refuses_non_unit_directions():
    from dmri_rcnn.evaluation import evaluate_prediction

    shape = (3, 3, 3)
    rng = np.random.default_rng(9)
    acquired = rng.uniform(100, 200, shape + (4,))
    kwargs = dict(context=rng.uniform(100, 200, shape + (6,)), context_bvecs=2 * _unit(6, 10),
                  target_bvecs=_unit(4, 11), bval=1000.0)
    with pytest.raises(InputError, match="context bvecs: column 1 of 6 has length 2"):
        evaluate_prediction(acquired, acquired, np.ones(shape, bool), np.full(shape, 300.0), **kwargs)


def test_case1_load_bvec_b0_columns_recognised_by_bvalue(tmp_path):
    table = np.c_[[0.3, 0.0, 0.0], _unit(3, 7), [0.0, 0.0, 0.0]]
    np.savetxt(tmp_path / "bvecs", table, fmt="%.6f")
    with pytest.raises(InputError, match="column 1 of 5 has length 0.3"):
        io.load_bvec(tmp_path / "bvecs")  # without b-values a short non-zero vector is an error
    loaded = io.load_bvec(tmp_path / "bvecs", bvals=np.array([0, 1000, 1000, 1000, 0]))
    np.testing.assert_array_equal(loaded[:, [0, 4]], 0.0)  # b0 columns carry no direction
    np.testing.assert_allclose(np.linalg.norm(loaded[:, 1:4], axis=0), 1.0, rtol=1e-6)
    with pytest.raises(InputError, match=r"column 5 of 5 \(b-value 1000\) has length 0"):
        io.load_bvec(tmp_path / "bvecs", bvals=np.array([0, 1000, 1000, 1000, 1000]))


# ------------------------------------------------------------------ 2. square b-vector files


def test_case2_square_file_one_vector_per_row_is_read_by_rows(tmp_path):
    vectors = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.6, 0.0, 0.8]])  # rows are unit, columns are not
    rows_file = tmp_path / "rows"
    np.savetxt(rows_file, vectors, fmt="%.6f")  # one vector per row
    np.testing.assert_allclose(io.load_bvec(rows_file), vectors.T, atol=1e-6)
    np.savetxt(tmp_path / "cols", vectors.T, fmt="%.6f")  # FSL layout
    np.testing.assert_allclose(io.load_bvec(tmp_path / "cols"), vectors.T, atol=1e-6)


def test_case2_square_file_ambiguous_is_refused(tmp_path):
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # rows and columns both unit
    np.savetxt(tmp_path / "ambiguous", rotation, fmt="%.6f")
    with pytest.raises(InputError, match="3x3 b-vector file is ambiguous"):
        io.load_bvec(tmp_path / "ambiguous")
    np.savetxt(tmp_path / "identity", np.eye(3), fmt="%.6f")  # symmetric: both readings agree
    np.testing.assert_array_equal(io.load_bvec(tmp_path / "identity"), np.eye(3))


def test_case2_rcnn_command_refuses_ambiguous_square_bvec_out(scan):
    np.savetxt(scan / "bvec_out", np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), fmt="%.6f")
    run_bad(rcnn_argv(scan), scan, f"-bvec_out {scan / 'bvec_out'}: a 3x3 b-vector file is ambiguous", scan / "out.nii.gz")


# ------------------------------------------------------------------ 3. output is an input


@pytest.mark.parametrize("link", ["same", "symlink", "hardlink"])
@pytest.mark.parametrize("which", ["-dmri_in", "-mask"])
def test_case3_rcnn_output_same_file_as_input_is_refused(scan, link, which):
    source = scan / ("dmri.nii.gz" if which == "-dmri_in" else "mask.nii.gz")
    out = source
    if link == "symlink":
        out = scan / "alias.nii.gz"
        out.symlink_to(source)
    elif link == "hardlink":
        out = scan / "alias.nii.gz"
        os.link(source, out)
    line = run_bad(rcnn_argv(scan, **{"-dmri_out": out.name}), scan, f"-dmri_out {out} is the same file as {which} {source}")
    assert "would destroy the input" in line


def test_case3_sh_and_plot_output_same_as_input_are_refused(scan):
    run_bad(sh_argv(scan, "-smooth", "0.01", **{"-dmri_out": "dmri.nii.gz"}), scan, "is the same file as -dmri_in")
    png = scan / "figure.png"
    png.write_bytes(b"\x89PNG not really")
    plot = command("dmri_rcnn_plot.py") + ["-dmri_in", str(png), "-reference", str(scan / "dmri.nii.gz"), "-out", str(png)]
    run_bad(plot, scan, "-out " + str(png) + " is the same file as -dmri_in (1)")


def test_case3_replacing_an_unrelated_output_is_announced(scan):
    out = scan / "out.nii.gz"
    out.write_bytes(b"old")
    proc = subprocess.run(sh_argv(scan, "-smooth", "0.01"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"-dmri_out {out} exists and will be replaced" in proc.stderr
    assert nib.load(out).shape == (10, 10, 10, 4)


# ------------------------------------------------------------------ 4. SH baseline


def test_case4_sh_rejects_non_finite_signal(scan):
    data = nib.load(scan / "dmri.nii.gz").get_fdata(dtype=np.float32)
    data[3, 3, 3, 2] = np.nan
    nib.save(nib.Nifti1Image(data, AFFINE), scan / "dmri.nii.gz")
    run_bad(sh_argv(scan), scan, f"-dmri_in {scan / 'dmri.nii.gz'}: expected finite values, found 1 NaN/Inf", scan / "out.nii.gz")


def test_case4_sh_refuses_underdetermined_order_without_smoothing(scan):
    run_bad(sh_argv(scan, "-sh_order", "8"), scan, "-sh_order 8 has 45 coefficients but -bvec_in", scan / "out.nii.gz")
    proc = subprocess.run(sh_argv(scan, "-sh_order", "8", "-smooth", "0.01"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr  # with smoothing the fit is determined


# ------------------------------------------------------------------ 5. one mask rule


def test_case5_fractional_and_negative_mask_values_mean_the_same_everywhere(tmp_path):
    from dmri_rcnn.study.data import autocrop

    shape = (8, 8, 8)
    mask = np.zeros(shape, np.float32)
    mask[2:6, 2:6, 2:6] = 0.4  # a probabilistic mask: inside
    mask[0, 0, 0] = -1.0  # negative: outside
    nib.save(nib.Nifti1Image(mask, AFFINE), tmp_path / "mask.nii.gz")
    loaded = io.load_mask(tmp_path / "mask.nii.gz")
    assert loaded.dtype == bool and loaded.sum() == 64 and not loaded[0, 0, 0]
    # the study's crop step uses the same rule: the 0.4 region survives, the -1 voxel is not brain
    dmri = np.zeros(shape + (2,), np.float32)
    dmri[2:6, 2:6, 2:6] = 100.0
    nib.save(nib.Nifti1Image(dmri, AFFINE), tmp_path / "dmri.nii.gz")
    np.savetxt(tmp_path / "bvals", [[0, 1000]], fmt="%d")
    np.savetxt(tmp_path / "bvecs", np.c_[[0, 0, 0], [1, 0, 0]], fmt="%.6f")
    out = {k: tmp_path / f"crop_{k}" for k in ("dmri", "bvals", "bvecs", "mask")}
    out["dmri"], out["mask"] = tmp_path / "crop_dmri.nii.gz", tmp_path / "crop_mask.nii.gz"
    shape_out = autocrop(tmp_path / "dmri.nii.gz", tmp_path / "bvals", tmp_path / "bvecs", tmp_path / "mask.nii.gz",
                             out, tmp_path / "box.json")
    assert shape_out == (4, 4, 4)
    assert nib.load(out["mask"]).get_fdata().sum() == 64
    mask_set = io.load_dmri_set(tmp_path / "dmri.nii.gz", tmp_path / "bvecs", tmp_path / "bvals", tmp_path / "mask.nii.gz").mask
    assert mask_set.sum() == 64 and mask_set[0, 0, 0] == 0


# ------------------------------------------------------------------ 6. DTI fits and the summary


def test_case6_failed_dti_fits_are_counted_and_left_out():
    from dmri_rcnn.evaluation import evaluate_prediction

    rng = np.random.default_rng(11)
    ctx_bvecs, tgt_bvecs = _unit(6, 12), _unit(10, 13)
    shape = (4, 4, 2)
    evals = np.array([1.5e-3, 0.4e-3, 0.4e-3])

    def signal(bvecs, bvals):
        adc = np.einsum("iq,i->q", bvecs**2, evals)
        return 1000 * np.exp(-bvals * adc)

    ctx = np.broadcast_to(signal(ctx_bvecs, 1000.0), shape + (6,)).copy()
    acquired = np.broadcast_to(signal(tgt_bvecs, 1000.0), shape + (10,)).copy()
    b0 = np.full(shape, 1000.0)
    predicted = acquired * (1 + 0.05 * rng.standard_normal(acquired.shape))
    predicted[0, 0, 0] = 5000.0  # signal far above b0: the tensor fit fails in this voxel
    predicted[1, 1, 1] = -50.0  # negative everywhere: clipped to DIPY's minimum signal, a failed fit
    mask = np.ones(shape, bool)
    kwargs = dict(context=ctx, context_bvecs=ctx_bvecs, target_bvecs=tgt_bvecs, bval=1000.0)
    metrics = evaluate_prediction(predicted, acquired, mask, b0, **kwargs)
    assert metrics["dti_failed"] == 2
    # the failed voxels do not enter the FA error: same value as scoring only the other voxels
    keep = mask.copy()
    keep[0, 0, 0] = keep[1, 1, 1] = False
    only_good = evaluate_prediction(predicted, acquired, keep, b0, **kwargs)
    assert only_good["dti_failed"] == 0
    assert metrics["fa_mae"] == pytest.approx(only_good["fa_mae"], rel=1e-9)
    assert metrics["md_mae"] == pytest.approx(only_good["md_mae"], rel=1e-9)


def test_case6_dti_uses_per_volume_bvalues():
    from dmri_rcnn.evaluation import fit_dti_with_targets

    ctx_bvecs, tgt_bvecs = _unit(6, 14), _unit(12, 15)
    evals = np.array([1.7e-3, 0.3e-3, 0.3e-3])
    ctx_b, tgt_b = np.full(6, 980.0), np.linspace(970, 1030, 12)  # acquired values scatter around 1000

    def signal(bvecs, bvals):
        return 1000 * np.exp(-bvals * np.einsum("iq,i->q", bvecs**2, evals))

    shape = (2, 2, 2)
    ctx = np.broadcast_to(signal(ctx_bvecs, ctx_b), shape + (6,))
    tgt = np.broadcast_to(signal(tgt_bvecs, tgt_b), shape + (12,))
    b0 = np.full(shape, 1000.0)
    mask = np.ones(shape, bool)
    exact = fit_dti_with_targets(b0, ctx, tgt, ctx_bvecs, tgt_bvecs, 1000.0, mask, context_bvals=ctx_b, target_bvals=tgt_b)
    nominal = fit_dti_with_targets(b0, ctx, tgt, ctx_bvecs, tgt_bvecs, 1000.0, mask)
    assert exact.md[0, 0, 0] == pytest.approx(evals.mean(), rel=1e-6)
    assert abs(nominal.md[0, 0, 0] - evals.mean()) > 1e-6 * evals.mean() * 10


def test_case6_summary_gives_the_count_behind_every_mean():
    from dmri_rcnn.evaluation import summarise_metrics

    rows = pd.DataFrame(
        [
            {"subject": "a", "method": "3D", "shell": 1000, "q_in": 6, "mae": 1.0, "pdd_angle_deg": 10.0, "dti_failed": 0},
            {"subject": "b", "method": "3D", "shell": 1000, "q_in": 6, "mae": 3.0, "pdd_angle_deg": np.nan, "dti_failed": 7},
            {"subject": "c", "method": "3D", "shell": 1000, "q_in": 6, "mae": 5.0, "pdd_angle_deg": 20.0, "dti_failed": 1},
        ]
    )
    summary = summarise_metrics(rows).iloc[0]
    assert summary["n_subjects"] == 3
    assert summary["mae_n"] == 3 and summary["mae"] == pytest.approx(3.0)
    assert summary["pdd_angle_deg_n"] == 2 and summary["pdd_angle_deg"] == pytest.approx(15.0)
    assert summary["dti_failed"] == pytest.approx(8 / 3)
