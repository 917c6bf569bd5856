"""Figure: training and validation loss of every model (rule plot_loss_curves)."""


from dmri_rcnn.study.logs import start_step
from dmri_rcnn.study.metrics_and_figures import plot_loss_curves

start_step(snakemake)
plot_loss_curves(list(snakemake.input), snakemake.output[0])
