"""The study's design (dmri_rcnn.study.design) as plain functions of the config: no snakemake needed."""

from __future__ import annotations

import re

import pytest

from dmri_rcnn.core.model_spec import MODEL_NAME_PATTERN, ModelSpec
from dmri_rcnn.core.processing.scaling import SHELL_SCALE
from dmri_rcnn.core.weights import PUBLISHED_WEIGHTS
from dmri_rcnn.errors import InputError
from dmri_rcnn.study import design
from workflow_utils import load_default_config, tiny_config

# (mutation, key named in the error, detail named in the error): the messages users see from snakemake
BAD_CONFIGS = {
    "unknown shell": (lambda c: c["evaluation"][0].update(shell=1500), "evaluation[0].shell", "1500"),
    "shell twice": (
        lambda c: c["evaluation"].append({"shell": 1000, "q_in": [10]}),
        "evaluation[1].shell",
        "shell 1000 is listed twice",
    ),
    "q_in 7": (lambda c: c["evaluation"][0].update(q_in=[6, 7]), "evaluation[0].q_in", "7"),
    "empty test list": (lambda c: c["subjects"].update(test=[]), "subjects.test", "empty"),
    "empty train list": (lambda c: c["subjects"].update(train=[]), "subjects.train", "empty"),
    "duplicate subject": (lambda c: c["subjects"].update(test=["te1", "te1"]), "subjects.test", "te1 more than once"),
    "train/test overlap": (lambda c: c["subjects"].update(test=["tr1"]), "subjects.test", "tr1"),
    "train/validation overlap": (lambda c: c["subjects"].update(validation=["tr1"]), "subjects.validation", "tr1"),
    "combined unknown shell": (
        lambda c: c["models"].update(combined={"enabled": True, "dims": [3], "shells": [1000, 4000], "q_in": [10]}),
        "models.combined.shells",
        "4000",
    ),
    "combined on one shell": (
        lambda c: c["models"].update(combined={"enabled": True, "dims": [3], "shells": [1000], "q_in": [10]}),
        "models.combined.shells",
        "[1000] names one shell",
    ),
    "combined q_in 8": (
        lambda c: c["models"].update(combined={"enabled": True, "dims": [3], "shells": [1000], "q_in": [8]}),
        "models.combined.q_in",
        "q_in 8 is not supported; expected one of 6, 10, 30",
    ),
    "cosine without steps": (
        lambda c: c["training"].update(lr_schedule="cosine", steps_per_epoch=None),
        "training.lr_schedule",
        "steps_per_epoch",
    ),
    "empty test slab": (
        lambda c: c["preprocess"].update(test_slab=[20, 20]),
        "preprocess.test_slab",
        "[20, 20) is empty",
    ),
    "too few directions": (
        lambda c: c["synthetic"].update(n_directions=12),
        "synthetic.n_directions",
        "12 directions per shell cannot hold q_in 6 + q_out 10",
    ),
    "too few directions to evaluate": (
        lambda c: (c["synthetic"].update(n_directions=6), c["training"].update(epochs=0), c["models"].update(weights="published", width=1.0)),
        "synthetic.n_directions",
        "6 directions per shell cannot hold q_in 6 + 1 held-out target",
    ),
    "fixed SH order above the context": (
        lambda c: c["sh_baselines"].append({"name": "SH8", "sh_order": 8, "smooth": 0.0}),
        "sh_baselines[2].sh_order",
        "order 8 has 45 coefficients but q_in 6 gives only 6 context directions; choose sh_order <= 2",
    ),
    "example subject not a test subject": (
        lambda c: c["report"].update(example_subject="tr1"),
        "report.example_subject",
        "tr1 is not a test subject; expected one of te1",
    ),
    "synthetic shape below a patch": (
        lambda c: c["synthetic"].update(shape=[16, 16, 8]),
        "synthetic.shape",
        "[16, 16, 8] is smaller than a 10x10x10 patch",
    ),
    "test slab beyond the synthetic shape": (
        lambda c: c["preprocess"].update(test_slab=[0, 12]),
        "preprocess.test_slab",
        "needs 12 axial slices but synthetic.shape has 10",
    ),
}


# (mutation, the one line the schema's error becomes)
SCHEMA_ERRORS = {
    "misspelt top-level key": (
        lambda c: c.update(trainng={"epochs": 3}),
        "invalid config: trainng: unknown key; expected one of seed, subjects,",
    ),
    "misspelt nested key": (
        lambda c: c["training"].update(epochz=3),
        "invalid config: training.epochz: unknown key; expected one of epochs, steps_per_epoch,",
    ),
    "unknown source": (
        lambda c: c["subjects"].update(source="ftp"),
        "invalid config: subjects.source: 'ftp' is not allowed; expected one of synthetic, local, hcp_s3",
    ),
    "number as text": (
        lambda c: c["training"].update(epochs="3"),
        "invalid config: training.epochs: '3' is not of type integer; --config passes nested values as text",
    ),
    "odd SH order": (
        lambda c: c["sh_baselines"][1].update(sh_order=3),
        "invalid config: sh_baselines[1].sh_order: 3 is none of the allowed forms",
    ),
    "missing q_in": (lambda c: c["evaluation"][0].pop("q_in"), "invalid config: evaluation[0]: 'q_in' is a required property"),
    "negative seed": (lambda c: c.update(seed=-1), "invalid config: seed: -1 is less than the minimum of 0"),
}


