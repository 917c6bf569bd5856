"""Where a subject's raw files are, by source: plain functions of the config with no heavy imports, so a
workflow step can name a subject's own files in its messages (:mod:`dmri_rcnn.study.logs`)."""

from __future__ import annotations

#: HCP names of a subject's files in its ``T1w/Diffusion`` folder, keyed as the rules' inputs.
SUBJECT_FILE_NAMES = {
    "dmri": "data.nii.gz",
    "bvals": "bvals",
    "bvecs": "bvecs",
    "mask": "nodif_brain_mask.nii.gz",
}


def subject_folder(cfg: dict, subject: str) -> str:
    """Folder holding a subject's data.nii.gz, bvals, bvecs and nodif_brain_mask.nii.gz."""
    source = cfg["subjects"]["source"]
    if source == "synthetic":
        return f"resources/synthetic/{subject}/T1w/Diffusion"
    if source == "hcp_s3":
        return f"resources/hcp/{subject}/T1w/Diffusion"
    return cfg["local"]["path"].format(subject=subject)


def subject_files(cfg: dict, subject: str) -> dict[str, str]:
    """A subject's raw files keyed dmri/bvals/bvecs/mask.

    For ``source: local`` a key's own ``{subject}`` pattern under ``local.files`` wins over
    ``local.path``/<HCP name>.
    """
    patterns = (cfg.get("local") or {}).get("files") or {} if cfg["subjects"]["source"] == "local" else {}
    folder = subject_folder(cfg, subject)
    return {
        key: patterns[key].format(subject=subject) if patterns.get(key) else f"{folder}/{name}"
        for key, name in SUBJECT_FILE_NAMES.items()
    }
