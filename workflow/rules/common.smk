# Helper functions and config checks shared by every rules file. No rules here.
import hashlib
import os
import re

from dmri_rcnn.errors import InputError
from dmri_rcnn.study.pretrained import (
    PUBLISHED,
    SCRATCH,
    check_model_weights,
    check_super_resolve,
    evaluation_only,
    parse_model_name,
    published_key,
    super_resolve_shell,
    weights_source,
)

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")

#: Shells with published weights and per-shell scale constants (s/mm²).
KNOWN_SHELLS = (1000, 2000, 3000)
#: Context sizes of the paper (and of the published weights).
KNOWN_Q_IN = (6, 10, 30)


def config_error(key, message):
    """Stop before any job runs, naming the offending config key."""
    raise WorkflowError(f"invalid config: {key}: {message}")


def check_config(cfg):
    """Cross-key checks the JSON schema cannot express. Raises WorkflowError naming the key."""
    subjects = cfg["subjects"]
    for group in ("train", "validation", "test"):
        # Nothing is trained with epochs 0 (weights from elsewhere): no training subjects needed.
        if group == "train" and evaluation_only(cfg):
            continue
        if not subjects[group]:
            config_error(
                f"subjects.{group}", "the list is empty; name at least one subject"
            )
        duplicates = sorted(
            {s for s in subjects[group] if subjects[group].count(s) > 1}
        )
        if duplicates:
            config_error(
                f"subjects.{group}", f"lists {', '.join(duplicates)} more than once"
            )
    groups = ("train", "validation", "test")
    for index, first in enumerate(groups):
        for second in groups[index + 1 :]:
            shared = sorted(set(subjects[first]) & set(subjects[second]))
            if shared:
                config_error(
                    f"subjects.{second}",
                    f"subject {', '.join(shared)} is also in subjects.{first}; "
                    "training, validation and test subjects must not overlap",
                )
    shells_seen = set()
    for index, setting in enumerate(cfg["evaluation"]):
        key = f"evaluation[{index}]"
        if setting["shell"] not in KNOWN_SHELLS:
            config_error(
                f"{key}.shell",
                f"unknown shell {setting['shell']}; expected one of {', '.join(map(str, KNOWN_SHELLS))}",
            )
        if setting["shell"] in shells_seen:
            config_error(f"{key}.shell", f"shell {setting['shell']} is listed twice")
        shells_seen.add(setting["shell"])
        for q_in in setting["q_in"]:
            if q_in not in KNOWN_Q_IN:
                config_error(
                    f"{key}.q_in",
                    f"q_in {q_in} is not supported; expected one of {', '.join(map(str, KNOWN_Q_IN))}",
                )
    combined = cfg["models"]["combined"]
    if combined["enabled"]:
        for shell in combined["shells"]:
            if shell not in KNOWN_SHELLS:
                config_error(
                    "models.combined.shells",
                    f"unknown shell {shell}; expected one of {', '.join(map(str, KNOWN_SHELLS))}",
                )
        for q_in in combined["q_in"]:
            if q_in not in KNOWN_Q_IN:
                config_error(
                    "models.combined.q_in",
                    f"q_in {q_in} is not supported; expected one of {', '.join(map(str, KNOWN_Q_IN))}",
                )
    training = cfg["training"]
    if training.get("lr_schedule") == "cosine" and not training.get("steps_per_epoch"):
        config_error(
            "training.lr_schedule",
            "cosine decays over epochs x steps_per_epoch steps; set training.steps_per_epoch",
        )
    if subjects["source"] == "synthetic":
        n_directions = cfg["synthetic"]["n_directions"]
        q_out = cfg["training"]["q_out"]
        largest = max(q for setting in cfg["evaluation"] for q in setting["q_in"])
        if largest + q_out > n_directions:
            config_error(
                "synthetic.n_directions",
                f"{n_directions} directions per shell cannot hold q_in {largest} + q_out {q_out} per training example",
            )


check_config(config)

