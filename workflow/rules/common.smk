# Config validation and input functions shared by every rules file. No rules here.
# The study's design (checks, models, methods, seeds, file names) is dmri_rcnn.study.design.
import os
import warnings

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from dmri_rcnn.core.model_spec import MODEL_NAME_PATTERN
from dmri_rcnn.study import cross_shell, design, pretrained

# `snakemake --report` (9.x) evaluates each job's default disk_mb, which reads the input size, inside a
# running event loop: the size coroutine is dropped, unawaited, with a two-line RuntimeWarning per job.
warnings.filterwarnings(
    "ignore",
    message=r"coroutine 'InputFiles\._predicated_size_files\.<locals>\.sizes' was never awaited",
    category=RuntimeWarning,
)

try:
    validate(config, schema="../schemas/config.schema.yaml")
except WorkflowError as error:
    # one line naming the key, not Snakemake's print of the whole schema and config
    raise WorkflowError(str(design.schema_error(error) or error)) from None
try:
    design.check_config(config)
except design.ConfigError as error:
    raise WorkflowError(str(error)) from None

SUBJECTS = config["subjects"]
TRAIN_SUBJECTS = list(SUBJECTS["train"])
VALIDATION_SUBJECTS = list(SUBJECTS["validation"])
TEST_SUBJECTS = list(SUBJECTS["test"])
ALL_SUBJECTS = TRAIN_SUBJECTS + VALIDATION_SUBJECTS + TEST_SUBJECTS
#: (shell, q_in) pairs evaluated on every test subject.
SETTINGS = design.evaluation_settings(config)
SH_BASELINES = {baseline["name"]: baseline for baseline in config["sh_baselines"]}
#: Names of the study's models (each stands for design.model_spec(config, name)).
MODELS = design.model_names(config)
#: Where weights come from: scratch, published or a path pattern with {model} (models.weights).
WEIGHTS_SOURCE = pretrained.weights_source(config)
#: True when nothing is trained (training.epochs: 0): the weights are evaluated as they are.
EVALUATION_ONLY = pretrained.evaluation_only(config)
#: Models with a train_model job.
TRAINED_MODELS = [] if EVALUATION_ONLY else list(MODELS)
SUPER_RESOLVE = config.get("super_resolve") or {}
SUPER_RESOLVE_SUBJECTS = list(SUPER_RESOLVE.get("subjects") or [])
TRUTH_FILE_NAMES = design.truth_file_names(config)


def hcp_s3_url(file_name):
    return design.hcp_s3_url(config, file_name)


def hcp_s3_urls(wildcards):
    """The subject's four S3 URLs keyed dmri/bvals/bvecs/mask (named in download error messages)."""
    return design.hcp_s3_urls(config, wildcards.subject)


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


def check_local_subjects():
    """Stop before any job when a local subject's files cannot be used: one line per subject."""
    from snakemake.logging import logger

    from dmri_rcnn.study.preflight import check_local_subjects

    errors, warnings = check_local_subjects(config)
    for line in warnings:
        logger.warning(line)
    if errors:
        raise WorkflowError("\n".join(errors))


# Checked once, by the Snakemake that plans the jobs (not again in each job a cluster node runs).
if not (workflow.remote_exec or workflow.subprocess_exec):
    check_local_subjects()


def container_image(kind):
    return design.container_image(config, kind)


def gpus_per_job():
    """GPUs a TensorFlow job (training, inference, super-resolution) holds: 1 when the run counts them.

    `--resources gpu=1` then runs one such job at a time. Without it the count is 0: local runs keep their
    parallelism, and a cluster profile's set-resources decides which jobs request a GPU.
    """
    return 1 if "gpu" in workflow.global_resources else 0


def training_gpus():
    """GPUs a training holds when the run counts them: as many as `training.devices` uses (null: all the
    run's GPUs, every one the job sees)."""
    if "gpu" not in workflow.global_resources:
        return 0
    # Snakemake 9 holds the --resources value as a Resource object
    available = workflow.global_resources["gpu"]
    available = int(getattr(available, "value", available))
    devices = config["training"].get("devices")
    if devices is None:
        return available
    return min(devices if isinstance(devices, int) else len(devices), available)


def check_container_config():
    """Stop when --sdm apptainer is asked for without an image (all steps would quietly run on the host)."""
    methods = {str(m).lower() for m in workflow.deployment_settings.deployment_method}
    if any("apptainer" in m for m in methods) and not container_image("cpu"):
        raise WorkflowError(
            "invalid config: containers.cpu: --sdm apptainer needs an image (a .sif built from "
            "docker/Dockerfile.cpu, or a docker:// URL); found none"
        )


check_container_config()


# ----- input functions ------------------------------------------------------------------------------


def get_subject_files(wildcards):
    """The subject's raw files (simulated, downloaded or the user's own), keyed dmri/bvals/bvecs/mask."""
    return design.subject_files(config, wildcards.subject)


def get_truth_files(wildcards):
    """Ground-truth maps of a synthetic subject (tissue labels, fibre directions); none for real data."""
    if SUBJECTS["source"] != "synthetic":
        return {}
    folder = design.subject_folder(config, wildcards.subject)
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


