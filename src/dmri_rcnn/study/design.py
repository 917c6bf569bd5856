"""The study's design, read from the workflow's config: checks, models, methods, seeds and file names.

Everything here is a plain function of the config dictionary (``config/config.yaml`` after the schema's
defaults are filled in), so it is tested in milliseconds without starting Snakemake.
``workflow/rules/common.smk`` calls these functions and turns :class:`ConfigError` into Snakemake's
``WorkflowError``. Shells and context sizes come from where they are defined: the per-shell signal scales
(:data:`dmri_rcnn.core.processing.scaling.SHELL_SCALE`) and the published weights
(:data:`dmri_rcnn.core.weights.PUBLISHED_WEIGHTS`).

Names used throughout:

- a *setting* is a pair ``(shell, q_in)``: b-value in s/mm² and number of context directions;
- a *model* is a trained network, described by one :class:`~dmri_rcnn.core.model_spec.ModelSpec` and named
  by it (:attr:`~dmri_rcnn.core.model_spec.ModelSpec.name`): ``{dim}D_b{shell}_q{q_in}`` or
  ``{dim}D_all_q{q_in}`` (combined);
- a *method* is what a prediction is labelled with at a setting: an SH baseline's name, ``1D``, ``3D``,
  or ``3D_combined``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from dmri_rcnn.core.architecture import PATCH_SHAPE
from dmri_rcnn.core.model_spec import COMBINED_SHELLS, ModelSpec
from dmri_rcnn.core.processing.scaling import SHELL_SCALE
from dmri_rcnn.core.weights import PUBLISHED_Q_IN
from dmri_rcnn.errors import ConfigError  # noqa: F401  (common.smk catches design.ConfigError)
from dmri_rcnn.study import cross_shell
from dmri_rcnn.study.layout import SUBJECT_FILE_NAMES, subject_files, subject_folder  # noqa: F401
from dmri_rcnn.study.models import model_spec

#: Shells with per-shell scale constants and published weights (s/mm²).
KNOWN_SHELLS: tuple[int, ...] = tuple(SHELL_SCALE)
#: Context sizes of the paper (and of the published weights).
KNOWN_Q_IN: tuple[int, ...] = PUBLISHED_Q_IN

#: Ground-truth maps a synthetic subject has beside its HCP files.
TRUTH_FILE_NAMES = {
    "tissue": "tissue.nii.gz",
    "fibre_dirs": "fibre_dirs.nii.gz",
    "fibre_fractions": "fibre_fractions.nii.gz",
}
NOISELESS_FILE_NAME = "data_noiseless.nii.gz"

#: Figures ``results/figures/{name}_vs_q_in.png``: name -> the summary metric drawn against q_in.
VS_Q_IN_FIGURES = {
    "error": "mae",
    "mae_norm": "mae_norm",
    "ssim": "ssim",
    "fa_mae": "fa_mae",
    "md_mae": "md_mae",
    "pdd_angle_deg": "pdd_angle_deg",
}

SUBJECT_GROUPS = ("train", "validation", "test")


def _one_of(values: Iterable[int]) -> str:
    return ", ".join(map(str, values))


def check_config(cfg: dict) -> None:
    """Cross-key checks the JSON schema cannot express.

    Raises
    ------
    ConfigError
        Naming the first offending key, e.g. ``invalid config: evaluation[0].shell: unknown shell 1500;
        expected one of 1000, 2000, 3000``.
    """
    subjects = cfg["subjects"]
    nothing_trained = int(cfg["training"]["epochs"]) == 0
    _check_subjects(subjects, nothing_trained)
    _check_evaluation(cfg["evaluation"])
    _check_combined(cfg["models"]["combined"])
    cross_shell.check_cross_shell(cfg)
    slab = cfg["preprocess"].get("test_slab")
    if slab is not None and not 0 <= slab[0] < slab[1]:
        raise ConfigError("preprocess.test_slab", f"[{slab[0]}, {slab[1]}) is empty; expected 0 <= first < stop")
    training = cfg["training"]
    if training.get("lr_schedule") == "cosine" and not training.get("steps_per_epoch"):
        raise ConfigError(
            "training.lr_schedule",
            "cosine decays over epochs x steps_per_epoch steps; set training.steps_per_epoch",
        )
    # Where the weights come from (models.weights, training.epochs 0) and the super_resolve section.
    from dmri_rcnn.study.pretrained import check_model_weights, check_super_resolve

    check_model_weights(cfg, model_catalogue(cfg))
    check_super_resolve(cfg, model_catalogue(cfg))
    if subjects["source"] == "synthetic":
        _check_synthetic(cfg, nothing_trained)
    _check_sh_baselines(cfg)
    example = cfg["report"].get("example_subject")
    if example is not None and example not in subjects["test"]:
        raise ConfigError(
            "report.example_subject",
            f"{example} is not a test subject; expected one of {', '.join(subjects['test'])} (or null for the first)",
        )


def _check_subjects(subjects: dict, nothing_trained: bool) -> None:
    """Every group named, no subject twice, no subject in two groups."""
    for group in SUBJECT_GROUPS:
        # Nothing is trained with epochs 0 (weights from elsewhere): no training subjects needed.
        if not subjects[group] and not (group == "train" and nothing_trained):
            raise ConfigError(f"subjects.{group}", "the list is empty; name at least one subject")
        duplicates = sorted({s for s in subjects[group] if subjects[group].count(s) > 1})
        if duplicates:
            raise ConfigError(f"subjects.{group}", f"lists {', '.join(duplicates)} more than once")
    for index, first in enumerate(SUBJECT_GROUPS):
        for second in SUBJECT_GROUPS[index + 1 :]:
            shared = sorted(set(subjects[first]) & set(subjects[second]))
            if shared:
                raise ConfigError(
                    f"subjects.{second}",
                    f"subject {', '.join(shared)} is also in subjects.{first}; "
                    "training, validation and test subjects must not overlap",
                )


def _check_evaluation(settings: list) -> None:
    """Known shells, each once, and supported q_in."""
    shells_seen = set()
    for index, setting in enumerate(settings):
        key = f"evaluation[{index}]"
        if setting["shell"] not in KNOWN_SHELLS:
            raise ConfigError(
                f"{key}.shell", f"unknown shell {setting['shell']}; expected one of {_one_of(KNOWN_SHELLS)}"
            )
        if setting["shell"] in shells_seen:
            raise ConfigError(f"{key}.shell", f"shell {setting['shell']} is listed twice")
        shells_seen.add(setting["shell"])
        for q_in in setting["q_in"]:
            if q_in not in KNOWN_Q_IN:
                raise ConfigError(
                    f"{key}.q_in", f"q_in {q_in} is not supported; expected one of {_one_of(KNOWN_Q_IN)}"
                )


def _check_combined(combined: dict) -> None:
    """A combined model: known shells (two or more) and supported q_in."""
    if combined["enabled"]:
        for shell in combined["shells"]:
            if shell not in KNOWN_SHELLS:
                raise ConfigError(
                    "models.combined.shells", f"unknown shell {shell}; expected one of {_one_of(KNOWN_SHELLS)}"
                )
        for q_in in combined["q_in"]:
            if q_in not in KNOWN_Q_IN:
                raise ConfigError(
                    "models.combined.q_in", f"q_in {q_in} is not supported; expected one of {_one_of(KNOWN_Q_IN)}"
                )
        if len(set(combined["shells"])) < 2:
            raise ConfigError(
                "models.combined.shells",
                f"{list(combined['shells'])} names one shell; a combined model is trained on several "
                "(the per-shell models cover one)",
            )


def _check_synthetic(cfg: dict, nothing_trained: bool) -> None:
    """Simulated subjects big enough for a patch, the evaluated splits and the training examples."""
    shape = list(cfg["synthetic"]["shape"])
    if any(size < patch for size, patch in zip(shape, PATCH_SHAPE)):
        raise ConfigError(
            "synthetic.shape",
            f"{shape} is smaller than a {'x'.join(map(str, PATCH_SHAPE))} patch; expected at least "
            f"{list(PATCH_SHAPE)} voxels",
        )
    slab = cfg["preprocess"].get("test_slab")
    if slab is not None and slab[1] > shape[2]:
        raise ConfigError(
            "preprocess.test_slab",
            f"[{slab[0]}, {slab[1]}) needs {slab[1]} axial slices but synthetic.shape has {shape[2]}",
        )
    n_directions = cfg["synthetic"]["n_directions"]
    largest = max(q for setting in cfg["evaluation"] for q in setting["q_in"])
    if nothing_trained:
        if largest + 1 > n_directions:
            raise ConfigError(
                "synthetic.n_directions",
                f"{n_directions} directions per shell cannot hold q_in {largest} + 1 held-out target",
            )
        return
    q_out = cfg["training"]["q_out"]
    if largest + q_out > n_directions:
        raise ConfigError(
            "synthetic.n_directions",
            f"{n_directions} directions per shell cannot hold q_in {largest} + q_out {q_out} per training example",
        )


def n_sh_coefficients(sh_order: int) -> int:
    """Coefficients of a symmetric real SH series of even order ``sh_order``.

    The count of :func:`dmri_rcnn.evaluation.sh_baseline.n_sh_coefficients`, repeated here because
    importing that module (DIPY) would add a second to every start of the workflow.
    """
    return (sh_order + 1) * (sh_order + 2) // 2


def _check_sh_baselines(cfg: dict) -> None:
    """A fixed SH order without smoothing needs at least as many context directions as coefficients."""
    smallest = min(q for setting in cfg["evaluation"] for q in setting["q_in"])
    for index, baseline in enumerate(cfg["sh_baselines"]):
        order = baseline["sh_order"]
        if order == "auto" or float(baseline.get("smooth", 0.0)) > 0:
            continue
        n_coefficients = n_sh_coefficients(int(order))
        if n_coefficients > smallest:
            highest = max(o for o in range(0, 13, 2) if n_sh_coefficients(o) <= smallest)
            raise ConfigError(
                f"sh_baselines[{index}].sh_order",
                f"order {order} has {n_coefficients} coefficients but q_in {smallest} gives only {smallest} "
                f"context directions; choose sh_order <= {highest}, a smooth > 0, or auto",
            )


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _numeric_text(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return isinstance(value, str)


def schema_error(error: Exception) -> ConfigError | None:
    """The one-line :class:`ConfigError` for a schema violation (a ``jsonschema.ValidationError``, or the
    exception Snakemake's ``validate`` raised while handling one); None for any other exception.

    Snakemake's own message prints the schema and the whole config; this one names the key, what was
    found and what is allowed, e.g. ``invalid config: training.epochz: unknown key; expected one of
    epochs, steps_per_epoch, ...``.
    """
    # lazy: jsonschema loads only when a config breaks the schema
    import jsonschema

    while error is not None and not isinstance(error, jsonschema.ValidationError):
        error = error.__cause__ or error.__context__
    if error is None:
        return None
    key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path).lstrip(".")
    kind, expected, found = error.validator, error.validator_value, error.instance
    if kind == "additionalProperties" and isinstance(found, dict):
        allowed = list(error.schema.get("properties", {}))
        unknown = [name for name in found if name not in allowed]
        key = ".".join(filter(None, [key, ", ".join(map(str, unknown))]))
        return ConfigError(key, f"unknown key; expected one of {', '.join(allowed)}")
    if kind == "enum":
        return ConfigError(key, f"{_short(found)} is not allowed; expected one of {', '.join(map(str, expected))}")
    # `--config key={nested: 3}` hands nested values over as text
    hint = "; --config passes nested values as text, set them in a --configfile" if _numeric_text(found) else ""
    if kind == "type":
        wanted = " or ".join(expected) if isinstance(expected, list) else expected
        return ConfigError(key, f"{_short(found)} is not of type {wanted}{hint}")
    if kind == "required":
        return ConfigError(key or "config", error.message)
    if kind in ("oneOf", "anyOf"):
        forms = "; ".join(sorted({sub.message.replace(repr(found), "it") for sub in error.context}))
        return ConfigError(key, f"{_short(found)} is none of the allowed forms ({forms}){hint}")
    return ConfigError(key or "config", error.message.replace(repr(found), _short(found)))


def evaluation_settings(cfg: dict) -> list[tuple[int, int]]:
    """(shell, q_in) pairs evaluated on every test subject, in config order."""
    return [(s["shell"], q_in) for s in cfg["evaluation"] for q_in in s["q_in"]]


def model_catalogue(cfg: dict) -> list[ModelSpec]:
    """Every model of the study, in config order (:func:`model_spec` of each name).

    One model per dimension and evaluated setting (``3D_b1000_q6``), plus, when ``models.combined`` is
    enabled, one per dimension and q_in trained on all its shells (``3D_all_q10``), and, when
    ``cross_shell`` is enabled, its cross-shell models (:func:`dmri_rcnn.study.cross_shell.model_catalogue`).
    """
    models = [(dim, (shell,), q_in) for shell, q_in in evaluation_settings(cfg) for dim in cfg["models"]["dims"]]
    combined = cfg["models"]["combined"]
    if combined["enabled"]:
        models += [(dim, tuple(combined["shells"]), q_in) for q_in in combined["q_in"] for dim in combined["dims"]]
    names = [ModelSpec(model_dim=dim, q_in=q_in, shells=shells).name for dim, shells, q_in in models]
    names += [spec.name for spec in cross_shell.model_catalogue(cfg)]
    return [model_spec(cfg, name) for name in dict.fromkeys(names)]


def model_names(cfg: dict) -> list[str]:
    """The names of :func:`model_catalogue`'s models."""
    return [spec.name for spec in model_catalogue(cfg)]


def rcnn_methods(cfg: dict, shell: int, q_in: int) -> list[str]:
    """Method names of the trained models evaluated at (shell, q_in): ``1D``, ``3D``, ``3D_combined``."""
    methods = [f"{dim}D" for dim in cfg["models"]["dims"]]
    combined = cfg["models"]["combined"]
    if combined["enabled"] and shell in combined["shells"] and q_in in combined["q_in"]:
        methods += [f"{dim}D_combined" for dim in combined["dims"]]
    return methods


def methods_for(cfg: dict, shell: int, q_in: int) -> list[str]:
    """Every method evaluated at (shell, q_in): the SH baselines, then the RCNN models."""
    return [baseline["name"] for baseline in cfg["sh_baselines"]] + rcnn_methods(cfg, shell, q_in)


def model_for_method(method: str, shell: int, q_in: int) -> str:
    """The trained model an RCNN method name stands for at (shell, q_in): ``3D`` -> ``3D_b1000_q6``."""
    dim, _, variant = method.partition("_")
    shells = COMBINED_SHELLS if variant == "combined" else (shell,)
    return ModelSpec(model_dim=int(dim.removesuffix("D")), q_in=int(q_in), shells=shells).name


def stable_seed(master_seed: int, *parts) -> int:
    """A reproducible 31-bit seed from the master seed and some names (Python's ``hash()`` is salted)."""
    text = ":".join(str(p) for p in (master_seed, *parts))
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % (2**31)


def synthetic_seed(cfg: dict, subject: str) -> int:
    """Seed of a simulated subject."""
    return stable_seed(cfg["seed"], "subject", subject)


def context_seed(cfg: dict, shell, q_in) -> int:
    """Seed of the context/target split: the same for every subject (one protocol), new per setting."""
    return stable_seed(cfg["seed"], "context", shell, q_in)


def training_seed(cfg: dict, model: str) -> int:
    """Seed of one model's training.

    ``training.seed`` (when set) varies the training alone: the subjects and context subsets keep
    deriving from the master seed, so repeated trainings are compared on the same data.
    """
    base = cfg.get("training", {}).get("seed")
    if base is None:
        return stable_seed(cfg["seed"], "train", model)
    return stable_seed(cfg["seed"], "train", "seed", base, model)


def alternatives(names: Iterable) -> str:
    """A wildcard regex matching exactly the given names."""
    return "|".join(re.escape(str(name)) for name in names)


def truth_file_names(cfg: dict) -> dict[str, str]:
    """Ground-truth file names of a synthetic subject (the noiseless signal only if it is written)."""
    names = dict(TRUTH_FILE_NAMES)
    if cfg["synthetic"]["write_noiseless"]:
        names["noiseless"] = NOISELESS_FILE_NAME
    return names


def test_slab(cfg: dict, subject: str) -> list[int] | None:
    """The axial slab ``[first, stop)`` a test subject is cut to (``preprocess.test_slab``); None for others."""
    slab = cfg["preprocess"].get("test_slab")
    if slab is None or subject not in cfg["subjects"]["test"]:
        return None
    return [int(slab[0]), int(slab[1])]


def hcp_s3_url(cfg: dict, file_name: str) -> str:
    """S3 URL pattern (with a ``{subject}`` wildcard) of one file of an HCP subject's T1w/Diffusion folder."""
    settings = cfg["hcp_s3"]
    prefix = settings["prefix"].strip("/")
    return f"s3://{settings['bucket']}/{prefix}/{file_name}"


def hcp_s3_urls(cfg: dict, subject: str) -> dict[str, str]:
    """A subject's four S3 URLs keyed dmri/bvals/bvecs/mask (named in download error messages)."""
    return {key: hcp_s3_url(cfg, name).format(subject=subject) for key, name in SUBJECT_FILE_NAMES.items()}


def hcp_s3_storage_settings(cfg: dict) -> dict:
    """S3 storage settings the config may hold (endpoint, region); credentials never come from config."""
    settings = cfg["hcp_s3"]
    return {key: settings[key] for key in ("endpoint_url", "region") if settings.get(key)}


def container_image(cfg: dict, kind: str) -> str | None:
    """Container image (``--sdm apptainer``) of the cpu or gpu steps; gpu falls back to ``containers.cpu``."""
    images = cfg["containers"]
    return images.get(kind) or images.get("cpu") or None


# ----- the study's results ---------------------------------------------------------------------------


def per_prediction(cfg: dict, pattern: str) -> list[str]:
    """``pattern`` (with ``{subject}``, ``{shell}``, ``{q_in}``, ``{method}``) for every test subject,
    evaluated setting and method at that setting."""
    return [
        pattern.format(subject=subject, shell=shell, q_in=q_in, method=method)
        for subject in cfg["subjects"]["test"]
        for shell, q_in in evaluation_settings(cfg)
        for method in methods_for(cfg, shell, q_in)
    ]


def example_subject(cfg: dict) -> str:
    """Test subject shown in the example figures (``report.example_subject``, else the first)."""
    return cfg["report"]["example_subject"] or cfg["subjects"]["test"][0]


def example_files(cfg: dict) -> dict[str, str]:
    """The example subject's b0, context, acquired targets and mask at the first evaluated setting."""
    shell, q_in = evaluation_settings(cfg)[0]
    subject = example_subject(cfg)
    folder = f"results/context/{subject}/b{shell}_q{q_in}"
    return {
        "b0": f"{folder}/b0.nii.gz",
        "context": f"{folder}/context.nii.gz",
        "context_bvecs": f"{folder}/context.bvec",
        "targets": f"{folder}/targets.nii.gz",
        "target_bvecs": f"{folder}/targets.bvec",
        "mask": f"results/preprocessed/{subject}/nodif_brain_mask.nii.gz",
    }


def example_predictions(cfg: dict) -> dict[str, str]:
    """method -> the example subject's prediction at the first evaluated setting (every method there)."""
    shell, q_in = evaluation_settings(cfg)[0]
    folder = f"results/predictions/{example_subject(cfg)}/b{shell}_q{q_in}"
    return {method: f"{folder}/{method}.nii.gz" for method in methods_for(cfg, shell, q_in)}


def final_outputs(cfg: dict) -> list[str]:
    """Targets of ``rule all``: summary, figures and every prediction (a deleted one is rebuilt by a rerun),
    and the cross-shell study's summary and figures when it is enabled."""
    outputs = ["results/summary.tsv", "results/figures/result.png"]
    outputs += [f"results/figures/{name}_vs_q_in.png" for name in VS_Q_IN_FIGURES]
    outputs += ["results/figures/example_slices.png", "results/figures/fa_maps.png"]
    if model_names(cfg) and int(cfg["training"]["epochs"]) > 0:
        outputs.append("results/figures/loss_curves.png")
    outputs += per_prediction(cfg, "results/predictions/{subject}/b{shell}_q{q_in}/{method}.nii.gz")
    return outputs + cross_shell.final_outputs(cfg)
