"""Figure: one slice of one direction of a target shell, acquired and every method's prediction, with their
errors (rule plot_cross_shell_slices)."""

import logging

from dmri_rcnn.study.logs import start_step
from dmri_rcnn.study.metrics_and_figures import plot_example_slices

start_step(snakemake)
plot_example_slices(
    targets=snakemake.input.targets,
    mask=snakemake.input.mask,
    predictions=dict(zip(snakemake.params.methods, snakemake.input.predictions)),
    out_path=snakemake.output[0],
    shell=int(snakemake.wildcards.target),
)
logging.info("-> %s", snakemake.output[0])