SUBJECTS = config["subjects"]
TRAIN_SUBJECTS = list(SUBJECTS["train"])
VALIDATION_SUBJECTS = list(SUBJECTS["validation"])
TEST_SUBJECTS = list(SUBJECTS["test"])
ALL_SUBJECTS = TRAIN_SUBJECTS + VALIDATION_SUBJECTS + TEST_SUBJECTS
#: (shell, q_in) pairs evaluated on every test subject.
SETTINGS = [(s["shell"], q_in) for s in config["evaluation"] for q_in in s["q_in"]]
SH_BASELINES = {baseline["name"]: baseline for baseline in config["sh_baselines"]}


def model_catalogue(cfg):
    """Every model to train: name -> {dim, shells, q_in}. Names: ``3D_b1000_q6`` or ``3D_all_q10``."""
    models = {}
    for shell, q_in in SETTINGS:
        for dim in cfg["models"]["dims"]:
            models[f"{dim}D_b{shell}_q{q_in}"] = {
                "dim": dim,
                "shells": [shell],
                "q_in": q_in,
            }
    combined = cfg["models"]["combined"]
    if combined["enabled"]:
        for q_in in combined["q_in"]:
            for dim in combined["dims"]:
                models[f"{dim}D_all_q{q_in}"] = {
                    "dim": dim,
                    "shells": list(combined["shells"]),
                    "q_in": q_in,
                }
    return models


MODELS = model_catalogue(config)
#: Where weights come from: scratch, published or a path pattern with {model} (models.weights).
WEIGHTS_SOURCE = weights_source(config)
#: True when nothing is trained (training.epochs: 0): the weights are evaluated as they are.
EVALUATION_ONLY = evaluation_only(config)
#: Models with a train_model job.
TRAINED_MODELS = [] if EVALUATION_ONLY else list(MODELS)


def check_weights_and_super_resolve(cfg):
    """Stop before any job on weights that cannot be had or a super_resolve section that cannot work."""
    try:
        check_model_weights(cfg, MODELS)
        check_super_resolve(cfg, MODELS)
    except InputError as err:
        key, _, message = str(err).partition(": ")
        config_error(key, message)


check_weights_and_super_resolve(config)


def rcnn_methods(shell, q_in):
    """Method names of the trained models evaluated at (shell, q_in): ``1D``, ``3D``, ``3D_combined``."""
    methods = [f"{dim}D" for dim in config["models"]["dims"]]
    combined = config["models"]["combined"]
    if combined["enabled"] and shell in combined["shells"] and q_in in combined["q_in"]:
        methods += [f"{dim}D_combined" for dim in combined["dims"]]
    return methods


def methods_for(shell, q_in):
    """Every method evaluated at (shell, q_in): the SH baselines, then the RCNN models."""
    return list(SH_BASELINES) + rcnn_methods(shell, q_in)


def model_for_method(method, shell, q_in):
    """The trained model a method name stands for at (shell, q_in)."""
    dim, _, variant = method.partition("_")
    if variant == "combined":
        return f"{dim}_all_q{q_in}"
    return f"{dim}_b{shell}_q{q_in}"


def stable_seed(*parts):
    """A reproducible 31-bit seed from the master seed and some names (Python's hash() is salted)."""
    text = ":".join(str(p) for p in (config["seed"], *parts))
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % (2**31)


def alternatives(names):
    """A wildcard regex matching exactly the given names."""
    return "|".join(re.escape(str(name)) for name in names)


# ----- inputs ---------------------------------------------------------------------------------------

SUBJECT_FILE_NAMES = {
    "dmri": "data.nii.gz",
    "bvals": "bvals",
    "bvecs": "bvecs",
    "mask": "nodif_brain_mask.nii.gz",
}
TRUTH_FILE_NAMES = {
    "tissue": "tissue.nii.gz",
    "fibre_dirs": "fibre_dirs.nii.gz",
    "fibre_fractions": "fibre_fractions.nii.gz",
}
if config["synthetic"]["write_noiseless"]:
    TRUTH_FILE_NAMES["noiseless"] = "data_noiseless.nii.gz"


def subject_folder(subject):
    """Folder holding a subject's data.nii.gz, bvals, bvecs and nodif_brain_mask.nii.gz."""
    source = SUBJECTS["source"]
    if source == "synthetic":
        return f"resources/synthetic/{subject}/T1w/Diffusion"
    if source == "hcp_s3":
        return f"resources/hcp/{subject}/T1w/Diffusion"
    return config["local"]["path"].format(subject=subject)


