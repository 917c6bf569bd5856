"""Every volume of one shell of a subject, the cross-shell study's acquired targets (rule extract_shell)."""

import logging

from dmri_rcnn.study.data import extract_shell
from dmri_rcnn.study.logs import start_step

start_step(snakemake)
count = extract_shell(
    snakemake.input.dmri,
    snakemake.input.bvals,
    snakemake.input.bvecs,
    shell=int(snakemake.wildcards.target),
    out=dict(snakemake.output.items()),
    tolerance=snakemake.params.tolerance,
)
logging.info("b=%s: %d volumes -> %s", snakemake.wildcards.target, count, snakemake.output.targets)
