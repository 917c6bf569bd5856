"""The cross-shell study (dmri_rcnn.study.cross_shell): its plan as functions of the config, and its steps
on a small simulated subject."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dmri_rcnn.core import io
from dmri_rcnn.errors import ConfigError
from dmri_rcnn.study import cross_shell, design
from dmri_rcnn.study.data import extract_shell
from dmri_rcnn.study.metrics_and_figures import evaluate_cross_shell, plot_cross_shell, summarise_cross_shell
from dmri_rcnn.study.predict_dti import extrapolate_dti
from workflow_utils import load_default_config, tiny_config


def cross_shell_config(**section) -> dict:
    config = tiny_config()
    config["cross_shell"].update(enabled=True, **section)
    return config


def test_the_default_config_has_no_cross_shell_model_or_output():
    config = load_default_config()
    assert not cross_shell.enabled(config)
    assert cross_shell.model_catalogue(config) == [] and cross_shell.final_outputs(config) == []
    assert not any("cross_shell" in path for path in design.final_outputs(config))


def test_enabled_study_trains_b_scaled_models_predicting_the_other_shells():
    config = cross_shell_config(q_in=[6, 10])
    config["synthetic"]["n_directions"] = 30
    names = [spec.name for spec in cross_shell.model_catalogue(config)]
    assert names == ["1D_b1000_q6_to2000_3000_bscaled", "3D_b1000_q6_to2000_3000_bscaled",
                     "1D_b1000_q10_to2000_3000_bscaled", "3D_b1000_q10_to2000_3000_bscaled"]
    assert set(names) <= set(design.model_names(config))
    spec = cross_shell.model_catalogue(config)[1]
    assert spec.q_encoding == "b_scaled" and spec.target_shells == (2000, 3000) and spec.width == 0.05
    assert cross_shell.model_for_method(config, "3D", 10) == "3D_b1000_q10_to2000_3000_bscaled"
    assert cross_shell.SUMMARY in design.final_outputs(config) and cross_shell.FIGURE in design.final_outputs(config)


def test_the_explicit_b_value_encoding_names_its_models():
    config = cross_shell_config()
    config["cross_shell"]["q_encoding"] = "b_value"
    (one_d, three_d) = cross_shell.model_catalogue(config)
    assert (three_d.name, three_d.q_encoding) == ("3D_b1000_q6_to2000_3000_bvalue", "b_value")
    assert cross_shell.model_for_method(config, "1D", 6) == one_d.name == "1D_b1000_q6_to2000_3000_bvalue"


def test_methods_per_target_shell():
    config = cross_shell_config()
    # at the context shell: the SH baseline and the main study's per-shell models (it evaluates b1000, q_in 6)
    assert cross_shell.methods_for(config, 1000) == ["DTI", "SH", "1D", "3D"]
    assert cross_shell.methods_for(config, 2000) == ["DTI", "1D", "3D"]
    assert cross_shell.prediction_path(config, "te1", 6, 1000, "3D") == "results/predictions/te1/b1000_q6/3D.nii.gz"
    assert cross_shell.prediction_path(config, "te1", 6, 2000, "3D") == "results/cross_shell/predictions/te1/q6/b2000/3D.nii.gz"
    # a q_in the main study does not evaluate has no per-shell model there
    assert cross_shell.methods_for(config, 1000, q_in=10) == ["DTI", "SH"]
    config["cross_shell"]["sh_baseline"] = None
    assert cross_shell.methods_for(config, 1000) == ["DTI", "1D", "3D"]
    assert len(cross_shell.per_prediction(cross_shell_config(), cross_shell.METRICS)) == 4 + 3 + 3


def test_the_sh_baseline_and_the_context_shell_targets_are_the_main_studys():
    config = cross_shell_config()
    assert cross_shell.prediction_path(config, "te1", 6, 1000, "SH") == "results/predictions/te1/b1000_q6/SH.nii.gz"
    assert cross_shell.prediction_path(config, "te1", 6, 2000, "3D") == "results/cross_shell/predictions/te1/q6/b2000/3D.nii.gz"
    assert cross_shell.target_files(config, "te1", 6, 1000)["targets"] == "results/context/te1/b1000_q6/targets.nii.gz"
    assert cross_shell.target_files(config, "te1", 6, 3000)["target_bvals"] == "results/cross_shell/shells/te1/b3000.bval"


def test_example_slices_show_the_first_subject_and_q_in_per_target_shell():
    config = cross_shell_config(q_in=[10, 6])
    config["subjects"]["test"] = ["te2", "te1"]
    figures = cross_shell.example_slice_figures(config)
    assert figures == [f"results/cross_shell/example_slices_b{b}.png" for b in (1000, 2000, 3000)]
    assert cross_shell.example_slice_files(config, 2000) == {
        "targets": "results/cross_shell/shells/te2/b2000.nii.gz",
        "mask": "results/preprocessed/te2/nodif_brain_mask.nii.gz",
    }
    assert cross_shell.example_slice_files(config, 1000)["targets"] == "results/context/te2/b1000_q10/targets.nii.gz"
    assert cross_shell.example_slice_predictions(config, 1000) == {
        "DTI": "results/cross_shell/predictions/te2/q10/b1000/DTI.nii.gz",
        "SH": "results/predictions/te2/b1000_q10/SH.nii.gz",
    }
    assert list(cross_shell.example_slice_predictions(config, 3000)) == ["DTI", "1D", "3D"]
    assert cross_shell.example_slice_predictions(config, 3000)["3D"] == "results/cross_shell/predictions/te2/q10/b3000/3D.nii.gz"
    assert set(figures) <= set(cross_shell.final_outputs(config)) and set(figures) <= set(design.final_outputs(config))
    config["cross_shell"]["enabled"] = False
    assert not any("example_slices_b" in path for path in design.final_outputs(config))


@pytest.mark.parametrize(
    ("section", "key", "found"),
    [
        ({"target_shells": [1000, 1500]}, "cross_shell.target_shells", "unknown shell 1500"),
        ({"context_shell": 500}, "cross_shell.context_shell", "unknown shell 500"),
        ({"q_in": [7]}, "cross_shell.q_in", "q_in 7 is not supported"),
        ({"target_shells": [1000]}, "cross_shell.target_shells", "holds no shell but the context's"),
        ({"sh_baseline": "SH9"}, "cross_shell.sh_baseline", "SH9 is not one of sh_baselines"),
        ({"q_in": [30]}, "synthetic.n_directions", "cannot hold cross_shell q_in 30 + q_out 10"),
    ],
)
def test_bad_cross_shell_config_names_the_key(section, key, found):
    with pytest.raises(ConfigError) as error:
        design.check_config(cross_shell_config(**section))
    message = str(error.value)
    assert message.startswith(f"invalid config: {key}: ") and found in message, message
    assert "\n" not in message


def test_a_disabled_section_is_not_checked():
    config = tiny_config()
    config["cross_shell"]["target_shells"] = [1500]
    design.check_config(config)


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    """A small simulated subject (b0, 1000, 2000, 3000) with its b = 1000, q_in 6 context split."""
    from dmri_rcnn.simulation import simulate_subject, write_subject
    from dmri_rcnn.study.data import subsample_context

    folder = tmp_path_factory.mktemp("subject")
    files = write_subject(simulate_subject(seed=3, shape=(8, 8, 4), n_directions=20, n_b0=2), folder)
    split = {name: folder / "split" / name for name in ("context.nii.gz", "context.bvec", "context.bval",
                                                        "targets.nii.gz", "targets.bvec", "targets.bval", "b0.nii.gz")}
    out = {"context": split["context.nii.gz"], "context_bvecs": split["context.bvec"],
           "context_bvals": split["context.bval"], "targets": split["targets.nii.gz"],
           "target_bvecs": split["targets.bvec"], "target_bvals": split["targets.bval"], "b0": split["b0.nii.gz"]}
    (folder / "split").mkdir()
    subsample_context(folder / "data.nii.gz", folder / "bvals", folder / "bvecs", shell=1000, q_in=6, seed=1, out=out)
    shell = {"targets": folder / "b2000.nii.gz", "target_bvecs": folder / "b2000.bvec", "target_bvals": folder / "b2000.bval"}
    count = extract_shell(folder / "data.nii.gz", folder / "bvals", folder / "bvecs", 2000, shell)
    context = {key: out[key] for key in ("b0", "context", "context_bvecs", "context_bvals")}
    return {"folder": folder, "count": count, "context": context, "shell": shell,
            "mask": folder / "nodif_brain_mask.nii.gz", "tissue": files.get("tissue", folder / "tissue.nii.gz")}


def test_extract_shell_writes_every_volume_of_the_shell(subject):
    assert subject["count"] == 20
    assert io.load_nifti(subject["shell"]["targets"]).shape == (8, 8, 4, 20)
    assert np.allclose(io.load_bval(subject["shell"]["target_bvals"]), 2000, atol=30)


def test_dti_extrapolation_is_evaluated_with_signal_and_kurtosis_errors(subject, tmp_path):
    files = {**subject["context"], **subject["shell"], "mask": subject["mask"], "tissue": subject["tissue"]}
    predicted = extrapolate_dti(files, 1000, tmp_path / "DTI.nii.gz")
    assert predicted.shape == (8, 8, 4, 20) and np.isfinite(predicted).all()
    rows = []
    for method, prediction in (("DTI", tmp_path / "DTI.nii.gz"), ("acquired", subject["shell"]["targets"])):
        row = {"subject": "s1", "method": method, "shell": 2000, "q_in": 6}
        rows.append(evaluate_cross_shell({**files, "prediction": prediction}, row, tmp_path / f"{method}.tsv"))
    assert rows[0]["mae"] > 0 and "mae_white_matter" in rows[0] and np.isfinite(rows[0]["mk_mae"])
    assert rows[1]["mae"] == 0 and rows[1]["mk_mae"] == 0
    at_3000 = evaluate_cross_shell({**files, "prediction": tmp_path / "DTI.nii.gz"},
                                               {"subject": "s1", "method": "DTI", "shell": 3000, "q_in": 6},
                                               tmp_path / "b3000.tsv")
    assert "mk_mae" not in at_3000  # kurtosis errors at b = 2000 only

    summary = summarise_cross_shell([tmp_path / "DTI.tsv", tmp_path / "b3000.tsv"], tmp_path / "summary.tsv")
    assert list(summary["shell"]) == [2000, 3000] and list(summary["method"]) == ["DTI", "DTI"]
    assert pd.read_csv(tmp_path / "summary.tsv", sep="\t")["mk_mae"].isna().tolist() == [False, True]
    plot_cross_shell(tmp_path / "summary.tsv", tmp_path / "figure.png")
    assert (tmp_path / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
