"""``run_dmri_rcnn.py``: the original's command line, its README example, and every bad-input case."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from dmri_rcnn.cli.run_dmri_rcnn import build_parser, main
from dmri_rcnn.core.model import get_1d_autoencoder, get_3d_autoencoder
from dmri_rcnn.core.weights import save_original_checkpoint
from dmri_rcnn.errors import EXIT_BAD_INPUT

AFFINE = np.array([[-1.25, 0, 0, 30.0], [0, 1.25, 0, -20.0], [0, 0, 1.25, 5.0], [0, 0, 0, 1]])


def _unit(rng, n):
    v = rng.normal(size=(3, n))
    return v / np.linalg.norm(v, axis=0)


def write_subject(folder: Path, shape=(12, 10, 10), q_in=6, q_out=4, dtype=np.int16, seed=0, names=None):
    """Context dMRI, mask and b-vector files; returns a dict of paths."""
    names = names or {"dmri_in": "dmri.nii.gz", "mask": "mask.nii.gz", "bvec_in": "bvec_in", "bvec_out": "bvec_out"}
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    dmri = rng.uniform(200, 3000, shape + (q_in,)).astype(dtype)
    img = nib.Nifti1Image(dmri, AFFINE)
    img.header["descrip"] = b"synthetic context"
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(AFFINE, code=1)
    img.set_sform(AFFINE, code=4)
    nib.save(img, folder / names["dmri_in"])
    mask = np.zeros(shape, np.uint8)
    mask[2:-2, 2:-2, 2:-2] = 1
    nib.save(nib.Nifti1Image(mask, AFFINE), folder / names["mask"])
    np.savetxt(folder / names["bvec_in"], _unit(rng, q_in), fmt="%.6f")
    np.savetxt(folder / names["bvec_out"], _unit(rng, q_out), fmt="%.6f")
    return {key: folder / name for key, name in names.items()}


def _argv(paths, out, *extra):
    return [
        "-dmri_in", str(paths["dmri_in"]), "-bvec_in", str(paths["bvec_in"]), "-bvec_out", str(paths["bvec_out"]),
        "-mask", str(paths["mask"]), "-dmri_out", str(out), "-s", "1000", "--no-progress", *extra,
    ]


@pytest.fixture(scope="module")
def checkpoint_1d(tmp_path_factory):
    model = get_1d_autoencoder()
    model.get_layer("decoder").get_layer("dc4_conv").bias.assign(np.array([0.3], np.float32))
    prefix = tmp_path_factory.mktemp("ck1d") / "weights"
    save_original_checkpoint(model, prefix)
    return prefix


@pytest.fixture(autouse=True)
def _own_weights_home(tmp_path, monkeypatch):
    monkeypatch.setenv("DMRI_RCNN_DIR", str(tmp_path / "dmri_rcnn_home"))
    # Nothing is downloadable in tests: port 9 (discard) on the loopback refuses connections.
    monkeypatch.setenv("DMRI_RCNN_WEIGHTS_URL", "http://127.0.0.1:9")


def _expect_error(capsys, argv, match, out: Path):
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("run_dmri_rcnn.py: error: "), err
    assert match in lines[0], lines[0]
    assert "Traceback" not in err
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".") and "tmp" in p.name]


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.float32])
def test_writes_float_nifti_with_input_affine_and_header(tmp_path, capsys, checkpoint_1d, dtype):
    paths = write_subject(tmp_path, dtype=dtype)
    out = tmp_path / "out" / "inferred.nii.gz"
    out.parent.mkdir()
    assert main(_argv(paths, out, "-m", "1", "--weights", str(checkpoint_1d))) == 0
    assert "Model Type -> 1D" in capsys.readouterr().out
    written, source = nib.load(out), nib.load(paths["dmri_in"])
    data = written.get_fdata(dtype=np.float32)
    assert data.shape == (12, 10, 10, 4) and written.get_data_dtype() == np.float32
    np.testing.assert_allclose(written.affine, source.affine)
    assert int(written.header["sform_code"]) == 4 and int(written.header["qform_code"]) == 1
    assert written.header["descrip"] == source.header["descrip"]
    assert written.header.get_xyzt_units() == ("mm", "sec")
    np.testing.assert_allclose(written.header.get_zooms()[:3], (1.25, 1.25, 1.25))
    assert np.isfinite(data).all() and data.max() > 0
    assert [p.name for p in out.parent.iterdir()] == ["inferred.nii.gz"]


def test_readme_example_command_verbatim(tmp_path):
    """The original README's example, run as a user would, with a checkpoint placed in $DMRI_RCNN_DIR."""
    names = {"dmri_in": "context_dmri.nii.gz", "mask": "brain_mask.nii.gz", "bvec_in": "context_bvecs",
             "bvec_out": "target_bvecs"}
    write_subject(tmp_path, shape=(10, 10, 10), q_in=6, q_out=3, names=names)
    home = tmp_path / "weights_home"
    save_original_checkpoint(get_3d_autoencoder(), home / "3D_RCNN" / "b1000_6in" / "weights")
    command = ("run_dmri_rcnn.py -dmri_in context_dmri.nii.gz -bvec_in context_bvecs -bvec_out target_bvecs "
               "-mask brain_mask.nii.gz -dmri_out inferred_dmri.nii.gz -s 1000 -m 3")
    exe = shutil.which("run_dmri_rcnn.py")
    assert exe, "console script run_dmri_rcnn.py is not installed"
    proc = subprocess.run([exe, *command.split()[1:]], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "DMRI_RCNN_DIR": str(home)}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Model Type -> 3D" in proc.stdout and "q_out -> 3" in proc.stdout
    assert nib.load(tmp_path / "inferred_dmri.nii.gz").shape == (10, 10, 10, 3)


