"""The figure: MAE per target shell and method (rule plot_cross_shell)."""

import logging

from dmri_rcnn.study.logs import start_step
from dmri_rcnn.study.metrics_and_figures import plot_cross_shell

start_step(snakemake)
plot_cross_shell(summary_path=snakemake.input[0], out_path=snakemake.output[0])
logging.info("-> %s", snakemake.output[0])
