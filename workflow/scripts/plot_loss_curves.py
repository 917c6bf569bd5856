"""Figure: training and validation loss of every model (rule plot_loss_curves)."""

import logging

from dmri_rcnn.study.evaluation import plot_loss_curves

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
plot_loss_curves(list(snakemake.input), snakemake.output[0])
