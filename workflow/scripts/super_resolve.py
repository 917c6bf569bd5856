"""Super-resolve one subject's whole scan (rule super_resolve_subject)."""

import logging

from dmri_rcnn.core.model import load_trained_model
from dmri_rcnn.core.model_spec import read_model_spec
from dmri_rcnn.core.super_resolution import super_resolve_files, target_directions
from dmri_rcnn.study.logs import log_to_file
from dmri_rcnn.training import configure_threads

log_to_file(snakemake.log[0])
configure_threads(snakemake.threads)
settings = snakemake.params.settings
spec = read_model_spec(snakemake.input.weights)
result = super_resolve_files(
    snakemake.input.dmri,
    snakemake.input.bvals,
    snakemake.input.bvecs,
    snakemake.input.mask,
    load_trained_model(snakemake.input.weights, spec),
    settings["shell"],
    target_directions(settings["targets"], settings["shell"], seed=settings["seed"]),
    out_dmri=snakemake.output.dmri,
    out_bvals=snakemake.output.bvals,
    out_bvecs=snakemake.output.bvecs,
    scale="percentile" if spec.scaling == "percentile" else None,
    batch_size=snakemake.params.batch_size,
    progress=False,
    context_size=spec.q_in,
    seed=settings["seed"],
    antipodal=snakemake.params.antipodal,
)
logging.info("%d acquired + %d predicted volumes -> %s", result.acquired.sum(), (~result.acquired).sum(),
             snakemake.output.dmri)
