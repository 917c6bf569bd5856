"""Figure: one slice of one target direction, every method and its error (rule plot_example_slices)."""

import logging

from dmri_rcnn.study.evaluation import plot_example_slices

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
plot_example_slices(
    targets=snakemake.input.targets,
    mask=snakemake.input.mask,
    predictions=dict(zip(snakemake.params.methods, snakemake.input.predictions)),
    out_path=snakemake.output[0],
)
