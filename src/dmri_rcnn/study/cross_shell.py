"""The cross-shell study: predicting other shells (b = 2000, 3000) from b0 and a b = 1000 context.

Read from the config's ``cross_shell`` section (off unless ``cross_shell.enabled``). Names used here:

- the *context shell* (``cross_shell.context_shell``) is the acquired shell a method starts from, with
  ``q_in`` of its directions: the context split of the main study (``results/context/{subject}/b1000_q6``);
- a *target shell* is a shell whose volumes are predicted and compared with the acquired ones: at the
  context shell, the held-out directions of that split; at any other shell, all its directions;
- a *method* at a target shell is ``DTI`` (the tensor fitted to b0 and context, extrapolated:
  :func:`dmri_rcnn.evaluation.cross_shell.extrapolate_dti`); at the context shell the SH baseline
  ``cross_shell.sh_baseline`` and the per-shell models ``1D``/``3D`` (the main study's predictions); at
  every other shell ``1D``/``3D``, the cross-shell models that predict every target shell but the
  context's (``3D_b1000_q6_to2000_3000_bscaled``; ``..._bvalue`` with ``cross_shell.q_encoding: b_value``).

Every function here is a plain function of the config (the workflow's plan, imported by
:mod:`dmri_rcnn.study.design`); the steps of ``workflow/rules/cross_shell.smk`` are
:func:`dmri_rcnn.study.data.extract_shell`, :func:`dmri_rcnn.study.predict_dti.extrapolate_dti`,
:func:`dmri_rcnn.study.predict_rcnn.predict_with_trained_model` and
:func:`dmri_rcnn.study.metrics_and_figures.evaluate_cross_shell`, ``summarise_cross_shell``,
``plot_cross_shell`` and ``plot_example_slices`` (the main study's slice figure, once per target shell).
"""

from __future__ import annotations

from dmri_rcnn.core.model_spec import ModelSpec
from dmri_rcnn.core.processing.scaling import SHELL_SCALE
from dmri_rcnn.core.weights import PUBLISHED_Q_IN
from dmri_rcnn.errors import ConfigError
from dmri_rcnn.study.models import model_spec

#: The tensor-extrapolation baseline's method name.
DTI_METHOD = "DTI"
#: The study's summary table and figure.
SUMMARY = "results/cross_shell/summary.tsv"
FIGURE = "results/cross_shell/mae_per_target_shell.png"
#: One example-slice figure per target shell (acquired, predicted and their errors).
EXAMPLE_SLICES = "results/cross_shell/example_slices_b{target}.png"
PREDICTION = "results/cross_shell/predictions/{subject}/q{q_in}/b{target}/{method}.nii.gz"
METRICS = "results/cross_shell/metrics/{subject}/q{q_in}/b{target}/{method}.tsv"


def enabled(cfg: dict) -> bool:
    """True when the config runs the cross-shell study (``cross_shell.enabled``)."""
    return bool((cfg.get("cross_shell") or {}).get("enabled"))


def check_cross_shell(cfg: dict) -> None:
    """Known shells and context sizes, a named SH baseline, and room for the training examples.

    Raises
    ------
    ConfigError
        Naming the key, e.g. ``invalid config: cross_shell.target_shells: unknown shell 1500; expected
        one of 1000, 2000, 3000``.
    """
    if not enabled(cfg):
        return
    section = cfg["cross_shell"]
    known = ", ".join(map(str, SHELL_SCALE))
    for key, shells in (("context_shell", [section["context_shell"]]), ("target_shells", section["target_shells"])):
        for shell in shells:
            if shell not in SHELL_SCALE:
                raise ConfigError(f"cross_shell.{key}", f"unknown shell {shell}; expected one of {known}")
    for q_in in section["q_in"]:
        if q_in not in PUBLISHED_Q_IN:
            raise ConfigError("cross_shell.q_in", f"q_in {q_in} is not supported; expected one of "
                              f"{', '.join(map(str, PUBLISHED_Q_IN))}")
    if section["dims"] and not predicted_shells(cfg):
        raise ConfigError("cross_shell.target_shells", f"{list(section['target_shells'])} holds no shell but the "
                          f"context's ({section['context_shell']}); a cross-shell model needs another")
    names = [baseline["name"] for baseline in cfg["sh_baselines"]]
    if section["sh_baseline"] is not None and section["sh_baseline"] not in names:
        raise ConfigError("cross_shell.sh_baseline", f"{section['sh_baseline']} is not one of sh_baselines "
                          f"({', '.join(names)}); name one, or null for none")
    needed = max(section["q_in"]) + cfg["training"]["q_out"]
    if cfg["subjects"]["source"] == "synthetic" and cfg["synthetic"]["n_directions"] < needed:
        raise ConfigError("synthetic.n_directions", f"{cfg['synthetic']['n_directions']} directions per shell cannot "
                          f"hold cross_shell q_in {max(section['q_in'])} + q_out {cfg['training']['q_out']}")


def predicted_shells(cfg: dict) -> tuple[int, ...]:
    """The target shells other than the context's: those the cross-shell models predict (sorted)."""
    section = cfg["cross_shell"]
    return tuple(sorted({int(s) for s in section["target_shells"]} - {int(section["context_shell"])}))


def model_catalogue(cfg: dict) -> list[ModelSpec]:
    """The cross-shell models (none when the study is off): per q_in and dimension, the model
    predicting :func:`predicted_shells` from the context shell, e.g. ``3D_b1000_q6_to2000_3000_bscaled``."""
    if not enabled(cfg):
        return []
    section = cfg["cross_shell"]
    return [model_spec(cfg, model_for_method(cfg, f"{dim}D", q_in))
            for q_in in section["q_in"] for dim in section["dims"]]


