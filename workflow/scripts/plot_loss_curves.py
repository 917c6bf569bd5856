"""Figure: training and validation loss of every model (rule plot_loss_curves)."""


from dmri_rcnn.study.logs import log_to_file
from dmri_rcnn.study.evaluation import plot_loss_curves

log_to_file(snakemake.log[0])
plot_loss_curves(list(snakemake.input), snakemake.output[0])
