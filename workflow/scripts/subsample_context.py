"""Split a test subject's shell into context and held-out target directions (rule subsample_context)."""

import logging

from dmri_rcnn.study.logs import start_step
from dmri_rcnn.study.data import subsample_context

start_step(snakemake)
context, targets = subsample_context(
    snakemake.input.dmri,
    snakemake.input.bvals,
    snakemake.input.bvecs,
    shell=int(snakemake.wildcards.shell),
    q_in=int(snakemake.wildcards.q_in),
    seed=snakemake.params.seed,
    out=dict(snakemake.output.items()),
    tolerance=snakemake.params.tolerance,
    antipodal=snakemake.params.antipodal,
)
logging.info("context volumes %s; %d targets", list(context), len(targets))
