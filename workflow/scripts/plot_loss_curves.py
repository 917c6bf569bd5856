"""Figure: training and validation loss of every model (rule plot_loss_curves)."""


from dmri_rcnn.study.logs import log_to_file
from dmri_rcnn.study.metrics_and_figures import plot_loss_curves

log_to_file(snakemake.log[0])
plot_loss_curves(list(snakemake.input), snakemake.output[0])