def local_subject_file(subject, key):
    """One of the user's files: its own {subject} pattern under local.files, else local.path/<HCP name>."""
    pattern = (config["local"].get("files") or {}).get(key)
    if pattern:
        return pattern.format(subject=subject)
    return f"{subject_folder(subject)}/{SUBJECT_FILE_NAMES[key]}"


def get_subject_files(wildcards):
    """The subject's raw files (simulated, downloaded or the user's own), keyed dmri/bvals/bvecs/mask."""
    if SUBJECTS["source"] == "local":
        return {
            key: local_subject_file(wildcards.subject, key)
            for key in SUBJECT_FILE_NAMES
        }
    folder = subject_folder(wildcards.subject)
    return {key: f"{folder}/{name}" for key, name in SUBJECT_FILE_NAMES.items()}


def hcp_s3_url(file_name):
    """S3 URL pattern (with a {subject} wildcard) of one file of an HCP subject's T1w/Diffusion folder."""
    settings = config["hcp_s3"]
    prefix = settings["prefix"].strip("/")
    return f"s3://{settings['bucket']}/{prefix}/{file_name}"


def hcp_s3_urls(wildcards):
    """The subject's four S3 URLs keyed dmri/bvals/bvecs/mask (named in download error messages)."""
    return {
        key: hcp_s3_url(name).format(subject=wildcards.subject)
        for key, name in SUBJECT_FILE_NAMES.items()
    }


def hcp_s3_storage_settings(cfg):
    """S3 storage settings the config may hold (endpoint, region); credentials never come from config."""
    settings = cfg["hcp_s3"]
    return {
        key: settings[key] for key in ("endpoint_url", "region") if settings.get(key)
    }


def check_hcp_s3_credentials():
    """Stop before any job, with one message, when the hcp_s3 source has no credentials.

    Accepted: --storage-s3-access-key/--storage-s3-secret-key, SNAKEMAKE_STORAGE_S3_ACCESS_KEY/_SECRET_KEY,
    AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE.
    """
    from dmri_rcnn.sources import missing_s3_credentials

    tagged = workflow.storage_provider_settings.get("s3")
    given = tagged.get_settings(None) if tagged is not None else None
    if given is not None and given.access_key and given.secret_key:
        return
    problem = missing_s3_credentials(os.environ)
    if problem:
        raise WorkflowError(problem)


if SUBJECTS["source"] == "hcp_s3":
    check_hcp_s3_credentials()


# ----- containers -----------------------------------------------------------------------------------


def container_image(kind):
    """Container image (--sdm apptainer) of the cpu or gpu steps; gpu falls back to containers.cpu."""
    images = config["containers"]
    return images.get(kind) or images.get("cpu") or None


def check_container_config():
    """Stop when --sdm apptainer is asked for without an image (all steps would quietly run on the host)."""
    methods = {str(m).lower() for m in workflow.deployment_settings.deployment_method}
    if any("apptainer" in m for m in methods) and not container_image("cpu"):
        raise WorkflowError(
            "invalid config: containers.cpu: --sdm apptainer needs an image (a .sif built from "
            "docker/Dockerfile.cpu, or a docker:// URL); found none"
        )


check_container_config()


def get_truth_files(wildcards):
    """Ground-truth maps of a synthetic subject (tissue labels, fibre directions); none for real data."""
    if SUBJECTS["source"] != "synthetic":
        return {}
    folder = subject_folder(wildcards.subject)
    return {key: f"{folder}/{name}" for key, name in TRUTH_FILE_NAMES.items()}


def get_cropped_truth(wildcards):
    """Cropped tissue map and fibre directions for evaluation (synthetic subjects only)."""
    if SUBJECTS["source"] != "synthetic":
        return {}
    return {
        key: f"results/preprocessed/{wildcards.subject}/{name}"
        for key, name in TRUTH_FILE_NAMES.items()
        if key != "noiseless"
    }


