"""Cross-shell prediction from a b = 1000 acquisition: run_dmri_rcnn.py -bval_out, --super-resolve and the
study's steps read the model's q-space encoding and target shells from its description.

The models are untrained tiny 3D networks built from their spec and saved with their sidecar: these tests
check what is fed to the network and what is written, not the prediction's quality.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from dmri_rcnn.cli.run_dmri_rcnn import main
from dmri_rcnn.core.model_spec import ModelSpec, check_target_bvals
from dmri_rcnn.errors import EXIT_BAD_INPUT, InputError

AFFINE = np.diag([1.25, 1.25, 1.25, 1.0])
SHAPE = (12, 10, 10)
CROSS_SHELL = "3D_b1000_q6_to2000_3000_bscaled"
B_VALUE = "3D_b1000_q6_to2000_3000_bvalue"


def _unit(rng, n):
    v = rng.normal(size=(3, n))
    return v / np.linalg.norm(v, axis=0)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """``{name: weights}`` of cross-shell models of both encodings and a per-shell, direction-encoded one."""
    from dmri_rcnn.core.model import build_model_from_spec, save_trained_model

    folder = tmp_path_factory.mktemp("models")
    weights = {}
    for name in (CROSS_SHELL, B_VALUE, "3D_b1000_q6"):
        spec = ModelSpec.from_name(name, width=0.125)
        weights[name] = folder / name / "best.weights.h5"
        weights[name].parent.mkdir()
        save_trained_model(build_model_from_spec(spec), spec, weights[name])
    return weights


@pytest.fixture(autouse=True)
def _no_downloads(tmp_path, monkeypatch):
    monkeypatch.setenv("DMRI_RCNN_DIR", str(tmp_path / "dmri_rcnn_home"))
    monkeypatch.setenv("DMRI_RCNN_WEIGHTS_URL", "http://127.0.0.1:9")


def write_scan(folder: Path, n_b0=0, q_in=6, target_bvals=(2000, 2000, 3000, 3000), q_out=4, seed=0) -> dict:
    """A b = 1000 scan (``n_b0`` b0 volumes first), mask, b-vectors and target b-vectors/b-values as files."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    bvals = np.concatenate([np.full(n_b0, 5.0), np.full(q_in, 1000.0)])
    bvecs = np.concatenate([np.zeros((3, n_b0)), _unit(rng, q_in)], axis=1)
    dmri = rng.uniform(1000, 2000, SHAPE + (bvals.size,)).astype(np.float32)
    dmri[..., :n_b0] = 3500.0
    mask = np.zeros(SHAPE, np.uint8)
    mask[2:-2, 2:-2, 2:-2] = 1
    paths = {name: folder / name for name in ("dmri.nii.gz", "mask.nii.gz", "bvec_in", "bvals", "bvec_out", "bval_out")}
    nib.save(nib.Nifti1Image(dmri, AFFINE), paths["dmri.nii.gz"])
    nib.save(nib.Nifti1Image(mask, AFFINE), paths["mask.nii.gz"])
    np.savetxt(paths["bvec_in"], bvecs, fmt="%.6f")
    np.savetxt(paths["bvals"], bvals[None], fmt="%g")
    np.savetxt(paths["bvec_out"], _unit(rng, q_out), fmt="%.6f")
    np.savetxt(paths["bval_out"], np.asarray(target_bvals, float)[None], fmt="%g")
    return paths


def _argv(paths, out, *extra):
    return [
        "-dmri_in", str(paths["dmri.nii.gz"]), "-bvec_in", str(paths["bvec_in"]), "-bvec_out", str(paths["bvec_out"]),
        "-mask", str(paths["mask.nii.gz"]), "-dmri_out", str(out), "-s", "1000", "--no-progress", *extra,
    ]


def _expect_one_line_error(capsys, argv, matches, out: Path):
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == EXIT_BAD_INPUT, err
    assert len(lines) == 1 and lines[0].startswith("run_dmri_rcnn.py: error: "), err
    assert all(match in lines[0] for match in matches), lines[0]
    assert not list(out.parent.glob(out.name.split(".")[0] + "*")), list(out.parent.iterdir())


# ------------------------------------------------------------------------------------------ the command


def test_the_command_predicts_b2000_from_b1000_with_a_cross_shell_model(tmp_path, capsys, models):
    paths = write_scan(tmp_path, target_bvals=(2000, 2000, 2000, 2000))
    out = tmp_path / "predicted_b2000.nii.gz"
    assert main(_argv(paths, out, "-bval_out", str(paths["bval_out"]), "--weights", str(models[CROSS_SHELL]))) == 0
    assert "Target b-values -> 2000" in capsys.readouterr().out
    at_2000 = nib.load(out)
    assert at_2000.shape == SHAPE + (4,) and np.allclose(at_2000.affine, AFFINE)

    # the network is told the shell: the same directions asked at b = 3000 give another prediction
    np.savetxt(paths["bval_out"], np.full((1, 4), 3000.0), fmt="%g")
    other = tmp_path / "predicted_b3000.nii.gz"
    assert main(_argv(paths, other, "-bval_out", str(paths["bval_out"]), "--weights", str(models[CROSS_SHELL]))) == 0
    brain = nib.load(paths["mask.nii.gz"]).get_fdata() > 0
    assert not np.allclose(at_2000.get_fdata()[brain], nib.load(other).get_fdata()[brain])


