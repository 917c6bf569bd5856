"""Split a subject into octants when its TFRecord would be too large (rule split_octants)."""

import logging

from dmri_rcnn.study.data import split_octants

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
n_parts = split_octants(
    snakemake.input.dmri,
    snakemake.input.bvals,
    snakemake.input.bvecs,
    snakemake.input.mask,
    snakemake.output.parts,
    max_values=snakemake.params.max_values,
)
logging.info("%s: %d part(s)", snakemake.wildcards.subject, n_parts)
