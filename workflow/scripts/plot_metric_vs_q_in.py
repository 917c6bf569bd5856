"""Figure: one summary metric against q_in per shell and method (rule plot_metric_vs_q_in)."""

from dmri_rcnn.study.logs import start_step
from dmri_rcnn.study.metrics_and_figures import plot_metric_vs_q_in

start_step(snakemake)
plot_metric_vs_q_in(snakemake.input[0], snakemake.output[0], metric=snakemake.params.metric)