def settings(cfg: dict) -> list[tuple[int, int]]:
    """(q_in, target shell) pairs evaluated on every test subject, in config order."""
    section = cfg["cross_shell"]
    return [(int(q_in), int(target)) for q_in in section["q_in"] for target in section["target_shells"]]


def methods_for(cfg: dict, target: int, q_in: int | None = None) -> list[str]:
    """Methods evaluated at a target shell: ``DTI``; at every shell but the context's the cross-shell models
    (``1D``, ``3D``); at the context shell the SH baseline and, where the main study evaluates
    (context shell, ``q_in``), its per-shell models (``1D``, ``3D``: ``1D_b1000_q6`` ...), which predict
    that shell from the same context split (``q_in`` None: the first ``cross_shell.q_in``)."""
    section = cfg["cross_shell"]
    if int(target) != int(section["context_shell"]):
        return [DTI_METHOD] + [f"{dim}D" for dim in section["dims"]]
    q_in = int(section["q_in"][0] if q_in is None else q_in)
    evaluated = any(int(entry["shell"]) == int(target) and q_in in map(int, entry["q_in"]) for entry in cfg["evaluation"])
    per_shell = [f"{dim}D" for dim in cfg["models"]["dims"]] if evaluated else []
    return [DTI_METHOD] + ([section["sh_baseline"]] if section["sh_baseline"] else []) + per_shell


def model_for_method(cfg: dict, method: str, q_in: int) -> str:
    """The cross-shell model a method name stands for at q_in: ``3D`` -> ``3D_b1000_q6_to2000_3000_bscaled``
    (``cross_shell.q_encoding`` ``b_value``: ``..._bvalue``)."""
    section = cfg["cross_shell"]
    return ModelSpec(model_dim=int(method.removesuffix("D")), q_in=int(q_in), shells=(section["context_shell"],),
                     q_encoding=section.get("q_encoding", "b_scaled"), target_shells=predicted_shells(cfg)).name


def context_folder(cfg: dict, subject: str, q_in) -> str:
    """The subject's context split (b0, context, held-out targets) at the context shell and q_in."""
    return f"results/context/{subject}/b{cfg['cross_shell']['context_shell']}_q{q_in}"


def target_files(cfg: dict, subject: str, q_in, target) -> dict[str, str]:
    """The acquired volumes of a target shell, keyed ``targets``, ``target_bvecs``, ``target_bvals``."""
    if int(target) == int(cfg["cross_shell"]["context_shell"]):
        folder = context_folder(cfg, subject, q_in)
        names = {"targets": "targets.nii.gz", "target_bvecs": "targets.bvec", "target_bvals": "targets.bval"}
        return {key: f"{folder}/{name}" for key, name in names.items()}
    folder = f"results/cross_shell/shells/{subject}"
    return {"targets": f"{folder}/b{target}.nii.gz", "target_bvecs": f"{folder}/b{target}.bvec",
            "target_bvals": f"{folder}/b{target}.bval"}


def prediction_path(cfg: dict, subject: str, q_in, target, method: str) -> str:
    """Where a method's prediction of a target shell lies (at the context shell, the SH baseline's and the
    per-shell models' are the main study's)."""
    section = cfg["cross_shell"]
    if method != DTI_METHOD and int(target) == int(section["context_shell"]):
        return f"results/predictions/{subject}/b{section['context_shell']}_q{q_in}/{method}.nii.gz"
    return PREDICTION.format(subject=subject, q_in=q_in, target=target, method=method)


def per_prediction(cfg: dict, pattern: str) -> list[str]:
    """``pattern`` (with ``{subject}``, ``{q_in}``, ``{target}``, ``{method}``) for every test subject,
    (q_in, target shell) and method there."""
    return [pattern.format(subject=subject, q_in=q_in, target=target, method=method)
            for subject in cfg["subjects"]["test"]
            for q_in, target in settings(cfg)
            for method in methods_for(cfg, target, q_in)]


def example_slice_figures(cfg: dict) -> list[str]:
    """The example-slice figures, one per target shell of :func:`settings` (in config order)."""
    targets = dict.fromkeys(target for _, target in settings(cfg))
    return [EXAMPLE_SLICES.format(target=target) for target in targets]


def example_slice_files(cfg: dict, target) -> dict[str, str]:
    """What the example-slice figure of a target shell shows: the first test subject's acquired volumes of
    that shell at the first ``cross_shell.q_in`` (``targets``) and the subject's brain mask (``mask``)."""
    subject, q_in = cfg["subjects"]["test"][0], cfg["cross_shell"]["q_in"][0]
    return {"targets": target_files(cfg, subject, q_in, target)["targets"],
            "mask": f"results/preprocessed/{subject}/nodif_brain_mask.nii.gz"}


def example_slice_predictions(cfg: dict, target) -> dict[str, str]:
    """method -> its prediction of the target shell for the same subject and q_in as
    :func:`example_slice_files` (every method of :func:`methods_for`, in that order)."""
    subject, q_in = cfg["subjects"]["test"][0], cfg["cross_shell"]["q_in"][0]
    return {method: prediction_path(cfg, subject, q_in, target, method)
            for method in methods_for(cfg, target, q_in)}


def final_outputs(cfg: dict) -> list[str]:
    """The cross-shell study's summary, its figure and the example slices per target shell (none when it
    is off)."""
    return [SUMMARY, FIGURE, *example_slice_figures(cfg)] if enabled(cfg) else []