def get_training_records(wildcards):
    """TFRecord folders of the training and validation subjects."""
    return {
        "train": expand("results/tfrecords/{subject}", subject=TRAIN_SUBJECTS),
        "validation": expand(
            "results/tfrecords/{subject}", subject=VALIDATION_SUBJECTS
        ),
    }


def model_spec(wildcards):
    """Architecture and data settings of the model being trained."""
    return MODELS[wildcards.model]


def pretrained_weights(model):
    """The weights a model starts from (or is evaluated with) when models.weights is not scratch."""
    if WEIGHTS_SOURCE == PUBLISHED:
        return f"resources/published_weights/{model}.weights.h5"
    return WEIGHTS_SOURCE.format(model=model)


def study_model_weights(model):
    """The weights the study evaluates: trained (or fine-tuned) here, or the given ones with epochs 0."""
    if EVALUATION_ONLY:
        return pretrained_weights(model)
    return f"results/models/{model}/best.weights.h5"


def get_model_weights(wildcards):
    """Weights of the model behind an RCNN method at this (shell, q_in)."""
    model = model_for_method(
        wildcards.method, int(wildcards.shell), int(wildcards.q_in)
    )
    return study_model_weights(model)


def get_initial_weights(wildcards):
    """Fine-tuning: the weights train_model starts from (none when training from scratch)."""
    if WEIGHTS_SOURCE == SCRATCH:
        return {}
    return {"initial": pretrained_weights(wildcards.model)}


def published_checkpoint(wildcards):
    """(dim, shell or all/all_norm, q_in) of the published checkpoint behind a model name."""
    spec = MODELS.get(wildcards.model) or SUPER_RESOLVE_PUBLISHED.get(wildcards.model)
    norm = config["models"]["combined"].get("norm", False)
    return list(published_key(spec, norm))


def inference_model_spec(wildcards):
    """Architecture of the model behind an RCNN method (dim, width, min_filters) for inference."""
    model = model_for_method(
        wildcards.method, int(wildcards.shell), int(wildcards.q_in)
    )
    return {
        "dim": MODELS[model]["dim"],
        "width": config["models"]["width"],
        "min_filters": config["models"]["min_filters"],
        "name": model,
    }


def sh_settings(wildcards):
    """Order, smoothing and basis of one SH baseline."""
    return SH_BASELINES[wildcards.method]


def get_sh_selection(wildcards):
    """The validation subjects' choice of order and smoothing, for an ``auto`` baseline that uses them."""
    settings = SH_BASELINES[wildcards.method]
    if (
        settings["sh_order"] == "auto"
        and settings.get("select_on", "validation") == "validation"
    ):
        return {
            "selection": f"results/sh_selection/b{wildcards.shell}_q{wildcards.q_in}/{wildcards.method}.json"
        }
    return {}


def synthetic_seed(wildcards):
    return stable_seed("subject", wildcards.subject)


def context_seed(wildcards):
    # the same subset for every subject (one acquisition protocol), different per shell and q_in
    return stable_seed("context", wildcards.shell, wildcards.q_in)


def training_seed(wildcards):
    return stable_seed("train", wildcards.model)


def get_all_metrics(wildcards):
    """Per-(subject, shell, q_in, method) metric tables."""
    return [
        f"results/metrics/{subject}/b{shell}_q{q_in}/{method}.tsv"
        for subject in TEST_SUBJECTS
        for shell, q_in in SETTINGS
        for method in methods_for(shell, q_in)
    ]


def get_all_predictions():
    """Every predicted NIfTI (all methods, test subjects and settings): results users keep."""
    return [
        f"results/predictions/{subject}/b{shell}_q{q_in}/{method}.nii.gz"
        for subject in TEST_SUBJECTS
        for shell, q_in in SETTINGS
        for method in methods_for(shell, q_in)
    ]


def get_all_histories(wildcards):
    return expand("results/models/{model}/history.tsv", model=TRAINED_MODELS)


def example_subject():
    return config["report"]["example_subject"] or TEST_SUBJECTS[0]


def get_example_methods(wildcards):
    """Methods shown in the example-slice figure (every method at the first evaluated setting)."""
    shell, q_in = SETTINGS[0]
    return methods_for(shell, q_in)