@pytest.mark.parametrize("name", list(SCHEMA_ERRORS))
def test_schema_errors_are_one_line_naming_the_key(name):
    from snakemake.utils import validate

    from workflow_utils import REPO_ROOT

    mutate, expected = SCHEMA_ERRORS[name]
    config = tiny_config()
    mutate(config)
    with pytest.raises(Exception) as error:
        validate(config, str(REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    message = str(design.schema_error(error.value))
    assert message.startswith(expected), message
    assert "\n" not in message and len(message) < 300


def test_sh_coefficient_count_agrees_with_the_sh_baseline():
    from dmri_rcnn.evaluation.sh_baseline import n_sh_coefficients

    assert [design.n_sh_coefficients(o) for o in range(0, 13, 2)] == [n_sh_coefficients(o) for o in range(0, 13, 2)]


def test_smoothed_fixed_sh_order_is_accepted():
    config = tiny_config()
    config["sh_baselines"].append({"name": "SH8", "sh_order": 8, "smooth": 0.006})
    design.check_config(config)


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_bad_config_raises_naming_the_key(name):
    mutate, key, detail = BAD_CONFIGS[name]
    config = tiny_config()
    mutate(config)
    with pytest.raises(design.ConfigError) as error:
        design.check_config(config)
    message = str(error.value)
    assert message.startswith(f"invalid config: {key}: "), message
    assert detail in message
    assert error.value.key == key


def test_default_and_tiny_configs_pass():
    design.check_config(load_default_config())
    design.check_config(tiny_config())


def test_shells_and_q_in_come_from_the_scales_and_the_published_weights():
    assert design.KNOWN_SHELLS == tuple(SHELL_SCALE) == (1000, 2000, 3000)
    assert set(design.KNOWN_Q_IN) == {q_in for _, _, q_in in PUBLISHED_WEIGHTS} == {6, 10, 30}


def combined_config():
    config = tiny_config()
    config["evaluation"] = [{"shell": 1000, "q_in": [6, 10]}, {"shell": 2000, "q_in": [10]}]
    config["models"]["combined"] = {"enabled": True, "dims": [3], "shells": [1000, 2000], "q_in": [10]}
    return config


def test_model_catalogue_has_one_model_per_dim_and_setting_plus_combined():
    config = combined_config()
    models = design.model_catalogue(config)
    assert [spec.name for spec in models] == design.model_names(config) == [
        "1D_b1000_q6", "3D_b1000_q6", "1D_b1000_q10", "3D_b1000_q10", "1D_b2000_q10", "3D_b2000_q10", "3D_all_q10",
    ]
    assert models[-1] == ModelSpec(model_dim=3, shells=(1000, 2000), q_in=10, width=config["models"]["width"],
                                   min_filters=config["models"]["min_filters"])
    # the name is the spec's, and the spec is the name's with the config's choices
    for spec in models:
        assert design.model_spec(config, spec.name) == spec
        assert re.fullmatch(MODEL_NAME_PATTERN, spec.name)
    config["models"]["combined"]["norm"] = True
    assert design.model_spec(config, "3D_all_q10").scaling == "percentile"
    assert design.model_spec(config, "3D_b1000_q10").scaling == "shell"
    assert ModelSpec.from_name("3D_all_q10").shells == (1000, 2000, 3000)
    with pytest.raises(InputError, match="'3D_b1000' is not a model name like 3D_b1000_q6"):
        ModelSpec.from_name("3D_b1000")


def test_methods_and_the_models_behind_them():
    config = combined_config()
    baselines = [b["name"] for b in config["sh_baselines"]]
    assert design.methods_for(config, 2000, 10) == baselines + ["1D", "3D", "3D_combined"]
    assert design.methods_for(config, 1000, 6) == baselines + ["1D", "3D"]
    assert design.model_for_method("3D_combined", 2000, 10) == "3D_all_q10"
    assert design.model_for_method("1D", 1000, 6) == "1D_b1000_q6"
    models = design.model_names(config)
    for shell, q_in in design.evaluation_settings(config):
        for method in design.rcnn_methods(config, shell, q_in):
            assert design.model_for_method(method, shell, q_in) in models


def test_seeds_are_stable_31_bit_and_differ_by_purpose():
    config = tiny_config()
    assert design.stable_seed(0, "subject", "te1") == design.stable_seed(0, "subject", "te1")
    seeds = {
        design.synthetic_seed(config, "te1"),
        design.synthetic_seed(config, "tr1"),
        design.context_seed(config, 1000, 6),
        design.context_seed(config, "1000", "10"),
        design.training_seed(config, "3D_b1000_q6"),
    }
    assert len(seeds) == 5 and all(0 <= s < 2**31 for s in seeds)
    # wildcards arrive as strings: the same seed as the numbers
    assert design.context_seed(config, "1000", "6") == design.context_seed(config, 1000, 6)
    config["seed"] += 1
    assert design.synthetic_seed(config, "te1") not in seeds


def test_training_seed_varies_the_training_alone():
    config = tiny_config()
    data_seeds = (design.synthetic_seed(config, "tr1"), design.context_seed(config, 1000, 6))
    by_training_seed = {}
    for base in (None, 1, 2, 3):
        config["training"]["seed"] = base
        assert (design.synthetic_seed(config, "tr1"), design.context_seed(config, 1000, 6)) == data_seeds
        by_training_seed[base] = design.training_seed(config, "3D_b1000_q6")
        assert design.training_seed(config, "1D_b1000_q6") != by_training_seed[base]
    assert len(set(by_training_seed.values())) == 4
    config["training"]["seed"] = 2
    assert design.training_seed(config, "3D_b1000_q6") == by_training_seed[2]  # reproducible


def test_subject_files_by_source():
    config = tiny_config()
    assert design.subject_files(config, "te1")["dmri"] == "resources/synthetic/te1/T1w/Diffusion/data.nii.gz"
    config["subjects"]["source"] = "hcp_s3"
    assert design.subject_files(config, "100307")["mask"] == "resources/hcp/100307/T1w/Diffusion/nodif_brain_mask.nii.gz"
    config["subjects"]["source"] = "local"
    config["local"] = {"path": "scans/sub-{subject}", "files": {"bvals": "tables/{subject}.bval"}}
    files = design.subject_files(config, "01")
    assert files == {
        "dmri": "scans/sub-01/data.nii.gz",
        "bvals": "tables/01.bval",
        "bvecs": "scans/sub-01/bvecs",
        "mask": "scans/sub-01/nodif_brain_mask.nii.gz",
    }


def test_truth_files_include_the_noiseless_signal_only_when_written():
    config = tiny_config()
    config["synthetic"]["write_noiseless"] = False
    assert "noiseless" not in design.truth_file_names(config)
    config["synthetic"]["write_noiseless"] = True
    assert design.truth_file_names(config)["noiseless"] == "data_noiseless.nii.gz"


def test_s3_urls_and_alternatives():
    config = tiny_config()
    config["hcp_s3"].update(bucket="hcp-openaccess", prefix="/HCP_1200/{subject}/T1w/Diffusion/")
    assert design.hcp_s3_url(config, "bvals") == "s3://hcp-openaccess/HCP_1200/{subject}/T1w/Diffusion/bvals"
    assert design.alternatives(["a.b", 3]) == r"a\.b|3"


def test_every_vs_q_in_figure_draws_a_summary_metric():
    from dmri_rcnn.plot import METRIC_LABELS

    assert design.VS_Q_IN_FIGURES["error"] == "mae"
    assert set(design.VS_Q_IN_FIGURES.values()) <= set(METRIC_LABELS)


def test_final_outputs_name_every_prediction_and_figure():
    config = combined_config()
    outputs = design.final_outputs(config)
    predictions = [o for o in outputs if o.startswith("results/predictions/")]
    n_methods = sum(len(design.methods_for(config, s, q)) for s, q in design.evaluation_settings(config))
    assert len(predictions) == len(set(predictions)) == n_methods * len(config["subjects"]["test"])
    assert "results/predictions/te1/b2000_q10/3D_combined.nii.gz" in predictions
    assert "results/figures/error_vs_q_in.png" in outputs and "results/figures/loss_curves.png" in outputs
    assert "results/figures/result.png" in outputs
    assert design.per_prediction(config, "{subject}/{method}")[: len(config["sh_baselines"])] == [
        f"te1/{b['name']}" for b in config["sh_baselines"]
    ]


def test_example_files_are_of_the_chosen_subject_at_the_first_setting():
    config = tiny_config()
    config["subjects"]["test"] = ["te1", "te2"]
    assert design.example_files(config)["targets"] == "results/context/te1/b1000_q6/targets.nii.gz"
    config["report"]["example_subject"] = "te2"
    predictions = design.example_predictions(config)
    assert list(predictions) == design.methods_for(config, 1000, 6)
    assert predictions["3D"] == "results/predictions/te2/b1000_q6/3D.nii.gz"


def test_test_slab_applies_to_test_subjects_only():
    config = tiny_config()
    assert design.test_slab(config, "te1") is None
    config["preprocess"]["test_slab"] = [4, 8]
    assert design.test_slab(config, "te1") == [4, 8]
    assert design.test_slab(config, "tr1") is None
