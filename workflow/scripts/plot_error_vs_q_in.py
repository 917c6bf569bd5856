"""Figure: MAE against q_in per shell and method (rule plot_error_vs_q_in)."""

import logging

from dmri_rcnn.study.evaluation import plot_error_vs_q_in

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
plot_error_vs_q_in(snakemake.input[0], snakemake.output[0])