def test_a_b_value_model_reads_four_numbers_per_volume_and_predicts_another_shell(tmp_path, capsys, models):
    """The explicit b-value encoding: the network's q-space inputs are 4 wide, and the command feeds them."""
    from dmri_rcnn.core.model import load_trained_model

    model = load_trained_model(models[B_VALUE])
    assert [tuple(model.get_layer(name).output.shape) for name in ("enc_bvecs", "dec_bvecs")] == [
        (None, None, 4), (None, None, 4)]
    paths = write_scan(tmp_path, target_bvals=(2000, 2000, 3000, 3000))
    out = tmp_path / "predicted.nii.gz"
    assert main(_argv(paths, out, "-bval_out", str(paths["bval_out"]), "--weights", str(models[B_VALUE]))) == 0
    assert nib.load(out).shape == SHAPE + (4,)
    # weights of one encoding do not pass for a model of the other
    with pytest.raises(InputError, match="b_value q-encoding"):
        from dmri_rcnn.core.model_spec import check_weights

        check_weights(models[CROSS_SHELL], ModelSpec.from_name(B_VALUE, width=0.125), "the study's model")


def test_super_resolve_writes_a_multi_shell_dataset_dipy_reads(tmp_path, capsys, models):
    from dipy.core.gradients import gradient_table
    from dipy.io.gradients import read_bvals_bvecs

    paths = write_scan(tmp_path, n_b0=2)
    out = tmp_path / "sr.nii.gz"
    argv = _argv(paths, out, "--super-resolve", str(paths["bvals"]), "-bval_out", str(paths["bval_out"]),
                 "--weights", str(models[CROSS_SHELL]))
    assert main(argv) == 0
    assert "8 acquired + 4 predicted volumes" in capsys.readouterr().out
    bvals, bvecs = read_bvals_bvecs(str(tmp_path / "sr.bval"), str(tmp_path / "sr.bvec"))
    np.testing.assert_array_equal(bvals, [5, 5] + [1000] * 6 + [2000, 2000, 3000, 3000])
    gtab = gradient_table(bvals, bvecs=bvecs, b0_threshold=50)
    assert gtab.b0s_mask.sum() == 2 and sorted(set(gtab.bvals[~gtab.b0s_mask])) == [1000, 2000, 3000]
    image = nib.load(out)
    assert image.shape == SHAPE + (12,)
    acquired = nib.load(paths["dmri.nii.gz"]).get_fdata()
    np.testing.assert_array_equal(image.get_fdata()[..., :8], acquired)  # b0 and context copied unchanged


@pytest.mark.parametrize(
    ("weights", "target_bvals", "match"),
    [
        ("3D_b1000_q6", (1000, 2000, 2000, 1000),
         "the model 3D_b1000_q6 predicts b=1000 from b=1000 context, not b=2000; predicting other shells needs a "
         "cross-shell model such as 3D_b1000_q6_to2000_bscaled"),
        (None, (2000, 2000, 2000, 2000), "the model 3D_b1000_q6 predicts b=1000 from b=1000 context, not b=2000"),
        (CROSS_SHELL, (1000, 2000, 3000, 3000), f"the model {CROSS_SHELL} predicts b=2000/3000 from b=1000 context, "
         "not b=1000"),
        (CROSS_SHELL, (2000, 3000), "has 2 b-values but there are 4 target directions"),
    ],
)
def test_targets_the_model_does_not_predict_are_one_line_and_nothing_is_written(
    tmp_path, capsys, models, weights, target_bvals, match
):
    paths = write_scan(tmp_path, target_bvals=target_bvals)
    out = tmp_path / "predicted.nii.gz"
    extra = ["--weights", str(models[weights])] if weights else ["-m", "3"]  # None: the published model
    argv = _argv(paths, out, "-bval_out", str(paths["bval_out"]), *extra)
    _expect_one_line_error(capsys, argv, [f"-bval_out {paths['bval_out']}", match], out)