def training_config(wildcards):
    """Every setting of the model being trained (TrainingConfig as a dict of plain values)."""
    from dmri_rcnn.training.config import TrainingConfig

    seed = design.training_seed(config, wildcards.model)
    spec = design.model_spec(config, wildcards.model)
    return TrainingConfig.from_config(config, spec, seed).to_dict()


def trained_model(wildcards):
    return design.model_for_method(
        wildcards.method, int(wildcards.shell), int(wildcards.q_in)
    )


def get_model_weights(wildcards):
    """Weights of the model behind an RCNN method at this (shell, q_in): trained here, or given (epochs 0)."""
    return pretrained.study_model_weights(config, trained_model(wildcards))


def get_initial_weights(wildcards):
    """Fine-tuning: the weights train_model starts from (none when training from scratch)."""
    if WEIGHTS_SOURCE == pretrained.SCRATCH:
        return {}
    return {"initial": pretrained.pretrained_weights(config, wildcards.model)}


def published_checkpoint(wildcards):
    """(dim, shell or all/all_norm, q_in) of the published checkpoint behind a model name."""
    spec = design.model_spec(config, wildcards.model)
    return list(pretrained.published_checkpoint(spec))


def super_resolve_weights(wildcards):
    """Weights of super_resolve.model: the study's own, the published ones, or a given file."""
    return pretrained.super_resolve_weights(config)


def super_resolve_params(wildcards):
    """Shell, target directions and seed of one subject's super-resolution."""
    return pretrained.super_resolve_settings(
        config, design.stable_seed(config["seed"], "super_resolve", wildcards.subject)
    )


def get_super_resolved():
    return pretrained.super_resolved_outputs(config)


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
    return design.synthetic_seed(config, wildcards.subject)


def context_seed(wildcards):
    return design.context_seed(config, wildcards.shell, wildcards.q_in)


def get_all_metrics(wildcards):
    """Per-(subject, shell, q_in, method) metric tables."""
    return design.per_prediction(
        config, "results/metrics/{subject}/b{shell}_q{q_in}/{method}.tsv"
    )


def get_all_histories(wildcards):
    return expand("results/models/{model}/history.tsv", model=TRAINED_MODELS)


def get_example_methods(wildcards):
    """Methods shown in the example figures (every method at the first evaluated setting)."""
    return list(design.example_predictions(config))


def get_example_predictions_list(wildcards):
    """The example subject's predictions at the first evaluated setting, in method order."""
    return list(design.example_predictions(config).values())


def get_example_context(wildcards):
    """The example subject's acquired targets and mask (example-slice figure)."""
    files = design.example_files(config)
    return {key: files[key] for key in ("targets", "mask")}


def get_example_dti_inputs(wildcards):
    """The example subject's b0, context, targets and mask (FA-map figure)."""
    return design.example_files(config)


# ----- the cross-shell study (dmri_rcnn.study.cross_shell) ---------------------------------------


def cross_shell_context(wildcards):
    """The b0 and context volumes (with the context's table) a cross-shell method starts from."""
    folder = cross_shell.context_folder(config, wildcards.subject, wildcards.q_in)
    return {
        "b0": f"{folder}/b0.nii.gz",
        "context": f"{folder}/context.nii.gz",
        "context_bvecs": f"{folder}/context.bvec",
        "context_bvals": f"{folder}/context.bval",
    }


def cross_shell_targets(wildcards):
    """The acquired volumes of the target shell, with their b-vectors and b-values."""
    return cross_shell.target_files(
        config, wildcards.subject, wildcards.q_in, wildcards.target
    )


def cross_shell_target_table(wildcards):
    """The target shell's b-vectors and b-values: what a prediction of it needs."""
    files = cross_shell_targets(wildcards)
    return {key: files[key] for key in ("target_bvecs", "target_bvals")}


def cross_shell_model(wildcards):
    return cross_shell.model_for_method(config, wildcards.method, wildcards.q_in)


def cross_shell_weights(wildcards):
    return pretrained.study_model_weights(config, cross_shell_model(wildcards))


def cross_shell_prediction(wildcards):
    return cross_shell.prediction_path(
        config, wildcards.subject, wildcards.q_in, wildcards.target, wildcards.method
    )


def get_cross_shell_metrics(wildcards):
    """Per-(subject, q_in, target shell, method) metric tables of the cross-shell study."""
    return cross_shell.per_prediction(config, cross_shell.METRICS)


def get_cross_shell_example(wildcards):
    """The first test subject's acquired target shell and mask (example slices of that shell)."""
    return cross_shell.example_slice_files(config, wildcards.target)


def get_cross_shell_example_methods(wildcards):
    """Methods shown in the example slices of a target shell (every method there)."""
    return list(cross_shell.example_slice_predictions(config, wildcards.target))


def get_cross_shell_example_predictions(wildcards):
    """Their predictions of the target shell, in method order."""
    predictions = cross_shell.example_slice_predictions(config, wildcards.target)
    return list(predictions.values())


wildcard_constraints:
    subject=design.alternatives(ALL_SUBJECTS + SUPER_RESOLVE_SUBJECTS),
    model=MODEL_NAME_PATTERN,
    shell=r"\d+",
    q_in=r"\d+",
    method=r"[A-Za-z0-9_]+",
    target=r"\d+",
