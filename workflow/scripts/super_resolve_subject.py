"""Super-resolve one subject's whole scan (rule super_resolve_subject)."""

import logging

from dmri_rcnn.core.precision import configure_devices
from dmri_rcnn.study.logs import start_step
from dmri_rcnn.study.super_resolve import super_resolve_subject
from dmri_rcnn.training import configure_threads

start_step(snakemake)
configure_threads(snakemake.threads)
configure_devices()
settings = snakemake.params.settings
result = super_resolve_subject(
    files={key: snakemake.input[key] for key in ("dmri", "bvals", "bvecs", "mask")},
    weights=snakemake.input.weights,
    shell=settings["shell"],
    targets=settings["targets"],
    out={key: snakemake.output[key] for key in ("dmri", "bvals", "bvecs")},
    seed=settings["seed"],
    antipodal=snakemake.params.antipodal,
    batch_size=snakemake.params.batch_size,
)
logging.info("%d acquired + %d predicted volumes -> %s", result.acquired.sum(), (~result.acquired).sum(), snakemake.output.dmri)