def test_without_bval_out_the_targets_are_of_the_context_shell(tmp_path, capsys, models):
    paths = write_scan(tmp_path)
    out = tmp_path / "same_shell.nii.gz"
    assert main(_argv(paths, out, "--weights", str(models["3D_b1000_q6"]))) == 0
    assert nib.load(out).shape == SHAPE + (4,)
    # a model predicting only other shells is not asked for its context's
    _expect_one_line_error(capsys, _argv(paths, tmp_path / "x.nii.gz", "--weights", str(models[CROSS_SHELL])),
                           [f"targets of shell -s 1000 (no -bval_out): the model {CROSS_SHELL} predicts b=2000/3000"],
                           tmp_path / "x.nii.gz")


# ------------------------------------------------------------------------------------------ the study and core


def test_the_study_super_resolves_a_subject_to_each_target_shell(tmp_path, models):
    from dipy.io.gradients import read_bvals_bvecs

    from dmri_rcnn.study.super_resolve import super_resolve_subject

    paths = write_scan(tmp_path / "in", n_b0=1)
    files = {"dmri": paths["dmri.nii.gz"], "bvals": paths["bvals"], "bvecs": paths["bvec_in"],
             "mask": paths["mask.nii.gz"]}
    out = {"dmri": tmp_path / "sr.nii.gz", "bvals": tmp_path / "sr.bval", "bvecs": tmp_path / "sr.bvec"}
    result = super_resolve_subject(files, models[CROSS_SHELL], 1000, "5", out)
    bvals, bvecs = read_bvals_bvecs(str(out["bvals"]), str(out["bvecs"]))
    np.testing.assert_array_equal(bvals, [5] + [1000] * 6 + [2000] * 5 + [3000] * 5)
    np.testing.assert_allclose(np.linalg.norm(bvecs[1:], axis=1), 1.0, atol=1e-5)
    assert nib.load(out["dmri"]).shape == SHAPE + (17,) and result.acquired.sum() == 7
    np.testing.assert_array_equal(result.gradient_table.bvals[1:], bvals[1:])  # b0 reads as b = 0


def test_the_study_prediction_refuses_a_model_that_does_not_predict_the_context_shell(tmp_path, models):
    from dmri_rcnn.study.predict_rcnn import predict_with_trained_model

    paths = write_scan(tmp_path)
    spec = ModelSpec.from_name(CROSS_SHELL, width=0.125)
    with pytest.raises(InputError, match=f"the model {CROSS_SHELL} predicts b=2000/3000 from b=1000 context"):
        predict_with_trained_model(paths["dmri.nii.gz"], paths["bvec_in"], paths["bvec_out"], paths["mask.nii.gz"],
                                   models[CROSS_SHELL], spec, 1000, tmp_path / "p.nii.gz")
    assert not (tmp_path / "p.nii.gz").exists()


def test_check_target_bvals_accepts_b_values_within_the_shell_tolerance():
    cross = ModelSpec.from_name(CROSS_SHELL)
    check_target_bvals(cross, 1000, [1990.0, 2005.0, 3000.0])
    check_target_bvals(ModelSpec.from_name("3D_all_q10"), 2000, [2010.0])
    with pytest.raises(InputError, match="a model without a description predicts b=1000"):
        check_target_bvals(None, 1000, [2000.0])


def test_super_resolve_needs_one_b_value_per_target():
    from dmri_rcnn.core.super_resolution import super_resolve

    with pytest.raises(InputError, match=r"target_bvals: expected one b-value per target direction \(4\), found 3"):
        super_resolve(np.ones((10, 10, 10, 7)), np.full(7, 1000.0), _unit(np.random.default_rng(0), 7),
                      np.ones((10, 10, 10)), None, 1000, _unit(np.random.default_rng(1), 4), target_bvals=[2000.0] * 3)


def test_the_study_prediction_gives_a_cross_shell_model_the_targets_b_values(tmp_path, models):
    from dmri_rcnn.study.predict_rcnn import PredictionSettings, predict_with_trained_model

    paths = write_scan(tmp_path)
    spec = ModelSpec.from_name(CROSS_SHELL, width=0.125)
    args = (paths["dmri.nii.gz"], paths["bvec_in"], paths["bvec_out"], paths["mask.nii.gz"], models[CROSS_SHELL],
            spec, 1000)
    predicted = predict_with_trained_model(*args, tmp_path / "p.nii.gz",
                                           settings=PredictionSettings(target_bvals=paths["bval_out"]))
    assert predicted.shape == SHAPE + (4,) and nib.load(tmp_path / "p.nii.gz").shape == SHAPE + (4,)
    np.savetxt(paths["bval_out"], np.array([[2000, 1000, 3000, 3000]]), fmt="%g")
    with pytest.raises(InputError, match=f"{paths['bval_out']}: the model {CROSS_SHELL} predicts b=2000/3000 "
                                         "from b=1000 context, not b=1000"):
        predict_with_trained_model(*args, tmp_path / "q.nii.gz",
                                   settings=PredictionSettings(target_bvals=paths["bval_out"]))
    assert not (tmp_path / "q.nii.gz").exists()
