"""Study step: the ``super_resolve`` config section, checked before any job, and its rules' inputs.

``super_resolve`` names the subjects to super-resolve, the ``model`` that does it, where that model's
``weights`` come from (``study``: as this study trains or imports it; ``published``; or a weights file this
package wrote), the ``shell`` (default: the model's only shell) and the ``targets`` (``hcp``, a number of
evenly spread directions, or a b-vector file). Where the study's own weights come from is
:mod:`dmri_rcnn.study.pretrained`'s business.
"""

from __future__ import annotations

from pathlib import Path

from dmri_rcnn.core.model_spec import ModelSpec, read_model_spec, sidecar_path
from dmri_rcnn.errors import ConfigError, InputError
from dmri_rcnn.study.pretrained import PUBLISHED, published_key, published_model_names, study_model_weights


def super_resolve_shell(section: dict, spec: ModelSpec) -> int:
    """The shell super-resolved: ``super_resolve.shell``, or the model's only shell."""
    if section.get("shell"):
        return int(section["shell"])
    if len(spec.shells) != 1:
        raise ConfigError(
            "super_resolve.shell",
            f"model {section['model']} covers b={'/'.join(map(str, spec.shells))}; "
            "name the shell to super-resolve"
        )
    return spec.shells[0]


def check_super_resolve(config: dict, models: list[ModelSpec]) -> None:
    """Stop on a ``super_resolve`` section that cannot work (no-op without subjects).

    Raises
    ------
    ConfigError
        Naming the ``super_resolve.<key>``.
    """
    section = config.get("super_resolve") or {}
    if not section.get("subjects"):
        return
    name = section.get("model")
    if not name:
        raise ConfigError("super_resolve.model", "name the model that super-resolves, e.g. 3D_b1000_q6")
    choice = str(section.get("weights") or "study")
    if choice == "study":
        study = {spec.name: spec for spec in models}
        if name not in study:
            raise ConfigError(
                "super_resolve.model",
                f"{name} is not one of the study's models ({', '.join(study) or 'none'}); "
                "use super_resolve.weights: published for a published one"
            )
        spec = study[name]
    else:
        try:
            spec = ModelSpec.from_name(name)
        except InputError as err:
            raise ConfigError("super_resolve.model", str(err)) from None
        if choice == PUBLISHED:
            if published_key(spec) is None:
                raise ConfigError(
                    "super_resolve.model",
                    f"{name} has no published weights; published: {', '.join(published_model_names())}"
                )
        else:
            path = Path(choice)
            if not path.is_file():
                raise ConfigError("super_resolve.weights", f"{choice} is not study, published or an existing weights file")
            found = read_model_spec(path)
            if found is None:
                raise ConfigError("super_resolve.weights", f"{path} has no description {sidecar_path(path)}")
            spec = found
    shell = super_resolve_shell(section, spec)
    if shell not in spec.shells:
        raise ConfigError(
            "super_resolve.shell",
            f"model {name} was trained on b={'/'.join(map(str, spec.shells))}, not {shell}"
        )
    targets = str(section.get("targets", "hcp")).strip()
    if not (targets.lower() == "hcp" or (targets.isdigit() and int(targets) > 0) or Path(targets).is_file()):
        raise ConfigError(
            "super_resolve.targets",
            f"{targets} is neither hcp, a number of directions nor an existing b-vector file"
        )


# ----- the workflow's input functions -------------------------------------------------------------------


def super_resolve_weights(config: dict) -> str:
    """Weights of ``super_resolve.model``: the study's own, the published ones, or a given file."""
    section = config.get("super_resolve") or {}
    choice = str(section.get("weights") or "study")
    if choice == "study":
        return study_model_weights(config, section["model"])
    if choice == PUBLISHED:
        return f"resources/published_weights/{section['model']}.weights.h5"
    return choice


def super_resolve_settings(config: dict, seed: int) -> dict:
    """Shell, target directions and seed of one super-resolution job."""
    section = config["super_resolve"]
    return {
        "shell": super_resolve_shell(section, ModelSpec.from_name(section["model"])),
        "targets": str(section.get("targets", "hcp")),
        "seed": int(seed),
    }


def super_resolved_outputs(config: dict) -> list[str]:
    """``results/super_resolved/{subject}/`` files of every subject of ``super_resolve.subjects``."""
    subjects = (config.get("super_resolve") or {}).get("subjects") or []
    return [f"results/super_resolved/{subject}/{name}" for subject in subjects for name in ("data.nii.gz", "bvals", "bvecs")]
