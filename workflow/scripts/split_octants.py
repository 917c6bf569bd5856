"""Split a subject into octants when its TFRecord would be too large (rule split_octants)."""

import logging

from dmri_rcnn.study.logs import start_step
from dmri_rcnn.study.data import split_octants

start_step(snakemake)
n_parts = split_octants(
    snakemake.input.dmri,
    snakemake.input.bvals,
    snakemake.input.bvecs,
    snakemake.input.mask,
    snakemake.output.parts,
    max_values=snakemake.params.max_values,
)
logging.info("%s: %d part(s)", snakemake.wildcards.subject, n_parts)