def get_example_predictions_list(wildcards):
    """Predictions of every method for the example subject at the first evaluated setting (same order)."""
    shell, q_in = SETTINGS[0]
    subject = example_subject()
    return [
        f"results/predictions/{subject}/b{shell}_q{q_in}/{method}.nii.gz"
        for method in get_example_methods(wildcards)
    ]


def get_example_context(wildcards):
    shell, q_in = SETTINGS[0]
    subject = example_subject()
    return {
        "targets": f"results/context/{subject}/b{shell}_q{q_in}/targets.nii.gz",
        "mask": f"results/preprocessed/{subject}/nodif_brain_mask.nii.gz",
    }


#: Summary metrics drawn against q_in besides MAE (error_vs_q_in.png): one figure each.
EXTRA_FIGURE_METRICS = ("mae_norm", "ssim", "fa_mae", "md_mae", "pdd_angle_deg")


def get_example_dti_inputs(wildcards):
    """Files for the FA-map figure: the example subject's b0, context and acquired targets at the first setting."""
    shell, q_in = SETTINGS[0]
    folder = f"results/context/{example_subject()}/b{shell}_q{q_in}"
    return {
        "b0": f"{folder}/b0.nii.gz",
        "context": f"{folder}/context.nii.gz",
        "context_bvecs": f"{folder}/context.bvec",
        "targets": f"{folder}/targets.nii.gz",
        "target_bvecs": f"{folder}/targets.bvec",
        "mask": f"results/preprocessed/{example_subject()}/nodif_brain_mask.nii.gz",
    }


def get_final_outputs():
    outputs = [
        "results/summary.tsv",
        "results/figures/error_vs_q_in.png",
        "results/figures/example_slices.png",
        "results/figures/fa_maps.png",
    ]
    outputs += [
        f"results/figures/{metric}_vs_q_in.png" for metric in EXTRA_FIGURE_METRICS
    ]
    if TRAINED_MODELS:
        outputs.append("results/figures/loss_curves.png")
    # predictions are final results too, so a deleted one is rebuilt by a plain rerun
    outputs += get_all_predictions()
    return outputs


# ----- super-resolution of whole scans (target super_resolve) ---------------------------------------

SUPER_RESOLVE = config.get("super_resolve") or {}
SUPER_RESOLVE_SUBJECTS = list(SUPER_RESOLVE.get("subjects") or [])
#: A published model used only for super-resolution (super_resolve.weights: published): name -> spec.
SUPER_RESOLVE_PUBLISHED = {}
if SUPER_RESOLVE_SUBJECTS and SUPER_RESOLVE.get("weights", "study") == PUBLISHED:
    SUPER_RESOLVE_PUBLISHED[SUPER_RESOLVE["model"]] = parse_model_name(
        SUPER_RESOLVE["model"]
    )


def super_resolve_params(wildcards):
    """Shell, target directions and seed of the super-resolution."""
    name = SUPER_RESOLVE["model"]
    spec = MODELS.get(name) or parse_model_name(name)
    return {
        "shell": super_resolve_shell(SUPER_RESOLVE, spec),
        "targets": str(SUPER_RESOLVE.get("targets", "hcp")),
        "seed": stable_seed("super_resolve", wildcards.subject),
    }


def super_resolve_weights(wildcards):
    """Weights of super_resolve.model: the study's own, the published ones, or a given file."""
    choice = SUPER_RESOLVE.get("weights", "study")
    model = SUPER_RESOLVE["model"]
    if choice == "study":
        return study_model_weights(model)
    if choice == PUBLISHED:
        return f"resources/published_weights/{model}.weights.h5"
    return choice


def get_super_resolved():
    return [
        f"results/super_resolved/{subject}/{name}"
        for subject in SUPER_RESOLVE_SUBJECTS
        for name in ("data.nii.gz", "bvals", "bvecs")
    ]


wildcard_constraints:
    subject=alternatives(ALL_SUBJECTS + SUPER_RESOLVE_SUBJECTS),
    model=r"[13]D_(b\d+|all)_q\d+",
    shell=r"\d+",
    q_in=r"\d+",
    method=r"[A-Za-z0-9_]+",