def test_help_lists_original_flags():
    text = build_parser().format_help()
    for flag in ("-dmri_in", "-bvec_in", "-bvec_out", "-mask", "-dmri_out", "--shell", "--model-dim",
                 "--combined", "--norm", "--batch-size", "--weights", "--overlap"):
        assert flag in text


def test_shell_within_30_is_accepted():
    base = ["-dmri_in", "a", "-bvec_in", "b", "-bvec_out", "c", "-mask", "d", "-dmri_out", "e.nii.gz"]
    assert build_parser().parse_args(base + ["-s", "1020"]).shell == 1000
    assert build_parser().parse_args(base + ["-s", "2975"]).shell == 3000


def test_unknown_shell_is_rejected(tmp_path, capsys):
    paths = write_subject(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(_argv(paths, tmp_path / "o.nii.gz")[:-3] + ["-s", "1500", "--no-progress"])
    assert exit_info.value.code == 2
    assert "unknown shell 1500" in capsys.readouterr().err


def test_console_script_bad_input_has_no_traceback(tmp_path):
    paths = write_subject(tmp_path, q_in=7)
    out = tmp_path / "o.nii.gz"
    proc = subprocess.run(["run_dmri_rcnn.py", *_argv(paths, out)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "has 3 rows and 7 columns; q_in must be one of 6, 10, 30" in proc.stderr
    assert not out.exists()


def _nan_dmri(paths):
    img = nib.load(paths["dmri_in"])
    data = img.get_fdata(dtype=np.float32)
    data[3, 3, 3, 0] = np.nan
    data[4, 4, 4, 1] = np.inf
    nib.save(nib.Nifti1Image(data, img.affine), paths["dmri_in"])


def _bvec_4_rows(paths):
    np.savetxt(paths["bvec_in"], np.ones((4, 6)))


def _bvec_count(paths):
    np.savetxt(paths["bvec_in"], _unit(np.random.default_rng(1), 10), fmt="%.6f")


def _mask_shape(paths):
    nib.save(nib.Nifti1Image(np.ones((12, 10, 9), np.uint8), AFFINE), paths["mask"])


def _dmri_3d(paths):
    nib.save(nib.Nifti1Image(np.ones((12, 10, 10), np.float32), AFFINE), paths["dmri_in"])


def _empty_mask(paths):
    nib.save(nib.Nifti1Image(np.zeros((12, 10, 10), np.uint8), AFFINE), paths["mask"])


def _not_nifti(paths):
    paths["dmri_in"].write_text("not an image")


@pytest.mark.parametrize(
    "damage, extra, match",
    [
        (_bvec_4_rows, (), "found 4 rows and 6 columns"),
        (_bvec_count, (), "has 6 volumes but -bvec_in"),
        (_mask_shape, (), "has shape (12, 10, 9); expected the dMRI's spatial shape (12, 10, 10)"),
        (_dmri_3d, (), "expected a 4D image (i, j, k, q_in), found shape (12, 10, 10)"),
        (_nan_dmri, (), "found 2 NaN/Inf value(s)"),
        (_empty_mask, (), "the brain mask has no voxel > 0"),
        (_not_nifti, (), "expected a NIfTI image"),
        (None, ("-c", "-m", "1"), "no published weights for the 1D model, combined"),
        (None, ("-c", "-m", "3"), "no published weights for the 3D model, combined, q_in=6"),
        (None, ("-n",), "-n/--norm is only available with -c/--combined"),
        (None, ("-b", "0"), "-b/--batch-size must be >= 1"),
    ],
    ids=["bvec-not-3xN", "bvec-count", "mask-shape", "dmri-3d", "nan-inf", "empty-mask", "not-nifti",
         "combined-1d", "combined-q6", "norm-without-combined", "batch-size"],
)
def test_bad_input_one_line_no_output(tmp_path, capsys, damage, extra, match):
    paths = write_subject(tmp_path)
    if damage:
        damage(paths)
    out = tmp_path / "inferred.nii.gz"
    _expect_error(capsys, _argv(paths, out, *extra), match, out)


def test_q_in_not_published(tmp_path, capsys):
    paths = write_subject(tmp_path, q_in=8)
    out = tmp_path / "inferred.nii.gz"
    _expect_error(capsys, _argv(paths, out), "has 3 rows and 8 columns; q_in must be one of 6, 10, 30", out)


def test_missing_published_weights_say_where_and_how(tmp_path, capsys):
    paths = write_subject(tmp_path)
    out = tmp_path / "inferred.nii.gz"
    expected = tmp_path / "dmri_rcnn_home" / "3D_RCNN" / "b1000_6in" / "weights.index"
    _expect_error(capsys, _argv(paths, out, "-m", "3"), f"weights not found at {expected}", out)


def test_missing_weights_option_names_the_path(tmp_path, capsys):
    paths = write_subject(tmp_path)
    out = tmp_path / "inferred.nii.gz"
    _expect_error(capsys, _argv(paths, out, "--weights", str(tmp_path / "mine" / "weights")),
                  f"checkpoint not found: expected {tmp_path / 'mine' / 'weights.index'}", out)


def test_missing_input_file(tmp_path, capsys):
    paths = write_subject(tmp_path)
    paths["mask"].unlink()
    out = tmp_path / "inferred.nii.gz"
    _expect_error(capsys, _argv(paths, out), f"-mask {paths['mask']}: file not found", out)


@pytest.mark.parametrize("where", ["missing-folder", "is-directory", "not-nifti-name", "parent-is-file", "read-only"])
def test_unwritable_output(tmp_path, capsys, where):
    paths = write_subject(tmp_path / "in")
    if where == "missing-folder":
        out, match = tmp_path / "no" / "such" / "out.nii.gz", "does not exist"
    elif where == "is-directory":
        out, match = tmp_path / "out.nii.gz", "is a directory"
        out.mkdir()
    elif where == "not-nifti-name":
        out, match = tmp_path / "out.txt", "expected a file name ending in .nii or .nii.gz"
    elif where == "read-only":  # /proc refuses new files even to root, unlike a chmod-ed folder
        out, match = Path("/proc/dmri_rcnn_out.nii.gz"), "cannot write in folder /proc"
    else:
        (tmp_path / "afile").write_text("x")
        out, match = tmp_path / "afile" / "out.nii.gz", f"{tmp_path / 'afile'} is a file, not a folder"
    code = main(_argv(paths, out))
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT and err.count("\n") == 1 and match in err and "Traceback" not in err
    assert not out.is_file()


def test_overlap_chunks_and_norm_options(tmp_path, capsys, checkpoint_1d):
    """--overlap, --q-out-chunk and -c -n (99th-percentile scaling) give what the library computes."""
    from dmri_rcnn.core.inference import infer
    from dmri_rcnn.core.processing.scaling import percentile_scale

    paths = write_subject(tmp_path, q_out=3)
    dmri = nib.load(paths["dmri_in"]).get_fdata(dtype=np.float32)
    mask = nib.load(paths["mask"]).get_fdata() > 0
    bvec_in, bvec_out = np.loadtxt(paths["bvec_in"]), np.loadtxt(paths["bvec_out"])
    model = get_1d_autoencoder(str(checkpoint_1d))

    out = tmp_path / "overlap.nii.gz"
    assert main(_argv(paths, out, "-m", "1", "--weights", str(checkpoint_1d), "--overlap", "--q-out-chunk", "2")) == 0
    expected = infer(dmri, bvec_in, bvec_out, mask, model, shell=1000, overlap=True, progress=False)
    np.testing.assert_allclose(nib.load(out).get_fdata(dtype=np.float32), expected, rtol=1e-5, atol=1e-2)
    tiled = infer(dmri, bvec_in, bvec_out, mask, model, shell=1000, progress=False)
    assert np.max(np.abs(expected - tiled)) > 1.0  # blending really changed the result

    out = tmp_path / "norm.nii.gz"
    assert main(_argv(paths, out, "-m", "1", "-c", "-n", "--weights", str(checkpoint_1d))) == 0
    scale = percentile_scale(dmri, mask, 99)
    expected = infer(dmri, bvec_in, bvec_out, mask, model, scale=scale, progress=False)
    np.testing.assert_allclose(nib.load(out).get_fdata(dtype=np.float32), expected, rtol=1e-5, atol=1e-2)
    assert not np.allclose(expected, tiled, atol=1.0)  # percentile scale differs from 4000


def test_own_weights_h5_via_weights_option(tmp_path, capsys):
    from dmri_rcnn.core.inference import infer
    from dmri_rcnn.core.weights import save_model_weights

    model = get_1d_autoencoder(width=1.0)
    model.get_layer("decoder").get_layer("dc4_conv").bias.assign(np.array([0.2], np.float32))
    weights = save_model_weights(model, tmp_path / "trained.weights.h5")
    paths = write_subject(tmp_path, q_in=8, q_out=2)  # any q_in is fine with own weights
    out = tmp_path / "inferred.nii"
    assert main(_argv(paths, out, "-m", "1", "--weights", str(weights))) == 0
    expected = infer(nib.load(paths["dmri_in"]).get_fdata(dtype=np.float32), np.loadtxt(paths["bvec_in"]),
                     np.loadtxt(paths["bvec_out"]), nib.load(paths["mask"]).get_fdata() > 0, model,
                     shell=1000, progress=False)
    np.testing.assert_allclose(nib.load(out).get_fdata(dtype=np.float32), expected, rtol=1e-5, atol=1e-2)
    assert expected.max() > 0
